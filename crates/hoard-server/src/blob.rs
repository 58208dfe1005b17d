//! The blob side behind signed URLs: the subset of Azure Block Blob that cache
//! clients use (Put Blob, Put Block, Put Block List, Get Blob, Get Blob Properties),
//! with Azure's response headers and XML errors.

use crate::{flow, http_date, AppState};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hoard_core::signing::{Operation, SignatureError};
use hoard_core::{BlobError, CoreError};
use hoard_proto::azure::{error_xml, AzureCode};
use hoard_proto::blocklist::{parse_block_list, validate_block_id, BlockListError};
use hoard_proto::range::{parse_range, RangeError};

pub const ROUTE: &str = "/blob/cache/{id}";

/// The service version hoard answers as; SDKs read it but do not require a match.
const MS_VERSION: &str = "2024-11-04";
/// 50,000 ids of up to 88 base64 characters plus XML: well under this.
const MAX_BLOCK_LIST_BYTES: usize = 8 * 1024 * 1024;
/// A refused body up to this size is read to the end before the answer is sent.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

struct AzureError {
    code: AzureCode,
    message: String,
    /// Answer with `Connection: close`.
    close: bool,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl AzureError {
    fn new(code: AzureCode, message: impl Into<String>) -> AzureError {
        AzureError {
            code,
            message: message.into(),
            close: false,
            retry_after: None,
        }
    }

    /// 503 ServerBusy with Retry-After: too much in flight on this replica.
    fn busy(what: &str) -> AzureError {
        AzureError {
            retry_after: Some(flow::RETRY_AFTER_SECS),
            ..AzureError::new(
                AzureCode::ServerBusy,
                format!("too many {what} in progress on this server; retry shortly"),
            )
        }
    }
}

/// Headers of every answer; `x-ms-request-id` is the request's id, set by
/// [`crate::observe`].
fn common_headers(headers: &mut HeaderMap) {
    headers.insert("x-ms-version", HeaderValue::from_static(MS_VERSION));
    if let Ok(v) = HeaderValue::from_str(&http_date::format_millis(hoard_core::now_millis())) {
        headers.insert(header::DATE, v);
    }
}

impl IntoResponse for AzureError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (
            status,
            [(header::CONTENT_TYPE, "application/xml")],
            error_xml(self.code, &self.message),
        )
            .into_response();
        common_headers(r.headers_mut());
        r.headers_mut().insert(
            "x-ms-error-code",
            HeaderValue::from_static(self.code.as_str()),
        );
        if self.close {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

fn azure_error(e: CoreError) -> AzureError {
    match e {
        CoreError::InvalidArgument(m) => AzureError::new(AzureCode::InvalidInput, m),
        CoreError::UnknownBlock(m) => AzureError::new(AzureCode::InvalidBlockList, m),
        CoreError::TooLarge(m) => AzureError::new(AzureCode::RequestBodyTooLarge, m),
        CoreError::NotFound(m) => AzureError::new(AzureCode::BlobNotFound, m),
        CoreError::Immutable(m) | CoreError::AlreadyExists(m) => {
            AzureError::new(AzureCode::BlobImmutable, m)
        }
        CoreError::FailedPrecondition(m) => AzureError::new(AzureCode::InvalidInput, m),
        CoreError::Body(m) => AzureError::new(AzureCode::InvalidInput, m),
        CoreError::PermissionDenied(m) => AzureError::new(AzureCode::AuthenticationFailed, m),
        // Blob operations are not rate limited; this is for completeness.
        CoreError::Exhausted { message, .. } => AzureError::new(AzureCode::ServerBusy, message),
        CoreError::Blob(BlobError::Busy(m)) => AzureError {
            retry_after: Some(flow::RETRY_AFTER_SECS),
            ..AzureError::new(AzureCode::ServerBusy, m)
        },
        e @ (CoreError::Store(_) | CoreError::Blob(_)) => {
            crate::metrics::storage_failure(&e);
            AzureError {
                retry_after: Some(flow::RETRY_AFTER_SECS),
                ..AzureError::new(AzureCode::ServerBusy, "storage is unavailable; retry later")
            }
        }
    }
}

/// The query parameters hoard reads; others (SDK extras like `timeout`) are ignored.
#[derive(Default)]
pub(crate) struct BlobQuery {
    pub(crate) sp: Option<String>,
    pub(crate) se: Option<String>,
    pub(crate) sig: Option<String>,
    pub(crate) comp: Option<String>,
    pub(crate) blockid: Option<String>,
}

pub(crate) fn parse_query(q: Option<&str>) -> BlobQuery {
    let mut out = BlobQuery::default();
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        let slot = match k.as_ref() {
            "sp" => &mut out.sp,
            "se" => &mut out.se,
            "sig" => &mut out.sig,
            "comp" => &mut out.comp,
            "blockid" => &mut out.blockid,
            _ => continue,
        };
        slot.get_or_insert_with(|| v.into_owned());
    }
    out
}

/// Checks the URL's signature for `op` on `entry_id`.
fn authorize(
    app: &AppState,
    q: &BlobQuery,
    op: Operation,
    entry_id: i64,
) -> Result<(), AzureError> {
    let denied = |m: &str| AzureError::new(AzureCode::AuthenticationFailed, m);
    let (Some(sp), Some(se), Some(sig)) = (q.sp.as_deref(), q.se.as_deref(), q.sig.as_deref())
    else {
        return Err(denied(
            "the URL is not signed (sp, se and sig are required)",
        ));
    };
    if Operation::parse(sp) != Some(op) {
        return Err(denied("the URL does not grant this operation"));
    }
    // Only the canonical spelling hoard writes (no sign, no leading zeros):
    // any other spelling of the same number is a changed URL.
    let expires: i64 = se
        .parse()
        .ok()
        .filter(|n: &i64| n.to_string() == se)
        .ok_or_else(|| denied("the URL's expiry is not a number in canonical form"))?;
    app.service
        .verify(op, entry_id, expires, sig)
        .map_err(|e| match e {
            SignatureError::Expired => denied("the signed URL has expired; request a new one"),
            SignatureError::Missing | SignatureError::Mismatch => {
                denied("the URL signature does not match")
            }
        })
}

pub async fn handle(
    State(app): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let result = match *request.method() {
        // A refused PUT may leave its body unread, and then the connection cannot
        // carry another request: say so, or a client reuses it and fails.
        Method::PUT => put(&app, &id, request).await.map_err(|mut e| {
            e.close = true;
            e
        }),
        Method::GET | Method::HEAD => get(&app, &id, request).await,
        _ => Err(AzureError::new(
            AzureCode::UnsupportedHttpVerb,
            "only PUT, GET and HEAD are supported on a blob",
        )),
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(blob = %id, code = e.code.as_str(), message = %e.message, "blob request refused");
            e.into_response()
        }
    }
}

