//! The legacy v1 REST API, `<base>/_apis/artifactcache/...`, as GHES, act,
//! Gitea/Forgejo runners, BuildKit with `version=1` and OpenDAL on GHES speak
//! it: on the same entries, scopes, limits and auth as v2 (an entry saved
//! through one restores through the other).
//!
//! Routed on the path's suffix, whatever comes before it (clients keep the
//! base URL's path): `/t/<token>` there is a tenant token, as for Twirp.
//! Refusals are JSON `{"message", "typeKey"}` with the statuses clients act
//! on: 409 for "exists or being written", 400 for bad input (never retried),
//! 503 with Retry-After for what may work again (the toolkit retries 502-504).

use crate::{flow, urls, AppState};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hoard_core::{BlobError, Caller, CoreError, Entry};
use hoard_proto::v1::{self as wire, Resource, RouteError};

/// Most entries the list resource answers with.
const LIST_LIMIT: i64 = 1000;
/// A refused chunk up to this size is read to its end before the answer.
const DRAIN_LIMIT: u64 = 128 * 1024 * 1024;

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// A refusal in the API's words.
struct V1Error {
    status: StatusCode,
    type_key: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl V1Error {
    fn new(status: StatusCode, type_key: &'static str, message: impl Into<String>) -> V1Error {
        V1Error {
            status,
            type_key,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> V1Error {
        V1Error::new(StatusCode::BAD_REQUEST, "ArgumentException", message)
    }

    fn retry_later(
        status: StatusCode,
        type_key: &'static str,
        message: impl Into<String>,
        secs: u64,
    ) -> V1Error {
        V1Error {
            retry_after: Some(secs),
            ..V1Error::new(status, type_key, message)
        }
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let body = wire::ErrorBody {
            message: self.message,
            type_key: self.type_key.to_string(),
        };
        let mut r = json(self.status, &body);
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

/// Core errors as v1 statuses. Unknown and foreign ids are 400, as for any
/// other reference to an upload the caller does not have.
fn v1_error(e: CoreError) -> V1Error {
    match e {
        CoreError::InvalidArgument(m)
        | CoreError::TooLarge(m)
        | CoreError::UnknownBlock(m)
        | CoreError::FailedPrecondition(m)
        | CoreError::Immutable(m)
        | CoreError::NotFound(m) => V1Error::bad_request(m),
        CoreError::Body(m) => {
            V1Error::bad_request(format!("the request body could not be read: {m}"))
        }
        CoreError::AlreadyExists(m) => V1Error::new(StatusCode::CONFLICT, wire::ALREADY_EXISTS, m),
        CoreError::PermissionDenied(m) => {
            V1Error::new(StatusCode::FORBIDDEN, "AccessDeniedException", m)
        }
        CoreError::Exhausted {
            message,
            retry_after_secs,
        } => V1Error::retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            message,
            retry_after_secs,
        ),
        CoreError::Blob(BlobError::Busy(m)) => V1Error::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            m,
            flow::RETRY_AFTER_SECS,
        ),
        e @ (CoreError::Store(_) | CoreError::Blob(_)) => {
            crate::metrics::storage_failure(&e);
            V1Error::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                "storage is unavailable; retry later",
                flow::RETRY_AFTER_SECS,
            )
        }
    }
}

fn busy(what: &str) -> V1Error {
    V1Error::retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailableException",
        format!("too many {what} in progress on this server; retry shortly"),
        flow::RETRY_AFTER_SECS,
    )
}

/// The router's fallback: a v1 call wherever its path puts the API; anything
/// else goes to the results upstream (without a tenant prefix), or is 404
/// without one.
pub async fn handle(State(app): State<AppState>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let Some(at) = path.find(&format!("/{}", wire::API_PATH)) else {
        let Some(upstream) = &app.upstream else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let own = tenant_prefix(&path).map_or(0, str::len);
        if let Some(tag) = crate::observe::tag(request.extensions()) {
            tag.route("passthrough", "forward");
        }
        return upstream.forward(&path[own..], request).await;
    };
    let prefix = &path[..at];
    let rest = &path[at + 1 + wire::API_PATH.len()..];
    let path_token = prefix
        .strip_prefix("/t/")
        .filter(|t| !t.is_empty() && !t.contains('/'));
    match respond(&app, rest, path_token, request).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(resource = rest, status = e.status.as_u16(), message = %e.message, "v1 call failed");
            } else {
                tracing::debug!(resource = rest, status = e.status.as_u16(), message = %e.message, "v1 call refused");
            }
            e.into_response()
        }
    }
}

