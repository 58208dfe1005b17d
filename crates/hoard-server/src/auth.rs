//! Who the caller is. Until token verification lands (the trust issue), hoard runs
//! as on a trusted network: one namespace, and the scopes a runtime token's `ac`
//! claim lists, read without verifying the signature. A request without such a
//! token reads and writes the scope `default`.

use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hoard_core::Caller;
use serde::Deserialize;

/// The namespace every entry belongs to until tenants are configured.
pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_SCOPE: &str = "default";

const READ: i64 = 1;
const WRITE: i64 = 2;

#[derive(Deserialize)]
struct Claims {
    /// A JSON string holding the list of scopes.
    ac: Option<String>,
}

#[derive(Deserialize)]
struct AccessScope {
    #[serde(rename = "Scope")]
    scope: String,
    #[serde(rename = "Permission")]
    permission: i64,
}

/// The scopes named by a runtime token's `ac` claim, if it has one.
fn scopes_from_token(token: &str) -> Option<(Vec<String>, Option<String>)> {
    let payload = token.split('.').nth(1)?;
    let raw = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Claims = serde_json::from_slice(&raw).ok()?;
    let list: Vec<AccessScope> = serde_json::from_str(&claims.ac?).ok()?;
    let read: Vec<String> = list
        .iter()
        .filter(|s| s.permission & READ != 0)
        .map(|s| s.scope.clone())
        .collect();
    let write = list
        .iter()
        .find(|s| s.permission & WRITE != 0)
        .map(|s| s.scope.clone());
    Some((read, write))
}

pub fn caller(headers: &HeaderMap) -> Caller {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match token.and_then(scopes_from_token) {
        Some((read_scopes, write_scope)) => Caller {
            namespace: DEFAULT_NAMESPACE.into(),
            read_scopes,
            write_scope,
        },
        None => Caller {
            namespace: DEFAULT_NAMESPACE.into(),
            read_scopes: vec![DEFAULT_SCOPE.into()],
            write_scope: Some(DEFAULT_SCOPE.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn reads_scopes_in_token_order() {
        let t = jwt(
            r#"{"ac":"[{\"Scope\":\"refs/heads/feat\",\"Permission\":3},{\"Scope\":\"refs/heads/main\",\"Permission\":1}]"}"#,
        );
        let (read, write) = scopes_from_token(&t).unwrap();
        assert_eq!(read, vec!["refs/heads/feat", "refs/heads/main"]);
        assert_eq!(write.as_deref(), Some("refs/heads/feat"));
    }

    #[test]
    fn anything_else_is_the_default_scope() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer not-a-jwt".parse().unwrap());
        assert_eq!(caller(&h).read_scopes, vec!["default"]);
        assert_eq!(
            caller(&HeaderMap::new()).write_scope.as_deref(),
            Some("default")
        );
    }
}
