//! Mentions (`@username` on message and edit entries) and `/me` actions.

use serde_json::{json, Value};

use crate::common::*;
use crate::*;

/// The `mentions` of an entry, `None` when absent.
fn mentions(e: &Value) -> Option<Vec<String>> {
    e.get("mentions").map(|m| {
        m.as_array()
            .unwrap_or_else(|| panic!("mentions is a list: {e}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    })
}

#[tokio::test]
async fn mentions_follow_the_contract_rule() {
    let s = start(&["--rate-limit", "0"]).await;
    let (lobby, t) = room_with(s.addr, &["alice", "Bob", "carol_x", "dave-1"]).await;
    let _erin = user(s.addr, "erin").await; // registered, not a member
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;

    let cases: &[(&str, Option<&[&str]>)] = &[
        // Case-insensitive, listed as registered, in order of first appearance.
        ("hi @bob and @ALICE", Some(&["Bob", "alice"])),
        ("@alice @alice @Bob @BOB", Some(&["alice", "Bob"])),
        // After a character that is not a username character.
        ("(@carol_x), @dave-1!", Some(&["carol_x", "dave-1"])),
        ("@@alice", Some(&["alice"])),
        ("line\n@bob", Some(&["Bob"])),
        // After a username character: not a mention.
        ("mail x@alice.com", None),
        ("-@alice", None),
        ("a_@bob", None),
        // Followed by another username character: not this user.
        ("@alicex @bob_ @Bob-", None),
        // Not a member, or nobody at all.
        ("@erin @nobody", None),
        ("no one at all", None),
        ("@ alice", None),
        // Username characters are ASCII only: a letter outside [A-Za-z0-9_-] is not one.
        ("é@alice", Some(&["alice"])),
        ("@Bobé and @carol_xü", Some(&["Bob", "carol_x"])),
        // The text's own punctuation ends the name.
        ("@alice's turn, then @dave-1.", Some(&["alice", "dave-1"])),
    ];
    for (text, want) in cases {
        let want: Option<Vec<String>> = want.map(|w| w.iter().map(|s| s.to_string()).collect());
        let ack = post_msg(&mut wa, &lobby, text).await;
        assert_eq!(mentions(&ack), want, "{text:?}: {ack}");
        // Everyone's copy carries them, and so does history.
        let got = wb.next_where("entry", |f| f["seq"] == ack["seq"]).await;
        assert_eq!(mentions(&got), want, "bob's copy of {text:?}: {got}");
        let (entries, _) = history(s.addr, &t[1], &lobby).await;
        assert_eq!(
            mentions(entry_at(&entries, seq(&ack))),
            want,
            "history of {text:?}"
        );
    }

    // A member who left is no longer mentionable.
    assert_eq!(leave(s.addr, &t[3], &lobby).await.status, 204);
    let ack = post_msg(&mut wa, &lobby, "@dave-1 are you there? @carol_x").await;
    assert_eq!(mentions(&ack), Some(vec!["carol_x".to_string()]), "{ack}");
    s.stop().await;
}

#[tokio::test]
async fn at_most_twenty_mentions_each_once() {
    let s = start(&["--rate-limit", "0"]).await;
    let names: Vec<String> = (0..23).map(|i| format!("user{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let (lobby, t) = room_with(s.addr, &refs).await;
    let (mut w, _) = ws_hello(s.addr, &t[0]).await;
    // Reversed, each twice: user22, user21, ... user00, user22 ...
    let mut text: Vec<String> = names.iter().rev().map(|n| format!("@{n}")).collect();
    text.extend(names.iter().rev().map(|n| format!("@{}", n.to_uppercase())));
    let ack = post_msg(&mut w, &lobby, &text.join(" ")).await;
    let want: Vec<String> = names.iter().rev().take(20).cloned().collect();
    assert_eq!(mentions(&ack), Some(want), "{ack}");

    // The limit is on members listed: non-members and repeats do not use it up.
    let mut text: Vec<String> = (0..25).map(|i| format!("@stranger{i}")).collect();
    text.extend((0..25).map(|_| "@user05".to_string()));
    text.push("@user07".into());
    let ack = post_msg(&mut w, &lobby, &text.join(" ")).await;
    assert_eq!(
        mentions(&ack),
        Some(vec!["user05".to_string(), "user07".to_string()]),
        "{ack}"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_edit_carries_the_mentions_of_its_text_and_the_message_its_latest() {
    let s = start(&[]).await;
    let (lobby, t) = room_with(s.addr, &["alice", "bob", "carol"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let ack = post_msg(&mut wa, &lobby, "ping @bob").await;
    let m = seq(&ack);
    assert_eq!(mentions(&ack), Some(vec!["bob".to_string()]));

    let r = edit(s.addr, &t[0], &lobby, m, "ping @CAROL instead").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["kind"], "edit");
    assert_eq!(mentions(&r.json()), Some(vec!["carol".to_string()]));
    let (entries, _) = history(s.addr, &t[1], &lobby).await;
    let served = entry_at(&entries, m);
    assert_eq!(served["text"], "ping @CAROL instead");
    assert_eq!(
        mentions(served),
        Some(vec!["carol".to_string()]),
        "{served}"
    );

    // An edit to a text without mentions: none on the edit, none on the message.
    let r = edit(s.addr, &t[0], &lobby, m, "never mind").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(mentions(&r.json()), None, "{:?}", r.json());
    let (entries, _) = history(s.addr, &t[1], &lobby).await;
    assert_eq!(mentions(entry_at(&entries, m)), None);
    s.stop().await;
}

#[tokio::test]
async fn me_with_text_is_an_action_acknowledged_like_a_message() {
    let s = start(&[]).await;
    let (lobby, t) = room_with(s.addr, &["alice", "bob"]).await;
    let (mut wa, _) = ws_hello(s.addr, &t[0]).await;
    let (mut wb, _) = ws_hello(s.addr, &t[1]).await;

    let n = nonce();
    wa.say(&lobby, "/me waves at @bob", &n).await;
    let mut before = Vec::new();
    let ack = loop {
        let f = wa.next().await.expect("the action's acknowledgement");
        if f["nonce"] == n.as_str() {
            break f;
        }
        before.push(f);
    };
    assert_eq!(ack["type"], "entry", "no reply frame, an entry: {ack}");
    assert_eq!(ack["kind"], "message");
    assert_eq!(ack["action"], true);
    assert_eq!(ack["text"], "waves at @bob");
    assert_eq!(ack["from"], "alice");
    assert_eq!(mentions(&ack), Some(vec!["bob".to_string()]));
    // No reply came for it, before or after the acknowledgement.
    let after = frames_until_own(&mut wa, &lobby, "marker").await;
    assert!(
        before
            .iter()
            .chain(after.iter())
            .all(|f| f["type"] != "reply"),
        "{before:?} {after:?}"
    );

    let got = wb.next_where("entry", |f| f["seq"] == ack["seq"]).await;
    assert_eq!(
        (&got["action"], &got["text"]),
        (&json!(true), &json!("waves at @bob"))
    );
    assert!(got.get("nonce").is_none(), "only the sender's copy: {got}");
    let (entries, _) = history(s.addr, &t[1], &lobby).await;
    let served = entry_at(&entries, seq(&ack));
    assert_eq!(
        (&served["action"], &served["kind"]),
        (&json!(true), &json!("message"))
    );
    // A plain message is no action.
    let plain = post_msg(&mut wa, &lobby, "plain").await;
    assert!(
        plain.get("action").is_none() || plain["action"] == false,
        "{plain}"
    );

    // `/me` alone is still the v1 command: a reply about the user, no entry.
    let last = room_info(s.addr, &t[0], &lobby).await["last_seq"].clone();
    let f = ask(&mut wa, &lobby, "/me").await;
    assert_eq!(
        (&f["type"], &f["command"]),
        (&json!("reply"), &json!("me")),
        "{f}"
    );
    assert_eq!(room_info(s.addr, &t[0], &lobby).await["last_seq"], last);
    s.stop().await;
}