/// `/t/<token>` at the start of `path`, when it is there and more follows.
fn tenant_prefix(path: &str) -> Option<&str> {
    let token = path.strip_prefix("/t/")?;
    let end = token.find('/')?;
    (end > 0).then(|| &path[..3 + end])
}

async fn respond(
    app: &AppState,
    rest: &str,
    path_token: Option<&str>,
    request: Request,
) -> Result<Response, V1Error> {
    let resource = wire::route(request.method().as_str(), rest).map_err(|e| match e {
        RouteError::NotFound(_) => {
            V1Error::new(StatusCode::NOT_FOUND, "NotFoundException", e.to_string())
        }
        RouteError::Method { .. } => V1Error::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedException",
            e.to_string(),
        ),
    })?;
    let tag = crate::observe::tag(request.extensions());
    if let Some(tag) = tag {
        tag.route("v1", resource.name());
    }
    // Who asks is settled before any body is read.
    let caller = app
        .auth
        .caller(request.headers(), path_token)
        .await
        .map_err(|u| V1Error::new(StatusCode::UNAUTHORIZED, "UnauthorizedException", u.0))?;
    if let Some(tag) = tag {
        tag.namespace(&caller.namespace);
    }
    match resource {
        Resource::Lookup => lookup(app, &caller, &request.into_parts().0).await,
        Resource::List => list(app, &caller, &request.into_parts().0).await,
        Resource::Reserve => reserve(app, &caller, request).await,
        Resource::Upload(id) => upload(app, &caller, id, request).await,
        Resource::Commit(id) => commit(app, &caller, id, request).await,
    }
}

