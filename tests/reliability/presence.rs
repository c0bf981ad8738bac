//! Presence without storms or lost transitions: a crowd connecting at once, a lapse that was
//! not yet announced, and logging out of the last session.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::{Barrier, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use crate::common::*;
use crate::{frames_until_own, loopback, user_from};

fn about(name: &str, online: bool) -> impl Fn(&Value) -> bool + '_ {
    move |f: &Value| f["username"] == name && f["online"] == online
}

/// The `online` values of the presence frames about `name` among `frames`, in order.
fn presence_of(frames: &[Value], name: &str) -> Vec<bool> {
    frames
        .iter()
        .filter(|f| f["type"] == "presence" && f["username"] == name)
        .map(|f| f["online"].as_bool().expect("online"))
        .collect()
}

// ----- 1. a crowd connecting at once -----

/// Members of the crowd; each one's connection may owe it a presence frame about each other.
const MEMBERS: usize = 800;
/// Connections being opened at any one moment.
const AT_ONCE: usize = 32;
/// Small enough that today's queue of presence frames overflows it many times over.
const OUTBOUND: &str = "2048";
/// A small receive buffer, so the kernel cannot soak up what the server owes a paused client.
const RECV_BUFFER: u32 = 2048;

/// Longest wait at one of the crowd's barriers, so that a member task that failed cannot
/// hang the test.
const BARRIER_WAIT: Duration = Duration::from_secs(120);

/// What happened to one member's connection.
#[derive(Default)]
struct Outcome {
    /// How it ended, if it did: the close code (`None` without a close frame), or why it
    /// never got going.
    ended: Option<String>,
    cut_4002: bool,
    /// Members who connected after this one and whose `online` never reached it.
    missing: Vec<String>,
    expected: usize,
}

/// The next frame of `w`, or how the connection ended, before `deadline`.
enum Next {
    Frame(Value),
    Closed(Option<u16>),
    Timeout,
}

