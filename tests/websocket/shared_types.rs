//! Every frame a real server sends, and the REST bodies beside them, decode as the
//! workspace's shared `parley-protocol` types with nothing lost: decoding and encoding a
//! frame again gives the same JSON. The server writes `entry`, `history` and `presence`
//! frames by hand from kept bytes; this is what keeps them and the shared types together.

use std::collections::BTreeSet;

use parley_protocol::{
    EntryKind, EntryPage, ErrorBody, RoomDetail, RoomList, ServerFrame, UserList,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::common::*;
use crate::room_with;

/// `v` is a `T` whose encoding is `v` again.
fn same_as<T: DeserializeOwned + Serialize>(v: &Value) -> T {
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
    assert_eq!(
        &serde_json::to_value(&t).unwrap(),
        v,
        "changed by the shared type"
    );
    t
}

/// Reads frames until one of type `kind`, checking every frame on the way; records the
/// types seen.
async fn take(w: &mut Ws, kind: &str, seen: &mut BTreeSet<String>) -> ServerFrame {
    loop {
        let v = w
            .next()
            .await
            .unwrap_or_else(|| panic!("no {kind} frame arrived"));
        let f: ServerFrame = same_as(&v);
        assert_ne!(f, ServerFrame::Unknown, "{v}");
        let t = v["type"].as_str().unwrap().to_owned();
        seen.insert(t.clone());
        if t == kind {
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_and_body_decodes_as_the_shared_types() {
    // A short presence timeout: carol is announced offline a second after she goes.
    let s = start(&["--presence-timeout", "1"]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let carol = user(s.addr, "carol").await;
    let mut seen = BTreeSet::new();
    let (mut a, hello) = ws_hello(s.addr, &t[0]).await;
    let ServerFrame::Hello { rooms, .. } = same_as(&hello) else {
        panic!("{hello}")
    };
    assert_eq!(rooms[0].id, id);
    seen.insert("hello".to_owned());
    let (mut b, _) = ws_hello(s.addr, &t[1]).await;
    let (mut b2, _) = ws_hello(s.addr, &t[1]).await;

    // Entries, the sender's copy with its nonce; an edit and a deletion.
    a.say(&id, "hi @bob \"x\"\n\u{1}", "n1").await;
    let ServerFrame::Entry(mine) = take(&mut a, "entry", &mut seen).await else {
        unreachable!()
    };
    assert_eq!(
        (mine.kind, mine.nonce.clone()),
        (EntryKind::Message, Some(json!("n1")))
    );
    assert_eq!(mine.mentions(), ["bob"]);
    let ServerFrame::Entry(theirs) = take(&mut b, "entry", &mut seen).await else {
        unreachable!()
    };
    assert_eq!((theirs.seq, theirs.nonce.clone()), (mine.seq, None));
    a.send(json!({"type": "edit", "room": id, "seq": mine.seq, "text": "v2", "nonce": 2}))
        .await;
    take(&mut a, "entry", &mut seen).await;
    a.say(&id, "gone", "n3").await;
    let ServerFrame::Entry(gone) = take(&mut a, "entry", &mut seen).await else {
        unreachable!()
    };
    a.send(json!({"type": "delete", "room": id, "seq": gone.seq}))
        .await;
    take(&mut a, "entry", &mut seen).await;

    // Typing, read markers, a command's reply, an error.
    a.send(json!({"type": "typing", "room": id})).await;
    take(&mut b, "typing", &mut seen).await;
    b.send(json!({"type": "read", "room": id, "seq": mine.seq}))
        .await;
    take(&mut b2, "read", &mut seen).await;
    a.say(&id, "/rooms", "n4").await;
    take(&mut a, "reply", &mut seen).await;
    a.say("no-such-room", "hello", "n5").await;
    take(&mut a, "error", &mut seen).await;

    // History: `sync`, with edited and deleted messages served again.
    a.send(json!({"type": "sync", "room": id, "since": 0}))
        .await;
    let ServerFrame::History { entries, .. } = take(&mut a, "history", &mut seen).await else {
        unreachable!()
    };
    let first = entries.iter().find(|e| e.seq == mine.seq).unwrap();
    assert!(first.is_edited() && first.text.as_deref() == Some("v2"));
    assert!(entries.iter().any(|e| e.seq == gone.seq && e.is_deleted()));

    // Carol: online, joined (with its history), invited, gone again.
    let (mut c, _) = ws_hello(s.addr, &carol).await;
    assert_eq!(join(s.addr, &carol, &id).await.status, 200);
    take(&mut c, "joined", &mut seen).await;
    take(&mut c, "history", &mut seen).await;
    let den = room(s.addr, &t[0], "den").await;
    let r = post(
        s.addr,
        &format!("/api/v1/rooms/{den}/invites"),
        Some(&t[0]),
        json!({"username": "carol"}),
    )
    .await;
    assert_204(&r);
    take(&mut c, "invite", &mut seen).await;
    drop(c);
    loop {
        let ServerFrame::Presence { username, online } = take(&mut a, "presence", &mut seen).await
        else {
            unreachable!()
        };
        if username == "carol" && !online {
            break;
        }
    }
    let r = request(
        s.addr,
        "DELETE",
        &format!("/api/v1/rooms/{den}"),
        Some(&t[0]),
        None,
    )
    .await;
    assert_204(&r);
    take(&mut a, "room_deleted", &mut seen).await;

    let want = [
        "entry",
        "error",
        "hello",
        "history",
        "invite",
        "joined",
        "presence",
        "read",
        "reply",
        "room_deleted",
        "typing",
    ];
    assert_eq!(
        seen,
        want.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()
    );

    // REST bodies beside the frames.
    let r = get(s.addr, &format!("/api/v1/rooms/{id}/messages"), Some(&t[0])).await;
    let page: EntryPage = same_as(&r.json());
    // The page holds what `sync` served, and carol's join after it.
    assert_eq!(page.entries[..entries.len()], entries[..]);
    let r = get(s.addr, &format!("/api/v1/rooms/{id}"), Some(&t[0])).await;
    let detail: RoomDetail = same_as(&r.json());
    assert_eq!(detail.member_list.len(), 3);
    same_as::<RoomList>(&get(s.addr, "/api/v1/rooms", Some(&t[0])).await.json());
    same_as::<UserList>(&get(s.addr, "/api/v1/users", Some(&t[0])).await.json());
    let r = get(s.addr, "/api/v1/rooms/nope", Some(&t[0])).await;
    let e: ErrorBody = same_as(&r.json());
    assert_eq!(e.error.code, "room_not_found");
    s.stop().await;
}

/// v1.2's `react` frame is one the shared `ClientFrame` knows, but this server does not
/// serve reactions yet: it answers `bad_frame`, as for any frame type it does not know, now
/// with the frame's nonce; nothing is posted and the connection stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_react_frame_gets_bad_frame_with_its_nonce() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice"]).await;
    let (mut w, _) = ws_hello(s.addr, &t[0]).await;
    w.send(json!({"type": "react", "room": id, "seq": 1, "emoji": ":ship:", "on": true, "nonce": "r1"}))
        .await;
    let e = w.next().await.expect("an error frame");
    assert_eq!(
        (&e["type"], &e["code"], &e["nonce"]),
        (&json!("error"), &json!("bad_frame"), &json!("r1")),
        "{e}"
    );
    w.say(&id, "still here", "n").await;
    let m = w.next_where("entry", |_| true).await;
    assert_eq!((&m["seq"], &m["text"]), (&json!(2), &json!("still here")));
    s.stop().await;
}
