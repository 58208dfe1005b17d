//! hoard's HTTP application. Each protocol surface is one module mapping requests
//! onto the core service; none of them holds policy.

pub mod auth;
mod blob;
pub mod connections;
pub mod flow;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod health;
mod http_date;
mod limits;
pub mod management;
pub mod metrics;
pub mod observe;
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
    /// Prometheus metrics; `None`: none kept.
    pub metrics: Option<Arc<metrics::Metrics>>,
    /// Whether `/metrics` is served here (not on a listener of its own).
    pub metrics_route: bool,
    /// One info line per request.
    pub access_log: bool,
    pub management: Arc<management::Management>,
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
    let mut app = Router::new()
        .route("/twirp/{*path}", any(twirp::handle))
        .route("/t/{token}/twirp/{*path}", any(twirp::handle_tenant))
        .route(blob::ROUTE, any(blob::handle))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(whoami::PATH, get(whoami::handle))
        .route("/t/{token}/_hoard/whoami", get(whoami::handle_tenant))
        .merge(management::routes());
    if state.metrics_route {
        app = app.route("/metrics", get(health::metrics));
    }
    #[cfg(feature = "fuzzing")]
    {
        // Proves that a panicking handler is answered, never served.
        app = app.route("/_hoard/test/panic", get(test_panic));
    }
    // The v1 API lives under whatever path its base URL has; any other path
    // goes to the results upstream.
    app.fallback(v1::handle)
        .layer(axum::middleware::from_fn_with_state(
            state.limits,
            limits::header_size,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            observe::panic_response,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

#[cfg(feature = "fuzzing")]
async fn test_panic() -> &'static str {
    panic!("a test panic")
}

/// `/metrics` alone, for a listener of its own.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .with_state(state)
}