async fn next_before(w: &mut Ws, deadline: Instant) -> Next {
    loop {
        match tokio::time::timeout_at(deadline, w.inner.next()).await {
            Err(_) => return Next::Timeout,
            Ok(None) | Ok(Some(Err(_))) => return Next::Closed(None),
            Ok(Some(Ok(Message::Close(c)))) => return Next::Closed(c.map(|c| u16::from(c.code))),
            Ok(Some(Ok(Message::Text(t)))) => {
                return Next::Frame(serde_json::from_str(&t).unwrap_or(Value::Null))
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Connects with a small receive buffer and reads `hello`. Never panics: a member that fails
/// still has to reach the crowd's barriers.
async fn connect_small(addr: std::net::SocketAddr, token: &str) -> Result<Ws, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .set_recv_buffer_size(RECV_BUFFER)
        .map_err(|e| e.to_string())?;
    let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
    let url = format!("ws://{addr}/api/v1/ws?token={token}");
    let upgrade = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream));
    let (inner, _) = tokio::time::timeout(WAIT, upgrade)
        .await
        .map_err(|_| "no upgrade in time".to_string())?
        .map_err(|e| e.to_string())?;
    let mut w = Ws { inner };
    match w.next().await {
        Some(hello) if hello["type"] == "hello" => Ok(w),
        other => Err(format!("no hello: {other:?}")),
    }
}

/// Hundreds of members of one room, offline until now, connect at once (the issue speaks of
/// 5,000 reconnecting; 800 keep this under 30 s in a debug build, and with
/// `--max-outbound-bytes 2048` today's server fails it as it would fail 5,000 at the
/// default limit), `AT_ONCE` connections in flight at any moment. Each connection reads
/// its `hello` and then pauses until every member has connected, as a busy client or a slow
/// network does, and then reads on. Every connection must stay open (presence is state: the
/// latest per user can always replace what is queued, so presence alone never makes a
/// connection owe too much), and every member must see each member who connected after it
/// come online.
///
/// What a user notices when this breaks: after a server restart or a network blip, when the
/// whole community reconnects at once, clients get cut with 4002 by nothing but presence
/// news, reconnect, and make the storm worse; those that stay see a member list that does not
/// match who is online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_connecting_at_once_is_never_cut_and_sees_everyone_online() {
    let s = start(&[
        "--presence-timeout",
        "1",
        "--max-outbound-bytes",
        OUTBOUND,
        "--room-capacity",
        "100000",
        "--max-connections-per-ip",
        "0",
    ])
    .await;
    let addr = s.addr;
    let owner = user(addr, "owner").await;
    let id = room(addr, &owner, "crowd").await;
    // A canary in a room of its own, whose presence an observer follows: the sweep that
    // announces the canary offline also announces everyone whose presence lapsed before.
    let observer = user(addr, "observer").await;
    let canary = user(addr, "canary").await;
    let aviary = room(addr, &observer, "aviary").await;
    assert_eq!(join(addr, &canary, &aviary).await.status, 200);
    let (mut watch, _) = ws_hello(addr, &observer).await;

    // The crowd signs up and joins; eight at a time, from many addresses.
    let names: Vec<String> = (0..MEMBERS).map(|i| format!("member{i}")).collect();
    let gate = Arc::new(Semaphore::new(8));
    let mut signups = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (gate, name, id) = (Arc::clone(&gate), name.clone(), id.clone());
        signups.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let from = loopback(i, 50);
            let token = user_from(addr, &from, &name).await;
            let path = format!("/api/v1/rooms/{id}/join");
            let r = request_from(addr, &from, "POST", &path, Some(&token), Some(&json!({}))).await;
            assert_eq!(r.status, 200, "{name} joins: {:?}", r.json());
            token
        }));
    }
    let mut tokens = Vec::new();
    for t in signups {
        tokens.push(t.await.expect("sign-up"));
    }

    // Their sign-up requests kept them online for a second. Once a request of the canary's,
    // made after all of them, has lapsed and been announced, so have theirs: connecting
    // makes each of them news to the others.
    let r = get(addr, "/api/v1/me", Some(&canary)).await;
    assert_eq!(r.status, 200);
    watch.next_where("presence", about("canary", true)).await;
    watch.next_where("presence", about("canary", false)).await;

    // The storm. Tickets order events: member j's `online` must reach member i when j began
    // connecting after i had its `hello` (and so was subscribed).
    let ticket = Arc::new(AtomicU64::new(0));
    let began: Arc<Vec<AtomicU64>> = Arc::new((0..MEMBERS).map(|_| AtomicU64::new(0)).collect());
    let helloed: Arc<Vec<AtomicU64>> =
        Arc::new((0..MEMBERS).map(|_| AtomicU64::new(u64::MAX)).collect());
    let all_connected = Arc::new(Barrier::new(MEMBERS));
    let all_done = Arc::new(Barrier::new(MEMBERS));
    let names = Arc::new(names);
    // A flood of connections, `AT_ONCE` in flight at any moment.
    let gate = Arc::new(Semaphore::new(AT_ONCE));
    let storm_started = Instant::now();
    let mut crowd = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (ticket, began, helloed) = (ticket.clone(), began.clone(), helloed.clone());
        let (all_connected, all_done, names, gate) = (
            all_connected.clone(),
            all_done.clone(),
            names.clone(),
            gate.clone(),
        );
        crowd.push(tokio::spawn(async move {
            let permit = gate.acquire().await.unwrap();
            began[i].store(ticket.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
            let connected = connect_small(addr, &token).await;
            helloed[i].store(ticket.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
            drop(permit);
            // Paused: nothing is read until the whole crowd is in.
            let _ = tokio::time::timeout(BARRIER_WAIT, all_connected.wait()).await;
            let mut out = Outcome::default();
            let mut w = match connected {
                Ok(w) => w,
                Err(e) => {
                    out.ended = Some(e);
                    let _ = tokio::time::timeout(BARRIER_WAIT, all_done.wait()).await;
                    return (out, None);
                }
            };
            let mine = helloed[i].load(Ordering::SeqCst);
            let expected: BTreeSet<&str> = (0..MEMBERS)
                .filter(|&j| j != i && began[j].load(Ordering::SeqCst) > mine)
                .map(|j| names[j].as_str())
                .collect();
            out.expected = expected.len();
            let mut latest: HashMap<String, bool> = HashMap::new();
            // Generous: on a loaded machine the crowd's reads are slow, not missing.
            let deadline = Instant::now() + 6 * WAIT;
            let done = |latest: &HashMap<String, bool>| {
                expected
                    .iter()
                    .all(|n| latest.get(*n).copied() == Some(true))
            };
            while !done(&latest) {
                match next_before(&mut w, deadline).await {
                    Next::Frame(f) if f["type"] == "presence" => {
                        let name = f["username"].as_str().unwrap_or_default().to_string();
                        latest.insert(name, f["online"] == true);
                    }
                    Next::Frame(_) => {}
                    Next::Closed(code) => {
                        out.cut_4002 = code == Some(4002);
                        out.ended = Some(format!("closed with {code:?}"));
                        break;
                    }
                    Next::Timeout => break,
                }
            }
            out.missing = expected
                .iter()
                .filter(|n| latest.get(**n).copied() != Some(true))
                .map(|n| n.to_string())
                .collect();
            // Everyone stays connected until everyone is done, so nobody goes offline, and
            // until the member list below was read: the connection goes back with the outcome.
            let _ = tokio::time::timeout(BARRIER_WAIT, all_done.wait()).await;
            (out, Some(w))
        }));
    }
    let mut outcomes = Vec::new();
    let mut held = Vec::new();
    for member in crowd {
        let (outcome, conn) = member.await.expect("member task");
        outcomes.push(outcome);
        held.push(conn);
    }
    let took = storm_started.elapsed();

    let cut = outcomes.iter().filter(|o| o.cut_4002).count();
    let ended: BTreeMap<usize, &String> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.ended.as_ref().map(|e| (i, e)))
        .collect();
    let expected: usize = outcomes.iter().map(|o| o.expected).sum();
    let missing: usize = outcomes.iter().map(|o| o.missing.len()).sum();
    let example = outcomes
        .iter()
        .enumerate()
        .find(|(_, o)| !o.missing.is_empty())
        .map(|(i, o)| {
            format!(
                "member{i} never saw {:?}",
                &o.missing[..o.missing.len().min(5)]
            )
        });
    eprintln!(
        "{MEMBERS} members in {took:?}: {cut} cut with 4002, {} ended otherwise, \
         {missing} of {expected} expected online events missing",
        ended.len() - cut
    );
    assert_eq!(
        cut, 0,
        "{cut} of {MEMBERS} members were cut with 4002 by presence frames alone"
    );
    assert!(ended.is_empty(), "connections ended: {ended:?}");
    assert_eq!(missing, 0, "online events missing; e.g. {example:?}");
    let detail = get(addr, &format!("/api/v1/rooms/{id}"), Some(&owner))
        .await
        .json();
    let offline: Vec<&Value> = detail["member_list"]
        .as_array()
        .expect("member_list")
        .iter()
        .filter(|m| m["online"] != true && m["username"] != "owner")
        .collect();
    assert!(offline.is_empty(), "members shown offline: {offline:?}");
    drop(held);
    s.stop().await;
}

