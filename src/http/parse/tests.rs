//! The parser's table of requests, every split point of a few requests, and its linear work
//! when a request is dribbled.

use super::*;

enum Want {
    More,
    Fail(ParseError),
    /// Consumed byte count (`None` = the whole input) and a check on the request.
    Done(Option<usize>, fn(&Request) -> bool),
}
use Want::{Done, Fail, More};

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A GET whose request line is exactly `len` bytes ("GET /aaa HTTP/1.1").
fn long_line(len: usize) -> Vec<u8> {
    bytes(&format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(len - 14)
    ))
}

/// A GET whose header block is exactly `len` bytes: one padded header line.
fn big_block(len: usize) -> Vec<u8> {
    bytes(&format!(
        "GET / HTTP/1.1\r\nHost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(len - 18)
    ))
}

/// `n` headers, the first of them `Host`.
fn many_headers(n: usize) -> Vec<u8> {
    let lines: String = (1..n).map(|i| format!("h{i}: v\r\n")).collect();
    let lines = format!("Host: x\r\n{lines}");
    bytes(&format!("GET / HTTP/1.1\r\n{lines}\r\n"))
}

fn post(content_length: usize, body_len: usize) -> Vec<u8> {
    let mut buf = bytes(&format!(
        "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: {content_length}\r\n\r\n"
    ));
    buf.resize(buf.len() + body_len, b'x');
    buf
}

