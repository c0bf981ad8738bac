mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_members() {
    let s = start(&[]).await;
    let a = user(s.addr, "alice").await;
    let b = user(s.addr, "bob").await;
    let id = room(s.addr, &a, "general").await;
    assert_eq!(join(s.addr, &b, &id).await.status, 200);
    let (mut wa, _) = ws_hello(s.addr, &a).await;
    let (mut wb, hello) = ws_hello(s.addr, &b).await;
    assert_eq!(hello["rooms"][0]["id"], json!(id));
    wa.say(&id, "hi bob", "n1").await;
    let got = wb.next_where("entry", |f| f["kind"] == "message").await;
    assert_eq!(got["text"], "hi bob");
    assert!(got.get("nonce").is_none());
    let mine = wa.next_where("entry", |f| f["kind"] == "message").await;
    assert_eq!(mine["nonce"], "n1");
    s.stop().await;
}
