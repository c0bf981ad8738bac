//! How fast the generator's receive path parses and times entry frames, without a network:
//! `cargo run --release -p parley-load --example scan_speed`. Prints nanoseconds per frame
//! for frame parsing, type classification and stamp scanning of realistic entry frames.

use parley_load::frame;
use parley_load::scan::{self, Stamp};
use std::time::Instant;

fn main() {
    let mut text = Vec::new();
    scan::write_text(
        &mut text,
        Stamp {
            phase: 3,
            sent_ns: 123_456_789_012,
        },
        100,
    );
    let text = String::from_utf8(text).unwrap_or_default();
    let payload = format!(
        r#"{{"type":"entry","room":"r7Hc2kQ9","seq":123456,"ts":1764151200000,"kind":"message","from":"ld7f3k2a_123","text":"{text}"}}"#
    );
    let mut one = vec![0x81u8, 126];
    one.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    one.extend_from_slice(payload.as_bytes());
    let per_buf = 256 * 1024 / one.len();
    let buf: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * per_buf)
        .collect();

    let rounds = 400;
    let start = Instant::now();
    let mut found = 0u64;
    for _ in 0..rounds {
        let mut at = 0;
        while let Ok(Some((f, used))) = frame::parse(&buf[at..], 1 << 24) {
            if scan::frame_type(f.payload) == scan::FrameType::Entry
                && scan::find_stamp(f.payload).is_some()
            {
                found += 1;
            }
            at += used;
        }
    }
    let elapsed = start.elapsed();
    let frames = (rounds * per_buf) as f64;
    println!(
        "{} frames of {} bytes: {:.1} ns per frame, {:.1} M frames/s on one core ({found} stamps)",
        frames,
        one.len(),
        elapsed.as_nanos() as f64 / frames,
        frames / elapsed.as_secs_f64() / 1e6
    );
}
