//! The `[auth]` section: which mode checks callers, the tenants, and how runtime
//! tokens are verified (docs/security.md).

use super::*;

/// Who may use which namespace (docs/security.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// `trusted-network`, `tenant-token`, `github-jwt` or
    /// `tenant-token+github-jwt`.
    pub mode: AuthMode,
    pub tenants: Vec<TenantConfig>,
    pub github: GithubJwt,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's namespace (with github-jwt: the prefix of its namespaces).
    pub name: String,
    /// `sha256:<salt hex>:<digest hex>`, from `hoard auth new-token`.
    pub token_hash: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubJwt {
    pub issuer: String,
    /// Accepted `aud` values; empty: not checked.
    pub audience: Vec<String>,
    /// Where the signing keys are published; empty with public_key_files set:
    /// only those keys.
    pub jwks_url: String,
    /// PEM public keys trusted besides (or instead of) the JWKS.
    pub public_key_files: Vec<PathBuf>,
    /// Clock skew allowed on exp and nbf.
    #[serde(deserialize_with = "units::secs")]
    pub leeway_secs: u64,
    /// The claim naming the repository (the namespace).
    pub namespace_claim: String,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            mode: AuthMode::TrustedNetwork,
            tenants: Vec::new(),
            github: GithubJwt::default(),
        }
    }
}

impl Default for GithubJwt {
    fn default() -> Self {
        GithubJwt {
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: Vec::new(),
            jwks_url: String::new(),
            public_key_files: Vec::new(),
            leeway_secs: 60,
            namespace_claim: "repository_id".into(),
        }
    }
}

/// GitHub's key set, used when github-jwt has neither a JWKS URL nor key files.
pub const GITHUB_JWKS_URL: &str = "https://token.actions.githubusercontent.com/.well-known/jwks";

/// Who hoard checks (docs/security.md), as `auth.mode` names it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(from = "String", into = "String")]
pub enum AuthMode {
    #[default]
    TrustedNetwork,
    TenantToken,
    GithubJwt,
    TenantTokenAndGithubJwt,
    /// Not a mode: `validate` refuses it and names it.
    Unknown(String),
}

impl From<&str> for AuthMode {
    fn from(text: &str) -> AuthMode {
        let mut parts: Vec<&str> = text.split('+').map(str::trim).collect();
        parts.sort_unstable();
        match parts.as_slice() {
            ["trusted-network"] => AuthMode::TrustedNetwork,
            ["tenant-token"] => AuthMode::TenantToken,
            ["github-jwt"] => AuthMode::GithubJwt,
            ["github-jwt", "tenant-token"] => AuthMode::TenantTokenAndGithubJwt,
            _ => AuthMode::Unknown(text.trim().to_string()),
        }
    }
}

impl From<String> for AuthMode {
    fn from(text: String) -> AuthMode {
        AuthMode::from(text.as_str())
    }
}

impl From<AuthMode> for String {
    fn from(mode: AuthMode) -> String {
        mode.to_string()
    }
}

impl std::str::FromStr for AuthMode {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<AuthMode, Self::Err> {
        Ok(AuthMode::from(text))
    }
}

impl std::fmt::Display for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthMode::TrustedNetwork => "trusted-network",
            AuthMode::TenantToken => "tenant-token",
            AuthMode::GithubJwt => "github-jwt",
            AuthMode::TenantTokenAndGithubJwt => "tenant-token+github-jwt",
            AuthMode::Unknown(text) => text,
        })
    }
}

/// The auth modes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub tenant_token: bool,
    pub github_jwt: bool,
}

impl Auth {
    pub fn modes(&self) -> Result<Modes> {
        let (tenant_token, github_jwt) = match &self.mode {
            AuthMode::TrustedNetwork => (false, false),
            AuthMode::TenantToken => (true, false),
            AuthMode::GithubJwt => (false, true),
            AuthMode::TenantTokenAndGithubJwt => (true, true),
            AuthMode::Unknown(other) => bail!(
                "auth.mode {other:?} is unknown: trusted-network, tenant-token, github-jwt or tenant-token+github-jwt"
            ),
        };
        Ok(Modes {
            tenant_token,
            github_jwt,
        })
    }

    /// The JWKS URL to fetch, if any.
    pub fn jwks_url(&self) -> Option<String> {
        let g = &self.github;
        match (g.jwks_url.is_empty(), g.public_key_files.is_empty()) {
            (false, _) => Some(g.jwks_url.clone()),
            (true, true) => Some(GITHUB_JWKS_URL.into()),
            (true, false) => None,
        }
    }
}
