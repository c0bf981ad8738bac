//! Edits and deletions: the frames and REST calls, who may, their errors, and how an edited
//! or deleted message is served again (history call, `history` frame after a join, `sync`).

use serde_json::{json, Value};

use crate::common::*;
use crate::*;

/// `POST /api/v1/rooms/{id}/roles`.
async fn set_role(addr: std::net::SocketAddr, owner: &str, room: &str, who: &str, role: &str) {
    let r = post(
        addr,
        &format!("/api/v1/rooms/{room}/roles"),
        Some(owner),
        json!({ "username": who, "role": role }),
    )
    .await;
    assert_eq!(r.status, 204, "make {who} {role}: {:?}", r.json());
}

#[tokio::test]
async fn the_author_edits_through_rest_and_members_see_the_edit_entry() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    let msg = post_msg(&mut wa, &id, "helo world").await;
    let m = seq(&msg);

    let r = edit(s.addr, &t[0], &id, m, "  hello world  ").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let e = r.json();
    assert_eq!(e["kind"], "edit", "{e}");
    assert_eq!(e["ref"], m, "{e}");
    assert_eq!(e["text"], "hello world", "trimmed like a send: {e}");
    assert_eq!(e["from"], "alice", "{e}");
    assert_eq!(e["room"], id.as_str(), "{e}");
    assert_eq!(seq(&e), m + 1, "a new entry of the timeline: {e}");

    let got = wb.next_where("entry", |f| f["kind"] == "edit").await;
    assert_eq!(as_entry(&got), e, "bob's copy is the entry");
    let got = wa.next_where("entry", |f| f["kind"] == "edit").await;
    assert!(got.get("nonce").is_none(), "no frame, no nonce: {got}");

    let (entries, _) = history(s.addr, &t[1], &id).await;
    let served = entry_at(&entries, m);
    assert_eq!(served["text"], "hello world", "{served}");
    assert_eq!(served["edited"], true, "{served}");
    assert_eq!(served["kind"], "message", "{served}");
    assert_eq!(entry_at(&entries, m + 1), &e, "the edit stays as the trail");

    // Filtering applies to the new text.
    let r = edit(s.addr, &t[0], &id, m, "bell\u{7}less").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["text"], "bellless");
    s.stop().await;
}

#[tokio::test]
async fn an_edit_frame_is_acknowledged_with_its_nonce() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut a1, _) = ws_hello(s.addr, &t[0]).await;
    let (mut a2, _) = ws_hello(s.addr, &t[0]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    let m = seq(&post_msg(&mut a1, &id, "first draft").await);

    let ack = ask_frame(
        &mut a1,
        json!({ "type": "edit", "room": id, "seq": m, "text": "second draft" }),
    )
    .await;
    assert_eq!(ack["type"], "entry", "{ack}");
    assert_eq!(
        (&ack["kind"], &ack["ref"]),
        (&json!("edit"), &json!(m)),
        "{ack}"
    );
    assert_eq!(ack["text"], "second draft");
    for w in [&mut a2, &mut wb] {
        let got = w.next_where("entry", |f| f["kind"] == "edit").await;
        assert_eq!(got, {
            let mut plain = ack.clone();
            plain.as_object_mut().unwrap().remove("nonce");
            plain
        });
    }
    s.stop().await;
}

