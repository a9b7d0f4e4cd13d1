//! The HTTP listener of a daemon (`--http ADDR`, off unless given): today
//! `/metrics` in the Prometheus (OpenMetrics) text format. It reads only
//! counters and gauges, never a mailbox, so it is safe to scrape; it binds
//! where the operator says and nowhere by default.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// What `/metrics` answers: the text of the moment.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The content type of the OpenMetrics text that prometheus-client writes.
pub(crate) const METRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` and returns the bound address and the server, to spawn.
pub async fn bind(
    addr: SocketAddr,
    render: Render,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move { ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], render()).into_response() }
        }),
    );
    let server = async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the HTTP listener stopped: {e}");
        }
    };
    Ok((bound, server))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn metrics_are_served_and_other_paths_are_not_found() {
        let render: Render = Arc::new(|| "dem_up 1\n# EOF\n".to_owned());
        let (addr, server) = bind(SocketAddr::from(([127, 0, 0, 1], 0)), render)
            .await
            .unwrap();
        tokio::spawn(server);
        for (path, want) in [("/metrics", "200 OK"), ("/nothing", "404")] {
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            conn.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).await.unwrap();
            assert!(answer.contains(want), "{path}: {answer}");
            if path == "/metrics" {
                assert!(answer.contains("openmetrics-text"), "{answer}");
                assert!(answer.ends_with("dem_up 1\n# EOF\n"), "{answer}");
            }
        }
    }
}
