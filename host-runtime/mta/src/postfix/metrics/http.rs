//! The metrics listener: `GET /metrics` on its own address and thread, apart from the socketmap
//! port (Postfix's connections never wait behind a scrape).
//!
//! tiny_http, not hyper: one synchronous endpoint needs no async runtime on the listener's
//! thread, and tiny_http parses the requests (a local client of the port is as untrusted as any).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use super::Metrics;

/// The `Content-Type` of the text [`Metrics::encode`] writes (OpenMetrics 1.0, which Prometheus
/// scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The address cannot be listened on.
    #[error("listening for metrics on {address}: {cause}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The HTTP server could not take the socket.
    #[error("serving metrics on {address}: {cause}")]
    Serve {
        /// The address.
        address: SocketAddr,
        /// Why.
        cause: String,
    },
}

/// Serves `metrics` at `http://ADDRESS/metrics` on a thread of its own until the process ends;
/// the address bound (the port chosen when it was 0).
///
/// # Errors
///
/// When the address cannot be listened on.
pub fn spawn(address: &str, metrics: Arc<Metrics>) -> Result<SocketAddr, MetricsError> {
    let listener = TcpListener::bind(address).map_err(|cause| MetricsError::Listen {
        address: address.to_owned(),
        cause,
    })?;
    let bound = listener
        .local_addr()
        .map_err(|cause| MetricsError::Listen {
            address: address.to_owned(),
            cause,
        })?;
    let server =
        tiny_http::Server::from_listener(listener, None).map_err(|cause| MetricsError::Serve {
            address: bound,
            cause: cause.to_string(),
        })?;
    std::thread::Builder::new()
        .name("metrics".to_owned())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = respond(&metrics, request.method(), request.url());
                // A client that went away is no concern of the daemon's.
                let _ = request.respond(response);
            }
        })
        .map_err(|cause| MetricsError::Listen {
            address: address.to_owned(),
            cause,
        })?;
    Ok(bound)
}

/// The answer to one request.
fn respond(
    metrics: &Metrics,
    method: &tiny_http::Method,
    url: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let path = url.split('?').next().unwrap_or(url);
    let text = |status: u16, body: String, content_type: &str| {
        let response = tiny_http::Response::from_string(body).with_status_code(status);
        // The content types are constants, and well-formed headers.
        match tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
            Ok(header) => response.with_header(header),
            Err(()) => response,
        }
    };
    let plain = "text/plain; charset=utf-8";
    match (method, path) {
        (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => match metrics.encode() {
            Ok(body) => text(200, body, CONTENT_TYPE),
            Err(_) => text(500, "the metrics could not be encoded\n".to_owned(), plain),
        },
        (tiny_http::Method::Get | tiny_http::Method::Head, "/") => text(
            200,
            "tlsfallback: the metrics are at /metrics\n".to_owned(),
            plain,
        ),
        (tiny_http::Method::Get | tiny_http::Method::Head, _) => text(
            404,
            "not found: the metrics are at /metrics\n".to_owned(),
            plain,
        ),
        _ => text(405, "only GET and HEAD\n".to_owned(), plain),
    }
}
