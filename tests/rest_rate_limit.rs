//! The per-user bucket for REST calls that change state (`--rest-rate-limit`,
//! `--rest-rate-burst`): a join/leave loop cannot flood a room's timeline.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{get, join, leave, post, room, start, user, Reply};
use serde_json::json;

fn assert_rate_limited(r: &Reply) -> u64 {
    assert_eq!(
        (r.status, r.code().as_str()),
        (429, "rate_limited"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let ms = r.retry_after_ms();
    assert!(ms <= 1000, "one token comes within a second at 5/s: {ms}");
    ms
}

/// Joins and leaves `id` until a call is refused (checked as the contract's 429); returns
/// how many passed and how long it took.
async fn until_refused(addr: SocketAddr, token: &str, id: &str) -> (u64, Duration) {
    let start = Instant::now();
    for i in 0..1000u64 {
        let r = if i % 2 == 0 {
            join(addr, token, id).await
        } else {
            leave(addr, token, id).await
        };
        if r.status == 429 {
            assert_rate_limited(&r);
            return (i, start.elapsed());
        }
        assert!(r.status == 200 || r.status == 204, "{:?}", r.json());
    }
    panic!("1000 join/leave calls and none refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_leave_loop_is_cut_at_the_burst() {
    // The test harness turns the bucket off; this test turns it back on, slow enough (one
    // token a second) that the loop below cannot be refilled by a busy machine.
    let s = start(&["--rest-rate-limit", "1", "--rest-rate-burst", "20"]).await;
    let owner = user(s.addr, "olga").await;
    let id = room(s.addr, &owner, "target").await;
    let spam = user(s.addr, "spam").await;
    // A burst of 20 passes (joins and leaves); then calls are refused.
    let (passed, elapsed) = until_refused(s.addr, &spam, &id).await;
    assert!(
        passed >= 20 && passed as f64 <= 20.0 + elapsed.as_secs_f64().ceil(),
        "{passed} calls passed in {elapsed:?}"
    );
    // A refused call changed nothing: the timeline holds the owner's join and one entry
    // per call that passed.
    let detail = get(s.addr, &format!("/api/v1/rooms/{id}"), Some(&owner)).await;
    assert_eq!(detail.json()["last_seq"], 1 + passed, "{:?}", detail.json());
    let wait = assert_rate_limited(
        &post(s.addr, "/api/v1/rooms", Some(&spam), json!({ "name": "x" })).await,
    );

    // Reading is not limited, nor is logging out, and other users have their own bucket.
    assert_eq!(get(s.addr, "/api/v1/rooms", Some(&spam)).await.status, 200);
    assert_eq!(get(s.addr, "/api/v1/me", Some(&spam)).await.status, 200);
    assert_eq!(join(s.addr, &owner, &id).await.status, 200);
    let other = user(s.addr, "fair").await;
    assert_eq!(join(s.addr, &other, &id).await.status, 200);

    // Once the bucket has refilled a token, the next call passes.
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let r = if passed % 2 == 0 {
        join(s.addr, &spam, &id).await
    } else {
        leave(s.addr, &spam, &id).await
    };
    assert!(r.status == 200 || r.status == 204, "{:?}", r.json());
    let second = common::login(s.addr, "spam", common::PASSWORD).await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    // The bucket is the user's, not the session's.
    assert_rate_limited(&leave(s.addr, &second, &id).await);
    let r = post(s.addr, "/api/v1/logout", Some(&spam), json!({})).await;
    assert_eq!(r.status, 204);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_is_on_by_default_and_0_turns_it_off() {
    let s = start(&["--rest-rate-limit", "5"]).await; // burst at its default
    let t = user(s.addr, "dora").await;
    let id = room(s.addr, &t, "loop").await;
    let other = user(s.addr, "dave").await;
    let (passed, elapsed) = until_refused(s.addr, &other, &id).await;
    assert!(
        passed >= 20 && passed as f64 <= 20.0 + (elapsed.as_secs_f64() * 5.0).ceil(),
        "the default burst is 20: {passed} calls passed in {elapsed:?}"
    );
    s.stop().await;

    let s = start(&["--rest-rate-limit", "0"]).await;
    let t = user(s.addr, "dina").await;
    let id = room(s.addr, &t, "loop").await;
    let other = user(s.addr, "dino").await;
    for _ in 0..30 {
        assert_eq!(join(s.addr, &other, &id).await.status, 200);
        assert_eq!(leave(s.addr, &other, &id).await.status, 204);
    }
    s.stop().await;
}