/// The query's parameters by name (the first of each); values URL-decoded.
fn query_param(request: &Parts, name: &str) -> Option<String> {
    form_urlencoded::parse(request.uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn described(e: Entry, archive_location: Option<String>) -> wire::CacheEntry {
    wire::CacheEntry {
        cache_key: e.key,
        cache_version: e.version,
        scope: e.scope,
        creation_time: rfc3339(e.created_at),
        archive_location,
    }
}

async fn lookup(app: &AppState, caller: &Caller, request: &Parts) -> Result<Response, V1Error> {
    let keys = wire::split_keys(&query_param(request, "keys").unwrap_or_default());
    let Some((key, restore_keys)) = keys.split_first() else {
        return Err(V1Error::bad_request(
            "keys is required: one or more keys separated by commas",
        ));
    };
    let version = query_param(request, "version")
        .ok_or_else(|| V1Error::bad_request("version is required"))?;
    let svc = &app.service;
    let found = svc
        .lookup(caller, key, restore_keys, &version)
        .await
        .map_err(v1_error)?;
    if let Some(m) = &app.metrics {
        m.lookup(
            &caller.namespace,
            crate::metrics::lookup_result(key, found.as_ref()),
        );
    }
    let Some(entry) = found else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let location = match svc.direct_download_url(&entry).await {
        Some(url) => url,
        None => urls::signed_url(
            &urls::request_base(app, request),
            &svc.download_ref(entry.id),
        ),
    };
    Ok(json(StatusCode::OK, &described(entry, Some(location))))
}

async fn list(app: &AppState, caller: &Caller, request: &Parts) -> Result<Response, V1Error> {
    let key = query_param(request, "key").unwrap_or_default();
    let entries = app
        .service
        .list(caller, &key, &[], LIST_LIMIT)
        .await
        .map_err(v1_error)?;
    let caches: Vec<wire::CacheEntry> = entries.into_iter().map(|e| described(e, None)).collect();
    Ok(json(
        StatusCode::OK,
        &wire::ListResponse {
            total_count: caches.len(),
            artifact_caches: caches,
        },
    ))
}

/// A JSON body of an API call, bounded like a Twirp body.
async fn json_body<T: serde::de::DeserializeOwned>(
    app: &AppState,
    request: Request,
) -> Result<T, V1Error> {
    let body = flow::small_body(app, request.into_body(), app.limits.max_twirp_body_bytes)
        .await
        .map_err(V1Error::bad_request)?;
    serde_json::from_slice(&body)
        .map_err(|e| V1Error::bad_request(format!("the JSON body is not valid: {e}")))
}

async fn reserve(app: &AppState, caller: &Caller, request: Request) -> Result<Response, V1Error> {
    // Every upload place of this replica is taken: the client comes back
    // later instead of starting an upload that would be refused.
    if app.in_flight.uploads_full() {
        return Err(busy("uploads"));
    }
    let req: wire::ReserveRequest = json_body(app, request).await?;
    match app
        .service
        .reserve(caller, &req.key, &req.version, req.cache_size)
        .await
    {
        Ok(id) => Ok(json(
            StatusCode::CREATED,
            &wire::ReserveResponse { cache_id: id },
        )),
        // GitHub's wording: BuildKit looks for "already exists".
        Err(CoreError::AlreadyExists(_)) => Err(V1Error::new(
            StatusCode::CONFLICT,
            wire::ALREADY_EXISTS,
            format!(
                "Cache already exists. Scope: {}, Key: {}, Version: {}",
                caller.write_scope.as_deref().unwrap_or(""),
                req.key,
                req.version
            ),
        )),
        Err(e) => Err(v1_error(e)),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn content_range(headers: &HeaderMap) -> Result<(u64, u64), V1Error> {
    let value = headers
        .get(header::CONTENT_RANGE)
        .ok_or_else(|| V1Error::bad_request("Content-Range is required: bytes <first>-<last>/*"))?;
    let text = value
        .to_str()
        .map_err(|_| V1Error::bad_request("Content-Range is not text"))?;
    wire::parse_content_range(text).map_err(|e| V1Error::bad_request(e.to_string()))
}

async fn upload(
    app: &AppState,
    caller: &Caller,
    id: i64,
    request: Request,
) -> Result<Response, V1Error> {
    let checked = content_range(request.headers()).and_then(|(start, end)| {
        // A Content-Length, where sent, must agree with the range; chunked
        // bodies are counted as they arrive.
        match declared_length(request.headers()) {
            Some(n) if n != end - start + 1 => Err(V1Error::bad_request(format!(
                "Content-Length is {n} but Content-Range bytes {start}-{end} says {}",
                end - start + 1
            ))),
            _ => Ok((start, end)),
        }
    });
    let (start, end) = match checked {
        Ok(range) => range,
        Err(e) => {
            // Read (and drop) a chunk's worth first, so a client still sending
            // sees this answer instead of a reset connection.
            hoard_core::service::drain(&mut flow::upload_body(app, request), DRAIN_LIMIT).await;
            return Err(e);
        }
    };
    let _place = app.in_flight.upload().ok_or_else(|| busy("uploads"))?;
    let body = flow::upload_body(app, request);
    app.service
        .put_chunk(caller, id, start, end, body)
        .await
        .map_err(v1_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn commit(
    app: &AppState,
    caller: &Caller,
    id: i64,
    request: Request,
) -> Result<Response, V1Error> {
    let req: wire::CommitRequest = json_body(app, request).await?;
    app.service
        .commit_chunks(caller, id, req.size)
        .await
        .map_err(v1_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::tenant_prefix;

    #[test]
    fn a_tenant_prefix_is_a_token_with_more_path_after_it() {
        assert_eq!(tenant_prefix("/t/abc/twirp/x"), Some("/t/abc"));
        assert_eq!(tenant_prefix("/t/abc"), None);
        assert_eq!(tenant_prefix("/t//x"), None);
        assert_eq!(tenant_prefix("/twirp/x"), None);
    }
}
