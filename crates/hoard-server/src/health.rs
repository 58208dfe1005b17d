//! Probes and scrapes: `/healthz` (liveness: the process answers), `/readyz`
//! (readiness: the database answers and is migrated, the blob store answers)
//! and `/metrics` (Prometheus text).

use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Longest a readiness probe waits for the stores; a store that takes longer
/// is as good as down for the requests that would be sent here.
const READY_TIMEOUT: Duration = Duration::from_secs(4);

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(app): State<AppState>) -> Response {
    let why = match tokio::time::timeout(READY_TIMEOUT, app.service.check_ready()).await {
        Ok(Ok(())) => return (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => {
            // The detail may name hosts; the probe's answer does not.
            tracing::warn!(error = %e, "not ready");
            match e {
                hoard_core::CoreError::Store(_) => "the database is unavailable",
                _ => "the blob storage is unavailable",
            }
        }
        Err(_) => {
            tracing::warn!("not ready: the stores did not answer in time");
            "the stores did not answer in time"
        }
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {why}\n"),
    )
        .into_response()
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    let Some(metrics) = &app.metrics else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(&app.service, &app.in_flight),
    )
        .into_response()
}
