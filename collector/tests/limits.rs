//! Slow and hostile clients over real loopback sockets: header, body and idle timeouts, the
//! connection cap with room for health probes, a bounded drain on shutdown, body read errors
//! told apart, readiness that checks the store, and `/metrics` behind the admin token or on the
//! admin address. Every wait is bounded; the limits are set small so the tests are quick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use onramp_collector::serve::Limits;
use onramp_collector::store::sqlite::SqliteStore;
use onramp_collector::{AppState, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Server {
    addr: String,
    admin: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    dir: tempfile::TempDir,
}

async fn start(limits: Limits, configure: impl FnOnce(&mut Config), with_admin: bool) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("events.db")).expect("open store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let admin_listener = match with_admin {
        true => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind admin")),
        false => None,
    };
    let admin = admin_listener.as_ref().map(|l| l.local_addr().expect("addr").to_string());
    let mut config = Config::default();
    config.limits = limits;
    config.admin_listen = admin.clone();
    configure(&mut config);
    let state = AppState::new(config, Arc::new(store));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(onramp_collector::serve::serve(listener, admin_listener, state, async move {
        let _ = stopped.await;
    }));
    Server { addr, admin, stop: Some(stop), done, dir }
}

fn quick() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(800),
        body_timeout: Duration::from_millis(800),
        max_connections: 64,
        drain_timeout: Duration::from_secs(1),
    }
}

/// Reads until the server closes the connection (or `limit` passes); returns what arrived and
/// whether it was closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// One request on a new connection; the status line's code and the whole answer.
async fn request(addr: &str, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw.as_bytes()).await.expect("write");
    let (text, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n")
}

#[tokio::test]
async fn partial_headers_slow_bodies_and_idle_connections_are_cut_off() {
    let s = start(quick(), |_| {}, false).await;

    // Half a request line and header, then nothing.
    let mut slow_header = TcpStream::connect(&s.addr).await.expect("connect");
    slow_header.write_all(b"POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Le").await.expect("write");
    // One byte of a 100-byte body.
    let mut slow_body = TcpStream::connect(&s.addr).await.expect("connect");
    slow_body
        .write_all(b"POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n{")
        .await
        .expect("write");
    // A keep-alive connection that made one request and then sits idle.
    let mut idle = TcpStream::connect(&s.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.expect("write");

    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow_header, Duration::from_secs(5)).await;
    assert!(closed, "a connection stuck in its headers is closed");
    let (answer, closed) = read_until_closed(&mut slow_body, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "a body that stops arriving gets 408: {answer:?}");
    assert!(closed);
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200") && closed, "served, then closed when idle: {answer:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "all within the limits, not the 5 s read cap");
    let (_, metrics) = request(&s.addr, &get("/metrics", "")).await;
    assert!(metrics.contains("onramp_events_rejected_total{reason=\"timeout\"} 1"), "{metrics}");
}

#[tokio::test]
async fn the_connection_cap_keeps_room_for_health_checks() {
    let limits = Limits { max_connections: 12, header_timeout: Duration::from_secs(20), ..quick() };
    let s = start(limits, |_| {}, false).await;
    // Ten slow clients: the cap is 12 and the last 2 are kept for probes.
    let mut slow = Vec::new();
    for _ in 0..10 {
        let mut c = TcpStream::connect(&s.addr).await.expect("connect");
        c.write_all(b"GET /v1/report HTTP/1.1\r\nHo").await.expect("write");
        slow.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = request(&s.addr, &get("/healthz", "")).await;
    assert_eq!(status, 200, "a probe still gets through");
    let (status, answer) = request(&s.addr, &get("/v1/funnel", "Authorization: Bearer rt_demo\r\n")).await;
    assert_eq!(status, 503, "other requests wait for a free connection: {answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"));
    // Filling the reserve too: the next connection is closed at once, unanswered.
    let mut more = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(&s.addr).await.expect("connect");
        c.write_all(b"GET /v1/report HTTP/1.1\r\nHo").await.expect("write");
        more.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut over = TcpStream::connect(&s.addr).await.expect("connect");
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let (answer, closed) = read_until_closed(&mut over, Duration::from_secs(3)).await;
    assert!(closed && answer.is_empty(), "over the cap: closed unanswered, got {answer:?}");
    // Once slow clients leave, service is back.
    drop(slow);
    drop(more);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = request(&s.addr, &get("/v1/funnel", "Authorization: Bearer rt_demo\r\n")).await;
    assert_eq!(status, 200);
    let (_, metrics) = request(&s.addr, &get("/metrics", "")).await;
    assert!(metrics.contains("onramp_connections_refused_total 1"), "{metrics}");
}

