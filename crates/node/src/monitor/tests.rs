//! The listener against a real unit: the routes answer, the event stream
//! starts with a snapshot, and a peer off loopback needs the token.

use super::*;
use crate::dispatch::service::{DispatchService, ServiceConfig};
use axum::extract::connect_info::MockConnectInfo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn unit(dir: &std::path::Path) -> DispatchService {
    let config = ServiceConfig::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
    DispatchService::bind(config).await.unwrap()
}

/// One HTTP/1.1 GET; the answer's head and body, or as much as came in
/// `wait` for a stream that does not end.
async fn get(addr: SocketAddr, path: &str, headers: &str, wait: Duration) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, conn.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn routes_answer_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let service = unit(dir.path()).await;
    let (addr, server) = bind(
        "127.0.0.1:0".parse().unwrap(),
        service.reader(),
        service.admin(),
    )
    .await
    .unwrap();
    tokio::spawn(server);
    let me = service.id().to_hex();
    let long = Duration::from_secs(5);
    for (path, want) in [
        ("/", "200 OK"),
        ("/assets/app.js", "EventSource"),
        ("/api/status", "\"hosts_online\":0"),
        ("/api/view?q=x&size=5", "\"total\":0"),
        ("/api/view?size=x", "400 Bad Request"),
        (&format!("/api/inspect/unit/{me}"), "\"is_self\":true"),
        ("/api/inspect/host/nothex", "400 Bad Request"),
        (
            &format!("/api/inspect/host/{}", "0".repeat(64)),
            "404 Not Found",
        ),
        ("/api/inspect/thing/x", "404 Not Found"),
        ("/metrics", "dem_dispatch_units 1"),
    ] {
        let answer = get(addr, path, "", long).await;
        assert!(answer.contains(want), "{path}: {answer}");
    }
    assert!(dir.path().join(auth::TOKEN_FILE).exists());
    // The stream opens with a snapshot at once.
    let answer = get(addr, "/api/events", "", Duration::from_millis(800)).await;
    assert!(answer.contains("text/event-stream"), "{answer}");
    assert!(answer.contains("event: snapshot"), "{answer}");
    assert!(answer.contains(&me), "{answer}");
}

#[tokio::test]
async fn a_peer_off_loopback_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let service = unit(dir.path()).await;
    let token = auth::load_or_create_token(dir.path()).unwrap();
    let monitor = Arc::new(Monitor {
        reader: service.reader(),
        token: token.clone(),
        latest: watch::Sender::new(None),
        built: std::sync::Mutex::new(None),
        watchers: Arc::new(Semaphore::new(WATCHERS_MAX)),
        metrics: UnitMetrics::new(),
    });
    // Every connection seems to come from another machine.
    let far: SocketAddr = "192.0.2.7:5555".parse().unwrap();
    let app = router(monitor).layer(MockConnectInfo(far));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let t = token.as_str();
    let wait = Duration::from_secs(5);
    for (path, headers, want) in [
        ("/api/status", String::new(), "401 Unauthorized"),
        ("/", String::new(), "401 Unauthorized"),
        ("/metrics", String::new(), "401 Unauthorized"),
        ("/api/status?token=wrong", String::new(), "401 Unauthorized"),
        (
            "/api/status",
            "Authorization: Bearer wrong\r\n".into(),
            "401",
        ),
        (
            "/api/status",
            format!("Authorization: Bearer {t}\r\n"),
            "200 OK",
        ),
        (&format!("/?token={t}"), String::new(), "200 OK"),
        ("/assets/style.css", String::new(), "200 OK"),
    ] {
        let answer = get(addr, path, &headers, wait).await;
        assert!(answer.contains(want), "{path} {headers}: {answer}");
    }
}

#[tokio::test]
async fn watchers_beyond_the_cap_are_refused_and_a_closed_one_frees_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let service = unit(dir.path()).await;
    let monitor = Arc::new(Monitor {
        reader: service.reader(),
        token: auth::load_or_create_token(dir.path()).unwrap(),
        latest: watch::Sender::new(None),
        built: std::sync::Mutex::new(None),
        watchers: Arc::new(Semaphore::new(1)),
        metrics: UnitMetrics::new(),
    });
    let app = router(monitor.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    // The first watcher holds the only place while its stream is open.
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    first
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 512];
    let n = first.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).contains("200 OK"));
    let second = get(addr, "/api/events", "", Duration::from_secs(5)).await;
    assert!(second.contains("503"), "{second}");
    assert_eq!(monitor.latest.receiver_count(), 1);
    drop(first);
    // The server notices the closed stream at its next write (a tick).
    let mut answer = String::new();
    for _ in 0..50 {
        answer = get(addr, "/api/events", "", Duration::from_millis(700)).await;
        if answer.contains("event: snapshot") {
            break;
        }
    }
    assert!(answer.contains("event: snapshot"), "{answer}");
}
