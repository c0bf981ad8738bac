//! The server's logs on standard error: one event a line, as text or JSON, at the level
//! asked for; logins name the user and the client address, never the password or token.

mod common;

use common::process::{start, TempDir};
use common::{
    get, login, post, register_with_code, setup_code_in, user, PASSWORD, SETUP_CODE_SAYS,
};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_name_start_logins_and_stop_without_secrets() {
    let tmp = TempDir::new("logs-text");
    let server = start(&tmp.data(), &[]);
    let token = user(server.addr, "alice").await;
    let wrong = post(
        server.addr,
        "/api/v1/login",
        None,
        json!({ "username": "alice", "password": "not the password at all" }),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let text = server.stderr_eventually_contains("login failed").await;
    let failed = text
        .lines()
        .find(|l| l.contains("login failed"))
        .expect("a failed-login line");
    assert!(
        failed.contains("alice") && failed.contains("127.0.0.1"),
        "{failed}"
    );
    assert!(failed.contains("WARN"), "{failed}");
    assert!(!text.contains("not the password at all"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains(&token), "the token is never logged: {text}");
    assert!(text.contains("recovered"), "recovery is logged: {text}");
    assert!(text.contains("started on 127.0.0.1:"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("INFO") && l.contains("login") && l.contains("alice")),
        "a successful login is logged: {text}"
    );
    let mut server = server;
    server.sigterm();
    let status = server.exited().await;
    assert!(status.success());
    let text = server.stderr_after_exit();
    assert!(text.contains("stopped"), "shutdown is logged: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_one_event_a_line_and_the_level_filters() {
    let tmp = TempDir::new("logs-json");
    let server = start(&tmp.data(), &["--log-format", "json"]);
    user(server.addr, "bob").await;
    let r = login(server.addr, "bob", "wrong password here").await;
    assert_eq!(r.status, 401);
    let text = server.stderr_eventually_contains("login failed").await;
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let failed = events
        .iter()
        .find(|e| e["code"] == "invalid_credentials")
        .expect("the failed login");
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["addr"], "127.0.0.1");
    assert!(failed["user"].as_str().unwrap().contains("bob"), "{failed}");
    assert!(events.iter().all(|e| e["timestamp"].is_string()));
    drop(server);

    // At `error`, neither the start nor the logins are written.
    let tmp = TempDir::new("logs-quiet");
    let server = start(&tmp.data(), &["--log-level", "error"]);
    user(server.addr, "carol").await;
    login(server.addr, "carol", "wrong password here").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(server.stderr(), "", "nothing at error level");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_end_close_is_logged_with_its_code_and_user() {
    let tmp = TempDir::new("logs-close");
    let server = start(&tmp.data(), &[]);
    let token = user(server.addr, "dora").await;
    let (mut ws, _) = common::ws_hello(server.addr, &token).await;
    let out = post(server.addr, "/api/v1/logout", Some(&token), json!({})).await;
    assert_eq!(out.status, 204);
    ws.closed().await;
    let text = server.stderr_eventually_contains("websocket closed").await;
    let line = text
        .lines()
        .find(|l| l.contains("websocket closed"))
        .unwrap();
    assert!(line.contains("4001") && line.contains("dora"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_logins_log_the_forwarded_address() {
    use tokio::io::AsyncWriteExt;
    let tmp = TempDir::new("logs-proxy");
    let server = start(&tmp.data(), &["--trusted-proxy", "127.0.0.1"]);
    user(server.addr, "carol").await;
    let body = json!({ "username": "carol", "password": "not the password at all" }).to_string();
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let req = format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let r = common::read_reply(&mut stream, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let text = server.stderr_eventually_contains("login failed").await;
    let failed = text.lines().find(|l| l.contains("login failed")).unwrap();
    assert!(failed.contains("203.0.113.7"), "{failed}");
    assert!(!failed.contains("6.6.6.6"), "{failed}");
}

/// While a name given to `--admin` has no account, each start writes a new admin setup code
/// at WARN, once, and only it registers that name; the code is never stored, and a start
/// where every admin name has its account writes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_setup_code_is_logged_while_an_admin_name_has_no_account() {
    let tmp = TempDir::new("logs-setup");
    let data = tmp.data();
    let flags = [
        "--registration",
        "closed",
        "--admin",
        "boss",
        "--admin",
        "Ops",
    ];
    let setup_line = |text: &str| {
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains(SETUP_CODE_SAYS))
            .map(str::to_string)
            .collect();
        assert_eq!(lines.len(), 1, "one line a start: {text}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
        lines[0].clone()
    };
    let register = |addr, name: &str, code: &str| {
        let body = json!({ "username": name, "password": PASSWORD, "invite_code": code });
        post(addr, "/api/v1/register", None, body)
    };

    let server = start(&data, &flags);
    let line = setup_line(&server.stderr_eventually_contains(SETUP_CODE_SAYS).await);
    assert!(
        line.contains("\"boss\"") && line.contains("\"ops\""),
        "{line}"
    );
    let first = setup_code_in(&line).expect("a code");
    assert!(
        first.len() >= 22
            && first
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "as long and URL-safe as an invite code: {first}"
    );
    let r = register(server.addr, "boss", "not the code").await;
    assert_eq!((r.status, r.code()), (403, "registration_closed".into()));
    let boss = register_with_code(server.addr, "boss", &first).await;
    let me = get(server.addr, "/api/v1/me", Some(&boss)).await;
    assert_eq!(me.json()["admin"], true, "{:?}", me.json());
    server.stop().await;

    // A new start: a new code, for the name still without an account; the old one is gone.
    let server = start(&data, &flags);
    let line = setup_line(&server.stderr_eventually_contains(SETUP_CODE_SAYS).await);
    assert!(line.contains("\"ops\"") && !line.contains("boss"), "{line}");
    let second = setup_code_in(&line).expect("a code");
    assert_ne!(first, second);
    let r = register(server.addr, "ops", &first).await;
    assert_eq!((r.status, r.code()), (403, "registration_closed".into()));
    register_with_code(server.addr, "ops", &second).await;
    server.stop().await;

    // Every admin name has its account: no code.
    let server = start(&data, &flags);
    let text = server.stderr_eventually_contains("started on").await;
    assert!(!text.contains(SETUP_CODE_SAYS), "{text}");
    server.stop().await;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for code in [&first, &second] {
            assert!(
                !text.contains(code.as_str()),
                "{} holds a setup code",
                path.display()
            );
        }
    }
}