fn entry_id(id: &str) -> Result<i64, AzureError> {
    let n = id
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| AzureError::new(AzureCode::BlobNotFound, "no such blob"))?;
    // The signature covers the id as hoard wrote it: `+7` or `007` is a
    // changed URL, not another spelling of entry 7.
    if n.to_string() != id {
        return Err(AzureError::new(
            AzureCode::AuthenticationFailed,
            "the URL signature does not match",
        ));
    }
    Ok(n)
}

fn created() -> Response {
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    common_headers(h);
    let now = hoard_core::now_millis();
    if let Ok(v) = HeaderValue::from_str(&format!("\"0x{now:X}\"")) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date::format_millis(now)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    h.insert(
        "x-ms-request-server-encrypted",
        HeaderValue::from_static("false"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, AzureError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                AzureError::new(
                    AzureCode::InvalidHeaderValue,
                    "Content-Length is not a number",
                )
            }),
    }
}

/// Reads a refused request's body to its end (at most `DRAIN_LIMIT` bytes)
/// without keeping it, so a client still sending sees the answer instead of a
/// reset connection.
async fn drain(app: &AppState, request: Request) {
    hoard_core::service::drain(&mut flow::upload_body(app, request), DRAIN_LIMIT).await;
}

async fn put(app: &AppState, id: &str, request: Request) -> Result<Response, AzureError> {
    let entry_id = entry_id(id)?;
    let q = parse_query(request.uri().query());
    authorize(app, &q, Operation::Upload, entry_id)?;
    let svc = &app.service;
    let max = svc.config().max_block_bytes;
    if let Some(n) = declared_length(request.headers())? {
        if n > max {
            // Read (and drop) a modest body first: a client still sending when the
            // connection closes sees a reset instead of this answer.
            if n <= DRAIN_LIMIT {
                drain(app, request).await;
            }
            return Err(AzureError::new(
                AzureCode::RequestBodyTooLarge,
                format!("the body is {n} bytes; at most {max} are accepted in one request"),
            ));
        }
    }
    match q.comp.as_deref() {
        Some("block") => {
            let block_id = q.blockid.as_deref().unwrap_or("");
            validate_block_id(block_id).map_err(|e| {
                AzureError::new(
                    AzureCode::InvalidQueryParameterValue,
                    format!("blockid: {e}"),
                )
            })?;
            let _place = app
                .in_flight
                .upload()
                .ok_or_else(|| AzureError::busy("uploads"))?;
            let body = flow::upload_body(app, request);
            svc.put_block(entry_id, block_id, body)
                .await
                .map_err(azure_error)?;
            Ok(created())
        }
        Some("blocklist") => {
            // Block lists are read whole: their bytes in memory are bounded
            // across all requests, by the declared length where there is one.
            let declared = declared_length(request.headers())?;
            let room = declared.map_or(MAX_BLOCK_LIST_BYTES, |n| {
                (n as usize).min(MAX_BLOCK_LIST_BYTES)
            });
            let Some(_room) = app.in_flight.block_list(room) else {
                // Read (and drop) the body first, so the client sees the 503.
                drain(app, request).await;
                return Err(AzureError::busy("block lists"));
            };
            let idle = app.in_flight.limits.body_idle_timeout;
            let read =
                tokio::time::timeout(idle, axum::body::to_bytes(request.into_body(), room.max(1)));
            let body = match read.await {
                Ok(Ok(body)) => body,
                Ok(Err(_)) => {
                    return Err(AzureError::new(
                        AzureCode::RequestBodyTooLarge,
                        "the block list could not be read or is too large",
                    ))
                }
                Err(_) => {
                    return Err(AzureError::new(
                        AzureCode::InvalidInput,
                        format!("the block list did not arrive within {} s", idle.as_secs()),
                    ))
                }
            };
            let ids = parse_block_list(&body, svc.config().max_blocks).map_err(|e| {
                let code = match e {
                    BlockListError::TooMany(_) => AzureCode::BlockListTooLong,
                    _ => AzureCode::InvalidXmlDocument,
                };
                AzureError::new(code, e.to_string())
            })?;
            svc.put_block_list(entry_id, &ids)
                .await
                .map_err(azure_error)?;
            Ok(created())
        }
        Some(other) => Err(AzureError::new(
            AzureCode::InvalidQueryParameterValue,
            format!("comp={other} is not supported"),
        )),
        None => {
            let blob_type = request
                .headers()
                .get("x-ms-blob-type")
                .and_then(|v| v.to_str().ok());
            if blob_type != Some("BlockBlob") {
                return Err(AzureError::new(
                    AzureCode::MissingRequiredHeader,
                    "Put Blob needs x-ms-blob-type: BlockBlob",
                ));
            }
            let _place = app
                .in_flight
                .upload()
                .ok_or_else(|| AzureError::busy("uploads"))?;
            let body = flow::upload_body(app, request);
            svc.put_blob(entry_id, body).await.map_err(azure_error)?;
            Ok(created())
        }
    }
}

