//! Every parser of untrusted input, driven by arbitrary bytes: one function per
//! parser, checking what must hold whatever the bytes are. No panic, and where
//! a parse succeeds, a property of its result (a round trip, a bound). The
//! cargo-fuzz targets in `fuzz/` call these; the ordinary test suite replays the
//! saved corpus through them (tests/fuzz_corpus.rs).

use crate::auth::jwt::{JwtConfig, JwtVerifier};
use crate::{auth, blob};
use axum::http::{HeaderMap, HeaderValue};
use hoard_core::signing::{Operation, UrlSigner};
use hoard_proto::blocklist::{parse_block_list, validate_block_id};
use hoard_proto::range::parse_range;
use hoard_proto::twirp::{self as tw, decode, encode, Encoding, TwirpMessage};

/// Decodes, and if that works, encodes and decodes again to the same message.
fn round_trip<T: TwirpMessage + PartialEq + std::fmt::Debug>(data: &[u8]) {
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        if let Ok(message) = decode::<T>(encoding, data) {
            let again: T = decode(encoding, &encode(encoding, &message))
                .unwrap_or_else(|e| panic!("re-encoded {message:?} does not decode: {e:?}"));
            assert_eq!(again, message);
        }
    }
}

/// A Twirp request body, as each request message, in both encodings.
pub fn twirp_body(data: &[u8]) {
    round_trip::<tw::CreateCacheEntryRequest>(data);
    round_trip::<tw::FinalizeCacheEntryUploadRequest>(data);
    round_trip::<tw::GetCacheEntryDownloadUrlRequest>(data);
    round_trip::<tw::DeleteCacheEntryRequest>(data);
    round_trip::<tw::ListCacheEntriesRequest>(data);
    round_trip::<tw::LookupCacheEntryRequest>(data);
}

/// A Put Block List body: what parses names valid ids, within the limit, and
/// reads back the same from a block list written out again.
pub fn block_list(data: &[u8]) {
    const MAX: usize = 1000;
    let Ok(ids) = parse_block_list(data, MAX) else {
        return;
    };
    assert!(ids.len() <= MAX);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for id in &ids {
        assert!(validate_block_id(id).is_ok(), "{id:?}");
        xml.push_str(&format!("<Latest>{id}</Latest>"));
    }
    xml.push_str("</BlockList>");
    assert_eq!(parse_block_list(xml.as_bytes(), MAX).as_ref(), Ok(&ids));
}

/// A `Range` / `x-ms-range` value: what resolves lies inside the blob.
pub fn range(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(range) = parse_range(text) else {
        return;
    };
    for size in [0, 1, 7, 1 << 20, u64::MAX] {
        if let Ok((start, end)) = range.resolve(size) {
            assert!(
                start < end && end <= size,
                "{range:?} in {size}: {start}..{end}"
            );
        }
    }
}

/// A signed blob URL's query: only the signature hoard would mint verifies.
pub fn signed_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let q = blob::parse_query(Some(text));
    let signer = UrlSigner::new(b"fuzzing-secret-of-thirty-two-by");
    let (Some(sp), Some(se), Some(sig)) = (q.sp.as_deref(), q.se.as_deref(), q.sig.as_deref())
    else {
        return;
    };
    let (Some(op), Ok(expires)) = (Operation::parse(sp), se.parse::<i64>()) else {
        return;
    };
    for entry in [1, 2] {
        if signer.verify(op, entry, expires, sig, 0).is_ok() {
            assert_eq!(sig, signer.sign(op, entry, expires));
        }
    }
}

/// The verifier of the github-jwt mode with one public key whose private key is
/// not in the repository: no input may verify.
fn test_verifier() -> &'static JwtVerifier {
    static V: std::sync::OnceLock<JwtVerifier> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        JwtVerifier::new(JwtConfig {
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: Vec::new(),
            leeway_secs: 60,
            namespace_claim: "repository_id".into(),
            jwks_url: None,
            pem_keys: vec![include_bytes!("../tests/data/jwt-test-public.pem").to_vec()],
        })
        .expect("the test key parses")
    })
}

/// An `Authorization` header's bearer token: the trusted-network mode makes a
/// caller, in a namespace, of anything; the github-jwt mode verifies nothing
/// that its key did not sign.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = HeaderValue::from_str(&format!("Bearer {text}")) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(axum::http::header::AUTHORIZATION, value);
    let trusted =
        futures::executor::block_on(auth::Authenticator::trusted_network().caller(&headers, None));
    assert!(!trusted
        .expect("trusted network admits all")
        .namespace
        .is_empty());
    assert!(futures::executor::block_on(test_verifier().verify(text)).is_err());
}

/// One fuzz target: its name (a directory of fuzz/corpus) and its check.
pub type Target = (&'static str, fn(&[u8]));

/// The targets by name, for the corpus replay.
pub const TARGETS: [Target; 5] = [
    ("twirp_body", twirp_body),
    ("block_list", block_list),
    ("range", range),
    ("signed_query", signed_query),
    ("token", token),
];
