//! The moderation entries are timeline entries like any other: numbered one after another,
//! delivered live, and served again the same by the history call and by `sync`.

use serde_json::{json, Value};

use crate::common::*;
use crate::*;

/// Sends `sync` and returns the `history` answer.
async fn sync(w: &mut Ws, room: &str, since: u64) -> Value {
    w.send(json!({ "type": "sync", "room": room, "since": since }))
        .await;
    w.next_where("history", |f| f["room"] == room).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_entries_are_delivered_kept_and_synced_like_any_other() {
    let s = server().await;
    let a = s.addr;
    let c = cast(a, "en", "public").await;
    let (mut w, _) = ws_hello(a, &c.moderator).await;
    let start_seq = last_seq(a, &c.owner, &c.id).await;
    let t0 = now_ms();
    assert_204(&kick(a, &c.owner, &c.id, "enmem", Some("too loud")).await);
    assert_eq!(join(a, &c.member, &c.id).await.status, 200);
    assert_204(&ban(a, &c.moderator, &c.id, "enmem", Some("again")).await);
    assert_204(&unban(a, &c.owner, &c.id, "enmem").await);
    assert_eq!(join(a, &c.member, &c.id).await.status, 200);
    assert_204(&mute(a, &c.moderator, &c.id, "enmem", json!(120)).await);
    assert_204(&unmute(a, &c.moderator, &c.id, "enmem").await);
    assert_204(&set_role(a, &c.owner, &c.id, "enmem", "moderator").await);
    let r = patch(a, &c.moderator, &c.id, json!({ "topic": "news" })).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_204(&kick(a, &c.owner, &c.id, "enmem", None).await);
    let t1 = now_ms();

    let kept = entries_after(a, &c.owner, &c.id, start_seq).await;
    let summary: Vec<Value> = kept
        .iter()
        .map(|e| json!([e["kind"], e["from"], e["target"], e["text"]]))
        .collect();
    assert_eq!(
        summary,
        [
            json!(["kick", "enown", "enmem", "too loud"]),
            json!(["join", "enmem", null, null]),
            json!(["ban", "enmod", "enmem", "again"]),
            json!(["unban", "enown", "enmem", null]),
            json!(["join", "enmem", null, null]),
            json!(["mute", "enmod", "enmem", null]),
            json!(["unmute", "enmod", "enmem", null]),
            json!(["role", "enown", "enmem", "moderator"]),
            json!(["update", "enmod", null, null]),
            json!(["kick", "enown", "enmem", null]),
        ],
        "{kept:#?}"
    );
    let seqs: Vec<u64> = kept.iter().map(seq).collect();
    assert_eq!(seqs, (start_seq + 1..=start_seq + 10).collect::<Vec<_>>());
    let until = kept[5]["until"].as_u64().expect("a mute entry has until");
    assert!(
        until + 5 >= t0 + 120_000 && until <= t1 + 120_005,
        "{until}"
    );
    assert_eq!(kept[8]["changes"], json!({ "topic": "news" }));
    for e in &kept {
        let ts = e["ts"].as_u64().expect("ts");
        assert!(ts + 5 >= t0 && ts <= t1 + 5, "{e}");
        assert_eq!(e["room"], json!(c.id));
    }

    // Live, every entry reached the members in order, the same as kept.
    let mut live = Vec::new();
    while live.len() < kept.len() {
        let f = w.next_where("entry", |f| f["room"] == json!(c.id)).await;
        live.push(as_entry(&f));
    }
    assert_eq!(live, kept);
    // And `sync` serves them again.
    let h = sync(&mut w, &c.id, start_seq).await;
    assert_eq!(h["entries"], json!(kept));
    // A reconnecting member sees them in the join history too.
    let (mut w2, _) = ws_hello(a, &c.outsider).await;
    assert_eq!(join(a, &c.outsider, &c.id).await.status, 200);
    let h = w2.next_where("history", |f| f["room"] == json!(c.id)).await;
    let served: Vec<Value> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| seq(e) > start_seq)
        .cloned()
        .collect();
    assert_eq!(served, kept);
    s.stop().await;
}
