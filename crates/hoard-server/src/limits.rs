//! Request limits applied before routing reaches a handler.

use crate::HttpLimits;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hoard_proto::azure::{error_xml, AzureCode};
use hoard_proto::twirp_error::{TwirpCode, TwirpError};

/// Refuses requests whose headers together exceed the limit with 431, in the
/// error format of the surface addressed (Twirp JSON or Azure XML).
pub async fn header_size(
    State(limits): State<HttpLimits>,
    request: Request,
    next: Next,
) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size <= limits.max_header_bytes {
        return next.run(request).await;
    }
    let msg = format!(
        "the request headers are {size} bytes; at most {} are allowed",
        limits.max_header_bytes
    );
    let path = request.uri().path();
    let twirp = path.starts_with("/twirp/") || path.starts_with("/t/");
    let (content_type, body) = if twirp {
        (
            "application/json",
            TwirpError::new(TwirpCode::Malformed, msg).to_json(),
        )
    } else {
        (
            "application/xml",
            error_xml(AzureCode::InvalidHeaderValue, &msg).into_bytes(),
        )
    };
    (
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        [(header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response()
}