// ----- 2. a lapse not yet announced -----

/// How many times the lapse is tried. Each attempt starts just after a sweep announced bob
/// offline, so the sweeps (once a second) fall a few milliseconds before each lapse, and the
/// connection comes some 15 ms after it, long before the next sweep: today's server misses
/// the transition nearly every time.
const ATTEMPTS: usize = 4;

/// Bob's presence rests on a request; it lapses a second later (`--presence-timeout 1`), but
/// the server only notices at its next once-a-second sweep. Bob opens a WebSocket in between.
/// Alice, in a room with him, must see `presence offline` and then `presence online`.
///
/// What a user notices when this breaks: alice's client shows bob online through a gap in
/// which he was not; her "last seen" for him and any "came online" notice never happen,
/// because the server compares bob's new state with the one it last announced (online) and
/// announces nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapse_not_yet_announced_is_announced_before_the_next_online() {
    let s = start(&["--presence-timeout", "1"]).await;
    let addr = s.addr;
    let alice = user(addr, "alice").await;
    let bob = user(addr, "bob").await;
    let id = room(addr, &alice, "lobby").await;
    assert_eq!(join(addr, &bob, &id).await.status, 200);
    let (mut wa, _) = ws_hello(addr, &alice).await;
    wa.next_where("presence", about("bob", false)).await;

    let mut seen = Vec::new();
    for attempt in 0..ATTEMPTS {
        // A request makes bob online again...
        let r = get(addr, "/api/v1/me", Some(&bob)).await;
        assert_eq!(r.status, 200);
        let answered = Instant::now();
        wa.next_where("presence", about("bob", true)).await;
        // ...for one second. Connect just after it ran out: the time itself is the scenario.
        tokio::time::sleep_until(answered + Duration::from_millis(1015)).await;
        let (mut wb, _) = ws_hello(addr, &bob).await;
        let frames = frames_until_own(&mut wa, &id, &format!("marker {attempt}")).await;
        seen.push(presence_of(&frames, "bob"));
        // Bob goes away; once that is announced the next attempt starts from the same place.
        wb.inner.close(None).await.unwrap();
        drop(wb);
        wa.next_where("presence", about("bob", false)).await;
    }
    assert!(
        seen.iter().all(|s| s[..] == [false, true]),
        "after bob's request-based presence lapsed and he then connected, alice should see \
         him go offline and come back online each time; she saw (online values per attempt) \
         {seen:?}"
    );
    s.stop().await;
}

