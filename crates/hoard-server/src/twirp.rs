//! The v2 cache service over Twirp: `POST /twirp/<service>/<method>`, JSON or
//! protobuf in, the same encoding out, Twirp JSON errors.

use crate::{urls, AppState};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hoard_core::{CoreError, Entry};
use hoard_proto::twirp::{self as pb, Encoding, TwirpMessage, CACHE_SERVICE};
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
            tracing::error!(error = %e, "storage failure");
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
        let query = request.uri().query().map(|q| format!("?{q}"));
        let target = format!("/twirp/{path}{}", query.unwrap_or_default());
        return upstream.forward(&target, request).await;
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

/// The request body, at most `max` bytes, in Twirp's words when it fails.
async fn read_body(
    app: &AppState,
    request: Request,
    max: usize,
) -> Result<bytes::Bytes, TwirpError> {
    crate::flow::small_body(app, request, max)
        .await
        .map_err(|e| TwirpError::new(TwirpCode::Malformed, e))
}

async fn dispatch(
    app: &AppState,
    path: &str,
    path_token: Option<&str>,
    request: Request,
) -> Result<Response, TwirpError> {
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
    if request.method() != Method::POST {
        return Err(TwirpError::new(
            TwirpCode::BadRoute,
            format!("Twirp methods take POST, not {}", request.method()),
        ));
    }
    let headers = request.headers().clone();
    let authority = request.uri().authority().map(|a| a.as_str().to_string());
    let enc = headers
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
        .caller(&headers, path_token)
        .await
        .map_err(|u| TwirpError::new(TwirpCode::Unauthenticated, u.0))?;
    let max = app.limits.max_twirp_body_bytes;
    let body = read_body(app, request, max).await?;
    let svc = &app.service;
    match method {
        "CreateCacheEntry" => {
            let req: pb::CreateCacheEntryRequest = pb::decode(enc, &body)?;
            // Every upload place of this replica is taken: the client comes
            // back later instead of starting an upload that would be refused.
            if app.in_flight.uploads_full() {
                return Err(TwirpError::new(
                    TwirpCode::ResourceExhausted,
                    "too many uploads in progress on this server; retry shortly",
                )
                .with_meta(RETRY_AFTER, crate::flow::RETRY_AFTER_SECS.to_string()));
            }
            let signed = match svc.create(&caller, &req.key, &req.version).await {
                Ok(signed) => signed,
                // GitHub's answer to a read-only token, which the toolkit reports
                // as a policy denial rather than a failure.
                Err(CoreError::PermissionDenied(message)) => {
                    return Ok(reply(
                        enc,
                        &pb::CreateCacheEntryResponse {
                            ok: false,
                            signed_upload_url: String::new(),
                            message,
                        },
                    ))
                }
                Err(e) => return Err(twirp_error(e)),
            };
            let base = urls::base_url(app.public_url.as_deref(), &headers, authority.as_deref());
            Ok(reply(
                enc,
                &pb::CreateCacheEntryResponse {
                    ok: true,
                    signed_upload_url: urls::signed_url(&base, &signed),
                    message: String::new(),
                },
            ))
        }
        "FinalizeCacheEntryUpload" => {
            let req: pb::FinalizeCacheEntryUploadRequest = pb::decode(enc, &body)?;
            let id = svc
                .finalize(&caller, &req.key, &req.version, req.size_bytes)
                .await
                .map_err(twirp_error)?;
            Ok(reply(
                enc,
                &pb::FinalizeCacheEntryUploadResponse {
                    ok: true,
                    entry_id: id,
                    message: String::new(),
                },
            ))
        }
        "GetCacheEntryDownloadURL" => {
            let req: pb::GetCacheEntryDownloadUrlRequest = pb::decode(enc, &body)?;
            let found = svc
                .lookup(&caller, &req.key, &req.restore_keys, &req.version)
                .await
                .map_err(twirp_error)?;
            // A miss is not an error: ok=false with HTTP 200.
            let resp = match found {
                Some(e) => {
                    let url = match svc.direct_download_url(&e).await {
                        Some(url) => url,
                        None => {
                            let base = urls::base_url(
                                app.public_url.as_deref(),
                                &headers,
                                authority.as_deref(),
                            );
                            urls::signed_url(&base, &svc.download_ref(e.id))
                        }
                    };
                    pb::GetCacheEntryDownloadUrlResponse {
                        ok: true,
                        signed_download_url: url,
                        matched_key: e.key,
                    }
                }
                None => pb::GetCacheEntryDownloadUrlResponse::default(),
            };
            Ok(reply(enc, &resp))
        }
        "LookupCacheEntry" => {
            let req: pb::LookupCacheEntryRequest = pb::decode(enc, &body)?;
            let found = svc
                .lookup(&caller, &req.key, &req.restore_keys, &req.version)
                .await
                .map_err(twirp_error)?;
            Ok(reply(
                enc,
                &pb::LookupCacheEntryResponse {
                    exists: found.is_some(),
                    entry: found.map(to_entry),
                },
            ))
        }
        "DeleteCacheEntry" => {
            let req: pb::DeleteCacheEntryRequest = pb::decode(enc, &body)?;
            let ids = svc.delete(&caller, &req.key).await.map_err(twirp_error)?;
            Ok(reply(
                enc,
                &pb::DeleteCacheEntryResponse {
                    ok: !ids.is_empty(),
                    entry_id: ids.first().copied().unwrap_or(0),
                },
            ))
        }
        "ListCacheEntries" => {
            let req: pb::ListCacheEntriesRequest = pb::decode(enc, &body)?;
            let entries = svc
                .list(&caller, &req.key, &req.restore_keys, LIST_LIMIT)
                .await
                .map_err(twirp_error)?;
            Ok(reply(
                enc,
                &pb::ListCacheEntriesResponse {
                    entries: entries.into_iter().map(to_entry).collect(),
                },
            ))
        }
        other => Err(TwirpError::new(
            TwirpCode::BadRoute,
            format!("unknown method {other} of {CACHE_SERVICE}"),
        )),
    }
}
