//! Durability, black-box: the built `parley-server` binary runs as a child process on a data
//! directory of its own, and is stopped with SIGTERM, killed with SIGKILL in the middle of a
//! message storm, restarted on a journal cut short or with a flipped byte, started twice on one
//! directory, and made to compact. Each test checks what a user would see after the restart:
//! logins, old tokens, rooms, members and history with the same seqs.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::journal::{journal_files, payload, record_spans, RECORD_HEADER};
use common::process::{refused, start, TempDir};
use common::{
    as_entry, get, history, join, login, login_token, now_ms, post, room, say_acked, seq, user,
    ws_hello, Ended, PASSWORD, WAIT,
};
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};

// ----- client helpers -----

async fn me(addr: SocketAddr, token: &str) -> common::Reply {
    get(addr, "/api/v1/me", Some(token)).await
}

fn assert_consecutive(entries: &[Value], first: u64, what: &str) {
    let seqs: Vec<u64> = entries.iter().map(seq).collect();
    let want: Vec<u64> = (first..first + seqs.len() as u64).collect();
    assert_eq!(
        seqs, want,
        "{what}: seqs must run from {first} without gaps"
    );
}

/// One request on its own connection; `None` once the server is gone.
async fn try_post(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Option<common::Reply> {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let body = body.to_string();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.ok()?;
    common::read_reply(&mut stream, &mut Vec::new()).await
}

/// What the REST calls of [`newcomers`] answered with success.
#[derive(Default)]
struct Answered {
    accounts: Vec<String>,
    /// `(username, token)`.
    sessions: Vec<(String, String)>,
    /// `(owner's token, room id)`.
    rooms: Vec<(String, String)>,
}

/// Registers, logs in and creates a room for one newcomer after another until the server is
/// gone, noting each success only once its 2xx answer has arrived.
fn newcomers(addr: SocketAddr, answered: Arc<Mutex<Answered>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        for n in 0..1000 {
            let name = format!("newcomer{n}");
            let creds = json!({ "username": name, "password": PASSWORD });
            match try_post(addr, "/api/v1/register", None, &creds).await {
                Some(r) if r.status == 201 => answered.lock().unwrap().accounts.push(name.clone()),
                _ => return,
            }
            let token = match try_post(addr, "/api/v1/login", None, &creds).await {
                Some(r) if r.status == 200 => r.json()["token"].as_str().unwrap().to_string(),
                _ => return,
            };
            let session = (name.clone(), token.clone());
            answered.lock().unwrap().sessions.push(session);
            let body = json!({ "name": format!("{name}'s room") });
            match try_post(addr, "/api/v1/rooms", Some(&token), &body).await {
                Some(r) if r.status == 201 => {
                    let id = r.json()["id"].as_str().unwrap().to_string();
                    answered.lock().unwrap().rooms.push((token, id));
                }
                _ => return,
            }
        }
    })
}

