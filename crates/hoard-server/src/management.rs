//! The management API, shaped like GitHub's REST cache API so the scripts and
//! tools written for it work against hoard: the same parameters, field names,
//! types and statuses. Paths are keyed by namespace
//! (`/_hoard/api/namespaces/<namespace, percent-encoded>/caches`); namespaces
//! mapped to an `owner/repo` in the configuration also answer on GitHub's own
//! paths (`/repos/<owner>/<repo>/actions/caches`, also under `/api/v3` as a
//! GitHub Enterprise host is asked). The document is `openapi.json`, served at
//! `/_hoard/api/openapi.json`.
//!
//! Who may call: the admin token (configured as a hash) for everything; a
//! caller's own token, in the auth modes that verify one, for its own
//! namespace (deleting needs a token that may save).

use crate::auth::tenant::TokenHash;
use crate::AppState;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hoard_core::catalog::{CatalogQuery, CatalogSort, Selection};
use hoard_core::{CoreError, Entry};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Who administers, and which namespaces answer on GitHub's paths.
#[derive(Debug, Clone, Default)]
pub struct Management {
    pub admin_token: Option<TokenHash>,
    /// `owner/repo` (lower case) -> namespace.
    pub repositories: HashMap<String, String>,
}

pub fn routes() -> Router<AppState> {
    let ns = "/_hoard/api/namespaces/{namespace}";
    let mut r = Router::new()
        .route(&format!("{ns}/caches"), get(list).delete(delete_by_key))
        .route(
            &format!("{ns}/caches/{{cache_id}}"),
            axum::routing::delete(delete_by_id),
        )
        .route(&format!("{ns}/cache/usage"), get(usage))
        .route("/_hoard/api/cache/usage", get(usage_all))
        .route(
            "/_hoard/api/cache/usage-by-namespace",
            get(usage_by_namespace),
        )
        .route("/_hoard/api/openapi.json", get(openapi));
    for base in ["", "/api/v3"] {
        let repo = format!("{base}/repos/{{owner}}/{{repo}}/actions");
        r = r
            .route(&format!("{repo}/caches"), get(list).delete(delete_by_key))
            .route(
                &format!("{repo}/caches/{{cache_id}}"),
                axum::routing::delete(delete_by_id),
            )
            .route(&format!("{repo}/cache/usage"), get(usage));
    }
    r
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

/// GitHub's error body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Not Found")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "message": self.message,
            "documentation_url": "/_hoard/api/openapi.json",
        });
        let mut r = json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        match e {
            CoreError::InvalidArgument(m) | CoreError::TooLarge(m) => ApiError::invalid(m),
            CoreError::NotFound(_) => ApiError::not_found(),
            e @ (CoreError::Store(_) | CoreError::Blob(_)) => {
                crate::metrics::storage_failure(&e);
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage is unavailable; retry later",
                )
            }
            e => ApiError::invalid(e.to_string()),
        }
    }
}

/// What a request may do.
enum Access {
    Admin,
    Namespace { namespace: String, may_delete: bool },
}

/// `Authorization: Bearer <token>` or GitHub's `token <token>`.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn access(app: &AppState, headers: &HeaderMap) -> Result<Access, ApiError> {
    let token = presented_token(headers);
    if let (Some(admin), Some(token)) = (&app.management.admin_token, token) {
        if admin.matches(token) {
            return Ok(Access::Admin);
        }
    }
    // Without verified tokens anyone could claim any namespace: admin only.
    if token.is_some() && !app.auth.is_trusted_network() {
        // The caller's token as the cache service reads it, `token` scheme too.
        let mut as_bearer = HeaderMap::new();
        if let Ok(v) = format!("Bearer {}", token.unwrap_or_default()).parse() {
            as_bearer.insert(header::AUTHORIZATION, v);
        }
        if let Ok(caller) = app.auth.caller(&as_bearer, None).await {
            return Ok(Access::Namespace {
                may_delete: caller.write_scope.is_some(),
                namespace: caller.namespace,
            });
        }
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "Requires authentication: the admin token, or a token of the namespace",
    ))
}

/// The namespace a request may act on, checked against its access.
async fn authorize(
    app: &AppState,
    headers: &HeaderMap,
    namespace: &str,
    deleting: bool,
) -> Result<(), ApiError> {
    let access = access(app, headers).await?;
    plain("namespace", namespace)?;
    match access {
        Access::Admin => Ok(()),
        Access::Namespace {
            namespace: own,
            may_delete,
        } => {
            if own != namespace {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "this token is for another namespace",
                ));
            }
            if deleting && !may_delete {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "this token may not delete caches (it may not save)",
                ));
            }
            Ok(())
        }
    }
}

