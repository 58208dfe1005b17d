//! The v2 cache service over Twirp: `POST /twirp/<service>/<method>`, JSON or
//! protobuf in, the same encoding out, Twirp JSON errors.

use crate::{urls, AppState};
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method as HttpMethod, StatusCode};
use axum::response::{IntoResponse, Response};
use hoard_core::{Caller, CoreError, Entry};
use hoard_proto::twirp::{self as pb, Encoding, Method, TwirpMessage, CACHE_SERVICE};
use hoard_proto::twirp_error::{TwirpCode, TwirpError};

/// Most entries ListCacheEntries answers with.
const LIST_LIMIT: i64 = 1000;

/// The Twirp error's meta key whose value is also sent as `Retry-After`.
const RETRY_AFTER: &str = "retry_after";

fn error_response(e: &TwirpError) -> Response {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        e.to_json(),
    )
        .into_response();
    if let Some(v) = e
        .meta
        .get(RETRY_AFTER)
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn reply<T: TwirpMessage>(enc: Encoding, msg: &T) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, enc.content_type())],
        pb::encode(enc, msg),
    )
        .into_response()
}

/// Core errors in Twirp's words. Storage failures are `internal` (the toolkit
/// retries those) with the detail logged, not sent.
fn twirp_error(e: CoreError) -> TwirpError {
    match e {
        CoreError::InvalidArgument(m) | CoreError::TooLarge(m) | CoreError::UnknownBlock(m) => {
            TwirpError::new(TwirpCode::InvalidArgument, m)
        }
        CoreError::AlreadyExists(m) | CoreError::Immutable(m) => {
            TwirpError::new(TwirpCode::AlreadyExists, m)
        }
        CoreError::NotFound(m) => TwirpError::new(TwirpCode::NotFound, m),
        CoreError::FailedPrecondition(m) => TwirpError::new(TwirpCode::FailedPrecondition, m),
        CoreError::Body(m) => TwirpError::new(TwirpCode::Malformed, m),
        CoreError::PermissionDenied(m) => TwirpError::new(TwirpCode::PermissionDenied, m),
        CoreError::Exhausted {
            message,
            retry_after_secs,
        } => TwirpError::new(TwirpCode::ResourceExhausted, message)
            .with_meta(RETRY_AFTER, retry_after_secs.to_string()),
        e @ (CoreError::Store(_) | CoreError::Blob(_)) => {
            crate::metrics::storage_failure(&e);
            TwirpError::new(
                TwirpCode::Unavailable,
                "storage is unavailable; retry later",
            )
        }
    }
}

fn to_entry(e: Entry) -> pb::CacheEntry {
    pb::CacheEntry {
        key: e.key,
        hash: e.hash,
        size_bytes: e.size,
        scope: e.scope,
        version: e.version,
        created_at: Some(pb::Timestamp::from_millis(e.created_at)),
        last_accessed_at: Some(pb::Timestamp::from_millis(e.last_accessed_at)),
        expires_at: None,
    }
}

pub async fn handle(
    State(app): State<AppState>,
    Path(path): Path<String>,
    request: Request,
) -> Response {
    respond(&app, &path, None, request).await
}

/// The same under a base URL carrying a tenant token: `/t/<token>/twirp/...`.
pub async fn handle_tenant(
    State(app): State<AppState>,
    Path((token, path)): Path<(String, String)>,
    request: Request,
) -> Response {
    respond(&app, &path, Some(&token), request).await
}

async fn respond(
    app: &AppState,
    path: &str,
    path_token: Option<&str>,
    request: Request,
) -> Response {
    // Another service (the artifact service of the same results URL) is the
    // upstream's, with the path as the upstream knows it: no tenant prefix.
    let service = path.split('/').next().unwrap_or("");
    if let (Some(upstream), false) = (&app.upstream, service == CACHE_SERVICE) {
        return upstream.forward(&format!("/twirp/{path}"), request).await;
    }
    match dispatch(app, path, path_token, request).await {
        Ok(r) => r,
        Err(e) => {
            if e.code.http_status() >= 500 {
                tracing::warn!(path, error = %e, "twirp call failed");
            } else {
                tracing::debug!(path, error = %e, "twirp call refused");
            }
            error_response(&e)
        }
    }
}