// ----- 1. clean restart -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clean_restart_keeps_accounts_sessions_rooms_and_history() {
    let tmp = TempDir::new("restart");
    let data = tmp.data();
    let server = start(&data, &[]);
    let addr = server.addr;

    let alice = user(addr, "alice").await;
    let bob = user(addr, "Bob").await;
    let carol = user(addr, "carol").await;
    let general = room(addr, &alice, "general").await;
    let quiet = room(addr, &carol, "quiet").await;
    assert_eq!(join(addr, &bob, &general).await.status, 200);
    assert_eq!(join(addr, &carol, &general).await.status, 200);
    let leave = format!("/api/v1/rooms/{general}/leave");
    assert_eq!(
        post(addr, &leave, Some(&carol), json!({})).await.status,
        204
    );
    // A second session of Bob's, ended by logout: it must stay ended.
    let r = login(addr, "bob", PASSWORD).await;
    assert_eq!(r.status, 200);
    let bob_gone = r.json()["token"].as_str().unwrap().to_string();
    let r = post(addr, "/api/v1/logout", Some(&bob_gone), json!({})).await;
    assert_eq!(r.status, 204);

    let (mut wa, hello) = ws_hello(addr, &alice).await;
    let epoch = hello["epoch"].as_str().expect("epoch").to_string();
    assert!(!epoch.is_empty());
    let (mut wb, _) = ws_hello(addr, &bob).await;
    for i in 0..5 {
        say_acked(&mut wa, &general, &format!("alice says {i}")).await;
        say_acked(&mut wb, &general, &format!("bob says {i}")).await;
    }
    let (before, first_seq) = history(addr, &alice, &general).await;
    assert_eq!(first_seq, 1);
    assert_eq!(before.len(), 14, "4 joins/leaves and 10 messages");
    assert_consecutive(&before, 1, "history before the restart");
    let rooms_before = get(addr, "/api/v1/rooms", Some(&alice)).await.json();
    let me_alice = me(addr, &alice).await.json();
    let me_carol = me(addr, &carol).await.json();

    // SIGTERM: WebSockets close with 1001 and the process exits 0.
    server.sigterm();
    assert_eq!(wa.closed().await, Ended::Close(1001));
    assert_eq!(wb.closed().await, Ended::Close(1001));
    server.finish().await;

    let server = start(&data, &[]);
    let addr = server.addr;
    // Accounts: the password still logs in, the wrong one does not, the name is still taken.
    assert_eq!(login(addr, "alice", PASSWORD).await.status, 200);
    let wrong = login(addr, "alice", "not the password").await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (401, "invalid_credentials".into())
    );
    let again = post(
        addr,
        "/api/v1/register",
        None,
        json!({ "username": "ALICE", "password": PASSWORD }),
    )
    .await;
    assert_eq!((again.status, again.code()), (409, "username_taken".into()));
    // Live sessions: the old tokens still work; the logged-out one still does not.
    assert_eq!(me(addr, &alice).await.json(), me_alice);
    assert_eq!(me(addr, &carol).await.json(), me_carol);
    assert_eq!(me(addr, &bob).await.json()["username"], "Bob");
    assert_eq!(me(addr, &bob_gone).await.status, 401);
    // Rooms, owners, member counts and last seqs.
    assert_eq!(
        get(addr, "/api/v1/rooms", Some(&alice)).await.json(),
        rooms_before
    );
    let detail = get(addr, &format!("/api/v1/rooms/{general}"), Some(&bob)).await;
    let mut members: Vec<String> = detail.json()["member_list"]
        .as_array()
        .expect("member_list")
        .iter()
        .map(|m| m["username"].as_str().unwrap().to_string())
        .collect();
    members.sort();
    assert_eq!(members, ["Bob", "alice"]);
    let carol_reads = get(
        addr,
        &format!("/api/v1/rooms/{general}/messages"),
        Some(&carol),
    )
    .await;
    assert_eq!(
        (carol_reads.status, carol_reads.code()),
        (403, "not_a_member".into())
    );
    assert_eq!(history(addr, &carol, &quiet).await.0.len(), 1);
    // History: the same entries with the same seqs, each user's own with their nonces.
    assert_eq!(history(addr, &alice, &general).await, (before.clone(), 1));

    // The epoch is the data directory's, and new entries continue the numbering.
    let (mut wa, hello) = ws_hello(addr, &alice).await;
    assert_eq!(hello["epoch"], epoch.as_str());
    let (mut wb, _) = ws_hello(addr, &bob).await;
    let ack = say_acked(&mut wa, &general, "after the restart").await;
    assert_eq!(seq(&ack), 15);
    let seen = wb
        .next_where("entry", |f| f["room"] == general.as_str())
        .await;
    assert_eq!(as_entry(&seen), as_entry(&ack));
    server.stop().await;

    // And once more: the entry written after the first restart is kept too.
    let server = start(&data, &[]);
    let (after, _) = history(server.addr, &alice, &general).await;
    assert_eq!(after[..14], before[..]);
    assert_eq!(as_entry(&after[14]), as_entry(&ack));
    let (_w, hello) = ws_hello(server.addr, &alice).await;
    assert_eq!(hello["epoch"], epoch.as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_keeps_nothing_and_changes_epoch() {
    let tmp = TempDir::new("ephemeral");
    let data = tmp.data();
    let server = start(&data, &["--ephemeral"]);
    let token = user(server.addr, "alice").await;
    let (mut ws, hello) = ws_hello(server.addr, &token).await;
    let first_epoch = hello["epoch"].as_str().expect("epoch").to_string();
    server.sigterm();
    assert_eq!(ws.closed().await, Ended::Close(1001));
    server.finish().await;

    let server = start(&data, &["--ephemeral"]);
    assert_eq!(me(server.addr, &token).await.status, 401);
    assert_eq!(login(server.addr, "alice", PASSWORD).await.status, 401);
    let token = user(server.addr, "alice").await;
    let (_ws, hello) = ws_hello(server.addr, &token).await;
    let second_epoch = hello["epoch"].as_str().expect("epoch");
    assert!(!second_epoch.is_empty());
    assert_ne!(
        second_epoch, first_epoch,
        "a new start of --ephemeral is a new epoch"
    );
    server.stop().await;
    assert!(!data.exists(), "--ephemeral created {}", data.display());
}

/// What `viewer` sees of `name` in `GET /api/v1/users/{name}`: online, and `last_seen`.
async fn seen_by(addr: SocketAddr, viewer: &str, name: &str) -> (bool, Option<u64>) {
    let v = get(addr, &format!("/api/v1/users/{name}"), Some(viewer))
        .await
        .json();
    (v["online"] == true, v["last_seen"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seen_survives_a_crash_and_a_clean_stop() {
    let tmp = TempDir::new("last-seen");
    let data = tmp.data();
    let flags = ["--presence-timeout", "1", "--compact-bytes", "8192"];
    let mut server = start(&data, &flags);
    let addr = server.addr;
    user(addr, "alice").await;
    let bob = user(addr, "bob").await;
    // Alice goes offline by herself (one second after her last request); Bob watches.
    let went = common::within(WAIT, || {
        let bob = bob.clone();
        async move { matches!(seen_by(addr, &bob, "alice").await, (false, Some(_))) }
    })
    .await;
    assert!(went, "alice never went offline");
    let (_, alice_seen) = seen_by(addr, &bob, "alice").await;
    // Written within a second; a crash after that keeps it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill_9();

    let server = start(&data, &flags);
    let addr = server.addr;
    let bob = login_token(addr, "bob", PASSWORD).await;
    assert_eq!(
        seen_by(addr, &bob, "alice").await,
        (false, alice_seen),
        "after a crash"
    );
    // Carol is connected when the server stops cleanly: she was last seen then.
    let carol = user(addr, "carol").await;
    let (mut wc, _) = ws_hello(addr, &carol).await;
    let before_stop = now_ms();
    server.sigterm();
    assert_eq!(wc.closed().await, Ended::Close(1001));
    server.finish().await;
    let after_stop = now_ms();

    let server = start(&data, &flags);
    let addr = server.addr;
    let bob = login_token(addr, "bob", PASSWORD).await;
    let (online, carol_seen) = seen_by(addr, &bob, "carol").await;
    assert!(!online);
    let carol_seen = carol_seen.expect("carol's last_seen kept over a clean stop");
    assert!(
        (before_stop..=after_stop).contains(&carol_seen),
        "carol last seen at {carol_seen}, stop between {before_stop} and {after_stop}"
    );
    assert_eq!(seen_by(addr, &bob, "alice").await, (false, alice_seen));

    // A compaction keeps them too: the journals that held them are gone after it.
    let journals = journal_files(&data);
    let general = room(addr, &bob, "general").await;
    let (mut wb, _) = ws_hello(addr, &bob).await;
    for i in 0..300 {
        wb.say(&general, &format!("compact me {i}"), &format!("c{i}"))
            .await;
    }
    wb.next_where("entry", |f| f["nonce"] == "c299").await;
    let compacted = common::within(WAIT, || {
        let (data, journals) = (data.clone(), journals.clone());
        async move { data.join("snapshot").exists() && journals.iter().all(|j| !j.exists()) }
    })
    .await;
    assert!(compacted, "no compaction replaced {journals:?}");
    let mut server = server;
    server.kill_9();
    let server = start(&data, &flags);
    let addr = server.addr;
    let bob = login_token(addr, "bob", PASSWORD).await;
    assert_eq!(seen_by(addr, &bob, "alice").await, (false, alice_seen));
    assert_eq!(
        seen_by(addr, &bob, "carol").await,
        (false, Some(carol_seen))
    );
    server.stop().await;
}

// ----- 2. kill -9 during a storm -----

const SENDERS: usize = 4;
const PER_SENDER: usize = 500;

/// Records every `entry` frame of `room` that arrives on `stream` until the connection ends,
/// counting them in `progress` if given.
fn record<S>(
    mut stream: S,
    room: String,
    progress: Option<(Arc<AtomicUsize>, Arc<Notify>)>,
) -> JoinHandle<Vec<Value>>
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if frame["type"] == "entry" && frame["room"] == room.as_str() {
                seen.push(frame);
                if let Some((count, notify)) = &progress {
                    count.fetch_add(1, Ordering::SeqCst);
                    notify.notify_one();
                }
            }
        }
        seen
    })
}