// ----- 3. logging out (v1.1) -----

/// With the default presence timeout of a minute, bob holds two sessions and has just made
/// requests. Logging out of one leaves him online; logging out of the last one makes him
/// offline at once: alice's connection gets `presence offline` within two seconds and
/// `GET /api/v1/users/bob` says offline.
///
/// What a user notices when this breaks: bob signed out everywhere, yet his room-mates see
/// him online for up to another minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_of_the_last_session_is_offline_at_once() {
    let s = start(&[]).await;
    let addr = s.addr;
    let alice = user(addr, "alice").await;
    let bob = user(addr, "bob").await;
    let id = room(addr, &alice, "lobby").await;
    assert_eq!(join(addr, &bob, &id).await.status, 200);
    let r = login(addr, "bob", PASSWORD).await;
    assert_eq!(r.status, 200);
    let bob2 = r.json()["token"].as_str().unwrap().to_string();
    let (mut wa, _) = ws_hello(addr, &alice).await;

    let r = post(addr, "/api/v1/logout", Some(&bob), json!({})).await;
    assert_eq!(r.status, 204);
    let frames = frames_until_own(&mut wa, &id, "after one logout").await;
    assert!(
        !presence_of(&frames, "bob").contains(&false),
        "bob still has a session: {frames:?}"
    );
    let info = get(addr, "/api/v1/users/bob", Some(&alice)).await.json();
    assert_eq!(info["online"], true, "with a session left: {info}");

    let r = post(addr, "/api/v1/logout", Some(&bob2), json!({})).await;
    assert_eq!(r.status, 204);
    let deadline = Instant::now() + Duration::from_secs(2);
    let offline = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match wa.next_within(left).await {
            Some(f) if f["type"] == "presence" && f["username"] == "bob" => break Some(f),
            Some(_) => {}
            None => break None,
        }
    };
    let info = get(addr, "/api/v1/users/bob", Some(&alice)).await.json();
    assert_eq!(
        offline,
        Some(json!({ "type": "presence", "username": "bob", "online": false })),
        "within 2 s of bob logging out of his last session, alice's connection gets \
         `presence offline` (the presence timeout is 60 s); GET /api/v1/users/bob: {info}"
    );
    assert_eq!(info["online"], false, "{info}");
    s.stop().await;
}
