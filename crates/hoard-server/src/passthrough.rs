//! The results passthrough: what a runner sends to its results URL that hoard
//! does not serve itself (the ArtifactService behind `actions/upload-artifact`
//! and `download-artifact`, any other Twirp service or path) is forwarded to the
//! upstream results service, so pointing `ACTIONS_RESULTS_URL` at hoard keeps
//! artifacts working.
//!
//! Bodies stream both ways and are never held whole (artifact calls carry no
//! size limit here); hop-by-hop headers are dropped, everything else goes as
//! sent (Authorization included) and comes back as answered. Nothing of the
//! forwarded traffic is logged beyond method, path and status.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use hoard_proto::twirp_error::{TwirpCode, TwirpError};
use std::time::Duration;

/// Where forwarded calls go and how long hoard waits for them.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Scheme and authority with an optional path prefix, no trailing `/`.
    base: String,
    client: reqwest::Client,
}

/// Headers that belong to one connection, not to the request (RFC 9110 7.6.1),
/// plus Host, which the upstream's own URL sets.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

/// Copies `from` without hop-by-hop headers or those the Connection header
/// names.
fn end_to_end(from: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut to = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        if HOP_BY_HOP.contains(name) || named.iter().any(|n| n == name.as_str()) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
    to
}

impl Upstream {
    /// `base` is the upstream's URL (`https://results.example/`); `timeout`
    /// bounds connecting and each wait for the upstream (its answer's head,
    /// then every piece of its body).
    pub fn new(base: &str, timeout: Duration) -> Result<Upstream, String> {
        let parsed = reqwest::Url::parse(base).map_err(|e| format!("{base:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!("{base:?} is not an http(s) URL"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            // The client's redirects are the client's to follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Upstream {
            base: base.trim_end_matches('/').to_string(),
            client,
        })
    }

    /// The upstream's host, for logs.
    pub fn host(&self) -> &str {
        let rest = self.base.split_once("://").map_or("", |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }

    /// Forwards `request` to `path` upstream (the caller has taken off what was
    /// hoard's own, such as a tenant prefix), with the request's query as sent.
    pub async fn forward(&self, path: &str, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let url = match parts.uri.query() {
            Some(q) => format!("{}{path}?{q}", self.base),
            None => format!("{}{path}", self.base),
        };
        let body = reqwest::Body::wrap_stream(body.into_data_stream());
        let sent = self
            .client
            .request(parts.method.clone(), url)
            .headers(end_to_end(&parts.headers))
            .body(body)
            .send()
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) => {
                // The error's URL would carry the query: say only what failed.
                let why = if e.is_timeout() {
                    "did not answer in time"
                } else if e.is_connect() {
                    "is unreachable"
                } else {
                    "failed"
                };
                tracing::warn!(upstream = self.host(), method = %parts.method, path = parts.uri.path(), "results upstream {why}");
                return unavailable(&format!(
                    "the results service upstream ({}) {why}; retry later",
                    self.host()
                ));
            }
        };
        tracing::debug!(upstream = self.host(), method = %parts.method, path = parts.uri.path(), status = answer.status().as_u16(), "forwarded");
        let mut response = Response::builder().status(answer.status());
        if let Some(h) = response.headers_mut() {
            *h = end_to_end(answer.headers());
        }
        let stream = answer.bytes_stream().map_err(std::io::Error::other);
        response
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
    }
}

fn unavailable(message: &str) -> Response {
    let e = TwirpError::new(TwirpCode::Unavailable, message);
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        e.to_json(),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Trace"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert(header::HOST, HeaderValue::from_static("hoard"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.append("x-many", HeaderValue::from_static("a"));
        h.append("x-many", HeaderValue::from_static("b"));
        let out = end_to_end(&h);
        let names: Vec<&str> = out.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["authorization", "x-many"]);
        assert_eq!(out.get_all("x-many").iter().count(), 2);
    }

    #[test]
    fn only_http_urls_are_upstreams() {
        let d = Duration::from_secs(1);
        assert!(Upstream::new("ftp://x/", d).is_err());
        assert!(Upstream::new("not a url", d).is_err());
        let u = Upstream::new("https://results.example:8443/base/", d).unwrap();
        assert_eq!(u.host(), "results.example:8443");
        assert_eq!(u.base, "https://results.example:8443/base");
    }
}