/// Four senders post as fast as they can into one room while two receivers (and the senders'
/// own connections) record every entry they are shown; the server is SIGKILLed once the first
/// receiver has seen `kill_after` entries. After a restart every entry anyone saw must be
/// there, unchanged, in a timeline without gaps or duplicates. Meanwhile newcomers register,
/// log in and create rooms over REST: each of those that was answered with success must be
/// there too.
///
/// With `compact`, the journal compacts every 4096 bytes, the senders pace themselves so the
/// storm outlasts the once-a-second compaction check, and the kill also waits for the first
/// snapshot: recovery then reads a snapshot and the journal after it.
async fn storm_then_kill(name: &str, kill_after: usize, fsync: &str, compact: bool) {
    let tmp = TempDir::new(name);
    let data = tmp.data();
    let mut flags = vec!["--history", "100000", "--fsync", fsync];
    if compact {
        flags.extend(["--compact-bytes", "4096"]);
    }
    let mut server = start(&data, &flags);
    let addr = server.addr;

    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(user(addr, &format!("sender{i}")).await);
    }
    let receivers = [user(addr, "reader0").await, user(addr, "reader1").await];
    let room_id = room(addr, &senders[0], "storm").await;
    for token in senders[1..].iter().chain(&receivers) {
        assert_eq!(join(addr, token, &room_id).await.status, 200);
    }
    let joins = (SENDERS + receivers.len()) as u64;

    let progress = Arc::new(AtomicUsize::new(0));
    let notify = Arc::new(Notify::new());
    let mut recorders = Vec::new();
    let mut epoch = String::new();
    for (i, token) in receivers.iter().enumerate() {
        let (ws, hello) = ws_hello(addr, token).await;
        epoch = hello["epoch"].as_str().expect("epoch").to_string();
        let counter = (i == 0).then(|| (Arc::clone(&progress), Arc::clone(&notify)));
        recorders.push(record(ws.inner, room_id.clone(), counter));
    }
    // Newcomers keep arriving through the storm; a few are in before it starts.
    let answered = Arc::new(Mutex::new(Answered::default()));
    let rest = newcomers(addr, Arc::clone(&answered));
    let deadline = Instant::now() + WAIT;
    while answered.lock().unwrap().rooms.len() < 3 {
        assert!(Instant::now() < deadline, "newcomers are not getting in");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut posters = Vec::new();
    for (i, token) in senders.iter().enumerate() {
        let (ws, _) = ws_hello(addr, token).await;
        let (mut sink, stream) = ws.inner.split();
        recorders.push(record(stream, room_id.clone(), None));
        let room_id = room_id.clone();
        posters.push(tokio::spawn(async move {
            for k in 0..PER_SENDER {
                let frame = json!({
                    "type": "send",
                    "room": room_id,
                    "text": format!("sender{i} message {k}"),
                    "nonce": format!("{i}-{k}"),
                });
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                if compact {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }));
    }

    let snapshot = data.join("snapshot");
    let reached = tokio::time::timeout(WAIT, async {
        loop {
            let signalled = notify.notified();
            if progress.load(Ordering::SeqCst) >= kill_after && (!compact || snapshot.exists()) {
                break;
            }
            // The snapshot has no notification; look again every few milliseconds.
            tokio::select! {
                _ = signalled => {}
                _ = tokio::time::sleep(Duration::from_millis(2)), if compact => {}
            }
        }
    })
    .await;
    server.kill_9();
    assert!(
        reached.is_ok(),
        "receiver saw only {} entries; snapshot written: {}",
        progress.load(Ordering::SeqCst),
        snapshot.exists()
    );
    for poster in &posters {
        poster.abort();
    }
    rest.abort();
    let answered = std::mem::take(&mut *answered.lock().unwrap());

    // Everything any client was shown, by seq; two clients never disagree about one seq.
    let mut seen: BTreeMap<u64, Value> = BTreeMap::new();
    for recorder in recorders {
        let frames = tokio::time::timeout(WAIT, recorder)
            .await
            .expect("client connections end when the server dies")
            .expect("recorder task");
        for frame in frames {
            let entry = as_entry(&frame);
            if let Some(other) = seen.insert(seq(&entry), entry.clone()) {
                assert_eq!(other, entry, "two clients were shown different entries");
            }
        }
    }
    assert!(seen.len() >= kill_after);

    let server = start(&data, &flags);
    let addr = server.addr;
    let (kept, first_seq) = history(addr, &receivers[0], &room_id).await;
    assert_eq!(first_seq, 1);
    assert_consecutive(&kept, 1, "history after kill -9");
    for (s, entry) in &seen {
        let kept_entry = kept
            .get(*s as usize - 1)
            .unwrap_or_else(|| panic!("entry {s} was delivered before the crash and is gone"));
        assert_eq!(kept_entry, entry, "entry {s} changed across the crash");
    }
    // The first entries are the joins; then each sender's messages in the order it sent them,
    // none twice and none skipped.
    for entry in &kept[..joins as usize] {
        assert_eq!(entry["kind"], "join", "{entry}");
    }
    let messages = &kept[joins as usize..];
    let mut total = 0;
    for i in 0..SENDERS {
        let from = format!("sender{i}");
        let texts: Vec<&str> = messages
            .iter()
            .filter(|e| e["from"] == from.as_str())
            .map(|e| e["text"].as_str().unwrap_or(""))
            .collect();
        let want: Vec<String> = (0..texts.len())
            .map(|k| format!("sender{i} message {k}"))
            .collect();
        assert_eq!(texts, want, "{from}'s messages after kill -9");
        total += texts.len();
    }
    assert_eq!(total, messages.len(), "only the senders' messages");
    assert!(messages.iter().all(|e| e["kind"] == "message"));
    eprintln!(
        "{name}: killed after {kill_after} seen; {} entries seen by some client, {} kept of {} sent; {} newcomers",
        seen.len(),
        messages.len(),
        SENDERS * PER_SENDER,
        answered.accounts.len()
    );

    // Every account, session, room and membership a 2xx answer told about.
    for name in &answered.accounts {
        let r = get(addr, &format!("/api/v1/users/{name}"), Some(&receivers[0])).await;
        assert_eq!(
            r.status, 200,
            "account {name} was registered before the crash"
        );
    }
    for (name, token) in &answered.sessions {
        let r = me(addr, token).await;
        assert_eq!(
            r.status, 200,
            "{name}'s session was answered before the crash"
        );
        assert_eq!(r.json()["username"], name.as_str());
    }
    for (token, id) in &answered.rooms {
        let r = me(addr, token).await.json();
        let rooms = r["rooms"].as_array().expect("rooms");
        assert!(
            rooms
                .iter()
                .any(|room| room["id"] == id.as_str() && room["members"] == 1),
            "room {id} was created before the crash, with its owner in it: {r}"
        );
    }

    // Sessions and the epoch survive the crash, and the numbering continues.
    let (mut ws, hello) = ws_hello(addr, &receivers[1]).await;
    assert_eq!(hello["epoch"], epoch.as_str());
    let ack = say_acked(&mut ws, &room_id, "after the crash").await;
    assert_eq!(seq(&ack), kept.len() as u64 + 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_50_entries_loses_nothing_delivered() {
    storm_then_kill("kill50", 50, "interval", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_150_entries_loses_nothing_delivered() {
    storm_then_kill("kill150", 150, "always", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_300_entries_loses_nothing_delivered() {
    storm_then_kill("kill300", 300, "never", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_700_entries_loses_nothing_delivered() {
    storm_then_kill("kill700", 700, "always", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_1000_entries_loses_nothing_delivered() {
    storm_then_kill("kill1000", 1000, "interval", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_after_a_compaction_loses_nothing_delivered() {
    storm_then_kill("kill-compacted", 100, "interval", true).await;
}

// ----- 3. torn final record -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_cut_inside_its_last_record_recovers_to_the_last_whole_record() {
    let tmp = TempDir::new("torn");
    let data = tmp.data();
    let server = start(&data, &[]);
    let alice = user(server.addr, "alice").await;
    let general = room(server.addr, &alice, "general").await;
    let (mut ws, hello) = ws_hello(server.addr, &alice).await;
    let epoch = hello["epoch"].as_str().expect("epoch").to_string();
    for i in 1..=5 {
        say_acked(&mut ws, &general, &format!("line {i}")).await;
    }
    let (before, _) = history(server.addr, &alice, &general).await;
    assert_consecutive(&before, 1, "history before the cut");
    assert_eq!(before.len(), 6);
    drop(ws);
    server.stop().await;

    let journal = journal_files(&data).pop().expect("a journal file");
    let bytes = fs::read(&journal).unwrap();
    let spans = record_spans(&bytes);
    let (i, last) = spans
        .iter()
        .enumerate()
        .rev()
        .find(|(_, span)| payload(&bytes, **span)["text"] == "line 5")
        .expect("the last message's record");
    assert!(
        spans[i + 1..]
            .iter()
            .all(|span| payload(&bytes, *span)["t"] != "entry"),
        "no entry follows the last message"
    );
    // Cut inside the last message's record, as a crash mid-write leaves it (the clean-stop
    // record after it goes too).
    let cut = last.1 - 3;
    fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();

    let server = start(&data, &[]);
    let name = journal.file_name().unwrap().to_string_lossy().into_owned();
    server.stderr_eventually_contains(&name).await;
    let (after, _) = history(server.addr, &alice, &general).await;
    assert_eq!(after, before[..5], "everything but the torn last message");
    let (mut ws, hello) = ws_hello(server.addr, &alice).await;
    assert_eq!(
        hello["epoch"],
        epoch.as_str(),
        "on the same boot a torn tail held nothing acknowledged: the epoch stays"
    );
    let ack = say_acked(&mut ws, &general, "after the cut").await;
    assert_eq!(
        seq(&ack),
        6,
        "numbering continues from the last whole record"
    );
    drop(ws);
    server.stop().await;

    // What was written after the recovery follows the cut, not the garbage.
    let server = start(&data, &[]);
    let (after, _) = history(server.addr, &alice, &general).await;
    assert_eq!(after[..5], before[..5]);
    assert_eq!(after.len(), 6);
    assert_eq!(as_entry(&after[5]), as_entry(&ack));
    server.stop().await;
}

// ----- 4. corruption in the middle -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_mid_journal_is_refused_naming_file_and_offset() {
    let tmp = TempDir::new("flip");
    let data = tmp.data();
    let server = start(&data, &[]);
    let alice = user(server.addr, "alice").await;
    let general = room(server.addr, &alice, "general").await;
    let (mut ws, _) = ws_hello(server.addr, &alice).await;
    for i in 0..20 {
        say_acked(&mut ws, &general, &format!("note {i}")).await;
    }
    let (before, _) = history(server.addr, &alice, &general).await;
    drop(ws);
    server.stop().await;

    let journal = journal_files(&data).pop().expect("a journal file");
    let original = fs::read(&journal).unwrap();
    let spans = record_spans(&original);
    let target = *spans
        .iter()
        .find(|&&span| payload(&original, span)["text"] == "note 10")
        .expect("the record of note 10");
    assert!(target.1 < original.len(), "a record in the middle");
    let flipped_at = target.0 + RECORD_HEADER + (target.1 - target.0 - RECORD_HEADER) / 2;
    let mut damaged = original.clone();
    damaged[flipped_at] ^= 0x01;
    fs::write(&journal, &damaged).unwrap();

    let (status, stderr) = refused(&data, &[]);
    assert!(!status.success(), "exit status {status}");
    let name = journal.file_name().unwrap().to_string_lossy().into_owned();
    assert!(stderr.contains(&name), "stderr names the file: {stderr}");
    let offsets: Vec<u64> = stderr
        .split("offset")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect();
    assert!(
        offsets
            .iter()
            .any(|&o| (target.0 as u64..=flipped_at as u64).contains(&o)),
        "stderr names the damaged record's offset ({}..={flipped_at}): {stderr}",
        target.0
    );
    assert_eq!(
        fs::read(&journal).unwrap(),
        damaged,
        "a refused start leaves the journal as it was"
    );

    // Put the byte back: nothing was dropped.
    fs::write(&journal, &original).unwrap();
    let server = start(&data, &[]);
    assert_eq!(history(server.addr, &alice, &general).await.0, before);
    server.stop().await;
}

// ----- 5. the data directory: lock and creation -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_server_on_one_data_dir_is_refused() {
    let tmp = TempDir::new("lock");
    let data = tmp.data();
    let first = start(&data, &[]);
    let alice = user(first.addr, "alice").await;

    let (status, stderr) = refused(&data, &[]);
    assert!(!status.success(), "exit status {status}");
    assert!(
        stderr.to_lowercase().contains("lock"),
        "the reason is the lock: {stderr}"
    );
    assert!(
        stderr.contains(&data.display().to_string()),
        "the message names the directory: {stderr}"
    );
    // The first server is undisturbed.
    assert_eq!(me(first.addr, &alice).await.status, 200);
    assert!(!user(first.addr, "bob").await.is_empty());
    first.stop().await;

    // Once it has stopped, the directory is free again and holds both accounts.
    let second = start(&data, &[]);
    assert_eq!(me(second.addr, &alice).await.status, 200);
    assert_eq!(login(second.addr, "bob", PASSWORD).await.status, 200);
    second.stop().await;
}

#[test]
fn data_dir_that_cannot_be_created_is_a_clear_error() {
    let tmp = TempDir::new("baddir");
    let file = tmp.0.join("plain-file");
    fs::write(&file, "not a directory").unwrap();
    for data in [file.join("data"), file.clone()] {
        let (status, stderr) = refused(&data, &[]);
        assert!(
            !status.success(),
            "{}: exit status {status}",
            data.display()
        );
        assert!(
            stderr.contains(&file.display().to_string()),
            "the message names the path: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "not a directory");
}

// ----- 6. compaction -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_writes_a_snapshot_drops_old_journals_and_keeps_everything() {
    let tmp = TempDir::new("compact");
    let data = tmp.data();
    let flags = ["--compact-bytes", "4096", "--history", "200"];
    let server = start(&data, &flags);
    let addr = server.addr;
    let alice = user(addr, "alice").await;
    let bob = user(addr, "bob").await;
    let carol = user(addr, "carol").await;
    let bob_gone = login(addr, "bob", PASSWORD).await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        post(addr, "/api/v1/logout", Some(&bob_gone), json!({}))
            .await
            .status,
        204
    );
    let general = room(addr, &alice, "general").await;
    assert_eq!(join(addr, &bob, &general).await.status, 200);
    let first_journal = journal_files(&data).remove(0);

    let (mut ws, hello) = ws_hello(addr, &alice).await;
    let epoch = hello["epoch"].as_str().unwrap().to_string();
    for i in 0..300 {
        ws.say(&general, &format!("compact me {i}"), &format!("c{i}"))
            .await;
    }
    ws.next_where("entry", |f| f["nonce"] == "c299").await;

    // The sweep compacts within a second or so of the journal passing 4096 bytes.
    let deadline = Instant::now() + WAIT;
    while !data.join("snapshot").exists() || first_journal.exists() {
        assert!(
            Instant::now() < deadline,
            "no snapshot replaced {}: {:?}",
            first_journal.display(),
            fs::read_dir(&data).unwrap().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = get(addr, "/metrics", None).await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        metrics.lines().any(|l| l == "parley_journal_snapshots 1"),
        "/metrics counts the snapshot: {metrics}"
    );
    // Some traffic after the snapshot, which only the new journal holds.
    for i in 300..320 {
        say_acked(&mut ws, &general, &format!("compact me {i}")).await;
    }
    let (before, first_seq) = history(addr, &bob, &general).await;
    assert_eq!(before.len(), 200, "--history 200 keeps 200 entries");
    assert_eq!(first_seq, seq(&before[0]));
    assert_consecutive(&before, first_seq, "history before the restart");
    let rooms_before = get(addr, "/api/v1/rooms", Some(&alice)).await.json();
    drop(ws);
    server.stop().await;

    assert!(data.join("snapshot").exists());
    assert!(!first_journal.exists(), "the first journal is gone");
    assert!(!journal_files(&data).is_empty());

    let server = start(&data, &flags);
    let addr = server.addr;
    assert_eq!(
        history(addr, &bob, &general).await,
        (before.clone(), first_seq)
    );
    assert_eq!(
        get(addr, "/api/v1/rooms", Some(&alice)).await.json(),
        rooms_before
    );
    assert_eq!(me(addr, &bob).await.status, 200, "bob's session survives");
    assert_eq!(me(addr, &bob_gone).await.status, 401, "a logout survives");
    assert_eq!(login(addr, "carol", PASSWORD).await.status, 200);
    assert_eq!(me(addr, &carol).await.json()["rooms"], json!([]));
    let (mut ws, hello) = ws_hello(addr, &alice).await;
    assert_eq!(hello["epoch"], epoch.as_str());
    let ack = say_acked(&mut ws, &general, "after compaction").await;
    assert_eq!(seq(&ack), seq(before.last().unwrap()) + 1);
    drop(ws);
    server.stop().await;
}
