//! Every request, seen from outside the handlers: a request id (taken from a
//! well-formed `x-request-id` or made up, and answered), a tracing span, the
//! bytes in and out, the metrics, and one access log line when the response
//! body ends or the client goes away. Panics in handlers become 500s here.
//!
//! Handlers name what a request was ([`Tag`]): the surface and operation, and
//! the namespace once the caller is known. Nothing with a secret in it (the
//! path of a tenant URL, the query of a signed URL, a token) is logged.

use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hoard_proto::twirp::{Method as TwirpMethod, CACHE_SERVICE};
use http_body::{Body as _, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;

pub const REQUEST_ID: &str = "x-request-id";

/// What a request was, as its handler says.
#[derive(Debug, Default)]
pub struct Tag {
    route: OnceLock<(&'static str, &'static str)>,
    namespace: OnceLock<String>,
}

impl Tag {
    /// The request's surface (twirp, blob, v1, ...) and operation.
    pub fn route(&self, surface: &'static str, operation: &'static str) {
        let _ = self.route.set((surface, operation));
    }

    pub fn namespace(&self, namespace: &str) {
        let _ = self.namespace.set(namespace.to_string());
        tracing::Span::current().record("namespace", namespace);
    }
}

/// The tag of a request (each request has one once [`observe`] saw it).
pub fn tag(extensions: &axum::http::Extensions) -> Option<&Tag> {
    extensions.get::<Arc<Tag>>().map(Arc::as_ref)
}

/// What a path is, before (or without) a handler saying more.
fn classify(
    path: &str,
    method: &axum::http::Method,
    query: Option<&str>,
) -> (&'static str, &'static str) {
    let twirp = path.strip_prefix("/twirp/").or_else(|| {
        let rest = path.strip_prefix("/t/")?;
        rest.split_once('/')?.1.strip_prefix("twirp/")
    });
    if let Some(rest) = twirp {
        let (service, name) = rest.split_once('/').unwrap_or((rest, ""));
        if service != CACHE_SERVICE {
            return ("passthrough", "twirp");
        }
        return (
            "twirp",
            TwirpMethod::parse(name).map_or("unknown", TwirpMethod::name),
        );
    }
    if path.starts_with("/blob/") {
        let comp = query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "comp")
                .map(|(_, v)| v.into_owned())
        });
        let op = match (method.as_str(), comp.as_deref()) {
            ("PUT", Some("block")) => "put_block",
            ("PUT", Some("blocklist")) => "put_block_list",
            ("PUT", _) => "put_blob",
            ("GET", _) => "get_blob",
            ("HEAD", _) => "get_properties",
            _ => "other",
        };
        return ("blob", op);
    }
    match path {
        "/healthz" => ("health", "healthz"),
        "/readyz" => ("health", "readyz"),
        "/metrics" => ("metrics", "scrape"),
        _ if path.starts_with("/_hoard/api/")
            || path.starts_with("/repos/")
            || path.starts_with("/api/v3/") =>
        {
            ("management", "other")
        }
        _ if path.ends_with("/_hoard/whoami") => ("whoami", "whoami"),
        _ => ("other", "other"),
    }
}

/// A client's request id, if it is one we can log and echo as it is.
fn client_request_id(value: Option<&HeaderValue>) -> Option<String> {
    let v = value?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| v.to_string())
}