#[tokio::test]
async fn shutdown_drains_in_bounded_time_even_with_a_slow_client_holding_on() {
    let limits = Limits { body_timeout: Duration::from_secs(60), header_timeout: Duration::from_secs(60), ..quick() };
    let mut s = start(limits, |_| {}, false).await;
    let mut slow = TcpStream::connect(&s.addr).await.expect("connect");
    slow.write_all(b"POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{").await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let _ = s.stop.take().map(|stop| stop.send(()));
    let result = tokio::time::timeout(Duration::from_secs(5), &mut s.done).await;
    assert!(result.is_ok(), "run() returned after the drain timeout rather than waiting for the client");
    assert!(started.elapsed() >= Duration::from_millis(900), "it did wait for the request in flight first");
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(2)).await;
    assert!(closed);
}

#[tokio::test]
async fn body_errors_are_told_apart_from_bodies_that_are_too_large() {
    let s = start(quick(), |_| {}, false).await;
    // A malformed chunk size line.
    let (status, answer) = request(
        &s.addr,
        "POST /v1/batch HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("malformed request body"), "{answer}");
    // A client that sends part of its body and disconnects.
    let mut c = TcpStream::connect(&s.addr).await.expect("connect");
    c.write_all(b"POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{\"writeKey\":").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(c);
    // A body that really is too large.
    let big = format!("POST /v1/batch HTTP/1.1\r\nHost: t\r\nContent-Length: 600000\r\nConnection: close\r\n\r\n{}", "x".repeat(600_000));
    let (status, _) = request(&s.addr, &big).await;
    assert_eq!(status, 413);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, metrics) = request(&s.addr, &get("/metrics", "")).await;
    for (reason, n) in [("bad_body", 1), ("aborted", 1), ("too_large", 1)] {
        assert!(metrics.contains(&format!("onramp_events_rejected_total{{reason=\"{reason}\"}} {n}\n")), "{reason}: {metrics}");
    }
}

#[tokio::test]
async fn readiness_checks_the_store() {
    let s = start(quick(), |_| {}, false).await;
    let (status, _) = request(&s.addr, &get("/readyz", "")).await;
    assert_eq!(status, 200);
    // The database file disappears under the collector (a lost volume, say).
    std::fs::remove_file(s.dir.path().join("events.db")).expect("remove db");
    let (status, answer) = request(&s.addr, &get("/readyz", "")).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("not ready"), "{answer}");
    let (status, _) = request(&s.addr, &get("/healthz", "")).await;
    assert_eq!(status, 200, "alive, just not ready");
}

#[tokio::test]
async fn metrics_need_the_admin_token_or_the_admin_address() {
    let s = start(quick(), |c| c.admin_token = Some("adm_secret".into()), false).await;
    let (status, _) = request(&s.addr, &get("/metrics", "")).await;
    assert_eq!(status, 401);
    let (status, _) = request(&s.addr, &get("/metrics", "Authorization: Bearer rt_demo\r\n")).await;
    assert_eq!(status, 401, "the read token is not enough");
    let (status, body) = request(&s.addr, &get("/metrics", "Authorization: Bearer adm_secret\r\n")).await;
    assert_eq!(status, 200);
    assert!(body.contains("onramp_events_accepted_total"));

    let s = start(quick(), |c| c.admin_token = Some("adm_secret".into()), true).await;
    let admin = s.admin.clone().expect("admin address");
    let (status, body) = request(&admin, &get("/metrics", "")).await;
    assert_eq!(status, 200, "open on the admin address");
    assert!(body.contains("onramp_events_accepted_total"));
    assert_eq!(request(&admin, &get("/readyz", "")).await.0, 200);
    assert_eq!(request(&admin, &get("/v1/funnel", "Authorization: Bearer rt_demo\r\n")).await.0, 404, "probes only");
    let (status, _) = request(&s.addr, &get("/metrics", "Authorization: Bearer adm_secret\r\n")).await;
    assert_eq!(status, 404, "not on the public address when an admin address serves it");
}
