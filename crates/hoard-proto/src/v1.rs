//! The legacy v1 REST cache API (`<base>/_apis/artifactcache/...`): its JSON
//! bodies, the `Content-Range` of its chunk uploads and its path's resources.
//! Field names are the clients' (camelCase).

use serde::{Deserialize, Serialize};

/// Where the API's resources start in a request path.
pub const API_PATH: &str = "_apis/artifactcache/";

/// `POST caches`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReserveRequest {
    pub key: String,
    pub version: String,
    /// Sent by @actions/cache only.
    #[serde(default)]
    pub cache_size: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReserveResponse {
    pub cache_id: i64,
}

/// `POST caches/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommitRequest {
    pub size: i64,
}

/// A hit of `GET cache`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    pub cache_key: String,
    pub cache_version: String,
    pub scope: String,
    /// RFC 3339.
    pub creation_time: String,
    /// Where the archive is downloaded from; omitted in listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_location: Option<String>,
}

/// `GET caches?key=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse {
    pub total_count: usize,
    pub artifact_caches: Vec<CacheEntry>,
}

/// Every refusal: `message` for people, `typeKey` for clients that branch on it
/// (BuildKit treats one containing `AlreadyExists` as "someone else saves it").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub message: String,
    pub type_key: String,
}

/// The `typeKey` of a reservation refused because the key and version exist or
/// are being written.
pub const ALREADY_EXISTS: &str = "ArtifactCacheItemAlreadyExistsException";

/// A resource of the API, from the path after [`API_PATH`] and the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `GET cache?keys=&version=`
    Lookup,
    /// `GET caches?key=`
    List,
    /// `POST caches`
    Reserve,
    /// `PATCH caches/{id}`
    Upload(i64),
    /// `POST caches/{id}`
    Commit(i64),
}

impl Resource {
    /// The call's name, as metrics and logs say it.
    pub fn name(&self) -> &'static str {
        match self {
            Resource::Lookup => "lookup",
            Resource::List => "list",
            Resource::Reserve => "reserve",
            Resource::Upload(_) => "upload",
            Resource::Commit(_) => "commit",
        }
    }
}

/// Why a path and method name no resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no such resource {0:?}")]
    NotFound(String),
    #[error("{method} is not allowed on {path:?}")]
    Method { method: String, path: String },
}

/// The resource `method` `path` (the part after [`API_PATH`]) names.
pub fn route(method: &str, path: &str) -> Result<Resource, RouteError> {
    let not_allowed = || RouteError::Method {
        method: method.to_string(),
        path: path.to_string(),
    };
    match path.trim_end_matches('/') {
        "cache" => match method {
            "GET" => Ok(Resource::Lookup),
            _ => Err(not_allowed()),
        },
        "caches" => match method {
            "GET" => Ok(Resource::List),
            "POST" => Ok(Resource::Reserve),
            _ => Err(not_allowed()),
        },
        other => {
            let id = other
                .strip_prefix("caches/")
                .and_then(cache_id)
                .ok_or_else(|| RouteError::NotFound(path.to_string()))?;
            match method {
                "PATCH" => Ok(Resource::Upload(id)),
                "POST" => Ok(Resource::Commit(id)),
                _ => Err(not_allowed()),
            }
        }
    }
}

/// A cache id as hoard hands them out: a positive decimal number.
fn cache_id(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n > 0)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentRangeError {
    #[error("Content-Range must be of the form bytes <first>-<last>/* (or /<total>)")]
    Syntax,
    #[error("Content-Range's last byte comes before its first")]
    Backwards,
}

