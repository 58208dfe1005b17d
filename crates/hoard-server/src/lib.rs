//! hoard's HTTP application. Each protocol surface is one module mapping requests
//! onto the core service; none of them holds policy.

pub mod auth;
mod blob;
pub mod connections;
pub mod flow;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod http_date;
mod limits;
pub mod passthrough;
mod twirp;
mod urls;
mod v1;
pub mod whoami;

use auth::Authenticator;
use axum::routing::{any, get};
use axum::Router;
use hoard_core::CacheService;
use std::sync::Arc;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<CacheService>,
    /// The base URL put into signed URLs; `None` derives it from each request.
    pub public_url: Option<String>,
    pub auth: Arc<Authenticator>,
    pub limits: HttpLimits,
    /// Uploads, downloads and block lists in flight.
    pub in_flight: Arc<flow::InFlight>,
    /// Where calls hoard does not serve go; `None` answers them 404.
    pub upstream: Option<Arc<passthrough::Upstream>>,
}

/// Limits on requests, before any handler reads them.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Twirp bodies are small (10 keys of 512 characters at most).
    pub max_twirp_body_bytes: usize,
    /// All header names and values together (a runtime token is ~1-2 KiB).
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_twirp_body_bytes: 256 * 1024,
            max_header_bytes: 32 * 1024,
        }
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/twirp/{*path}", any(twirp::handle))
        .route("/t/{token}/twirp/{*path}", any(twirp::handle_tenant))
        .route(blob::ROUTE, any(blob::handle))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(whoami::PATH, get(whoami::handle))
        .route("/t/{token}/_hoard/whoami", get(whoami::handle_tenant))
        // The v1 API lives under whatever path its base URL has; any other
        // path goes to the results upstream.
        .fallback(v1::handle)
        .layer(axum::middleware::from_fn_with_state(
            state.limits,
            limits::header_size,
        ))
        .with_state(state)
}
