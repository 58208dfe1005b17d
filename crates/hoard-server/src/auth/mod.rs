//! Who the caller is: the namespace a request is confined to and the scopes it may
//! read and write, established by the configured modes (docs/security.md):
//!
//! - trusted-network (no mode configured): one namespace; scopes from the
//!   runtime token's `ac` claim read without verification.
//! - tenant-token: the namespace is the tenant whose token the client presents,
//!   in the base URL path (`/t/<token>/`) or, alone, as the bearer token.
//! - github-jwt: the bearer runtime token must verify; the namespace is its
//!   repository claim, the scopes its `ac` claim.
//! - both: the tenant token in the path AND a verified runtime token; the
//!   namespace is `<tenant>/<repository>`.

pub mod jwt;
pub mod scopes;
pub mod tenant;

use axum::http::HeaderMap;
use hoard_core::Caller;
use jwt::JwtVerifier;
use tenant::Tenant;

/// The namespace of the trusted-network mode.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The scope of a request without a runtime token naming scopes.
pub const DEFAULT_SCOPE: &str = "default";

/// The configured modes.
pub struct Authenticator {
    /// Some: a tenant token is required.
    tenants: Option<Vec<Tenant>>,
    /// Some: a verified runtime token is required.
    jwt: Option<JwtVerifier>,
}

/// Why a request was refused (401); safe to send and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthenticated(pub &'static str);

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Authenticator {
    pub fn new(tenants: Option<Vec<Tenant>>, jwt: Option<JwtVerifier>) -> Authenticator {
        Authenticator { tenants, jwt }
    }

    /// The trusted-network mode.
    pub fn trusted_network() -> Authenticator {
        Authenticator::new(None, None)
    }

    /// The mode's name, as `auth.mode` spells it.
    pub fn mode_name(&self) -> &'static str {
        match (&self.tenants, &self.jwt) {
            (None, None) => "trusted-network",
            (Some(_), None) => "tenant-token",
            (None, Some(_)) => "github-jwt",
            (Some(_), Some(_)) => "tenant-token+github-jwt",
        }
    }

    pub fn is_trusted_network(&self) -> bool {
        self.tenants.is_none() && self.jwt.is_none()
    }

    /// Fetches what verification needs ahead of the first request.
    pub async fn prepare(&self) {
        if let Some(j) = &self.jwt {
            j.prefetch().await;
        }
    }

    fn tenant(&self, presented: Option<&str>) -> Result<Option<&Tenant>, Unauthenticated> {
        let Some(tenants) = &self.tenants else {
            return Ok(None);
        };
        let token = presented.ok_or(Unauthenticated(
            "a tenant token is required (base URL http://<host>/t/<token>/ or a bearer token)",
        ))?;
        // Every tenant is compared, so the time taken does not tell which matched.
        let mut found = None;
        for t in tenants {
            if t.token.matches(token) && found.is_none() {
                found = Some(t);
            }
        }
        found
            .map(Some)
            .ok_or(Unauthenticated("the tenant token is not known"))
    }

    /// The caller of a request, from its headers and the tenant token of its path.
    pub async fn caller(
        &self,
        headers: &HeaderMap,
        path_token: Option<&str>,
    ) -> Result<Caller, Unauthenticated> {
        let bearer = bearer(headers);
        match &self.jwt {
            Some(verifier) => {
                // The bearer is the runtime token; a tenant token only in the path.
                let tenant = self.tenant(path_token)?;
                let token =
                    bearer.ok_or(Unauthenticated("a runtime token (bearer) is required"))?;
                let v = verifier.verify(token).await.map_err(Unauthenticated)?;
                let namespace = match tenant {
                    Some(t) => format!("{}/{}", t.name(), v.namespace),
                    None => v.namespace,
                };
                Ok(Caller {
                    namespace,
                    read_scopes: v.scopes.read,
                    write_scope: v.scopes.write,
                })
            }
            None => {
                let tenant = self.tenant(path_token.or(bearer))?;
                let namespace = tenant.map_or(DEFAULT_NAMESPACE, |t| t.name());
                // Within one namespace the token's own scopes are trusted as
                // given: a job can only reach its own namespace's branches.
                let scopes = bearer.and_then(scopes::unverified);
                Ok(match scopes {
                    Some(s) => Caller {
                        namespace: namespace.to_string(),
                        read_scopes: s.read,
                        write_scope: s.write,
                    },
                    None => Caller {
                        namespace: namespace.to_string(),
                        read_scopes: vec![DEFAULT_SCOPE.into()],
                        write_scope: Some(DEFAULT_SCOPE.into()),
                    },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenant::TokenHash;

    fn headers(bearer: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {bearer}").parse().unwrap());
        h
    }

    #[tokio::test]
    async fn trusted_network_is_one_namespace() {
        let a = Authenticator::trusted_network();
        let c = a.caller(&headers("not-a-jwt"), None).await.unwrap();
        assert_eq!(c.namespace, DEFAULT_NAMESPACE);
        assert_eq!(c.read_scopes, vec![DEFAULT_SCOPE]);
        let c = a.caller(&HeaderMap::new(), None).await.unwrap();
        assert_eq!(c.write_scope.as_deref(), Some(DEFAULT_SCOPE));
    }

    #[tokio::test]
    async fn tenants_by_path_or_bearer() {
        let a = Authenticator::new(
            Some(vec![
                Tenant::new("team-a", TokenHash::new("hoard_a")).unwrap(),
                Tenant::new("team-b", TokenHash::new("hoard_b")).unwrap(),
            ]),
            None,
        );
        let by_bearer = a.caller(&headers("hoard_b"), None).await.unwrap();
        assert_eq!(by_bearer.namespace, "team-b");
        let by_path = a
            .caller(&headers("hoard_b"), Some("hoard_a"))
            .await
            .unwrap();
        assert_eq!(by_path.namespace, "team-a");
        assert!(a.caller(&headers("hoard_c"), None).await.is_err());
        assert!(a.caller(&HeaderMap::new(), None).await.is_err());
        assert!(a.caller(&HeaderMap::new(), Some("")).await.is_err());
    }
}