/// The middleware: wraps both bodies, runs the handler in the request's span,
/// and records everything once the response body is done with.
pub async fn observe(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = client_request_id(request.headers().get(REQUEST_ID))
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let tag = Arc::new(Tag::default());
    request.extensions_mut().insert(tag.clone());
    let method = request.method().clone();
    let path_route = classify(request.uri().path(), &method, request.uri().query());
    let received = Arc::new(AtomicU64::new(0));
    let request = request.map(|body| {
        Body::new(Counted {
            inner: body,
            count: Some(received.clone()),
            finish: None,
        })
    });
    let span = tracing::info_span!(
        "request",
        id = %id,
        surface = tracing::field::Empty,
        operation = tracing::field::Empty,
        namespace = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let (surface, operation) = tag.route.get().copied().unwrap_or(path_route);
    span.record("surface", surface);
    span.record("operation", operation);
    if let Ok(v) = HeaderValue::from_str(&id) {
        if surface == "blob" {
            // The Azure SDK reports this one with its errors.
            response.headers_mut().insert("x-ms-request-id", v.clone());
        }
        response.headers_mut().insert(REQUEST_ID, v);
    }
    let finish = Finish {
        app,
        tag,
        id,
        method,
        surface,
        operation,
        status: response.status(),
        start,
        received,
        sent: 0,
        length: response
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .or_else(|| response.body().size_hint().exact()),
    };
    response.map(|body| {
        Body::new(Counted {
            inner: body,
            count: None,
            finish: Some(finish),
        })
    })
}

/// What is recorded when a response is done with.
struct Finish {
    app: AppState,
    tag: Arc<Tag>,
    id: String,
    method: axum::http::Method,
    surface: &'static str,
    operation: &'static str,
    status: StatusCode,
    start: Instant,
    received: Arc<AtomicU64>,
    sent: u64,
    /// The body's length when it is known in advance (Content-Length).
    length: Option<u64>,
}

impl Finish {
    fn record(self, ended: bool) {
        let seconds = self.start.elapsed().as_secs_f64();
        let received = self.received.load(Ordering::Relaxed);
        if let Some(metrics) = &self.app.metrics {
            metrics.request(
                self.surface,
                self.operation,
                self.status.as_str(),
                seconds,
                received,
                self.sent,
            );
        }
        if !self.app.access_log {
            return;
        }
        let namespace = self.tag.namespace.get().map_or("", String::as_str);
        tracing::info!(
            id = %self.id,
            method = %self.method,
            surface = self.surface,
            operation = self.operation,
            status = self.status.as_u16(),
            received,
            sent = self.sent,
            ms = (seconds * 1000.0).round() as u64,
            namespace,
            complete = ended,
            "request"
        );
    }
}

/// A body passed through as it is, counting its data bytes: a request body
/// adds them to `count`, a response body to its `finish`, which is recorded
/// when the body ends or is dropped (the client went away).
struct Counted {
    inner: Body,
    count: Option<Arc<AtomicU64>>,
    finish: Option<Finish>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                if let Some(count) = &self.count {
                    count.fetch_add(n, Ordering::Relaxed);
                }
                if let Some(f) = &mut self.finish {
                    f.sent += n;
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = self.finish.take() {
                    f.record(true);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            // A body of known length is dropped once its last byte is out,
            // without a last poll; an empty one may never be polled at all.
            let ended = self.inner.is_end_stream() || f.length == Some(f.sent);
            f.record(ended);
        }
    }
}

/// A handler's panic as a 500; the panic is logged in the request's span (with
/// its id), the message is not sent.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into());
    tracing::error!(panic = %message, "a handler panicked; answered 500");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        r#"{"code":"internal","msg":"internal error"}"#,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn paths_are_classified_without_their_secrets() {
        let post = Method::POST;
        assert_eq!(
            classify(
                "/twirp/github.actions.results.api.v1.CacheService/GetCacheEntryDownloadURL",
                &post,
                None
            ),
            ("twirp", "GetCacheEntryDownloadURL")
        );
        assert_eq!(
            classify(
                "/t/secret/twirp/github.actions.results.api.v1.CacheService/Nope",
                &post,
                None
            ),
            ("twirp", "unknown")
        );
        assert_eq!(
            classify(
                "/twirp/github.actions.results.api.v1.ArtifactService/X",
                &post,
                None
            ),
            ("passthrough", "twirp")
        );
        assert_eq!(
            classify(
                "/blob/cache/7",
                &Method::PUT,
                Some("comp=block&blockid=AA%3D%3D&sig=x")
            ),
            ("blob", "put_block")
        );
        assert_eq!(
            classify("/blob/cache/7", &Method::GET, Some("sig=x")),
            ("blob", "get_blob")
        );
    }

    #[test]
    fn only_plain_request_ids_are_taken() {
        let ok = HeaderValue::from_static("abc-123_x.y");
        assert_eq!(client_request_id(Some(&ok)).as_deref(), Some("abc-123_x.y"));
        let spaced = HeaderValue::from_static("a b");
        assert_eq!(client_request_id(Some(&spaced)), None);
        let long = HeaderValue::from_str(&"a".repeat(65)).unwrap();
        assert_eq!(client_request_id(Some(&long)), None);
    }
}