#[rustfmt::skip]
fn cases() -> Vec<(&'static str, Vec<u8>, Want)> {
    use ParseError::*;
    let bad = |reason| Fail(Malformed(reason));
    let get = |s: &str| bytes(&format!("GET / HTTP/1.1\r\nHost: x\r\n{s}\r\n"));
    vec![
        ("simple get", bytes("GET /api/v1/me HTTP/1.1\r\nHost: x\r\n\r\n"),
            Done(None, |r| r.method == "GET" && r.path == "/api/v1/me" && r.query.is_none())),
        ("post with body", bytes("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
            Done(None, |r| r.method == "POST" && r.body == b"hello")),
        ("body incomplete", bytes("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel"), More),
        ("head incomplete", bytes("GET / HTTP/1.1\r\nHost: x\r\n"), More),
        ("query string", bytes("GET /r/m?before=9&limit=5 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Done(None, |r| r.path == "/r/m" && r.query.as_deref() == Some("before=9&limit=5"))),
        ("path stays raw", bytes("GET /a%2Fb?x HTTP/1.1\r\nHost: x\r\n\r\n"),
            Done(None, |r| r.path == "/a%2Fb" && r.query.as_deref() == Some("x"))),
        ("pipelined", bytes("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
            Done(Some(28), |r| r.path == "/1")),
        ("pipelined after body", bytes("POST /1 HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhiGET /2"),
            Done(Some(50), |r| r.body == b"hi")),
        ("leading empty lines", bytes("\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), Done(None, |r| r.path == "/")),
        ("bare lf", bytes("GET / HTTP/1.1\nHost: x\n\n"), Done(None, |r| r.header("host") == Some("x"))),
        ("request line at limit", long_line(8192), Done(None, |r| r.path.len() == 8179)),
        ("request line over limit", long_line(8193), Fail(UriTooLong)),
        ("line over limit, no lf yet", vec![b'a'; 8193], Fail(UriTooLong)),
        ("line at limit, no lf yet", vec![b'a'; 8192], More),
        ("line at limit, cr only", long_line(8192)[..8193].to_vec(), More),
        ("empty lines count", [bytes(&"\r\n".repeat(4097)), long_line(20)].concat(), Fail(UriTooLong)),
        ("header block at limit", big_block(16384), Done(None, |r| r.headers.len() == 2)),
        ("header block over limit", big_block(16385), Fail(HeadersTooLarge)),
        ("block over limit, no blank line yet",
            [bytes("GET / HTTP/1.1\r\nx: "), vec![b'a'; 16384]].concat(), Fail(HeadersTooLarge)),
        ("64 headers", many_headers(64), Done(None, |r| r.headers.len() == 64)),
        ("65 headers", many_headers(65), Fail(HeadersTooLarge)),
        ("66 headers", many_headers(66), Fail(HeadersTooLarge)),
        ("body at limit", post(65536, 65536), Done(None, |r| r.body.len() == 65536)),
        ("body over limit, before it arrives", post(65537, 0), Fail(BodyTooLarge)),
        ("cl and te", get("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"),
            bad("both content-length and transfer-encoding")),
        ("te alone", get("Transfer-Encoding: chunked\r\n"), Fail(UnsupportedTransferEncoding)),
        ("cl not digits", get("Content-Length: abc\r\n"), bad("invalid content-length")),
        ("cl signed", get("Content-Length: +5\r\n"), bad("invalid content-length")),
        ("cl empty", get("Content-Length:\r\n"), bad("invalid content-length")),
        ("cl overflow", get("Content-Length: 99999999999999999999999\r\n"), bad("invalid content-length")),
        ("cl duplicate differing", get("Content-Length: 1\r\nContent-Length: 2\r\n"),
            bad("conflicting content-length values")),
        ("cl list differing", get("Content-Length: 1, 2\r\n"), bad("conflicting content-length values")),
        ("cl duplicate same", bytes("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok"),
            Done(None, |r| r.body == b"ok")),
        ("http/2 request line", bytes("GET / HTTP/2.0\r\n\r\n"), bad("unsupported http version")),
        ("space in header name", get("Bad Name: x\r\n"), bad("invalid header name")),
        ("binary garbage", bytes("\u{1}\u{2}\r\n\r\n"), bad("invalid token in request line")),
        ("1.1 keep-alive by default", bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Done(None, |r| r.keep_alive)),
        ("1.1 close", get("Connection: Upgrade, Close\r\n"), Done(None, |r| !r.keep_alive)),
        ("1.0 close by default", bytes("GET / HTTP/1.0\r\n\r\n"), Done(None, |r| !r.keep_alive)),
        ("1.0 keep-alive", bytes("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
            Done(None, |r| r.keep_alive)),
        ("no host", bytes("GET / HTTP/1.1\r\nX: y\r\n\r\n"), bad("missing host header")),
        ("two hosts", get("Host: y\r\n"), bad("more than one host header")),
        ("two hosts, 1.0", bytes("GET / HTTP/1.0\r\nHost: x\r\nhost: x\r\n\r\n"),
            bad("more than one host header")),
        ("1.0 without host", bytes("GET / HTTP/1.0\r\n\r\n"), Done(None, |r| r.header("host").is_none())),
        ("not http at all", vec![0x16, 0x03, 0x01, 0x02], bad("invalid token in request line")),
        ("header case-insensitive", get("X-Token:  abc \r\nx-token: second\r\n"), Done(None, |r| {
            r.header("X-TOKEN") == Some("abc") && r.header("x-token") == Some("abc")
                && r.headers[1].0 == "x-token" && r.header("missing").is_none()
        })),
        ("query_param decoding", bytes("GET /?q=a%20b+c&k%3D=v&q=2&bad=%zz&flag HTTP/1.1\r\nHost: x\r\n\r\n"),
            Done(None, |r| {
                r.query_param("q").as_deref() == Some("a b c")
                    && r.query_param("k=").as_deref() == Some("v")
                    && r.query_param("flag").as_deref() == Some("")
                    && r.query_param("bad").is_none()
                    && r.query_param("none").is_none()
            })),
    ]
}

#[test]
fn table() {
    for (name, input, want) in cases() {
        let got = parse(&input, &Limits::default());
        match (want, got) {
            (More, Ok(None)) => {}
            (Fail(e), Err(g)) => assert_eq!(e, g, "{name}"),
            (Done(consumed, check), Ok(Some((req, n)))) => {
                assert_eq!(n, consumed.unwrap_or(input.len()), "{name}: consumed");
                assert!(check(&req), "{name}: {:.300}", format!("{req:?}"));
            }
            (_, got) => panic!("{name}: unexpected {got:?}"),
        }
    }
}

#[test]
fn every_split_point() {
    let requests = [
        bytes("POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"),
        bytes("\r\n\nGET / HTTP/1.0\nConnection: keep-alive\n\n"),
        long_line(8192),
        big_block(16384),
        many_headers(64),
        post(65536, 65536),
    ];
    let limits = Limits::default();
    let tiny = Limits {
        max_request_line: 0,
        max_header_bytes: 0,
        max_headers: 0,
        max_body: 0,
    };
    for full in requests {
        // The reference parse has a pipelined request behind it, which must not leak in.
        let piped = [full.clone(), bytes("GET /next HTTP/1.1\r\nHost: x\r\n\r\n")].concat();
        let Ok(Some((want, n))) = parse(&piped, &limits) else {
            panic!("reference parse failed")
        };
        assert_eq!(n, full.len());
        let head_len = n - want.body.len();
        for k in 0..full.len() {
            let prefix = &full[..k];
            assert_eq!(parse(prefix, &limits), Ok(None), "prefix {k}");
            assert_eq!(head_complete(prefix), k >= head_len, "prefix {k}");
            let _ = parse(prefix, &tiny); // must not panic, whatever the limits
        }
        assert_eq!(parse(&full, &limits), Ok(Some((want.clone(), full.len()))));
        assert!(head_complete(&full));
        assert!(parse(&full, &tiny).is_err());

        // One parser fed a byte at a time sees the same request, then the next one.
        let mut parser = Parser::default();
        for k in 0..piped.len() {
            match parser.parse(&piped[..k], &limits) {
                Ok(None) => assert!(k < full.len(), "nothing at {k}"),
                Ok(Some((req, n))) => {
                    assert_eq!((k, n), (full.len(), full.len()));
                    assert_eq!(req, want);
                    break;
                }
                Err(e) => panic!("dribbled prefix {k}: {e}"),
            }
            assert_eq!(
                parser.in_body(),
                k >= head_len && k < full.len(),
                "prefix {k}"
            );
        }
        let rest = &piped[full.len()..];
        let next = parser
            .parse(rest, &limits)
            .map(|r| r.map(|(q, n)| (q.path, n)));
        assert_eq!(next, Ok(Some(("/next".to_owned(), rest.len()))));
    }
}

/// A request dribbled a byte at a time costs work proportional to its length: the line
/// searches resume where they stopped and httparse runs a fixed number of times.
#[test]
fn dribbling_costs_linear_work() {
    let limits = Limits::default();
    for full in [
        big_block(16384),
        many_headers(64),
        post(65536, 65536),
        long_line(8192),
    ] {
        let mut parser = Parser::default();
        for k in 1..=full.len() {
            let got = parser.parse(&full[..k], &limits).expect("valid request");
            assert_eq!(got.is_some(), k == full.len());
        }
        let work = parser.work();
        assert!(work.httparse_runs <= 3, "{work:?}");
        assert!(
            work.scanned <= full.len() + 3,
            "{work:?} for {} bytes",
            full.len()
        );

        // The same work as when the request arrives whole, give or take the extra runs.
        let mut whole = Parser::default();
        assert!(whole.parse(&full, &limits).is_ok_and(|r| r.is_some()));
        assert_eq!(whole.work().httparse_runs, 1);
        assert!(work.scanned <= whole.work().scanned + 3);
    }
}

#[test]
fn head_completion() {
    for (input, want) in [
        ("", false),
        ("\r\n\r\n", false),
        ("GET / HTTP/1.1\r\nHost: x\r\n", false),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r", false),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", true),
        ("\r\nGET / HTTP/1.1\n\n", true),
    ] {
        assert_eq!(head_complete(input.as_bytes()), want, "{input:?}");
    }
}