#[tokio::test]
async fn edit_errors() {
    let s = start(&["--history", "8"]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob", "carol"]).await; // 1..=3
    let dave = user(s.addr, "dave").await;
    let (alice, bob, _carol) = (&t[0], &t[1], &t[2]);
    let (mut wa, _) = ws_hello(s.addr, alice).await;
    let (mut wb, _) = ws_hello(s.addr, bob).await;
    let bobs = seq(&post_msg(&mut wb, &id, "bob's").await); // 4
    let alices = seq(&post_msg(&mut wa, &id, "alice's").await); // 5

    let cases: Vec<(&str, &str, u64, String, u16, &str)> = vec![
        (
            "owner edits bob's",
            alice,
            bobs,
            "x".into(),
            403,
            "forbidden",
        ),
        (
            "no such seq",
            alice,
            999,
            "x".into(),
            404,
            "entry_not_found",
        ),
        ("a join entry", alice, 1, "x".into(), 404, "entry_not_found"),
        (
            "not a member",
            dave.as_str(),
            alices,
            "x".into(),
            403,
            "not_a_member",
        ),
        (
            "blank",
            alice,
            alices,
            " \n\t ".into(),
            400,
            "empty_message",
        ),
        (
            "too long",
            alice,
            alices,
            "y".repeat(4097),
            400,
            "message_too_long",
        ),
    ];
    for (what, token, seq, text, status, code) in &cases {
        let r = edit(s.addr, token, &id, *seq, text).await;
        assert_eq!((r.status, r.code()), (*status, code.to_string()), "{what}");
    }
    // The same over a frame (dave has no connection yet).
    let (mut wd, _) = ws_hello(s.addr, &dave).await;
    for (what, token, seq, text, _, code) in &cases {
        let w = if *token == dave.as_str() {
            &mut wd
        } else {
            &mut wa
        };
        let f = ask_frame(
            w,
            json!({ "type": "edit", "room": id, "seq": seq, "text": text }),
        )
        .await;
        assert_eq!(error_code(&f), *code, "frame, {what}: {f}");
    }
    // 4,096 bytes after trimming are fine.
    let r = edit(
        s.addr,
        alice,
        &id,
        alices,
        &format!(" {} ", "z".repeat(4096)),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json()); // 6
    let edit_seq = seq(&r.json());
    // An edit entry is not a message.
    let r = edit(s.addr, alice, &id, edit_seq, "x").await;
    assert_eq!(
        (r.status, r.code()),
        (404, "entry_not_found".into()),
        "an edit entry"
    );

    // Muted: 403 muted.
    let r = post(
        s.addr,
        &format!("/api/v1/rooms/{id}/mutes"),
        Some(alice),
        json!({ "username": "bob", "seconds": 600 }),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.json()); // 7
    let r = edit(s.addr, bob, &id, bobs, "muffled").await;
    assert_eq!((r.status, r.code()), (403, "muted".into()));
    let f = ask_frame(
        &mut wb,
        json!({ "type": "edit", "room": id, "seq": bobs, "text": "muffled" }),
    )
    .await;
    assert_eq!(error_code(&f), "muted", "{f}");
    let wait = f["retry_after_ms"].as_u64().unwrap_or(0);
    assert!(
        wait > 0 && wait <= 600_000,
        "the mute's remaining time: {f}"
    );
    let f = ask(&mut wb, &id, "/me mumbles").await;
    assert_eq!(error_code(&f), "muted", "an action: {f}");
    assert!(f["retry_after_ms"].as_u64().unwrap_or(0) > 0, "{f}");
    // A muted author may still delete (muted is for edits only).
    assert_eq!(delete(s.addr, bob, &id, bobs).await.status, 204); // 8
                                                                  // Deleted: nothing to edit.
    let r = edit(s.addr, alice, &id, bobs, "x").await;
    assert_eq!(
        (r.status, r.code()),
        (404, "entry_not_found".into()),
        "deleted"
    );

    // No longer kept (--history 8): entry_not_found, though it was alice's message.
    for i in 0..8 {
        post_msg(&mut wa, &id, &format!("filler {i}")).await;
    }
    let r = edit(s.addr, alice, &id, alices, "too late").await;
    assert_eq!(
        (r.status, r.code()),
        (404, "entry_not_found".into()),
        "trimmed"
    );
    let r = edit(s.addr, alice, "nosuchroom", alices, "x").await;
    assert_eq!(r.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn the_author_the_owner_and_any_moderator_may_delete() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["olive", "mod", "bob", "carol"]).await;
    let (olive, moder, bob, carol) = (&t[0], &t[1], &t[2], &t[3]);
    set_role(s.addr, olive, &id, "mod", "moderator").await;
    let (mut wo, _) = ws_hello(s.addr, olive).await;
    let (mut wb, _) = ws_hello(s.addr, bob).await;
    let (mut wc, _) = ws_hello(s.addr, carol).await;

    let b1 = seq(&post_msg(&mut wb, &id, "bob one").await);
    let b2 = seq(&post_msg(&mut wb, &id, "bob two").await);
    let b3 = seq(&post_msg(&mut wb, &id, "bob three").await);
    let o1 = seq(&post_msg(&mut wo, &id, "olive one").await);
    let c1 = seq(&post_msg(&mut wc, &id, "carol one").await);

    // A plain member may not delete another's message, nor the owner's.
    for target in [b1, o1] {
        let r = delete(s.addr, carol, &id, target).await;
        assert_eq!((r.status, r.code()), (403, "forbidden".into()));
    }
    let f = ask_frame(&mut wc, json!({ "type": "delete", "room": id, "seq": b1 })).await;
    assert_eq!(error_code(&f), "forbidden", "{f}");

    // The author.
    assert_eq!(delete(s.addr, bob, &id, b1).await.status, 204);
    // The owner.
    assert_eq!(delete(s.addr, olive, &id, b2).await.status, 204);
    // A moderator, of a member's and of the owner's message.
    assert_eq!(delete(s.addr, moder, &id, b3).await.status, 204);
    assert_eq!(delete(s.addr, moder, &id, o1).await.status, 204);
    // The author over a frame: the sender's copy carries the nonce.
    let ack = ask_frame(&mut wc, json!({ "type": "delete", "room": id, "seq": c1 })).await;
    assert_eq!(ack["type"], "entry", "{ack}");
    assert_eq!(
        (&ack["kind"], &ack["ref"], &ack["from"]),
        (&json!("delete"), &json!(c1), &json!("carol"))
    );
    assert!(ack.get("text").is_none(), "{ack}");

    // Every member saw the delete entries, `from` the one who deleted.
    let mut deletes: Vec<(u64, String)> = Vec::new();
    while deletes.len() < 5 {
        let f = wb.next_where("entry", |f| f["kind"] == "delete").await;
        assert!(f.get("nonce").is_none(), "{f}");
        deletes.push((
            f["ref"].as_u64().unwrap(),
            f["from"].as_str().unwrap().into(),
        ));
    }
    let want = [
        (b1, "bob"),
        (b2, "olive"),
        (b3, "mod"),
        (o1, "mod"),
        (c1, "carol"),
    ];
    let want: Vec<(u64, String)> = want.iter().map(|(s, f)| (*s, f.to_string())).collect();
    assert_eq!(deletes, want);

    // Twice: entry_not_found, through either door.
    let r = delete(s.addr, olive, &id, b1).await;
    assert_eq!((r.status, r.code()), (404, "entry_not_found".into()));
    let f = ask_frame(&mut wo, json!({ "type": "delete", "room": id, "seq": b1 })).await;
    assert_eq!(error_code(&f), "entry_not_found", "{f}");
    // A join entry, a delete entry, or no entry: entry_not_found.
    for target in [1, seq(&ack), 999] {
        let r = delete(s.addr, olive, &id, target).await;
        assert_eq!(
            (r.status, r.code()),
            (404, "entry_not_found".into()),
            "seq {target}"
        );
    }
    // Not a member.
    let dave = user(s.addr, "dave").await;
    let d1 = seq(&post_msg(&mut wo, &id, "olive two").await);
    let r = delete(s.addr, &dave, &id, d1).await;
    assert_eq!((r.status, r.code()), (403, "not_a_member".into()));
    s.stop().await;
}

/// Checks an entry list as served again: `m` edited to `latest`, `d` deleted (with `d_edit`
/// an edit of it), and the trail entries present.
fn check_served(entries: &[Value], m: u64, latest: &str, d: u64, d_edit: u64, d_del: u64) {
    let em = entry_at(entries, m);
    assert_eq!(
        (&em["text"], &em["edited"]),
        (&json!(latest), &json!(true)),
        "{em}"
    );
    assert!(
        em.get("deleted").is_none() || em["deleted"] == false,
        "{em}"
    );
    let ed = entry_at(entries, d);
    assert_eq!(ed["deleted"], true, "{ed}");
    assert!(
        ed.get("text").is_none(),
        "deleted text is never served: {ed}"
    );
    assert_eq!(ed["kind"], "message", "{ed}");
    let ee = entry_at(entries, d_edit);
    assert_eq!(
        (&ee["kind"], &ee["ref"]),
        (&json!("edit"), &json!(d)),
        "{ee}"
    );
    assert!(
        ee.get("text").is_none(),
        "an edit of a deleted message: {ee}"
    );
    let del = entry_at(entries, d_del);
    assert_eq!(
        (&del["kind"], &del["ref"]),
        (&json!("delete"), &json!(d)),
        "{del}"
    );
    for e in entries {
        let text = e.get("text").and_then(|t| t.as_str()).unwrap_or("");
        assert!(!text.contains("secret"), "deleted text served in {e}");
    }
}

#[tokio::test]
async fn edited_and_deleted_messages_are_served_again_with_their_state() {
    let s = start(&[]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let m = seq(&post_msg(&mut wa, &id, "v1").await);
    assert_eq!(edit(s.addr, &t[0], &id, m, "v2").await.status, 200);
    assert_eq!(edit(s.addr, &t[0], &id, m, "v3").await.status, 200);
    let d = seq(&post_msg(&mut wa, &id, "secret one").await);
    let r = edit(s.addr, &t[0], &id, d, "secret two").await;
    assert_eq!(r.status, 200);
    let d_edit = seq(&r.json());
    assert_eq!(delete(s.addr, &t[0], &id, d).await.status, 204);
    let d_del = d_edit + 1;

    // The history call.
    let (entries, _) = history(s.addr, &t[1], &id).await;
    check_served(&entries, m, "v3", d, d_edit, d_del);
    let edits: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "edit" && e["ref"] == m)
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(edits, vec!["v2", "v3"], "each edit stays with its own text");

    // `sync` from before both.
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;
    wb.send(json!({ "type": "sync", "room": id, "since": 0 }))
        .await;
    let h = wb.next_where("history", |f| f["room"] == id).await;
    check_served(h["entries"].as_array().unwrap(), m, "v3", d, d_edit, d_del);

    // The `history` frame a new member gets on joining.
    let carol = user(s.addr, "carol").await;
    let (mut wc, _) = ws_hello(s.addr, &carol).await;
    assert_eq!(join(s.addr, &carol, &id).await.status, 200);
    let h = wc.next_where("history", |f| f["room"] == id).await;
    check_served(h["entries"].as_array().unwrap(), m, "v3", d, d_edit, d_del);
    s.stop().await;
}

#[tokio::test]
async fn edits_and_actions_are_filtered_like_messages() {
    let dir = crate::common::process::TempDir::new("conv-words");
    let words = dir.0.join("words.txt");
    std::fs::write(&words, "darn\n").unwrap();
    let s = start(&["--blocked-words", words.to_str().unwrap()]).await;
    let (id, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let m = seq(&post_msg(&mut wa, &id, "fine").await);
    let r = edit(s.addr, &t[0], &id, m, "DARN it @bob").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["text"], "**** it @bob");
    assert_eq!(r.json()["mentions"], json!(["bob"]));
    let (entries, _) = history(s.addr, &t[1], &id).await;
    assert_eq!(entry_at(&entries, m)["text"], "**** it @bob");
    let act = post_msg(&mut wa, &id, "/me says darn\u{7}").await;
    assert_eq!(
        (&act["text"], &act["action"]),
        (&json!("says ****"), &json!(true))
    );
    s.stop().await;
}

/// Deleting the oldest kept message of a full history: the `delete` entry pushes the message
/// itself out, and its kept `edit` entries must still lose the text (found by the simulation,
/// `tests/simulation.rs`).
#[tokio::test]
async fn deleting_the_oldest_kept_message_takes_the_text_out_of_its_edits() {
    let s = start(&["--history", "6"]).await;
    let (id, t) = room_with(s.addr, &["alice"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let m = seq(&post_msg(&mut wa, &id, "first").await);
    let r = edit(s.addr, &t[0], &id, m, "secret words").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    loop {
        let (_, first) = history(s.addr, &t[0], &id).await;
        if first == m {
            break;
        }
        post_msg(&mut wa, &id, "filler").await;
    }
    let r = delete(s.addr, &t[0], &id, m).await;
    assert_eq!(r.status, 204, "{:?}", r.json());
    let (entries, first) = history(s.addr, &t[0], &id).await;
    assert!(first > m, "the deletion pushed the message out");
    for e in &entries {
        assert_ne!(e["text"], "secret words", "deleted text served again: {e}");
    }
    s.stop().await;
}
