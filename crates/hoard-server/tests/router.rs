//! The router in process (tower's `oneshot`, no socket): each surface answers
//! refusals in its own protocol's words, with the statuses clients act on.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use hoard_core::signing::UrlSigner;
use hoard_core::{CacheService, ServiceConfig};
use hoard_server::auth::tenant::{Tenant, TokenHash};
use hoard_server::auth::Authenticator;
use hoard_server::flow::{FlowLimits, InFlight};
use hoard_server::{router, AppState, HttpLimits};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const CACHE: &str = "/twirp/github.actions.results.api.v1.CacheService";

struct App {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

async fn app(auth: Authenticator) -> App {
    let dir = tempfile::tempdir().unwrap();
    let url = hoard_db::sqlite_url(&dir.path().join("hoard.db"));
    let meta = Arc::new(hoard_db::open(&url, &Default::default()).await.unwrap());
    let blobs = hoard_storage::open(
        dir.path().join("blobs").to_str().unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let service = CacheService::new(meta, blobs, UrlSigner::new(b"k"), ServiceConfig::default());
    let state = AppState {
        service: Arc::new(service),
        public_url: None,
        auth: Arc::new(auth),
        limits: HttpLimits::default(),
        in_flight: Arc::new(InFlight::new(FlowLimits {
            uploads_in_flight: 8,
            downloads_in_flight: 8,
            block_list_bytes: 1 << 20,
            body_idle_timeout: Duration::from_secs(5),
        })),
        upstream: None,
        metrics: Some(Arc::new(hoard_server::metrics::Metrics::new(
            &Default::default(),
        ))),
        metrics_route: true,
        access_log: true,
        management: Default::default(),
    };
    App {
        router: router(state),
        _dir: dir,
    }
}

async fn send(app: &App, request: Request<Body>) -> (StatusCode, String, String) {
    let response: Response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn twirp(method: &str, body: &str) -> Request<Body> {
    Request::post(format!("{CACHE}/{method}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn twirp_refusals_are_twirp_json() {
    let a = app(Authenticator::trusted_network()).await;
    let (st, ct, body) = send(&a, twirp("NoSuchMethod", "{}")).await;
    assert_eq!(
        (st, ct.as_str()),
        (StatusCode::NOT_FOUND, "application/json")
    );
    assert!(body.contains(r#""code":"bad_route""#), "{body}");
    let (st, _, body) = send(&a, twirp("CreateCacheEntry", "{not json")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains(r#""code":"malformed""#), "{body}");
    let (st, _, body) = send(&a, twirp("CreateCacheEntry", r#"{"key":"","version":"v"}"#)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains(r#""code":"invalid_argument""#), "{body}");
    let get = Request::get(format!("{CACHE}/CreateCacheEntry"))
        .body(Body::empty())
        .unwrap();
    let (st, _, body) = send(&a, get).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body.contains("take POST"), "{body}");
    // A miss is not an error.
    let (st, _, body) = send(
        &a,
        twirp("GetCacheEntryDownloadURL", r#"{"key":"k","version":"v"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains(r#""ok":false"#), "{body}");
}

#[tokio::test]
async fn each_surface_refuses_a_caller_it_does_not_know() {
    let tenants = vec![Tenant::new("team-a", TokenHash::new("hoard_secret_a")).unwrap()];
    let a = app(Authenticator::new(Some(tenants), None)).await;
    let (st, _, body) = send(&a, twirp("ListCacheEntries", "{}")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(body.contains(r#""code":"unauthenticated""#), "{body}");

    let v1 = Request::get("/_apis/artifactcache/cache?keys=k&version=v")
        .body(Body::empty())
        .unwrap();
    let (st, ct, body) = send(&a, v1).await;
    assert_eq!(
        (st, ct.as_str()),
        (StatusCode::UNAUTHORIZED, "application/json")
    );
    assert!(
        body.contains(r#""typeKey":"UnauthorizedException""#),
        "{body}"
    );

    let whoami = Request::get("/_hoard/whoami").body(Body::empty()).unwrap();
    let (st, _, body) = send(&a, whoami).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(body.contains(r#""auth_mode":"tenant-token""#), "{body}");
    let known = Request::get("/t/hoard_secret_a/_hoard/whoami")
        .body(Body::empty())
        .unwrap();
    let (st, _, body) = send(&a, known).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains(r#""namespace":"team-a""#), "{body}");
    assert!(!body.contains("hoard_secret_a"), "{body}");
}

#[tokio::test]
async fn blob_refusals_are_azure_xml_and_other_paths_404() {
    let a = app(Authenticator::trusted_network()).await;
    let forged = Request::get("/blob/cache/1?sp=r&se=99999999999&sig=00")
        .body(Body::empty())
        .unwrap();
    let (st, ct, body) = send(&a, forged).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(ct.contains("xml"), "{ct}");
    assert!(body.contains("<Code>AuthenticationFailed</Code>"), "{body}");

    let v1_route = Request::get("/_apis/artifactcache/nothing-here")
        .body(Body::empty())
        .unwrap();
    let (st, _, body) = send(&a, v1_route).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body.contains(r#""typeKey":"NotFoundException""#), "{body}");
    // Without a results upstream, a path hoard does not serve is 404.
    let other = Request::get("/some/other/path")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&a, other).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_panicking_handler_is_answered_500_with_the_request_id() {
    let a = app(Authenticator::trusted_network()).await;
    let request = Request::get("/_hoard/test/panic")
        .header("x-request-id", "trace-me-42")
        .body(Body::empty())
        .unwrap();
    let response = a.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    // The server goes on answering.
    let (st, _, body) = send(&a, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "ready\n"));
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_blob_answers_the_azure_one_too() {
    let a = app(Authenticator::trusted_network()).await;
    let response = a
        .router
        .clone()
        .oneshot(
            Request::get("/blob/cache/1?sig=x")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(response.headers()["x-ms-request-id"], id.as_str());
    // An id a client sends is kept only when it is plain.
    let response = a
        .router
        .clone()
        .oneshot(
            Request::get("/healthz")
                .header("x-request-id", "has spaces")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], "has spaces");
}

#[tokio::test]
async fn metrics_count_requests_and_lookups() {
    let a = app(Authenticator::trusted_network()).await;
    for _ in 0..3 {
        let (st, _, _) = send(
            &a,
            twirp("GetCacheEntryDownloadURL", r#"{"key":"k","version":"v"}"#),
        )
        .await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, ct, text) = send(&a, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(
        text.contains(
            r#"hoard_http_requests_total{operation="GetCacheEntryDownloadURL",status="200",surface="twirp"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"hoard_cache_lookups_total{namespace="default",result="miss"} 3"#),
        "{text}"
    );
}

#[tokio::test]
async fn the_management_api_refuses_without_a_token_in_githubs_words() {
    let a = app(Authenticator::trusted_network()).await;
    let list = Request::get("/_hoard/api/namespaces/default/caches")
        .body(Body::empty())
        .unwrap();
    let (st, ct, body) = send(&a, list).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["message"].is_string() && v["documentation_url"].is_string(),
        "{body}"
    );
    // Unmapped repositories are not found (GitHub's answer for a repository
    // one cannot see).
    let repo = Request::get("/repos/octo/app/actions/caches")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&a, repo).await.0, StatusCode::NOT_FOUND);
    let doc = Request::get("/_hoard/api/openapi.json")
        .body(Body::empty())
        .unwrap();
    let (st, _, body) = send(&a, doc).await;
    assert_eq!(st, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["openapi"], "3.0.3");
}