async fn get(app: &AppState, id: &str, request: Request) -> Result<Response, AzureError> {
    let entry_id = entry_id(id)?;
    let q = parse_query(request.uri().query());
    authorize(app, &q, Operation::Download, entry_id)?;
    let blob = app.service.open_blob(entry_id).await.map_err(azure_error)?;
    let total = blob.entry.size as u64;
    let headers = request.headers();
    // x-ms-range wins over Range, as in Azure.
    let range_header = headers
        .get("x-ms-range")
        .or_else(|| headers.get(header::RANGE))
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let (status, start, end) = match range_header {
        None => (StatusCode::OK, 0, total),
        Some(text) => {
            let range = parse_range(text).map_err(|_| {
                AzureError::new(
                    AzureCode::InvalidHeaderValue,
                    "the range must be bytes=a-b, bytes=a- or bytes=-n",
                )
            })?;
            let (s, e) = range.resolve(total).map_err(|e| match e {
                RangeError::Unsatisfiable | RangeError::Syntax => AzureError::new(
                    AzureCode::InvalidRange,
                    format!("the range is not satisfiable for a blob of {total} bytes"),
                ),
            })?;
            (StatusCode::PARTIAL_CONTENT, s, e)
        }
    };
    let head = request.method() == Method::HEAD;
    let body = if head || start == end {
        Body::empty()
    } else {
        let place = app
            .in_flight
            .download()
            .ok_or_else(|| AzureError::busy("downloads"))?;
        let stream = app
            .service
            .read(&blob.entry, blob.parts, start, end)
            .await
            .map_err(azure_error)?;
        let idle = app.in_flight.limits.body_idle_timeout;
        Body::from_stream(flow::Download::new(stream, place, idle))
    };
    let mut r = Response::new(body);
    *r.status_mut() = if head { StatusCode::OK } else { status };
    let h = r.headers_mut();
    common_headers(h);
    let length = if head { total } else { end - start };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("x-ms-blob-type", HeaderValue::from_static("BlockBlob"));
    if !head && status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{}", start, end - 1, total)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    let tag = blob
        .entry
        .hash
        .rsplit(':')
        .next()
        .unwrap_or("")
        .get(..16)
        .unwrap_or("0");
    if let Ok(v) = HeaderValue::from_str(&format!("\"0x{}\"", tag.to_uppercase())) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date::format_millis(blob.entry.created_at)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    Ok(r)
}
