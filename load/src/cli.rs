//! The `parley-load` command line: flags parsed into scenario configurations, then one run
//! against any server.

use crate::error::{LoadError, Result};
use crate::probe::{self, ServerProbe};
use crate::report;
use crate::scenario::connections::{self, ConnectionsConfig};
use crate::scenario::fanout::{self, FanoutConfig};
use crate::scenario::logins::{self, FloodConfig};
use crate::scenario::rooms::{self, RoomsConfig};
use crate::scenario::Target;
use std::net::{SocketAddr, ToSocketAddrs};

pub const USAGE: &str = "\
parley-load: load generator for Parley servers (speaks only the public wire contract)

usage: parley-load --addr HOST:PORT --scenario fanout|rooms|connections|logins [flags]

The server should run with --rate-limit 0 (else senders are rate limited), and for large
rooms --room-capacity at least the member count; --max-connections-per-ip 0 helps the
connections scenario.

flags (defaults in brackets):
  --addr HOST:PORT       server address [127.0.0.1:7878]
  --scenario NAME        fanout, rooms, connections or logins [fanout]
  --secs S               seconds per measured phase [fanout 5, rooms 10]
  --members N            fanout: room members [1000]
  --senders N            fanout: members that send [10]
  --loads A,B,...        fanout: offered deliveries per second [100000,500000,1000000]
  --saturation-secs S    fanout: closed-loop seconds, 0 skips [5]
  --window N             fanout: saturation messages in flight [200]
  --rooms N              rooms/logins: number of rooms [100]
  --room-size N          rooms/logins: members per room [10]
  --rate R               rooms/logins: messages per second per member [10]
  --connections N        connections: connections to open [19000]
  --flood N              logins: logins in flight during the flood [32]
  --text-len N           message text bytes [100]
  --server-pid PID       read the server's CPU time and memory from /proc/PID
  --pin CPU              pin the generator to this CPU
  --threads N            runtime worker threads; 1 = single-threaded [1]
  -h, --help             this text
";

/// Parsed command line.
#[derive(Clone, Debug)]
pub struct Args {
    pub addr: SocketAddr,
    pub scenario: String,
    pub fanout: FanoutConfig,
    pub rooms: RoomsConfig,
    pub connections: ConnectionsConfig,
    pub flood: FloodConfig,
    pub server_pid: Option<u32>,
    pub pin: Option<usize>,
    pub threads: usize,
}

fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T> {
    let v = v.ok_or_else(|| LoadError::Config(format!("{flag} needs a value")))?;
    v.parse()
        .map_err(|_| LoadError::Config(format!("bad value {v:?} for {flag}")))
}

/// Parses flags (without the program name). `Ok(None)` means help was asked for.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>> {
    let mut addr = "127.0.0.1:7878".to_owned();
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 7878)),
        scenario: "fanout".into(),
        fanout: FanoutConfig::default(),
        rooms: RoomsConfig::default(),
        connections: ConnectionsConfig::default(),
        flood: FloodConfig::default(),
        server_pid: None,
        pin: None,
        threads: 1,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        let mut next = || inline.clone().or_else(|| it.next());
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--addr" => addr = value(&flag, next())?,
            "--scenario" => a.scenario = value(&flag, next())?,
            "--secs" => {
                let s: f64 = value(&flag, next())?;
                a.fanout.phase_secs = s;
                a.fanout.saturation_secs = s;
                a.rooms.secs = s;
            }
            "--members" => a.fanout.members = value(&flag, next())?,
            "--senders" => a.fanout.senders = value(&flag, next())?,
            "--loads" => {
                let v: String = value(&flag, next())?;
                a.fanout.loads = v
                    .split(',')
                    .map(|s| s.trim().parse::<f64>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| LoadError::Config(format!("bad value {v:?} for --loads")))?;
            }
            "--saturation-secs" => a.fanout.saturation_secs = value(&flag, next())?,
            "--window" => a.fanout.window = value(&flag, next())?,
            "--rooms" => a.rooms.rooms = value(&flag, next())?,
            "--room-size" => a.rooms.room_size = value(&flag, next())?,
            "--rate" => a.rooms.rate = value(&flag, next())?,
            "--connections" => a.connections.connections = value(&flag, next())?,
            "--flood" => a.flood.concurrency = value(&flag, next())?,
            "--text-len" => {
                let n: usize = value(&flag, next())?;
                a.fanout.text_len = n;
                a.rooms.text_len = n;
            }
            "--server-pid" => a.server_pid = Some(value(&flag, next())?),
            "--pin" => a.pin = Some(value(&flag, next())?),
            "--threads" => a.threads = value(&flag, next())?,
            other => {
                return Err(LoadError::Config(format!(
                    "unknown flag {other:?}; see --help"
                )))
            }
        }
    }
    a.addr = addr
        .to_socket_addrs()
        .map_err(|e| LoadError::Config(format!("bad --addr {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| LoadError::Config(format!("--addr {addr:?} resolves to nothing")))?;
    if !["fanout", "rooms", "connections", "logins"].contains(&a.scenario.as_str()) {
        return Err(LoadError::Config(format!(
            "unknown scenario {:?}",
            a.scenario
        )));
    }
    Ok(Some(a))
}

/// Runs the scenario the flags name and prints its table.
pub fn run(args: Args) -> Result<()> {
    if let Some(cpu) = args.pin {
        if !probe::pin_current_thread(cpu) {
            eprintln!("warning: could not pin to CPU {cpu}");
        }
    }
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let target = Target {
        addr: args.addr,
        probe: args.server_pid.map(|pid| ServerProbe { pid }),
        server_cpu_index: None,
    };
    let table = rt.block_on(async {
        Ok::<_, LoadError>(match args.scenario.as_str() {
            "fanout" => report::fanout(&fanout::run(&target, &args.fanout).await?),
            "rooms" => report::rooms(&rooms::run(&target, &args.rooms).await?),
            "connections" => {
                report::connections(&connections::run(&target, &args.connections).await?)
            }
            _ => report::isolation(&logins::run(&target, &args.rooms, &args.flood).await?),
        })
    })?;
    println!("{table}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Option<Args>> {
        parse(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn parses_flags() {
        let a = args("--addr 127.0.0.1:9000 --scenario rooms --secs 3 --rooms 7 --loads=1000,2000")
            .unwrap()
            .unwrap();
        assert_eq!(a.addr.port(), 9000);
        assert_eq!(a.scenario, "rooms");
        assert_eq!(a.rooms.rooms, 7);
        assert_eq!(a.rooms.secs, 3.0);
        assert_eq!(a.fanout.loads, vec![1000.0, 2000.0]);
        assert!(args("--help").unwrap().is_none());
        assert!(args("--bogus").is_err());
        assert!(args("--members").is_err());
        assert!(args("--members x").is_err());
        assert!(args("--scenario nope").is_err());
    }
}
