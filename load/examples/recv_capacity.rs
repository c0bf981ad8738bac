//! How many entry frames per second the generator's receive path takes on one core, over real
//! loopback sockets: `cargo run --release -p parley-load --example recv_capacity`.
//!
//! A stand-in server thread (pinned to CPU 0) answers each upgrade with `101` and a `hello`,
//! then writes pre-encoded 100-byte-text entry frames as fast as the sockets take them. The
//! generator's own `Connection` code (pinned to CPU 1, one thread) receives and times them.
//! Environment: `CONNS` (default 1000), `SECS` (default 5).

use parley_load::conn::{Connection, WsConfig};
use parley_load::probe;
use parley_load::scan::{self, Stamp};
use parley_load::stats::Shared;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn entry_frames(n: usize) -> Vec<u8> {
    let one = scan::sample_entry_frame(
        Stamp {
            phase: 1,
            sent_ns: 0,
        },
        100,
    );
    one.iter().copied().cycle().take(one.len() * n).collect()
}

/// CPU time of the calling thread (the generator's runtime thread).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conns: usize = std::env::var("CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let secs: f64 = std::env::var("SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let running = Arc::new(AtomicBool::new(true));
    let blaster_running = running.clone();
    let blaster = std::thread::spawn(move || {
        probe::pin_current_thread(0);
        let hello =
            br#"{"type":"hello","username":"x","epoch":"e","heartbeat_ms":20000,"rooms":[]}"#;
        let mut head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec();
        head.extend_from_slice(&[0x81, hello.len() as u8]);
        head.extend_from_slice(hello);
        let mut socks = Vec::new();
        for _ in 0..conns {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let _ = s.write_all(&head);
            let _ = s.set_nonblocking(true);
            socks.push(s);
        }
        let frames = entry_frames(64);
        let mut offsets = vec![0usize; socks.len()];
        while blaster_running.load(Ordering::Relaxed) {
            for (s, off) in socks.iter_mut().zip(offsets.iter_mut()) {
                match s.write(&frames[*off..]) {
                    Ok(n) => *off = (*off + n) % frames.len(),
                    Err(_) => continue,
                }
            }
        }
    });

    probe::pin_current_thread(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let shared = Arc::new(Shared::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (received, elapsed, cpu) = rt.block_on(async {
        let mut open = Vec::new();
        for i in 0..conns {
            let c = Connection::open(
                addr,
                None,
                "t",
                &WsConfig::default(),
                shared.clone(),
                stop_rx.clone(),
                i as u64,
            )
            .await?;
            open.push(c);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r0 = shared.received(1);
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let received = shared.received(1) - r0;
        let elapsed = t0.elapsed();
        let cpu = thread_cpu() - cpu0;
        let _ = stop_tx.send(true);
        for c in open {
            c.finish().await;
        }
        Ok::<_, parley_load::LoadError>((received, elapsed, cpu))
    })?;
    running.store(false, Ordering::Relaxed);
    let _ = blaster.join();
    println!(
        "{conns} connections: {:.2} M entry frames/s received and timed; generator thread CPU {:.0}% of one core",
        received as f64 / elapsed.as_secs_f64() / 1e6,
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64()
    );
    Ok(())
}