async fn admin_only(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match access(app, headers).await? {
        Access::Admin => Ok(()),
        Access::Namespace { .. } => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "usage of every namespace needs the admin token",
        )),
    }
}

fn note(request: &Request, operation: &'static str, namespace: Option<&str>) {
    if let Some(tag) = crate::observe::tag(request.extensions()) {
        tag.route("management", operation);
        if let Some(ns) = namespace {
            tag.namespace(ns);
        }
    }
}

/// Text no entry can hold (the databases store no NUL in text): refused like
/// any other bad parameter, before it reaches a query.
fn plain(name: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::invalid(format!("{name} must not contain NUL")));
    }
    Ok(())
}

/// The path's parameters: `{namespace}`, or GitHub's `{owner}/{repo}`, and
/// `{cache_id}` where there is one. Both path shapes share every handler.
type PathParams = Path<HashMap<String, String>>;

/// The namespace a path names and the `full_name` usage answers with: the
/// namespace itself, or `owner/repo` mapped to one in the configuration.
fn target(app: &AppState, params: &HashMap<String, String>) -> Result<(String, String), ApiError> {
    if let Some(ns) = params.get("namespace") {
        return Ok((ns.clone(), ns.clone()));
    }
    let (owner, repo) = (
        params.get("owner").map_or("", String::as_str),
        params.get("repo").map_or("", String::as_str),
    );
    let full_name = format!("{owner}/{repo}");
    app.management
        .repositories
        .get(&full_name.to_lowercase())
        .map(|ns| (ns.clone(), full_name))
        .ok_or_else(ApiError::not_found)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListParams {
    per_page: Option<String>,
    page: Option<String>,
    key: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    sort: Option<String>,
    direction: Option<String>,
}

/// `per_page` (1-100, default 30) and `page` (from 1) as limit and offset.
fn paging(per_page: Option<&str>, page: Option<&str>) -> Result<(i64, i64), ApiError> {
    let per_page: i64 = match per_page {
        None => 30,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid("per_page must be a number from 1 to 100"))?,
    };
    let page: i64 = match page {
        None => 1,
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| ApiError::invalid("page must be a number from 1"))?,
    };
    Ok((per_page, (page - 1) * per_page))
}

impl ListParams {
    fn query(&self) -> Result<CatalogQuery, ApiError> {
        plain("key", self.key.as_deref().unwrap_or(""))?;
        plain("ref", self.git_ref.as_deref().unwrap_or(""))?;
        let (limit, offset) = paging(self.per_page.as_deref(), self.page.as_deref())?;
        let sort = match self.sort.as_deref() {
            None | Some("last_accessed_at") => CatalogSort::LastAccessedAt,
            Some("created_at") => CatalogSort::CreatedAt,
            Some("size_in_bytes") => CatalogSort::Size,
            Some(_) => {
                return Err(ApiError::invalid(
                    "sort must be created_at, last_accessed_at or size_in_bytes",
                ))
            }
        };
        let descending = match self.direction.as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(ApiError::invalid("direction must be asc or desc")),
        };
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(CatalogQuery {
            key_prefix: given(&self.key),
            scope: given(&self.git_ref),
            sort,
            descending,
            limit,
            offset,
        })
    }
}

/// One cache as GitHub describes it.
#[derive(Serialize)]
struct ActionsCache {
    id: i64,
    #[serde(rename = "ref")]
    git_ref: String,
    key: String,
    version: String,
    last_accessed_at: String,
    created_at: String,
    size_in_bytes: i64,
}

#[derive(Serialize)]
struct CacheList {
    total_count: u64,
    actions_caches: Vec<ActionsCache>,
}

