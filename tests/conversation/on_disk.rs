//! What the data directory holds: read markers written at most about once a second per
//! room (counted in the journal), deleted text gone after the next compaction (every file
//! scanned), and conversations recovered from a snapshot plus the journal after it.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::journal::{journal_files, payload};
use crate::common::process::{start as start_proc, TempDir};
use crate::common::*;
use crate::*;

/// Every `read_markers` record of the data directory's journals, in order.
fn read_marker_records(data: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for file in journal_files(data) {
        let Ok(bytes) = fs::read(&file) else {
            continue; // compacted away meanwhile
        };
        // A record being written may be cut short; whole records are what we count.
        let mut spans = Vec::new();
        let mut pos = common::journal::FILE_HEADER;
        while pos + common::journal::RECORD_HEADER <= bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            let end = pos + common::journal::RECORD_HEADER + len;
            if end > bytes.len() {
                break;
            }
            spans.push((pos, end));
            pos = end;
        }
        for span in spans {
            let p = payload(&bytes, span);
            if p["t"] == "read_markers" {
                out.push(p);
            }
        }
    }
    out
}
/// `(read_seq, unread)` from `GET /rooms/{id}`.
async fn marker(addr: SocketAddr, token: &str, id: &str) -> (u64, u64) {
    let r = room_info(addr, token, id).await;
    (
        r["read_seq"].as_u64().expect("read_seq"),
        r["unread"].as_u64().expect("unread"),
    )
}
/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    found
}
/// Posts to `noise` over `w` until a compaction has replaced `first_journal`.
async fn compact_with_noise(addr: SocketAddr, w: &mut Ws, noise: &str, first_journal: &Path) {
    let snapshots_before = snapshots(addr).await;
    let deadline = Instant::now() + WAIT;
    let mut i = 0;
    while snapshots(addr).await <= snapshots_before || first_journal.exists() {
        assert!(Instant::now() < deadline, "no compaction");
        for _ in 0..10 {
            post_msg(w, noise, &format!("noise {i} {}", "-".repeat(100))).await;
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `parley_journal_snapshots` from `/metrics`.
async fn snapshots(addr: SocketAddr) -> u64 {
    let r = get(addr, "/metrics", None).await;
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| {
            l.strip_prefix("parley_journal_snapshots ")?
                .trim()
                .parse()
                .ok()
        })
        .expect("parley_journal_snapshots in /metrics")
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marker_writes_are_coalesced_not_one_record_each() {
    const MEMBERS: usize = 20;
    const MESSAGES: u64 = 20;
    let tmp = TempDir::new("conv-markers-coalesce");
    let data = tmp.data();
    let server = start_proc(&data, &[]);
    let addr = server.addr;
    let names: Vec<String> = (0..MEMBERS).map(|i| format!("reader{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let (id, t) = room_with(addr, &refs).await;
    let mut conns = Vec::new();
    for token in &t {
        conns.push(ws_hello(addr, token).await.0);
    }
    let first_message = MEMBERS as u64 + 1;
    for i in 0..MESSAGES {
        post_msg(&mut conns[0], &id, &format!("message {i}")).await;
    }
    let last = first_message + MESSAGES - 1;
    // Let the poster's own marker move settle into the journal first.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = read_marker_records(&data).len();

    // Every member marks every message read, one frame each, as clients reading along
    // would: a round every 50 ms, about a second in all.
    let started = Instant::now();
    for seq in first_message..=last {
        if seq > first_message {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for w in conns.iter_mut() {
            w.send(json!({ "type": "read", "room": id, "seq": seq }))
                .await;
        }
    }
    for w in conns.iter_mut() {
        settle(w, &id, last).await;
    }
    let sent_in = started.elapsed();
    for token in &t {
        assert_eq!(marker(addr, token, &id).await.0, last);
    }

    // Wait until the journal holds every member's final marker.
    let complete = |records: &[Value]| {
        names.iter().all(|n| {
            records.iter().any(|r| {
                r["room"] == id
                    && r["markers"]
                        .as_array()
                        .is_some_and(|ms| ms.iter().any(|m| m[0] == n.as_str() && m[1] == last))
            })
        })
    };
    let deadline = Instant::now() + WAIT;
    let records = loop {
        let records = read_marker_records(&data);
        if complete(&records) {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "the journal never got every final marker: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let written = records.len() - before;
    let window = started.elapsed();
    // At most about one record per room per second of the burst (plus one at each edge).
    let allowed = window.as_secs() as usize + 2;
    assert!(
        written <= allowed,
        "{} marker moves in {sent_in:?} wrote {written} read_markers records over {window:?} \
         (at most {allowed}): {:?}",
        MEMBERS as u64 * MESSAGES,
        &records[before..]
    );
    drop(conns);
    server.stop().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_text_is_gone_from_the_data_directory_after_the_next_compaction() {
    const ORIGINAL: &str = "qzxv-original-8812";
    const EDITED: &str = "qzxv-edited-8812";
    let tmp = TempDir::new("conv-erase");
    let data = tmp.data();
    let server = start_proc(&data, &["--compact-bytes", "4096"]);
    let addr = server.addr;
    let (id, t) = room_with(addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(addr, &t[0]).await;
    let secret = seq(&post_msg(&mut wa, &id, &format!("the code is {ORIGINAL}")).await);
    let r = edit(addr, &t[0], &id, secret, &format!("the code is {EDITED}")).await;
    assert_eq!(r.status, 200);
    post_msg(&mut wa, &id, "an ordinary message that stays").await;

    // The scan works: both texts are on disk now.
    for needle in [ORIGINAL, EDITED] {
        assert!(
            eventually(|| {
                let data = data.clone();
                async move { !files_containing(&data, needle.as_bytes()).is_empty() }
            })
            .await,
            "{needle} never reached the data directory"
        );
    }

    let snapshots_before = snapshots(addr).await;
    assert_eq!(delete(addr, &t[1], &id, secret).await.status, 403);
    assert_eq!(delete(addr, &t[0], &id, secret).await.status, 204);

    // Enough traffic to pass --compact-bytes again, then the next compaction.
    let mut i = 0;
    let deadline = Instant::now() + WAIT;
    while snapshots(addr).await <= snapshots_before {
        assert!(Instant::now() < deadline, "no compaction after the delete");
        for _ in 0..10 {
            post_msg(&mut wa, &id, &format!("filler {i} {}", "-".repeat(100))).await;
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = eventually(|| {
        let data = data.clone();
        async move {
            files_containing(&data, ORIGINAL.as_bytes()).is_empty()
                && files_containing(&data, EDITED.as_bytes()).is_empty()
        }
    })
    .await;
    assert!(
        gone,
        "deleted text still on disk after a compaction: {:?} {:?}",
        files_containing(&data, ORIGINAL.as_bytes()),
        files_containing(&data, EDITED.as_bytes())
    );
    // What was not deleted is still there, and still served.
    assert!(!files_containing(&data, b"an ordinary message that stays").is_empty());
    let (entries, _) = history(addr, &t[1], &id).await;
    assert!(entry_at(&entries, secret).get("text").is_none());
    drop(wa);
    server.stop().await;

    // And after a restart from the snapshot the message is still deleted.
    let server = start_proc(&data, &["--compact-bytes", "4096"]);
    let (entries, _) = history(server.addr, &t[1], &id).await;
    let d = entry_at(&entries, secret);
    assert_eq!(d["deleted"], true, "{d}");
    assert!(d.get("text").is_none(), "{d}");
    server.stop().await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_survive_a_compaction_and_kill_9() {
    let tmp = TempDir::new("conv-compact");
    let data = tmp.data();
    let flags = ["--compact-bytes", "4096"];
    let mut server = start_proc(&data, &flags);
    let addr = server.addr;
    let first_journal = journal_files(&data).remove(0);
    let (lobby, t) = room_with(addr, &["alice", "bob", "carol"]).await; // 1..=3
    let (alice, bob, carol) = (&t[0], &t[1], &t[2]);
    let dm = dm_id(addr, alice, "bob").await;
    assert_eq!(block(addr, carol, "bob").await.status, 204);
    let (mut wa, _) = ws_hello(addr, alice).await;
    let (mut wb, _) = ws_hello(addr, bob).await;
    let (mut wc, _) = ws_hello(addr, carol).await;
    for i in 0..4 {
        post_msg(&mut wb, &lobby, &format!("lobby {i}")).await; // 4..=7
    }
    assert_eq!(mark_read(addr, alice, &lobby, 5).await.status, 204);
    wc.send(json!({ "type": "read", "room": lobby, "seq": 6 }))
        .await;
    settle(&mut wc, &lobby, 7).await;
    let edited = seq(&post_msg(&mut wa, &dm, "draft").await);
    assert_eq!(
        edit(addr, alice, &dm, edited, "final @bob").await.status,
        200
    );
    let deleted = seq(&post_msg(&mut wa, &dm, "oops").await);
    assert_eq!(delete(addr, alice, &dm, deleted).await.status, 204);
    post_msg(&mut wa, &dm, "unread by bob").await;

    let mut before = Vec::new();
    for (token, id) in [
        (alice, &lobby),
        (bob, &lobby),
        (carol, &lobby),
        (alice, &dm),
        (bob, &dm),
    ] {
        before.push(marker(addr, token, id).await);
    }
    assert_eq!(&before[..3], &[(5, 2), (7, 0), (6, 1)]);
    assert_eq!(before[4].1, 2, "bob has two unread in the DM: {before:?}");
    let (lobby_before, _) = history(addr, bob, &lobby).await;

    // Traffic elsewhere until a compaction has replaced the first journal.
    let noise = room(addr, alice, "noise").await;
    compact_with_noise(addr, &mut wa, &noise, &first_journal).await;
    // After the snapshot, only the journal holds these: deleting the edited message (its
    // edit loses its text too) and bob reading the DM.
    assert_eq!(delete(addr, alice, &dm, edited).await.status, 204);
    assert_eq!(mark_read(addr, bob, &dm, edited).await.status, 204);
    let mut before = Vec::new();
    for (token, id) in [
        (alice, &lobby),
        (bob, &lobby),
        (carol, &lobby),
        (alice, &dm),
        (bob, &dm),
    ] {
        before.push(marker(addr, token, id).await);
    }
    let (dm_before, _) = history(addr, bob, &dm).await;
    // After his marker: one deleted message and "unread by bob".
    assert_eq!(before[4], (edited, 1), "{before:?}");
    assert_eq!(crate::reads::expected_unread(&dm_before, edited, "bob"), 1);
    let e = entry_at(&dm_before, edited + 1);
    assert_eq!(e["kind"], "edit");
    assert!(e.get("text").is_none(), "{e}");
    assert!(
        dm_before.iter().all(|e| e["text"] != "final @bob"),
        "{dm_before:?}"
    );
    // Past the second a crash may cost marker moves.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.kill_9();
    drop((wa, wb, wc));

    let server = start_proc(&data, &flags);
    let addr = server.addr;
    let mut after = Vec::new();
    for (token, id) in [
        (alice, &lobby),
        (bob, &lobby),
        (carol, &lobby),
        (alice, &dm),
        (bob, &dm),
    ] {
        after.push(marker(addr, token, id).await);
    }
    assert_eq!(after, before, "read markers and unread counts");
    assert_eq!(history(addr, bob, &lobby).await.0, lobby_before);
    assert_eq!(
        history(addr, bob, &dm).await.0,
        dm_before,
        "edits and deletions"
    );
    let info = room_info(addr, bob, &dm).await;
    assert_eq!(
        (&info["kind"], &info["name"]),
        (&json!("dm"), &json!("alice, bob"))
    );
    assert_eq!(dm_id(addr, bob, "alice").await, dm, "still the pair's DM");
    let r = get(addr, "/api/v1/blocks", Some(carol)).await;
    assert_eq!(r.json(), json!({ "blocks": ["bob"] }));
    let r = open_dm(addr, bob, "carol").await;
    assert_eq!((r.status, r.code()), (403, "blocked".into()));
    let r = delete(addr, alice, &dm, deleted).await;
    assert_eq!((r.status, r.code()), (404, "entry_not_found".into()));
    let r = request(
        addr,
        "POST",
        &format!("/api/v1/rooms/{dm}/kick"),
        Some(alice),
        Some(&json!({ "username": "bob" })),
    )
    .await;
    assert_eq!((r.status, r.code()), (409, "dm_room".into()), "still a DM");
    server.stop().await;
}

/// With `--max-rooms-per-user 3`, vic answered two DMs and left three unanswered: he can
/// create one room and no second, and a new DM opened with him is made without him.
/// Leaves things as they were, but for the new DM.
async fn vic_has_two_counted_rooms_and_three_unanswered(addr: SocketAddr, vic: &str, new: &str) {
    let r = crate::dm_limits::create(addr, vic, "probe").await;
    assert_eq!(
        r.status,
        201,
        "the unanswered DMs count again: {:?}",
        r.json()
    );
    let probe = r.json()["id"].as_str().unwrap().to_string();
    let r = crate::dm_limits::create(addr, vic, "probe two").await;
    assert_eq!(
        (r.status, r.code()),
        (409, "too_many_rooms".into()),
        "the answered DMs no longer count"
    );
    assert_eq!(leave(addr, vic, &probe).await.status, 204);
    let opener = user(addr, new).await;
    let r = open_dm(addr, &opener, "vic").await;
    assert_eq!(
        r.json()["members"],
        1,
        "vic added past the cap: {:?}",
        r.json()
    );
    assert_eq!(crate::dm_limits::my_rooms(addr, vic).await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_dms_count_the_same_after_kill_9_and_after_a_compaction() {
    let tmp = TempDir::new("conv-dm-limit");
    let data = tmp.data();
    let flags = ["--compact-bytes", "4096", "--max-rooms-per-user", "3"];
    let mut server = start_proc(&data, &flags);
    let addr = server.addr;
    let first_journal = journal_files(&data).remove(0);
    let vic = user(addr, "vic").await;
    let (_, dms) = crate::dm_limits::dms_at(addr, "vic", &["amy", "ben"]).await;
    // He answers amy's by writing and ben's by opening it; the next three wait.
    let (mut wv, _) = ws_hello(addr, &vic).await;
    post_msg(&mut wv, &dms[0], "hi amy").await;
    assert_eq!(dm_id(addr, &vic, "ben").await, dms[1]);
    crate::dm_limits::dms_at(addr, "vic", &["cat", "dan", "eve"]).await;
    vic_has_two_counted_rooms_and_three_unanswered(addr, &vic, "fay").await;
    server.kill_9();
    drop(wv);

    // The journal alone.
    let mut server = start_proc(&data, &flags);
    let addr = server.addr;
    vic_has_two_counted_rooms_and_three_unanswered(addr, &vic, "gus").await;

    // A snapshot, then the journal after it.
    let noisy = user(addr, "noisy").await;
    let noise = room(addr, &noisy, "noise").await;
    let (mut wn, _) = ws_hello(addr, &noisy).await;
    compact_with_noise(addr, &mut wn, &noise, &first_journal).await;
    server.kill_9();
    drop(wn);
    let server = start_proc(&data, &flags);
    vic_has_two_counted_rooms_and_three_unanswered(server.addr, &vic, "hal").await;
    server.stop().await;
}
