//! Scenario: history isolation (issue 20). The many-rooms measurement, once quiet and once
//! while one member of another room pulls `GET /rooms/{id}/messages?limit=500` of 4,000-byte
//! entries over and over from several connections, each closed as soon as the answer's status
//! line arrives, as an attacker who never reads the body would.
//!
//! What it shows: whether one member's history reads slow down everyone else's messages. The
//! pulls are counted by status (`429` once the member's history byte budget is spent).

use super::burden::{Burden, Workers};
use super::rooms::{self, IsolationReport, RoomsConfig};
use super::state::fill::send_windowed;
use super::{open_many, OpenOptions, Target};
use crate::api::{self, User};
use crate::conn::WsConfig;
use crate::error::{LoadError, Result};
use crate::http::{self, HttpClient};
use crate::sender::SendSpec;
use crate::stats::Shared;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Settings of the pulls.
#[derive(Clone, Debug)]
pub struct PullConfig {
    /// Pulls in flight at once, one connection each. Default is 8.
    pub pullers: usize,
    /// Entries posted to the pulled room first. Default is 600.
    pub entries: usize,
    /// Bytes of each entry's text. Default is 4,000.
    pub text_len: usize,
    /// The page size asked for. Default is 500, the contract's most.
    pub limit: usize,
}

impl Default for PullConfig {
    fn default() -> Self {
        PullConfig {
            pullers: 8,
            entries: 600,
            text_len: 4000,
            limit: 500,
        }
    }
}

/// The puller's account and its room, filled.
#[derive(Clone, Debug)]
pub struct PullSetup {
    pub user: User,
    pub room: String,
}

/// Registers the puller, makes its room and posts `cfg.entries` messages to it.
pub async fn prepare(addr: SocketAddr, cfg: &PullConfig) -> Result<PullSetup> {
    let prefix = format!("{}h", api::run_prefix());
    let users = api::create_users(addr, &prefix, 1, 1).await?;
    let user = users
        .into_iter()
        .next()
        .ok_or_else(|| LoadError::Protocol("history: the puller's account was not made".into()))?;
    let mut client = HttpClient::new(addr, None);
    let room = api::create_room(&mut client, &user.token, &format!("{prefix}pile"), 10).await?;
    let shared = Arc::new(Shared::new(false));
    let (stop, stop_rx) = watch::channel(false);
    let opts = OpenOptions {
        ws: WsConfig::default(),
        concurrency: 1,
        touch: false,
    };
    let conns = open_many(
        addr,
        std::slice::from_ref(&user.token),
        &opts,
        &shared,
        &stop_rx,
    )
    .await
    .all()?;
    let specs = vec![SendSpec::new(&room, cfg.text_len)];
    let sent = send_windowed(
        conns[0].tx.clone(),
        specs,
        cfg.entries as u64,
        50,
        1,
        shared.clone(),
    )
    .await;
    let _ = stop.send(true);
    for c in conns {
        c.finish().await;
    }
    sent?;
    Ok(PullSetup { user, room })
}

/// One member's pulls: its account and room, and how to pull.
pub struct Pulls<'a> {
    pub setup: &'a PullSetup,
    pub cfg: &'a PullConfig,
}

impl Burden for Pulls<'_> {
    fn start<'a>(
        &'a self,
        addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Workers>> + Send + 'a>> {
        Box::pin(async move { Ok(start_pulls(addr, self.setup, self.cfg)) })
    }
}

/// The status of an answer whose first bytes are `head`, once its status line is in.
fn status_of(head: &[u8]) -> Option<u16> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

/// One pull: connect, ask for the page, read up to the status line, close. 0 for a
/// connection that failed or ended first.
async fn pull_once(addr: SocketAddr, request: &[u8], local: Option<std::net::IpAddr>) -> u16 {
    let Ok(mut stream) = http::connect(addr, local).await else {
        return 0;
    };
    if stream.write_all(request).await.is_err() {
        return 0;
    }
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return 0,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if let Some(s) = status_of(&head) {
            return s;
        }
        if head.len() > 4096 {
            return 0;
        }
    }
}

/// Starts `cfg.pullers` pullers.
fn start_pulls(addr: SocketAddr, setup: &PullSetup, cfg: &PullConfig) -> Workers {
    let request: Arc<[u8]> = format!(
        "GET /api/v1/rooms/{}/messages?limit={} HTTP/1.1\r\nHost: parley\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        setup.room, cfg.limit, setup.user.token
    )
    .into_bytes()
    .into();
    let sources = api::source_addresses(addr);
    Workers::spawn(cfg.pullers, |w, tally| {
        let request = request.clone();
        let local = sources[w % sources.len()];
        async move {
            while tally.running() {
                let asked = Instant::now();
                let status = pull_once(addr, &request, local).await;
                tally.record(status, asked).await;
            }
        }
    })
}

/// Prepares the rooms and the pulled room, then measures quiet and during the pulls.
pub async fn run(
    target: &Target,
    cfg: &RoomsConfig,
    pulls: &PullConfig,
) -> Result<IsolationReport> {
    let setup = rooms::prepare(target, cfg).await?;
    let pile = prepare(target.addr, pulls).await?;
    let burden = Pulls {
        setup: &pile,
        cfg: pulls,
    };
    rooms::isolation(target, &setup, cfg, &burden).await
}

#[cfg(test)]
mod tests {
    use super::status_of;

    #[test]
    fn status_line() {
        assert_eq!(status_of(b"HTTP/1.1 429 Too Many Requests\r\n"), Some(429));
        assert_eq!(status_of(b"HTTP/1.1 200 OK"), None);
        assert_eq!(
            status_of(b"HTTP/1.1 200 OK\r\nContent-Length: 5"),
            Some(200)
        );
    }
}
