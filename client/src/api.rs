//! The REST calls of the contract as typed functions, and [`ApiError`], the one place
//! where a non-2xx answer becomes something to show a person.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{self, encode_segment, Endpoint};
use crate::protocol::{
    BanList, BanView, EntryPage, ErrorBody, InviteCode, InviteView, Room, RoomDetail, RoomList,
    UserInfo, UserList,
};

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
            } => f.write_str(&crate::render::error_text(code, message, *retry_after_ms)),
        }
    }
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
    /// Pending invitations (v1.1).
    #[serde(default)]
    pub invites: Vec<Invite>,
    /// A server administrator (v1.1).
    #[serde(default)]
    pub admin: bool,
}

/// `{"room":Room,"by"}`: an invitation not used yet.
pub type Invite = InviteView;

/// One entry of `GET /api/v1/rooms/{id}/bans`.
pub type Ban = BanView;

#[derive(Deserialize)]
struct BlocksBody {
    #[serde(default)]
    blocks: Vec<String>,
}

/// `GET /api/v1/rooms/{id}/messages`.
pub type Messages = EntryPage;

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

    /// `invite_code` is sent only when given (servers under `--registration invite`).
    pub fn register(
        &self,
        username: &str,
        password: &str,
        invite_code: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut body = json!({ "username": username, "password": password });
        if let Some(code) = invite_code {
            body["invite_code"] = json!(code);
        }
        self.call("POST", "/api/v1/register", None, Some(body))
            .map(drop)
    }

    /// `POST /api/v1/password`: every other session of the user ends.
    pub fn change_password(&self, token: &str, old: &str, new: &str) -> Result<(), ApiError> {
        let body = json!({ "old": old, "new": new });
        self.call("POST", "/api/v1/password", Some(token), Some(body))
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
            let page: UserList = self.call_json("GET", &path, Some(token), None)?;
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
            let page: RoomList = self.call_json("GET", &path, Some(token), None)?;
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

    /// `PATCH /api/v1/rooms/{id}` with the fields to change (`name`, `topic`,
    /// `visibility`).
    pub fn update_room(&self, token: &str, id: &str, changes: Value) -> Result<Room, ApiError> {
        let path = format!("/api/v1/rooms/{}", encode_segment(id));
        self.call_json("PATCH", &path, Some(token), Some(changes))
    }

    /// Owner only; every member is told with a `room_deleted` frame.
    pub fn delete_room(&self, token: &str, id: &str) -> Result<(), ApiError> {
        let path = format!("/api/v1/rooms/{}", encode_segment(id));
        self.call("DELETE", &path, Some(token), None).map(drop)
    }

    /// Owner and moderators only.
    pub fn bans(&self, token: &str, id: &str) -> Result<Vec<Ban>, ApiError> {
        let path = format!("/api/v1/rooms/{}/bans", encode_segment(id));
        self.call_json::<BanList>("GET", &path, Some(token), None)
            .map(|b| b.bans)
    }

    /// `role` is `owner` (a transfer), `moderator` or `member`.
    pub fn set_role(&self, token: &str, id: &str, user: &str, role: &str) -> Result<(), ApiError> {
        let path = format!("/api/v1/rooms/{}/roles", encode_segment(id));
        let body = json!({ "username": user, "role": role });
        self.call("POST", &path, Some(token), Some(body)).map(drop)
    }

    pub fn admin_invite_code(
        &self,
        token: &str,
        uses: Option<u64>,
        expires_in: Option<u64>,
    ) -> Result<InviteCode, ApiError> {
        let mut body = json!({});
        if let Some(u) = uses {
            body["uses"] = json!(u);
        }
        if let Some(e) = expires_in {
            body["expires_in"] = json!(e);
        }
        self.call_json(
            "POST",
            "/api/v1/admin/invite-codes",
            Some(token),
            Some(body),
        )
    }

    pub fn admin_create_user(
        &self,
        token: &str,
        user: &str,
        password: &str,
    ) -> Result<(), ApiError> {
        let body = json!({ "username": user, "password": password });
        self.call("POST", "/api/v1/admin/users", Some(token), Some(body))
            .map(drop)
    }

    /// `enable` false disables the account (its sessions end), true enables it again.
    pub fn admin_set_enabled(&self, token: &str, user: &str, enable: bool) -> Result<(), ApiError> {
        let what = if enable { "enable" } else { "disable" };
        let path = format!("/api/v1/admin/users/{}/{what}", encode_segment(user));
        self.call("POST", &path, Some(token), None).map(drop)
    }

    pub fn admin_delete_room(&self, token: &str, id: &str) -> Result<(), ApiError> {
        let path = format!("/api/v1/admin/rooms/{}", encode_segment(id));
        self.call("DELETE", &path, Some(token), None).map(drop)
    }

    /// Open (or reuse) the DM room with `user`.
    pub fn open_dm(&self, token: &str, user: &str) -> Result<Room, ApiError> {
        let body = json!({ "username": user });
        self.call_json("POST", "/api/v1/dms", Some(token), Some(body))
    }

    /// `block` true blocks `user` (also when already blocked), false unblocks.
    pub fn set_blocked(&self, token: &str, user: &str, block: bool) -> Result<(), ApiError> {
        if block {
            let body = json!({ "username": user });
            self.call("POST", "/api/v1/blocks", Some(token), Some(body))
                .map(drop)
        } else {
            let path = format!("/api/v1/blocks/{}", encode_segment(user));
            self.call("DELETE", &path, Some(token), None).map(drop)
        }
    }

    /// Usernames this user has blocked.
    pub fn blocks(&self, token: &str) -> Result<Vec<String>, ApiError> {
        self.call_json::<BlocksBody>("GET", "/api/v1/blocks", Some(token), None)
            .map(|b| b.blocks)
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
