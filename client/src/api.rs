//! The REST calls of the contract as typed functions, and [`ApiError`], the one place
//! where a non-2xx answer becomes something to show a person.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{self, encode_segment, Endpoint};
use crate::protocol::{Entry, Room, RoomDetail, UserInfo};

/// Why a REST call did not succeed.
#[derive(Debug)]
pub enum ApiError {
    /// The server could not be reached or spoke no HTTP we understand.
    Transport(String),
    /// The server answered with the contract's error body.
    Server {
        status: u16,
        code: String,
        message: String,
        retry_after_ms: Option<u64>,
    },
}

impl ApiError {
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Server { code, .. } => Some(code),
            ApiError::Transport(_) => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Server { status, .. } => Some(*status),
            ApiError::Transport(_) => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Transport(m) => f.write_str(m),
            ApiError::Server {
                code,
                message,
                retry_after_ms,
                ..
            } => {
                let message = if message.is_empty() { code } else { message };
                write!(f, "{message} ({code})")?;
                if let Some(ms) = retry_after_ms {
                    write!(f, "; try again in {}", crate::render::human_ms(*ms))?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct LoginOk {
    pub token: String,
    pub username: String,
}

#[derive(Debug, Deserialize)]
pub struct Me {
    pub username: String,
    #[serde(default)]
    pub rooms: Vec<Room>,
}

#[derive(Debug, Deserialize)]
pub struct Messages {
    #[serde(default)]
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub first_seq: Option<u64>,
}

#[derive(Deserialize)]
struct UsersBody {
    #[serde(default)]
    users: Vec<UserInfo>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct RoomsBody {
    #[serde(default)]
    rooms: Vec<Room>,
    #[serde(default)]
    next: Option<String>,
}

/// Items of a listing, and whether the server had more than were fetched.
#[derive(Debug)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub more: bool,
}

/// The page size the client asks for: the server's largest.
const PAGE: usize = 500;

/// `/api/v1/{what}?limit=…&q=…&after=…`.
fn list_path(what: &str, q: &str, after: Option<&str>) -> String {
    let mut path = format!("/api/v1/{what}?limit={PAGE}");
    if !q.is_empty() {
        path.push_str(&format!("&q={}", encode_segment(q)));
    }
    if let Some(a) = after {
        path.push_str(&format!("&after={}", encode_segment(a)));
    }
    path
}

/// A REST client bound to one server.
#[derive(Debug, Clone)]
pub struct Api {
    ep: Endpoint,
}

impl Api {
    pub fn new(ep: Endpoint) -> Api {
        Api { ep }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Vec<u8>, ApiError> {
        let body = body.map(|b| b.to_string());
        let resp = http::request(
            &self.ep,
            method,
            path,
            token,
            body.as_deref().map(str::as_bytes),
        )
        .map_err(|e| {
            ApiError::Transport(format!(
                "cannot reach {}: {}",
                self.ep,
                http::describe_io(&e)
            ))
        })?;
        if (200..300).contains(&resp.status) {
            return Ok(resp.body);
        }
        let retry_header = resp
            .header("Retry-After")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|s| s * 1000);
        Err(match serde_json::from_slice::<ErrorBody>(&resp.body) {
            Ok(e) => ApiError::Server {
                status: resp.status,
                code: e.error.code,
                message: e.error.message,
                retry_after_ms: e.error.retry_after_ms.or(retry_header),
            },
            Err(_) => ApiError::Server {
                status: resp.status,
                code: format!("http_{}", resp.status),
                message: format!("server answered {}", resp.status),
                retry_after_ms: retry_header,
            },
        })
    }

    fn call_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<T, ApiError> {
        let bytes = self.call(method, path, token, body)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Transport(format!("unexpected answer to {method} {path}: {e}")))
    }

    pub fn register(&self, username: &str, password: &str) -> Result<(), ApiError> {
        let body = json!({ "username": username, "password": password });
        self.call("POST", "/api/v1/register", None, Some(body))
            .map(drop)
    }

    pub fn login(&self, username: &str, password: &str) -> Result<LoginOk, ApiError> {
        let body = json!({ "username": username, "password": password });
        self.call_json("POST", "/api/v1/login", None, Some(body))
    }

    pub fn logout(&self, token: &str) -> Result<(), ApiError> {
        self.call("POST", "/api/v1/logout", Some(token), None)
            .map(drop)
    }

    pub fn me(&self, token: &str) -> Result<Me, ApiError> {
        self.call_json("GET", "/api/v1/me", Some(token), None)
    }

    /// Users whose name contains `q` (every user for `""`), following the server's pages
    /// until `max` are fetched.
    pub fn users(&self, token: &str, q: &str, max: usize) -> Result<Listing<UserInfo>, ApiError> {
        let mut out = Listing {
            items: Vec::new(),
            more: false,
        };
        let mut after: Option<String> = None;
        loop {
            let path = list_path("users", q, after.as_deref());
            let page: UsersBody = self.call_json("GET", &path, Some(token), None)?;
            out.items.extend(page.users);
            match page.next {
                Some(next) if out.items.len() < max => after = Some(next),
                next => {
                    out.more = next.is_some();
                    return Ok(out);
                }
            }
        }
    }

    /// Rooms whose name contains `q` (every room for `""`), following the server's pages
    /// until `max` are fetched.
    pub fn rooms(&self, token: &str, q: &str, max: usize) -> Result<Listing<Room>, ApiError> {
        let mut out = Listing {
            items: Vec::new(),
            more: false,
        };
        let mut after: Option<String> = None;
        loop {
            let path = list_path("rooms", q, after.as_deref());
            let page: RoomsBody = self.call_json("GET", &path, Some(token), None)?;
            out.items.extend(page.rooms);
            match page.next {
                Some(next) if out.items.len() < max => after = Some(next),
                next => {
                    out.more = next.is_some();
                    return Ok(out);
                }
            }
        }
    }

    pub fn create_room(
        &self,
        token: &str,
        name: &str,
        capacity: Option<u64>,
    ) -> Result<Room, ApiError> {
        let body = match capacity {
            Some(c) => json!({ "name": name, "capacity": c }),
            None => json!({ "name": name }),
        };
        self.call_json("POST", "/api/v1/rooms", Some(token), Some(body))
    }

    pub fn room(&self, token: &str, id: &str) -> Result<RoomDetail, ApiError> {
        let path = format!("/api/v1/rooms/{}", encode_segment(id));
        self.call_json("GET", &path, Some(token), None)
    }

    pub fn join(&self, token: &str, id: &str) -> Result<Room, ApiError> {
        let path = format!("/api/v1/rooms/{}/join", encode_segment(id));
        self.call_json("POST", &path, Some(token), None)
    }

    pub fn leave(&self, token: &str, id: &str) -> Result<(), ApiError> {
        let path = format!("/api/v1/rooms/{}/leave", encode_segment(id));
        self.call("POST", &path, Some(token), None).map(drop)
    }

    /// The newest `limit` entries of a room, oldest first.
    pub fn messages(&self, token: &str, id: &str, limit: usize) -> Result<Messages, ApiError> {
        let path = format!(
            "/api/v1/rooms/{}/messages?limit={limit}",
            encode_segment(id)
        );
        self.call_json("GET", &path, Some(token), None)
    }
}
