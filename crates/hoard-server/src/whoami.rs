//! `GET /_hoard/whoami` (and `/t/<token>/_hoard/whoami`): what hoard makes of
//! the caller, so an operator proves a runner's wiring from inside one job
//! (`hoard runner check` asks it): which URL the job reached, the auth mode,
//! the namespace and scopes taken from its token, and whether it may restore
//! and save. Nothing secret is answered: no token, no signing material.

use crate::{urls, AppState};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The path, under a base URL, that answers.
pub const PATH: &str = "/_hoard/whoami";

#[derive(Serialize)]
struct WhoAmI {
    service: &'static str,
    version: &'static str,
    /// The base URL as the request reached it (or the configured public URL).
    reached: String,
    auth_mode: &'static str,
    namespace: String,
    read_scopes: Vec<String>,
    write_scope: Option<String>,
    can_restore: bool,
    can_save: bool,
}

#[derive(Serialize)]
struct Refusal {
    service: &'static str,
    auth_mode: &'static str,
    message: &'static str,
}

pub async fn handle(State(app): State<AppState>, request: Request) -> Response {
    answer(&app, None, request).await
}

pub async fn handle_tenant(
    State(app): State<AppState>,
    Path(token): Path<String>,
    request: Request,
) -> Response {
    answer(&app, Some(&token), request).await
}

async fn answer(app: &AppState, path_token: Option<&str>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let auth_mode = app.auth.mode_name();
    let caller = match app.auth.caller(&parts.headers, path_token).await {
        Ok(c) => c,
        Err(why) => {
            let body = Refusal {
                service: "hoard",
                auth_mode,
                message: why.0,
            };
            return json(StatusCode::UNAUTHORIZED, &body);
        }
    };
    let reached = urls::request_base(app, &parts);
    let body = WhoAmI {
        service: "hoard",
        version: env!("CARGO_PKG_VERSION"),
        reached: format!("{reached}/"),
        auth_mode,
        can_restore: !caller.read_scopes.is_empty(),
        can_save: caller.write_scope.is_some(),
        namespace: caller.namespace,
        read_scopes: caller.read_scopes,
        write_scope: caller.write_scope,
    };
    json(StatusCode::OK, &body)
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}