fn timestamp(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn described(e: Entry) -> ActionsCache {
    ActionsCache {
        id: e.id,
        git_ref: e.scope,
        key: e.key,
        version: e.version,
        last_accessed_at: timestamp(e.last_accessed_at),
        created_at: timestamp(e.created_at),
        size_in_bytes: e.size,
    }
}

fn listed(total_count: u64, entries: Vec<Entry>) -> Response {
    json(
        StatusCode::OK,
        &CacheList {
            total_count,
            actions_caches: entries.into_iter().map(described).collect(),
        },
    )
}

async fn list(
    State(app): State<AppState>,
    Path(params): PathParams,
    request: Request,
) -> Result<Response, ApiError> {
    let (namespace, _) = target(&app, &params)?;
    note(&request, "list_caches", Some(&namespace));
    authorize(&app, request.headers(), &namespace, false).await?;
    let Query(params): Query<ListParams> =
        Query::try_from_uri(request.uri()).map_err(|e| ApiError::invalid(e.body_text()))?;
    let (total, entries) = app.service.catalog(&namespace, &params.query()?).await?;
    Ok(listed(total, entries))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeleteParams {
    key: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

async fn delete_by_key(
    State(app): State<AppState>,
    Path(params): PathParams,
    request: Request,
) -> Result<Response, ApiError> {
    let (namespace, _) = target(&app, &params)?;
    note(&request, "delete_caches_by_key", Some(&namespace));
    authorize(&app, request.headers(), &namespace, true).await?;
    let Query(params): Query<DeleteParams> =
        Query::try_from_uri(request.uri()).map_err(|e| ApiError::invalid(e.body_text()))?;
    let key = params
        .key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::invalid("key is required"))?;
    plain("key", &key)?;
    plain("ref", params.git_ref.as_deref().unwrap_or(""))?;
    let which = Selection::Key {
        key,
        scope: params.git_ref.filter(|r| !r.is_empty()),
    };
    let gone = app.service.remove(&namespace, &which).await?;
    if gone.is_empty() {
        return Err(ApiError::not_found());
    }
    tracing::info!(namespace, entries = gone.len(), "caches deleted by key");
    Ok(listed(gone.len() as u64, gone))
}

async fn delete_by_id(
    State(app): State<AppState>,
    Path(params): PathParams,
    request: Request,
) -> Result<Response, ApiError> {
    let (namespace, _) = target(&app, &params)?;
    let id = params.get("cache_id").map_or("", String::as_str);
    note(&request, "delete_cache_by_id", Some(&namespace));
    authorize(&app, request.headers(), &namespace, true).await?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::invalid("cache_id must be a number"))?;
    let gone = app.service.remove(&namespace, &Selection::Id(id)).await?;
    if gone.is_empty() {
        return Err(ApiError::not_found());
    }
    tracing::info!(namespace, id, "cache deleted by id");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize)]
struct NamespaceUsage {
    full_name: String,
    active_caches_size_in_bytes: u64,
    active_caches_count: u64,
}

async fn usage(
    State(app): State<AppState>,
    Path(params): PathParams,
    request: Request,
) -> Result<Response, ApiError> {
    let (namespace, full_name) = target(&app, &params)?;
    note(&request, "namespace_usage", Some(&namespace));
    authorize(&app, request.headers(), &namespace, false).await?;
    let u = app.service.namespace_usage(&namespace).await?;
    Ok(json(
        StatusCode::OK,
        &NamespaceUsage {
            full_name,
            active_caches_size_in_bytes: u.bytes,
            active_caches_count: u.entries,
        },
    ))
}

async fn usage_all(State(app): State<AppState>, request: Request) -> Result<Response, ApiError> {
    note(&request, "usage", None);
    admin_only(&app, request.headers()).await?;
    let all = app.service.usage_by_namespace().await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "total_active_caches_size_in_bytes": all.iter().map(|u| u.bytes).sum::<u64>(),
            "total_active_caches_count": all.iter().map(|u| u.entries).sum::<u64>(),
        }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PageParams {
    per_page: Option<String>,
    page: Option<String>,
}

async fn usage_by_namespace(
    State(app): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    note(&request, "usage_by_namespace", None);
    admin_only(&app, request.headers()).await?;
    let Query(params): Query<PageParams> =
        Query::try_from_uri(request.uri()).map_err(|e| ApiError::invalid(e.body_text()))?;
    let (limit, offset) = paging(params.per_page.as_deref(), params.page.as_deref())?;
    let all = app.service.usage_by_namespace().await?;
    let total_count = all.len();
    let page: Vec<NamespaceUsage> = all
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|u| NamespaceUsage {
            full_name: u.namespace,
            active_caches_size_in_bytes: u.bytes,
            active_caches_count: u.entries,
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "total_count": total_count,
            "repository_cache_usages": page,
        }),
    ))
}

async fn openapi(request: Request) -> Response {
    note(&request, "openapi", None);
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
