//! Verifying runtime tokens (the `github-jwt` mode): the signature against keys
//! from a JWKS URL (cached, refetched for an unknown key id) or PEM files, the
//! issuer, optionally the audience, and expiry with a small leeway. Only
//! asymmetric keys are ever used, so a token signed with HMAC under a public key
//! (or `alg: none`) cannot verify.

use super::scopes::{self, Scopes};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A fetched key set is used this long before it is fetched again.
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// Fetches (for unknown key ids or after a failure) at most this often.
const JWKS_RETRY: Duration = Duration::from_secs(30);
const JWKS_TIMEOUT: Duration = Duration::from_secs(10);

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// What the operator configures.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuer: String,
    /// Accepted audiences; empty: the audience is not checked.
    pub audience: Vec<String>,
    pub leeway_secs: u64,
    /// The claim naming the namespace (the repository).
    pub namespace_claim: String,
    pub jwks_url: Option<String>,
    /// Contents of PEM public key files.
    pub pem_keys: Vec<Vec<u8>>,
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algs: Vec<Algorithm>,
}

/// A verified token: its namespace and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub namespace: String,
    pub scopes: Scopes,
}

#[derive(Deserialize)]
struct Claims {
    ac: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

struct Jwks {
    url: String,
    http: reqwest::Client,
    state: RwLock<JwksState>,
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct JwksState {
    /// Shared with requests in flight, so a request does not copy the keys.
    keys: Arc<Vec<Key>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

pub struct JwtVerifier {
    config: JwtConfig,
    static_keys: Vec<Key>,
    jwks: Option<Jwks>,
}

fn pem_key(pem: &[u8]) -> Option<Key> {
    let (key, algs) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
        (k, RSA_ALGS.to_vec())
    } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        (k, vec![Algorithm::ES256, Algorithm::ES384])
    } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
        (k, vec![Algorithm::EdDSA])
    } else {
        return None;
    };
    Some(Key {
        kid: None,
        key,
        algs,
    })
}

/// A JWKS entry as a key; symmetric (`oct`) keys and unusable entries are skipped.
fn jwk_key(jwk: &Jwk) -> Option<Key> {
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGS.to_vec(),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let algs = match jwk.common.key_algorithm {
        Some(a) => {
            let a = Algorithm::from_str(&a.to_string()).ok()?;
            if !family.contains(&a) {
                return None;
            }
            vec![a]
        }
        None => family,
    };
    Some(Key {
        kid: jwk.common.key_id.clone(),
        key: DecodingKey::from_jwk(jwk).ok()?,
        algs,
    })
}

/// The usable keys of a JWKS document.
fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter_map(|j| jwk_key(&j))
        .collect())
}

fn describe(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "the token has expired",
        K::ImmatureSignature => "the token is not valid yet",
        K::InvalidIssuer => "the token's issuer is not the configured one",
        K::InvalidAudience => "the token's audience is not a configured one",
        K::MissingRequiredClaim(_) => "the token lacks a required claim (exp, iss)",
        K::InvalidSignature => "the token's signature does not verify with any configured key",
        K::InvalidAlgorithm => "the token's algorithm does not fit the key",
        _ => "the token is not a valid signed JWT",
    }
}

impl JwtVerifier {
    pub fn new(config: JwtConfig) -> Result<JwtVerifier, String> {
        let mut static_keys = Vec::new();
        for (i, pem) in config.pem_keys.iter().enumerate() {
            static_keys.push(pem_key(pem).ok_or_else(|| {
                format!(
                    "public key file {} is not an RSA, EC or Ed25519 PEM public key",
                    i + 1
                )
            })?);
        }
        let jwks = match &config.jwks_url {
            Some(url) => Some(Jwks {
                url: url.clone(),
                http: reqwest::Client::builder()
                    .timeout(JWKS_TIMEOUT)
                    .build()
                    .map_err(|e| format!("HTTP client for the JWKS: {e}"))?,
                state: RwLock::new(JwksState::default()),
                refresh: tokio::sync::Mutex::new(()),
            }),
            None => None,
        };
        if jwks.is_none() && static_keys.is_empty() {
            return Err("github-jwt needs a JWKS URL or at least one public key file".into());
        }
        Ok(JwtVerifier {
            config,
            static_keys,
            jwks,
        })
    }

