//! Tenant tokens: the operator configures each tenant with a salted SHA-256 of its
//! token (`sha256:<salt hex>:<digest hex>`), never the token itself. Tokens are
//! random secrets of 32 bytes, so a fast hash with a salt is enough; a slow
//! password hash would only cost time on every request.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configured hash of one tenant's token.
#[derive(Clone)]
pub struct TokenHash {
    salt: Vec<u8>,
    digest: [u8; 32],
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

fn digest(salt: &[u8], token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(token.as_bytes());
    h.finalize().into()
}

impl TokenHash {
    /// Parses `sha256:<salt hex>:<digest hex>`.
    pub fn parse(s: &str) -> Result<TokenHash, String> {
        let bad = || {
            "a token hash looks like sha256:<salt hex>:<64 hex digits> (see `hoard auth hash-token`)".to_string()
        };
        let rest = s.trim().strip_prefix("sha256:").ok_or_else(bad)?;
        let (salt, d) = rest.split_once(':').ok_or_else(bad)?;
        let salt = hex::decode(salt).map_err(|_| bad())?;
        let digest: [u8; 32] = hex::decode(d)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or_else(bad)?;
        if salt.len() < 8 {
            return Err("a token hash's salt must be at least 8 bytes".into());
        }
        Ok(TokenHash { salt, digest })
    }

    /// The hash of `token` with a fresh random salt.
    pub fn new(token: &str) -> TokenHash {
        let mut salt = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        TokenHash {
            digest: digest(&salt, token),
            salt,
        }
    }

    /// Whether `token` is the one hashed; constant time in the digest.
    pub fn matches(&self, token: &str) -> bool {
        bool::from(digest(&self.salt, token).ct_eq(&self.digest))
    }
}

impl std::fmt::Display for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sha256:{}:{}",
            hex::encode(&self.salt),
            hex::encode(self.digest)
        )
    }
}

/// A new random tenant token: 32 bytes, hex, with a recognisable prefix (so
/// secret scanners can be taught it).
pub fn new_token() -> String {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    format!("hoard_{}", hex::encode(raw))
}

/// A tenant: its name (the namespace, or the namespace prefix with github-jwt)
/// and its token's hash.
#[derive(Debug, Clone)]
pub struct Tenant {
    name: String,
    pub token: TokenHash,
}

impl Tenant {
    /// A tenant named `name`: letters, digits, `.`, `_` and `-` only. Names
    /// become namespaces (`<tenant>/<repository>` with github-jwt), so without
    /// a `/` two tenants' namespaces can never coincide.
    pub fn new(name: &str, token: TokenHash) -> Result<Tenant, String> {
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if name.is_empty() || !plain {
            return Err(format!(
                "tenant name {name:?}: use letters, digits, '.', '_' and '-' only"
            ));
        }
        Ok(Tenant {
            name: name.to_string(),
            token,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_plain() {
        for ok in ["team-a", "Team_1.prod"] {
            assert_eq!(Tenant::new(ok, TokenHash::new("t")).unwrap().name(), ok);
        }
        for bad in ["", "a/b", "a b", "ä", "../x/y"] {
            assert!(Tenant::new(bad, TokenHash::new("t")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hash_round_trip() {
        let token = new_token();
        let h = TokenHash::new(&token);
        let parsed = TokenHash::parse(&h.to_string()).unwrap();
        assert!(parsed.matches(&token));
        assert!(!parsed.matches("hoard_other"));
        assert!(!format!("{parsed:?}").contains(&hex::encode(parsed.digest)));
        assert!(TokenHash::parse("sha256:00:zz").is_err());
        assert!(TokenHash::parse("md5:0011223344556677:00").is_err());
        assert!(TokenHash::parse(&format!("sha256:00:{}", "0".repeat(64))).is_err());
    }
}
