//! Rendering signed blob URLs. The shape is path-style Azure
//! (`/<account>/<container>/<blob>`) with a SAS-like query, which the Azure SDKs
//! and OpenDAL accept without adding their own authentication.

use axum::http::HeaderMap;
use hoard_core::service::SignedRef;

/// The base URL clients reach hoard at: configured, or from the request: a
/// proxy's `X-Forwarded-Host`, the `Host` header, or (HTTP/2, which has no Host
/// header) the `:authority` that hyper puts into the request URI.
pub fn base_url(public_url: Option<&str>, headers: &HeaderMap, authority: Option<&str>) -> String {
    if let Some(u) = public_url {
        return u.trim_end_matches('/').to_string();
    }
    let usable = |h: &&str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic());
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(axum::http::header::HOST))
        .and_then(|v| v.to_str().ok())
        .filter(usable)
        .or(authority.filter(usable))
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// The base URL of a request as hoard answers it: the configured public URL,
/// else the one the request reached.
pub fn request_base(app: &crate::AppState, parts: &axum::http::request::Parts) -> String {
    base_url(
        app.public_url.as_deref(),
        &parts.headers,
        parts.uri.authority().map(|a| a.as_str()),
    )
}

pub fn signed_url(base: &str, r: &SignedRef) -> String {
    format!(
        "{base}/blob/cache/{}?sp={}&se={}&sig={}",
        r.entry_id,
        r.op.as_str(),
        r.expires,
        r.signature
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_from_config_or_host() {
        let mut h = HeaderMap::new();
        h.insert("host", "10.0.0.5:8080".parse().unwrap());
        assert_eq!(base_url(None, &h, None), "http://10.0.0.5:8080");
        assert_eq!(
            base_url(Some("https://cache.example/"), &h, None),
            "https://cache.example"
        );
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(base_url(None, &h, None), "https://10.0.0.5:8080");
    }

    #[test]
    fn http2_authority_when_there_is_no_host_header() {
        let h = HeaderMap::new();
        assert_eq!(
            base_url(None, &h, Some("cache.internal:8080")),
            "http://cache.internal:8080"
        );
        assert_eq!(base_url(None, &h, None), "http://localhost");
    }
}
