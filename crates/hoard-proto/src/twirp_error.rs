//! Twirp errors: a code, an HTTP status, and a JSON body `{"code", "msg", "meta"}`.
//!
//! The body is JSON even when the request was protobuf: the toolkit retries any
//! response whose body is not JSON, so every error must be JSON.

use serde::Serialize;
use std::collections::BTreeMap;

/// The Twirp error codes hoard answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwirpCode {
    InvalidArgument,
    Malformed,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    BadRoute,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    Internal,
    Unimplemented,
    Unavailable,
}

impl TwirpCode {
    pub fn as_str(self) -> &'static str {
        match self {
            TwirpCode::InvalidArgument => "invalid_argument",
            TwirpCode::Malformed => "malformed",
            TwirpCode::Unauthenticated => "unauthenticated",
            TwirpCode::PermissionDenied => "permission_denied",
            TwirpCode::NotFound => "not_found",
            TwirpCode::BadRoute => "bad_route",
            TwirpCode::AlreadyExists => "already_exists",
            TwirpCode::FailedPrecondition => "failed_precondition",
            TwirpCode::ResourceExhausted => "resource_exhausted",
            TwirpCode::Internal => "internal",
            TwirpCode::Unimplemented => "unimplemented",
            TwirpCode::Unavailable => "unavailable",
        }
    }

    /// The HTTP status Twirp v2 assigns to the code.
    pub fn http_status(self) -> u16 {
        match self {
            TwirpCode::InvalidArgument | TwirpCode::Malformed => 400,
            TwirpCode::Unauthenticated => 401,
            TwirpCode::PermissionDenied => 403,
            TwirpCode::NotFound | TwirpCode::BadRoute => 404,
            TwirpCode::AlreadyExists => 409,
            TwirpCode::FailedPrecondition => 412,
            TwirpCode::ResourceExhausted => 429,
            TwirpCode::Internal => 500,
            TwirpCode::Unimplemented => 501,
            TwirpCode::Unavailable => 503,
        }
    }
}

/// A Twirp error ready to be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwirpError {
    pub code: TwirpCode,
    pub msg: String,
    pub meta: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    msg: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    meta: &'a BTreeMap<String, String>,
}

impl TwirpError {
    pub fn new(code: TwirpCode, msg: impl Into<String>) -> Self {
        TwirpError {
            code,
            msg: msg.into(),
            meta: BTreeMap::new(),
        }
    }

    pub fn with_meta(mut self, key: &str, value: impl Into<String>) -> Self {
        self.meta.insert(key.to_string(), value.into());
        self
    }

    /// The JSON body of the error.
    pub fn to_json(&self) -> Vec<u8> {
        let body = Body {
            code: self.code.as_str(),
            msg: &self.msg,
            meta: &self.meta,
        };
        // Serialising a struct of strings cannot fail.
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"code\":\"internal\"}".to_vec())
    }
}

impl std::fmt::Display for TwirpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_code_and_message() {
        let e = TwirpError::new(TwirpCode::AlreadyExists, "taken");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["code"], "already_exists");
        assert_eq!(v["msg"], "taken");
        assert!(v.get("meta").is_none());
        assert_eq!(e.code.http_status(), 409);
    }

    #[test]
    fn statuses_follow_twirp() {
        assert_eq!(TwirpCode::BadRoute.http_status(), 404);
        assert_eq!(TwirpCode::Malformed.http_status(), 400);
        assert_eq!(TwirpCode::ResourceExhausted.http_status(), 429);
        assert_eq!(TwirpCode::FailedPrecondition.http_status(), 412);
    }
}