/// The method a request names, or why it names none: Twirp routes on the
/// service, the method and POST before anything else.
fn route(path: &str, http_method: &HttpMethod) -> Result<Method, TwirpError> {
    let Some((service, method)) = path.split_once('/') else {
        return Err(TwirpError::new(
            TwirpCode::BadRoute,
            format!("no such route /twirp/{path}"),
        ));
    };
    if service != CACHE_SERVICE {
        return Err(TwirpError::new(
            TwirpCode::BadRoute,
            format!("unknown service {service}"),
        ));
    }
    if http_method != HttpMethod::POST {
        return Err(TwirpError::new(
            TwirpCode::BadRoute,
            format!("Twirp methods take POST, not {http_method}"),
        ));
    }
    Method::parse(method).ok_or_else(|| {
        TwirpError::new(
            TwirpCode::BadRoute,
            format!("unknown method {method} of {CACHE_SERVICE}"),
        )
    })
}

/// One authenticated call with its decoded-to-be body: what every method's
/// handler is given.
struct Call<'a> {
    app: &'a AppState,
    parts: &'a Parts,
    caller: Caller,
    enc: Encoding,
    body: bytes::Bytes,
}

impl Call<'_> {
    fn decode<T: TwirpMessage>(&self) -> Result<T, TwirpError> {
        pb::decode(self.enc, &self.body)
    }

    fn reply<T: TwirpMessage>(&self, msg: &T) -> Result<Response, TwirpError> {
        Ok(reply(self.enc, msg))
    }

    fn count_lookup(&self, key: &str, found: Option<&Entry>) {
        if let Some(m) = &self.app.metrics {
            m.lookup(
                &self.caller.namespace,
                crate::metrics::lookup_result(key, found),
            );
        }
    }

    /// The base URL signed URLs start with.
    fn base_url(&self) -> String {
        urls::request_base(self.app, self.parts)
    }
}

async fn dispatch(
    app: &AppState,
    path: &str,
    path_token: Option<&str>,
    request: Request,
) -> Result<Response, TwirpError> {
    let method = route(path, request.method())?;
    let (parts, body) = request.into_parts();
    let enc = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Encoding::from_content_type)
        .ok_or_else(|| {
            TwirpError::new(
                TwirpCode::BadRoute,
                "Content-Type must be application/json or application/protobuf",
            )
        })?;
    // Who asks is settled before the body is read.
    let caller = app
        .auth
        .caller(&parts.headers, path_token)
        .await
        .map_err(|u| TwirpError::new(TwirpCode::Unauthenticated, u.0))?;
    if let Some(tag) = crate::observe::tag(&parts.extensions) {
        tag.namespace(&caller.namespace);
    }
    let body = crate::flow::small_body(app, body, app.limits.max_twirp_body_bytes)
        .await
        .map_err(|e| TwirpError::new(TwirpCode::Malformed, e))?;
    let call = Call {
        app,
        parts: &parts,
        caller,
        enc,
        body,
    };
    match method {
        Method::CreateCacheEntry => create(call).await,
        Method::FinalizeCacheEntryUpload => finalize(call).await,
        Method::GetCacheEntryDownloadUrl => download_url(call).await,
        Method::LookupCacheEntry => lookup(call).await,
        Method::DeleteCacheEntry => delete(call).await,
        Method::ListCacheEntries => list(call).await,
    }
}

