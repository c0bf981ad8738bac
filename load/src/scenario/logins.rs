//! Scenario 4, login isolation: the many-rooms measurement, once quiet and once while a flood
//! of logins keeps the server's password hashing busy.
//!
//! The flood logs in a few accounts over and over with the right password from many
//! keep-alive connections, ignoring `Retry-After` as an attacker would; every answer is
//! counted by status.

use super::burden::{Burden, Workers};
use super::rooms::{self, IsolationReport, RoomsConfig, RoomsSetup};
use super::Target;
use crate::api;
use crate::error::Result;
use crate::http::HttpClient;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

/// Settings of the login flood.
#[derive(Clone, Debug)]
pub struct FloodConfig {
    /// Logins in flight at once (one keep-alive connection each). Default is 32.
    pub concurrency: usize,
    /// Accounts the flood logs in to, registered first. Default is 8.
    pub accounts: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            concurrency: 32,
            accounts: 8,
        }
    }
}

impl Burden for FloodConfig {
    /// Registers the flood's accounts, then starts the flood.
    fn start<'a>(
        &'a self,
        addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Workers>> + Send + 'a>> {
        Box::pin(start_flood(addr, self))
    }
}

async fn start_flood(addr: SocketAddr, cfg: &FloodConfig) -> Result<Workers> {
    let prefix = format!("{}f", api::run_prefix());
    let accounts = cfg.accounts.max(1);
    let names: Vec<String> = (0..accounts).map(|i| format!("{prefix}{i}")).collect();
    let reg_names = names.clone();
    api::for_each(addr, accounts, accounts, move |mut client, i| {
        let name = reg_names[i].clone();
        async move {
            let r = api::register(&mut client, &name).await;
            (client, r)
        }
    })
    .await?;
    let sources = api::source_addresses(addr);
    Ok(Workers::spawn(cfg.concurrency, |w, tally| {
        let name = names[w % names.len()].clone();
        let local = sources[w % sources.len()];
        async move {
            let mut client = HttpClient::new(addr, local);
            let body = serde_json::json!({ "username": name, "password": api::PASSWORD })
                .to_string()
                .into_bytes();
            while tally.running() {
                let asked = Instant::now();
                let status = match client
                    .request("POST", "/api/v1/login", None, Some(&body))
                    .await
                {
                    Ok(r) => r.status,
                    Err(_) => 0,
                };
                tally.record(status, asked).await;
            }
        }
    }))
}

/// Measures on prepared accounts: quiet, then flooded.
pub async fn measure(
    target: &Target,
    setup: &RoomsSetup,
    cfg: &RoomsConfig,
    flood: &FloodConfig,
) -> Result<IsolationReport> {
    rooms::isolation(target, setup, cfg, flood).await
}

/// Prepares the accounts on the running server and measures. (The benchmark instead prepares
/// with cheap hashing and restarts the server at the default cost: see `benches/`.)
pub async fn run(
    target: &Target,
    cfg: &RoomsConfig,
    flood: &FloodConfig,
) -> Result<IsolationReport> {
    let setup = rooms::prepare(target, cfg).await?;
    measure(target, &setup, cfg, flood).await
}
