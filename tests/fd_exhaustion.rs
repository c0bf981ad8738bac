//! Running out of file descriptors: the server keeps serving the connections it has, does
//! not spin on `accept`, and takes new connections again once descriptors free up.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// CPU ticks (user + system) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_keeps_serving_and_does_not_spin() {
    let bin = env!("CARGO_BIN_EXE_parley-server");
    let mut command = Command::new("bash");
    command
        .args(["-c", "ulimit -n 40 && exec \"$0\" \"$@\"", bin])
        .args([
            "--bind",
            "127.0.0.1:0",
            "--ephemeral",
            "--max-connections",
            "1000",
        ])
        .args(["--max-connections-per-ip", "0", "--keepalive-timeout", "30"]);
    let server = spawn_server(command);
    let (pid, addr) = (server.process.id(), server.addr);

    let mut kept = KeepAlive::open(addr).await;
    let health = kept.ask("GET", "/healthz", None).await.map(|r| r.status);
    assert_eq!(health, Some(200));

    // More connections than descriptors left: the kernel completes them, accept runs dry.
    let mut flood = Vec::new();
    for _ in 0..60 {
        flood.push(TcpStream::connect(addr).await.unwrap());
    }
    let ticks = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu_ticks(pid) - ticks;
    assert!(
        spent < 50,
        "accept spun while out of descriptors: {spent} ticks in 1 s"
    );
    let health = kept.ask("GET", "/healthz", None).await.map(|r| r.status);
    assert_eq!(
        health,
        Some(200),
        "a connection it already had is still served"
    );

    for mut s in flood.drain(..) {
        let _ = s.shutdown().await;
    }
    // Descriptors are free again: a new client is served (get waits for its answer).
    assert_eq!(get(addr, "/healthz", None).await.status, 200);
}
