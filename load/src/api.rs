//! The REST calls the scenarios need, and bulk setup of users and memberships with many
//! concurrent keep-alive clients.

use crate::error::{LoadError, Result};
use crate::http::{HttpClient, Response};
use parley_protocol::Room;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The password of every generated account (the contract's minimum is 15 bytes).
pub const PASSWORD: &str = "parley-load-password";

/// Retries of a call answered 429 or 503 before giving up. Default is 50.
const MAX_RETRIES: u32 = 50;

/// A logged-in account.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub token: String,
}

/// A username prefix unique to this run, so repeated runs against one server don't collide:
/// `ld` and six base-36 digits of the clock, then `_`.
pub fn run_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut v = (nanos / 1000) % 36u64.pow(6);
    let mut digits = Vec::new();
    for _ in 0..6 {
        let d = (v % 36) as u8;
        digits.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
        v /= 36;
    }
    digits.reverse();
    format!("ld{}_", String::from_utf8_lossy(&digits))
}

/// Sends a call, waiting and retrying while the server answers 429 or 503.
pub async fn call(
    client: &mut HttpClient,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<Response> {
    let body = body.map(|b| b.to_string().into_bytes());
    let mut tries = 0;
    loop {
        let r = client.request(method, path, token, body.as_deref()).await?;
        if (r.status == 429 || r.status == 503) && tries < MAX_RETRIES {
            tries += 1;
            let wait = r
                .error()
                .and_then(|e| e.retry_after_ms)
                .unwrap_or(100)
                .clamp(10, 5_000);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            continue;
        }
        return Ok(r);
    }
}

fn expect(r: Response, what: &str, ok: &[u16]) -> Result<Response> {
    if ok.contains(&r.status) {
        Ok(r)
    } else {
        Err(LoadError::Status {
            what: what.to_owned(),
            status: r.status,
            body: r.body_text(),
        })
    }
}

pub async fn register(client: &mut HttpClient, name: &str) -> Result<()> {
    let body = serde_json::json!({ "username": name, "password": PASSWORD });
    let r = call(client, "POST", "/api/v1/register", None, Some(&body)).await?;
    expect(r, "register", &[201]).map(|_| ())
}

pub async fn login(client: &mut HttpClient, name: &str) -> Result<String> {
    let body = serde_json::json!({ "username": name, "password": PASSWORD });
    let r = call(client, "POST", "/api/v1/login", None, Some(&body)).await?;
    expect(r, "login", &[200])?.str_field("token")
}

/// Creates a room with room for `capacity` members (the server's default capacity is used
/// if it refuses the field). Returns the room id.
pub async fn create_room(
    client: &mut HttpClient,
    token: &str,
    name: &str,
    capacity: u64,
) -> Result<String> {
    let body = serde_json::json!({ "name": name, "capacity": capacity });
    let r = call(client, "POST", "/api/v1/rooms", Some(token), Some(&body)).await?;
    let r = if r.status == 400 {
        let body = serde_json::json!({ "name": name });
        call(client, "POST", "/api/v1/rooms", Some(token), Some(&body)).await?
    } else {
        r
    };
    Ok(expect(r, "create room", &[201, 200])?.decode::<Room>()?.id)
}

pub async fn join(client: &mut HttpClient, token: &str, room: &str) -> Result<()> {
    let path = format!("/api/v1/rooms/{room}/join");
    let r = call(client, "POST", &path, Some(token), None).await?;
    expect(r, "join room", &[200]).map(|_| ())
}

/// `GET /api/v1/me`: an authenticated request, which also marks the user present.
pub async fn me(client: &mut HttpClient, token: &str) -> Result<()> {
    let r = call(client, "GET", "/api/v1/me", Some(token), None).await?;
    expect(r, "me", &[200]).map(|_| ())
}

/// The source addresses to spread connections over: 127.0.0.1-8 against a loopback IPv4
/// server, none otherwise.
pub fn source_addresses(addr: SocketAddr) -> Vec<Option<IpAddr>> {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => (1..=8u8)
            .map(|i| Some(IpAddr::from([127, 0, 0, i])))
            .collect(),
        _ => vec![None],
    }
}

/// Runs `f(client, i)` for every `i` in `0..n` on `concurrency` keep-alive clients and returns
/// the results in order. Stops at the first error.
pub async fn for_each<T, F, Fut>(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    f: F,
) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(HttpClient, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (HttpClient, Result<T>)> + Send + 'static,
{
    let f = Arc::new(f);
    let locals = source_addresses(addr);
    let workers = concurrency.clamp(1, n.max(1));
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let f = f.clone();
        let local = locals[w % locals.len()];
        handles.push(tokio::spawn(async move {
            let mut client = HttpClient::new(addr, local);
            let mut out = Vec::new();
            let mut i = w;
            while i < n {
                let (c, r) = f(client, i).await;
                client = c;
                out.push((i, r?));
                i += workers;
            }
            Ok::<_, LoadError>(out)
        }));
    }
    let mut all: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for h in handles {
        let part = h
            .await
            .map_err(|e| LoadError::Protocol(format!("setup task failed: {e}")))??;
        for (i, v) in part {
            all[i] = Some(v);
        }
    }
    all.into_iter()
        .map(|v| v.ok_or_else(|| LoadError::Protocol("setup result missing".into())))
        .collect()
}

/// Registers and logs in `n` users named `<prefix><i>`.
pub async fn create_users(
    addr: SocketAddr,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Result<Vec<User>> {
    let prefix = prefix.to_owned();
    for_each(addr, n, concurrency, move |mut client, i| {
        let name = format!("{prefix}{i}");
        async move {
            let r = async {
                register(&mut client, &name).await?;
                let token = login(&mut client, &name).await?;
                Ok(User { name, token })
            }
            .await;
            (client, r)
        }
    })
    .await
}

/// Makes `users[i]` join `rooms[room_of(i)]`.
pub async fn join_all(
    addr: SocketAddr,
    users: &[User],
    rooms: &[String],
    room_of: impl Fn(usize) -> usize,
    concurrency: usize,
) -> Result<()> {
    let pairs: Arc<Vec<(String, String)>> = Arc::new(
        users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.token.clone(), rooms[room_of(i) % rooms.len()].clone()))
            .collect(),
    );
    let n = pairs.len();
    for_each(addr, n, concurrency, move |mut client, i| {
        let pairs = pairs.clone();
        async move {
            let (token, room) = &pairs[i];
            let r = join(&mut client, token, room).await;
            (client, r)
        }
    })
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_prefixes_make_valid_usernames() {
        let p = run_prefix();
        let name = format!("{p}19999");
        assert!((3..=32).contains(&name.len()));
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    }

    #[test]
    fn loopback_gets_several_sources() {
        let a: SocketAddr = "127.0.0.1:7878".parse().unwrap();
        assert_eq!(source_addresses(a).len(), 8);
        let b: SocketAddr = "[::1]:7878".parse().unwrap();
        assert_eq!(source_addresses(b), vec![None]);
    }
}