async fn create(call: Call<'_>) -> Result<Response, TwirpError> {
    let req: pb::CreateCacheEntryRequest = call.decode()?;
    // Every upload place of this replica is taken: the client comes back
    // later instead of starting an upload that would be refused.
    if call.app.in_flight.uploads_full() {
        return Err(TwirpError::new(
            TwirpCode::ResourceExhausted,
            "too many uploads in progress on this server; retry shortly",
        )
        .with_meta(RETRY_AFTER, crate::flow::RETRY_AFTER_SECS.to_string()));
    }
    let signed = match call
        .app
        .service
        .create(&call.caller, &req.key, &req.version)
        .await
    {
        Ok(signed) => signed,
        // GitHub's answer to a read-only token, which the toolkit reports as a
        // policy denial rather than a failure.
        Err(CoreError::PermissionDenied(message)) => {
            return call.reply(&pb::CreateCacheEntryResponse {
                ok: false,
                signed_upload_url: String::new(),
                message,
            })
        }
        Err(e) => return Err(twirp_error(e)),
    };
    call.reply(&pb::CreateCacheEntryResponse {
        ok: true,
        signed_upload_url: urls::signed_url(&call.base_url(), &signed),
        message: String::new(),
    })
}

async fn finalize(call: Call<'_>) -> Result<Response, TwirpError> {
    let req: pb::FinalizeCacheEntryUploadRequest = call.decode()?;
    let id = call
        .app
        .service
        .finalize(&call.caller, &req.key, &req.version, req.size_bytes)
        .await
        .map_err(twirp_error)?;
    call.reply(&pb::FinalizeCacheEntryUploadResponse {
        ok: true,
        entry_id: id,
        message: String::new(),
    })
}

async fn download_url(call: Call<'_>) -> Result<Response, TwirpError> {
    let req: pb::GetCacheEntryDownloadUrlRequest = call.decode()?;
    let svc = &call.app.service;
    let found = svc
        .lookup(&call.caller, &req.key, &req.restore_keys, &req.version)
        .await
        .map_err(twirp_error)?;
    call.count_lookup(&req.key, found.as_ref());
    // A miss is not an error: ok=false with HTTP 200.
    let Some(e) = found else {
        return call.reply(&pb::GetCacheEntryDownloadUrlResponse::default());
    };
    let url = match svc.direct_download_url(&e).await {
        Some(url) => url,
        None => urls::signed_url(&call.base_url(), &svc.download_ref(e.id)),
    };
    call.reply(&pb::GetCacheEntryDownloadUrlResponse {
        ok: true,
        signed_download_url: url,
        matched_key: e.key,
    })
}

async fn lookup(call: Call<'_>) -> Result<Response, TwirpError> {
    let req: pb::LookupCacheEntryRequest = call.decode()?;
    let found = call
        .app
        .service
        .lookup(&call.caller, &req.key, &req.restore_keys, &req.version)
        .await
        .map_err(twirp_error)?;
    call.count_lookup(&req.key, found.as_ref());
    call.reply(&pb::LookupCacheEntryResponse {
        exists: found.is_some(),
        entry: found.map(to_entry),
    })
}

async fn delete(call: Call<'_>) -> Result<Response, TwirpError> {
    let req: pb::DeleteCacheEntryRequest = call.decode()?;
    let ids = call
        .app
        .service
        .delete(&call.caller, &req.key)
        .await
        .map_err(twirp_error)?;
    call.reply(&pb::DeleteCacheEntryResponse {
        ok: !ids.is_empty(),
        entry_id: ids.first().copied().unwrap_or(0),
    })
}

async fn list(call: Call<'_>) -> Result<Response, TwirpError> {
    let req: pb::ListCacheEntriesRequest = call.decode()?;
    let entries = call
        .app
        .service
        .list(&call.caller, &req.key, &req.restore_keys, LIST_LIMIT)
        .await
        .map_err(twirp_error)?;
    call.reply(&pb::ListCacheEntriesResponse {
        entries: entries.into_iter().map(to_entry).collect(),
    })
}
