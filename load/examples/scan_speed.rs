//! How fast the generator's receive path parses and times entry frames, without a network:
//! `cargo run --release -p parley-load --example scan_speed`. Prints nanoseconds per frame
//! for frame parsing, type classification and stamp scanning of realistic entry frames.

use parley_load::frame;
use parley_load::scan::{self, Stamp};
use std::time::Instant;

fn main() {
    let stamp = Stamp {
        phase: 3,
        sent_ns: 123_456_789_012,
    };
    let one = scan::sample_entry_frame(stamp, 100);
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
