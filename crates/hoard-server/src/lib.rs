//! hoard's HTTP application. Each protocol surface is one module mapping requests
//! onto the core service; none of them holds policy.

mod auth;
mod blob;
pub mod fuzzing;
mod http_date;
mod twirp;
mod urls;

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
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/twirp/{*path}", any(twirp::handle))
        .route(blob::ROUTE, any(blob::handle))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}