    /// Fetches the key set when it is old or lacks `kid`, at most every
    /// JWKS_RETRY; a failed fetch keeps the keys already known.
    async fn jwks_keys(&self, jwks: &Jwks, kid: Option<&str>) -> Arc<Vec<Key>> {
        let wants_fetch = |s: &JwksState| {
            let stale = s.fetched_at.is_none_or(|t| t.elapsed() > JWKS_MAX_AGE);
            let unknown =
                kid.is_some_and(|kid| !s.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
            (stale || unknown) && s.attempted_at.is_none_or(|t| t.elapsed() > JWKS_RETRY)
        };
        fn read(j: &Jwks) -> std::sync::RwLockReadGuard<'_, JwksState> {
            j.state.read().unwrap_or_else(|p| p.into_inner())
        }
        if wants_fetch(&read(jwks)) {
            let _one_at_a_time = jwks.refresh.lock().await;
            if wants_fetch(&read(jwks)) {
                jwks.state
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .attempted_at = Some(Instant::now());
                match self.fetch(jwks).await {
                    Ok(keys) => {
                        tracing::info!(url = %jwks.url, keys = keys.len(), "fetched the token signing keys");
                        let mut s = jwks.state.write().unwrap_or_else(|p| p.into_inner());
                        s.keys = Arc::new(keys);
                        s.fetched_at = Some(Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!(url = %jwks.url, error = %e, "could not fetch the token signing keys")
                    }
                }
            }
        }
        Arc::clone(&read(jwks).keys)
    }

    async fn fetch(&self, jwks: &Jwks) -> Result<Vec<Key>, String> {
        let r = jwks
            .http
            .get(&jwks.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("HTTP {}", r.status()));
        }
        parse_jwks(&r.bytes().await.map_err(|e| e.to_string())?)
    }

    /// Fetches the key set now (at start, so a wrong URL shows in the log early).
    pub async fn prefetch(&self) {
        if let Some(jwks) = &self.jwks {
            self.jwks_keys(jwks, None).await;
        }
    }

    /// Verifies a token; the error says why in words safe to send and log (never
    /// the token).
    pub async fn verify(&self, token: &str) -> Result<Verified, &'static str> {
        let header =
            decode_header(token).map_err(|_| "the token is not a well-formed signed JWT")?;
        let fetched = match &self.jwks {
            Some(jwks) => self.jwks_keys(jwks, header.kid.as_deref()).await,
            None => Arc::default(),
        };
        let mut why = "no configured key matches the token's key id and algorithm";
        let candidates = self.static_keys.iter().chain(fetched.iter()).filter(|k| {
            k.algs.contains(&header.alg)
                && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
        });
        for k in candidates {
            let mut v = Validation::new(header.alg);
            v.set_issuer(&[&self.config.issuer]);
            if self.config.audience.is_empty() {
                v.validate_aud = false;
            } else {
                v.set_audience(&self.config.audience);
            }
            v.leeway = self.config.leeway_secs;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp", "iss"]);
            match decode::<Claims>(token, &k.key, &v) {
                Ok(data) => return self.verified(data.claims),
                // Another key may have signed it.
                Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    why = describe(&e)
                }
                Err(e) => return Err(describe(&e)),
            }
        }
        Err(why)
    }

    fn verified(&self, claims: Claims) -> Result<Verified, &'static str> {
        let namespace = match claims.other.get(&self.config.namespace_claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err("the token lacks the claim that names its repository"),
        };
        let scopes = match claims.ac.as_deref() {
            Some(ac) => {
                scopes::from_ac_claim(ac).ok_or("the token's ac claim is not a scope list")?
            }
            None => Scopes {
                read: Vec::new(),
                write: None,
            },
        };
        Ok(Verified { namespace, scopes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_keeps_only_asymmetric_signing_keys() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"h"},
            {"kty":"RSA","n":"sXchDaQebHnPiGvy","e":"AQAB","kid":"r","alg":"RS256"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","alg":"ES256"},
            {"kty":"nonsense"}
        ]}"#;
        let keys = parse_jwks(doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("r"));
        assert_eq!(keys[0].algs, vec![Algorithm::RS256]);
        assert!(parse_jwks(b"[]").is_err());
    }

    #[tokio::test]
    async fn malformed_and_unsigned_tokens_are_refused() {
        let pem = include_bytes!("../../tests/data/jwt-test-public.pem").to_vec();
        let v = JwtVerifier::new(JwtConfig {
            issuer: "https://issuer.test".into(),
            audience: Vec::new(),
            leeway_secs: 60,
            namespace_claim: "repository_id".into(),
            jwks_url: None,
            pem_keys: vec![pem],
        })
        .unwrap();
        // alg none, with and without a signature part; HS256 "signed" with nothing.
        for t in [
            "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0IiwiZXhwIjo5OTk5OTk5OTk5LCJyZXBvc2l0b3J5X2lkIjoiMSJ9.",
            "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0IiwiZXhwIjo5OTk5OTk5OTk5LCJyZXBvc2l0b3J5X2lkIjoiMSJ9",
            "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci50ZXN0IiwiZXhwIjo5OTk5OTk5OTk5LCJyZXBvc2l0b3J5X2lkIjoiMSJ9.AAAA",
            "",
            "a.b.c",
            "....",
        ] {
            assert!(v.verify(t).await.is_err(), "{t}");
        }
        assert!(JwtVerifier::new(JwtConfig {
            pem_keys: vec![b"not a key".to_vec()],
            ..v.config.clone()
        })
        .is_err());
    }
}
