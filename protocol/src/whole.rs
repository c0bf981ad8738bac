//! Whole numbers in REST bodies and frames as JSON writes them: `5` or `5.0`. JSON has one
//! number type and JSON Schema's `integer` includes `5.0` (which is what Python's `json`
//! writes for a float), so both are taken; a fraction or a value out of range is refused.

use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::Number;

/// 2^63 and 2^64 as floats: the first values out of range.
const I64_END: f64 = 9_223_372_036_854_775_808.0;
const U64_END: f64 = 18_446_744_073_709_551_616.0;

fn float(n: &Number, low: f64, end: f64) -> Option<f64> {
    n.as_f64()
        .filter(|f| f.fract() == 0.0 && *f >= low && *f < end)
}

pub fn as_u64(n: &Number) -> Option<u64> {
    n.as_u64()
        .or_else(|| float(n, 0.0, U64_END).map(|f| f as u64))
}

pub fn as_i64(n: &Number) -> Option<i64> {
    n.as_i64()
        .or_else(|| float(n, -I64_END, I64_END).map(|f| f as i64))
}

fn refuse<E: Error>(n: &Number) -> E {
    E::custom(format!("expected a whole number, not {n}"))
}

/// `deserialize_with` for a `u64` field.
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = Number::deserialize(d)?;
    as_u64(&n).ok_or_else(|| refuse(&n))
}

/// `deserialize_with` for an `Option<u64>` field (with `#[serde(default)]`): `null` is
/// `None`.
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => as_u64(&n).map(Some).ok_or_else(|| refuse(&n)),
    }
}
