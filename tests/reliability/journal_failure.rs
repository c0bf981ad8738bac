//! The journal stops accepting writes: here the process's file-size limit (RLIMIT_FSIZE) is
//! reached, so `write` fails with EFBIG, as it would on a full or failing disk. From then on
//! every change must be refused with `503 unavailable` (over WebSocket: error `unavailable`),
//! and what the server shows must be exactly what it has on disk.

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;

use serde_json::json;

use crate::common::journal::journal_files;
use crate::common::process::{command, start, start_command, Proc, TempDir};
use crate::common::*;
use crate::loopback;

/// Room the limited run has to write in, beyond what the journal held when it started.
const HEADROOM: u64 = 64 * 1024;

/// The server on `data`, unable to grow any file past `max_file_bytes`.
fn limited(data: &Path, max_file_bytes: u64) -> Proc {
    let mut cmd = command(data, &[]);
    // SAFETY: between fork and exec the closure calls only setrlimit and signal, which are
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: max_file_bytes as libc::rlim_t,
                rlim_max: max_file_bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Without this the kernel kills the process with SIGXFSZ instead of failing write.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    start_command(cmd)
}

/// Every username `GET /api/v1/users` lists, following `next` through the pages.
async fn listed_users(addr: SocketAddr, token: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut path = "/api/v1/users?limit=500".to_string();
    loop {
        let r = get(addr, &path, Some(token)).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.json());
        let body = r.json();
        for u in body["users"].as_array().expect("users") {
            names.insert(u["username"].as_str().expect("username").to_string());
        }
        match body["next"].as_str() {
            Some(next) => path = format!("/api/v1/users?limit=500&after={next}"),
            None => return names,
        }
    }
}

/// Every room name `GET /api/v1/rooms` lists, following `next` through the pages.
async fn listed_rooms(addr: SocketAddr, token: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut path = "/api/v1/rooms?limit=500".to_string();
    loop {
        let r = get(addr, &path, Some(token)).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.json());
        let body = r.json();
        for room in body["rooms"].as_array().expect("rooms") {
            names.insert(room["name"].as_str().expect("name").to_string());
        }
        match body["next"].as_str() {
            Some(next) => path = format!("/api/v1/rooms?limit=500&after={next}"),
            None => return names,
        }
    }
}

