//! Reading a REST call's JSON body, field by field.
//!
//! A body is a JSON object. One that is not JSON, not an object, or lacks a field the call
//! cannot do without is `400 bad_request`: it is not a request of that call at all. Then each
//! field is read with the error its call gives a bad value of it, so a value of the wrong
//! JSON type (`"capacity":"ten"`, `"username":7`, `"text":null`) gets that field's own code,
//! as a value of the right type but out of range does.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::chat::ChatError;
use crate::http::Request;
use crate::protocol::whole;

/// A request body that is a JSON object with the fields its call needs.
#[derive(Debug)]
pub(super) struct Body(Map<String, Value>);

impl Body {
    /// Parses `req`'s body; `required` are the keys without which it is no request of the
    /// call (`400 bad_request`), checked before any field's type.
    pub(super) fn read(req: &Request, required: &[&str]) -> Result<Body, ChatError> {
        Body::parse(&req.body, required)
    }

    fn parse(bytes: &[u8], required: &[&str]) -> Result<Body, ChatError> {
        let bad = |why: String| ChatError::BadRequest(format!("invalid JSON body: {why}"));
        let Object(map) = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if let Some(key) = required.iter().find(|k| !map.contains_key(**k)) {
            return Err(bad(format!("missing field `{key}`")));
        }
        Ok(Body(map))
    }

    /// The body, or `{}` when there is none at all (only whitespace).
    pub(super) fn read_or_empty(req: &Request) -> Result<Body, ChatError> {
        if req.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Map::new()));
        }
        Body::read(req, &[])
    }

    /// `key`'s value; an absent key and `null` are both `None` (an optional field given as
    /// `null` counts as absent).
    pub(super) fn value(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// An optional string field; any other type is `invalid`.
    pub(super) fn text(&self, key: &str, invalid: ChatError) -> Result<Option<&str>, ChatError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid),
        }
    }

    /// A string field the call needs: `null` or any other type is `invalid` (its absence
    /// was refused by `read`).
    pub(super) fn need_text(&self, key: &str, invalid: ChatError) -> Result<&str, ChatError> {
        self.text(key, invalid.clone())?.ok_or(invalid)
    }

    /// An optional whole number (`5`, or `5.0`) that fits an `i64`; anything else is
    /// `invalid`.
    pub(super) fn int(&self, key: &str, invalid: ChatError) -> Result<Option<i64>, ChatError> {
        self.number(key, invalid, whole::as_i64)
    }

    /// An optional whole number from 0 that fits a `u64`; anything else is `invalid`.
    pub(super) fn uint(&self, key: &str, invalid: ChatError) -> Result<Option<u64>, ChatError> {
        self.number(key, invalid, whole::as_u64)
    }

    fn number<N>(
        &self,
        key: &str,
        invalid: ChatError,
        whole: fn(&serde_json::Number) -> Option<N>,
    ) -> Result<Option<N>, ChatError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Number(n)) => whole(n).map(Some).ok_or(invalid),
            Some(_) => Err(invalid),
        }
    }
}

/// A JSON object whose keys are each given once. A key given twice is refused (as serde's
/// derived structs refuse it), so no two readers of one body see different values.
struct Object(Map<String, Value>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Object, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = Object;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Object, A::Error> {
                let mut map = Map::new();
                while let Some(key) = fields.next_key::<String>()? {
                    if map.contains_key(&key) {
                        return Err(A::Error::custom(format!("duplicate field `{key}`")));
                    }
                    let value = fields.next_value()?;
                    map.insert(key, value);
                }
                Ok(Object(map))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// `400 bad_request` naming what `key` must be: for fields whose bad values have no code of
/// their own.
pub(super) fn malformed(key: &str, what: &str) -> ChatError {
    ChatError::BadRequest(format!("{key} must be {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str, required: &[&str]) -> Result<Body, ChatError> {
        Body::parse(json.as_bytes(), required)
    }

    fn code(r: Result<impl std::fmt::Debug, ChatError>) -> &'static str {
        r.expect_err("an error").code()
    }

    #[test]
    fn a_body_that_is_no_request_is_bad_request() {
        for json in [
            "",
            "not json",
            "[null, null]",
            "\"x\"",
            "5",
            "null",
            "{\"a\":1",
            "{\"a\":1}x",
            r#"{"name": "a", "name": "b"}"#,
        ] {
            assert_eq!(code(body(json, &[])), "bad_request", "{json}");
        }
        assert_eq!(code(body(r#"{"old": 1}"#, &["old", "new"])), "bad_request");
        assert!(body(r#"{"old": 1, "new": null}"#, &["old", "new"]).is_ok());
    }

    /// Found by schemathesis: `{"seq": 10100.0}` (a whole number as Python's `json` writes a
    /// float) was refused with 400, though JSON Schema's `integer` includes it.
    #[test]
    fn whole_numbers_may_be_written_as_floats() {
        let b = body(r#"{"a": 10100.0, "b": -3.0, "c": 1e3, "d": null}"#, &[]).unwrap();
        let e = || ChatError::InvalidCapacity;
        assert_eq!(b.uint("a", e()), Ok(Some(10100)));
        assert_eq!(b.int("b", e()), Ok(Some(-3)));
        assert_eq!(b.uint("c", e()), Ok(Some(1000)));
        assert_eq!(b.uint("d", e()), Ok(None));
        assert_eq!(b.uint("missing", e()), Ok(None));
    }

    #[test]
    fn a_field_of_the_wrong_type_gets_its_own_error() {
        let b = body(
            r#"{"f": 1.5, "n": -1, "big": 1e20, "s": "1", "t": true, "o": {}, "l": [], "z": null}"#,
            &[],
        )
        .unwrap();
        for key in ["f", "n", "big", "s", "t", "o", "l"] {
            assert_eq!(
                code(b.uint(key, ChatError::InvalidDuration)),
                "invalid_duration"
            );
        }
        for key in ["f", "big", "s", "t", "o", "l"] {
            assert_eq!(
                code(b.int(key, ChatError::InvalidCapacity)),
                "invalid_capacity"
            );
        }
        for key in ["f", "n", "t", "o", "l"] {
            assert_eq!(code(b.text(key, ChatError::InvalidTopic)), "invalid_topic");
        }
        assert_eq!(b.text("z", ChatError::InvalidTopic), Ok(None));
        assert_eq!(
            code(b.need_text("z", ChatError::EmptyMessage)),
            "empty_message"
        );
        assert_eq!(b.need_text("s", ChatError::EmptyMessage), Ok("1"));
    }
}
