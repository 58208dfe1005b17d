//! The scopes a runtime token's `ac` claim grants: a JSON *string* holding a list
//! of `{"Scope": "refs/heads/main", "Permission": 3}` (bits: 1 read, 2 write).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

const READ: i64 = 1;
const WRITE: i64 = 2;

/// Readable scopes in the token's order (the search order) and the writable one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes {
    pub read: Vec<String>,
    pub write: Option<String>,
}

#[derive(Deserialize)]
struct AccessScope {
    #[serde(rename = "Scope")]
    scope: String,
    #[serde(rename = "Permission")]
    permission: i64,
}

/// The scopes of an `ac` claim's value; `None` when it is not such a list.
pub fn from_ac_claim(ac: &str) -> Option<Scopes> {
    let list: Vec<AccessScope> = serde_json::from_str(ac).ok()?;
    let read = list
        .iter()
        .filter(|s| s.permission & READ != 0)
        .map(|s| s.scope.clone())
        .collect();
    let write = list
        .iter()
        .find(|s| s.permission & WRITE != 0)
        .map(|s| s.scope.clone());
    Some(Scopes { read, write })
}

#[derive(Deserialize)]
struct AcOnly {
    ac: Option<String>,
}

/// The scopes a JWT's `ac` claim names, read WITHOUT verifying the signature:
/// only for the trusted-network mode and inside a tenant.
pub fn unverified(token: &str) -> Option<Scopes> {
    let payload = token.split('.').nth(1)?;
    let raw = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: AcOnly = serde_json::from_slice(&raw).ok()?;
    from_ac_claim(&claims.ac?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scopes_in_token_order() {
        let payload = r#"{"ac":"[{\"Scope\":\"refs/heads/feat\",\"Permission\":3},{\"Scope\":\"refs/heads/main\",\"Permission\":1}]"}"#;
        let t = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload));
        let s = unverified(&t).unwrap();
        assert_eq!(s.read, vec!["refs/heads/feat", "refs/heads/main"]);
        assert_eq!(s.write.as_deref(), Some("refs/heads/feat"));
        assert_eq!(unverified("not-a-jwt"), None);
        assert_eq!(from_ac_claim("[]").unwrap().write, None);
        assert_eq!(from_ac_claim("{}"), None);
    }
}