async fn members(addr: SocketAddr, token: &str, room: &str) -> BTreeSet<String> {
    let r = get(addr, &format!("/api/v1/rooms/{room}"), Some(token)).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["member_list"]
        .as_array()
        .expect("member_list")
        .iter()
        .map(|m| m["username"].as_str().expect("username").to_string())
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Notes a change that was not refused with `503 unavailable`.
fn expect_unavailable(what: &str, r: &Reply, problems: &mut Vec<String>) {
    if (r.status, r.code().as_str()) != (503, "unavailable") {
        problems.push(format!(
            "{what} answered {} {} instead of 503 unavailable",
            r.status,
            r.json()
        ));
    }
}

/// Registrations fill the journal until the file-size limit makes its writes fail. Every
/// change after that (registration, login, room creation, join, leave, a message) must be
/// refused, `/healthz` must say 503, and the accounts, rooms, members and messages the server
/// shows must be those it stored: the ones that got a success answer, none that got a 503.
/// After a restart without the limit, logins work for exactly the accounts that got 201, and
/// every acknowledged message is there.
///
/// What a user notices when this breaks: a registration answered 503 whose name is listed
/// and taken anyway, until a restart makes it vanish; a room whose creation "failed" in the
/// room list; a refused join that makes them a member, for now; a message that is neither
/// delivered nor refused, so their client waits forever. The server applies each change in
/// memory before the journal refuses its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_journal_fails_every_change_is_refused_and_memory_equals_disk() {
    let tmp = TempDir::new("efbig");
    let data = tmp.data();

    // A first run without the limit: the early accounts, a room, some messages.
    let server = start(&data, &[]);
    let addr = server.addr;
    let alice = user(addr, "alice").await;
    let bob = user(addr, "bob").await;
    let carol = user(addr, "carol").await;
    let general = room(addr, &alice, "general").await;
    assert_eq!(join(addr, &bob, &general).await.status, 200);
    let (mut ws, _) = ws_hello(addr, &alice).await;
    for i in 0..5 {
        say_acked(&mut ws, &general, &format!("first run {i}")).await;
    }
    drop(ws);
    server.stop().await;
    let mut accepted = names(&["alice", "bob", "carol"]);

    let journal = journal_files(&data).pop().expect("a journal file");
    let size = fs::metadata(&journal).expect("journal size").len();
    let server = limited(&data, size + HEADROOM);
    let addr = server.addr;
    let (mut ws, _) = ws_hello(addr, &alice).await;
    for i in 0..5 {
        say_acked(&mut ws, &general, &format!("while it lasts {i}")).await;
    }
    let (acked, _) = history(addr, &alice, &general).await;
    assert_eq!(acked.len(), 12, "two joins and ten messages: {acked:?}");

    // Register newcomers until the journal is full.
    let mut refused_names = Vec::new();
    for i in 0..5_000 {
        let name = format!("newcomer{i}");
        let creds = json!({ "username": name, "password": PASSWORD });
        let from = loopback(i, 40);
        let r = request_from(addr, &from, "POST", "/api/v1/register", None, Some(&creds)).await;
        if r.status == 201 {
            accepted.insert(name);
            continue;
        }
        assert_eq!(
            (r.status, r.code().as_str()),
            (503, "unavailable"),
            "registration {i} was refused for another reason than the journal: {:?}; stderr: {}",
            r.json(),
            server.stderr()
        );
        refused_names.push(name);
        break;
    }
    assert_eq!(
        refused_names.len(),
        1,
        "the journal never failed; stderr: {}",
        server.stderr()
    );
    eprintln!(
        "the journal failed after {} registrations",
        accepted.len() - 3
    );

    // Every change is refused from now on.
    let mut problems = Vec::new();
    let creds = json!({ "username": "latecomer", "password": PASSWORD });
    let from = loopback(10_000, 40);
    let r = request_from(addr, &from, "POST", "/api/v1/register", None, Some(&creds)).await;
    expect_unavailable("register latecomer", &r, &mut problems);
    if r.status != 201 {
        refused_names.push("latecomer".into());
    }
    let r = login(addr, "alice", PASSWORD).await;
    expect_unavailable("login alice", &r, &mut problems);
    let r = post(
        addr,
        "/api/v1/rooms",
        Some(&alice),
        json!({ "name": "born after the failure" }),
    )
    .await;
    expect_unavailable("create room", &r, &mut problems);
    let r = join(addr, &carol, &general).await;
    expect_unavailable("carol joins general", &r, &mut problems);
    let leave = format!("/api/v1/rooms/{general}/leave");
    let r = post(addr, &leave, Some(&bob), json!({})).await;
    expect_unavailable("bob leaves general", &r, &mut problems);
    let r = get(addr, "/healthz", None).await;
    if r.status != 503 {
        problems.push(format!("/healthz answered {} {}", r.status, r.json()));
    }
    ws.say(&general, "this cannot be stored", "after-the-failure")
        .await;
    let answer = loop {
        match ws.next().await {
            None => break None,
            Some(f) if f["nonce"] == "after-the-failure" => break Some(f),
            Some(_) => {}
        }
    };
    match answer {
        Some(f) if f["type"] == "error" && f["code"] == "unavailable" => {}
        Some(f) => problems.push(format!("a send after the failure was answered with {f}")),
        None => problems.push(format!(
            "a send after the failure got no answer within {WAIT:?}: neither an entry nor an \
             error with its nonce"
        )),
    }

    // What the server shows is what it stored.
    let listed = listed_users(addr, &alice).await;
    let extra: Vec<&String> = listed.difference(&accepted).collect();
    let missing: Vec<&String> = accepted.difference(&listed).collect();
    if !extra.is_empty() || !missing.is_empty() {
        problems.push(format!(
            "GET /api/v1/users lists {extra:?}, whose registration got 503, and lacks {missing:?}, \
             which got 201"
        ));
    }
    if listed_rooms(addr, &alice)
        .await
        .contains("born after the failure")
    {
        problems.push("the room whose creation got 503 is in GET /api/v1/rooms".into());
    }
    let m = members(addr, &alice, &general).await;
    if m != names(&["alice", "bob"]) {
        problems.push(format!(
            "after a refused join (carol) and a refused leave (bob), general's members are {m:?}"
        ));
    }
    let (shown, _) = history(addr, &alice, &general).await;
    if shown != acked {
        problems.push(format!(
            "history changed though nothing was acknowledged: {:?}",
            &shown[acked.len().min(shown.len())..]
        ));
    }
    drop(ws);
    drop(server);

    // Restarted without the limit: what got a success answer is there, nothing else.
    let server = start(&data, &[]);
    let addr = server.addr;
    for name in &accepted {
        let r = login(addr, name, PASSWORD).await;
        if r.status != 200 {
            problems.push(format!(
                "after the restart {name}, who got 201, cannot log in: {} {}",
                r.status,
                r.json()
            ));
        }
    }
    for name in &refused_names {
        let r = login(addr, name, PASSWORD).await;
        if r.status != 401 {
            problems.push(format!(
                "after the restart {name}, whose registration got 503, logs in: {} {}",
                r.status,
                r.json()
            ));
        }
    }
    let (after, _) = history(addr, &alice, &general).await;
    if after != acked {
        problems.push(format!(
            "after the restart the history is {after:?}, not the acknowledged {acked:?}"
        ));
    }
    let m = members(addr, &alice, &general).await;
    if m != names(&["alice", "bob"]) {
        problems.push(format!("after the restart general's members are {m:?}"));
    }
    if listed_rooms(addr, &alice)
        .await
        .contains("born after the failure")
    {
        problems.push("after the restart the room whose creation got 503 exists".into());
    }
    server.stop().await;

    assert!(
        problems.is_empty(),
        "after the journal failed, memory and disk disagree or a change was not refused:\n- {}",
        problems.join("\n- ")
    );
}