/// `Content-Range: bytes <first>-<last>/<total or *>` of a chunk upload: the
/// first and last byte, both inclusive. A total, where sent, must contain the
/// range.
pub fn parse_content_range(value: &str) -> Result<(u64, u64), ContentRangeError> {
    let spec = value
        .trim()
        .strip_prefix("bytes")
        .ok_or(ContentRangeError::Syntax)?;
    let spec = spec
        .strip_prefix(' ')
        .or_else(|| spec.strip_prefix('='))
        .ok_or(ContentRangeError::Syntax)?
        .trim();
    let (range, total) = spec.split_once('/').ok_or(ContentRangeError::Syntax)?;
    let (a, b) = range.split_once('-').ok_or(ContentRangeError::Syntax)?;
    let (first, last) = (number(a)?, number(b)?);
    if last < first {
        return Err(ContentRangeError::Backwards);
    }
    match total.trim() {
        "*" => {}
        t if number(t)? > last => {}
        _ => return Err(ContentRangeError::Syntax),
    }
    Ok((first, last))
}

fn number(s: &str) -> Result<u64, ContentRangeError> {
    let s = s.trim();
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ContentRangeError::Syntax);
    }
    s.parse().map_err(|_| ContentRangeError::Syntax)
}

/// The keys of a lookup: `keys` is already URL-decoded; keys are separated by
/// commas (clients refuse keys containing one). Empty pieces are dropped.
pub fn split_keys(keys: &str) -> Vec<String> {
    keys.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "cache"), Ok(Resource::Lookup));
        assert_eq!(route("GET", "caches"), Ok(Resource::List));
        assert_eq!(route("POST", "caches"), Ok(Resource::Reserve));
        assert_eq!(route("PATCH", "caches/42"), Ok(Resource::Upload(42)));
        assert_eq!(route("POST", "caches/42"), Ok(Resource::Commit(42)));
        assert!(matches!(
            route("DELETE", "caches/42"),
            Err(RouteError::Method { .. })
        ));
        assert!(matches!(
            route("PUT", "cache"),
            Err(RouteError::Method { .. })
        ));
        for bad in ["caches/0", "caches/-1", "caches/+4", "caches/x", "other"] {
            assert!(
                matches!(route("POST", bad), Err(RouteError::NotFound(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            route("PATCH", "caches/99999999999999999999"),
            Err(RouteError::NotFound(_))
        ));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-9/*"), Ok((0, 9)));
        assert_eq!(parse_content_range("bytes 32-63/64"), Ok((32, 63)));
        assert_eq!(parse_content_range("bytes=5-5/*"), Ok((5, 5)));
        assert_eq!(
            parse_content_range("bytes 9-0/*"),
            Err(ContentRangeError::Backwards)
        );
        for bad in [
            "",
            "bytes",
            "bytes 0-9",
            "bytes -9/*",
            "bytes 0-/*",
            "bytes 0-9/9",
            "bytes a-9/*",
            "items 0-9/*",
            "bytes 0-99999999999999999999/*",
        ] {
            assert_eq!(
                parse_content_range(bad),
                Err(ContentRangeError::Syntax),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_split_on_commas() {
        assert_eq!(split_keys("a,b-,c"), vec!["a", "b-", "c"]);
        assert_eq!(split_keys("only"), vec!["only"]);
        assert!(split_keys("").is_empty());
    }

    #[test]
    fn bodies_use_the_clients_names() {
        let r: ReserveRequest =
            serde_json::from_str(r#"{"key":"k","version":"v","cacheSize":12}"#).unwrap();
        assert_eq!(r.cache_size, Some(12));
        let r: ReserveRequest = serde_json::from_str(r#"{"key":"k","version":"v"}"#).unwrap();
        assert_eq!(r.cache_size, None);
        assert_eq!(
            serde_json::to_string(&ReserveResponse { cache_id: 7 }).unwrap(),
            r#"{"cacheId":7}"#
        );
        let e = CacheEntry {
            cache_key: "k".into(),
            cache_version: "v".into(),
            scope: "s".into(),
            creation_time: "t".into(),
            archive_location: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"cacheKey":"k","cacheVersion":"v","scope":"s","creationTime":"t"}"#
        );
    }
}
