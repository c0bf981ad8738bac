//! Core reliability (issue 9), black-box: what a user notices when the core loses an entry
//! between `hello` and the live stream, when the journal stops accepting writes, when the
//! machine lost power, when presence storms, and when a sent message's nonce is asked for
//! again.
//!
//! - `new_connections`: a connection opened while entries are being committed misses none.
//! - `journal_failure`: once the journal refuses writes, every change is refused and memory
//!   stays equal to what is on disk.
//! - `power_cut`: a damaged journal after a reboot is cut there instead of bricking the
//!   server, unless the lost records could have been acknowledged.
//! - `presence`: coalesced presence never cuts a reader; lapses and logouts are announced.
//! - `nonce`: the sender's nonce is kept with its entry, for the sender only, across restarts.

#[path = "../common/mod.rs"]
mod common;

mod journal_failure;
mod new_connections;
mod nonce;
mod power_cut;
mod presence;

use std::net::SocketAddr;

use serde_json::{json, Value};

pub use common::hello_last_seq;
use common::*;

/// A loopback address to send from, `per` users to each, so that the contract's per-address
/// limits (registrations per IP and hour, connections per IP) never stop a test that needs
/// many accounts.
pub fn loopback(i: usize, per: usize) -> String {
    let n = 1 + i / per;
    format!("127.0.{}.{}", 1 + n / 250, 1 + n % 250)
}

/// Registers `name` from `from` and logs in; returns the token.
pub async fn user_from(addr: SocketAddr, from: &str, name: &str) -> String {
    let creds = json!({ "username": name, "password": PASSWORD });
    let r = request_from(addr, from, "POST", "/api/v1/register", None, Some(&creds)).await;
    assert_eq!(r.status, 201, "register {name}: {:?}", r.json());
    let r = request_from(addr, from, "POST", "/api/v1/login", None, Some(&creds)).await;
    assert_eq!(r.status, 200, "login {name}: {:?}", r.json());
    r.json()["token"].as_str().unwrap().to_string()
}

/// Sends `sync` and returns the `history` answer.
pub async fn sync(w: &mut Ws, room: &str, since: u64) -> Value {
    w.send(json!({ "type": "sync", "room": room, "since": since }))
        .await;
    w.next_where("history", |f| f["room"] == room).await
}
