//! The legacy v1 REST API (`_apis/artifactcache/`) as GHES clients, act and
//! go-actions-cache speak it, over plain HTTP for exact control: chunks in any
//! order and in parallel, bad input refused without touching stored entries,
//! tenants kept apart, and entries shared with the v2 API.

use futures::stream;
use hoard_e2e::client::{restore, save};
use hoard_e2e::Server;
use rand::RngCore;
use serde_json::{json, Value};

const V: &str = "v1-api-test-version";

/// A v1 client of one base URL (it ends with `/`, as `ACTIONS_CACHE_URL` does).
struct V1 {
    http: reqwest::Client,
    base: String,
    bearer: Option<String>,
}

impl V1 {
    fn new(server: &Server) -> V1 {
        V1::at(format!("{}/", server.url), None)
    }

    fn at(base: String, bearer: Option<&str>) -> V1 {
        V1 {
            http: reqwest::Client::new(),
            base,
            bearer: bearer.map(str::to_string),
        }
    }

    fn request(&self, method: reqwest::Method, resource: &str) -> reqwest::RequestBuilder {
        let url = format!("{}_apis/artifactcache/{resource}", self.base);
        let r = self
            .http
            .request(method, url)
            .header("accept", "application/json;api-version=6.0-preview.1");
        match &self.bearer {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Status and JSON body (Null when there is none).
    async fn send(r: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = r.send().await.expect("v1 request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("v1 body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, body)
    }

    async fn reserve(&self, key: &str, size: Option<u64>) -> (u16, Value) {
        let mut body = json!({"key": key, "version": V});
        if let Some(n) = size {
            body["cacheSize"] = json!(n);
        }
        Self::send(self.request(reqwest::Method::POST, "caches").json(&body)).await
    }

    async fn reserved(&self, key: &str) -> i64 {
        let (st, v) = self.reserve(key, None).await;
        assert_eq!(st, 201, "{v}");
        v["cacheId"].as_i64().expect("cacheId")
    }

    /// PATCH of `bytes` at `start` with a Content-Length.
    async fn patch(&self, id: i64, start: u64, bytes: Vec<u8>) -> (u16, Value) {
        let end = start + bytes.len() as u64 - 1;
        self.patch_raw(id, &format!("bytes {start}-{end}/*"), bytes.into())
            .await
    }

    async fn patch_raw(&self, id: i64, range: &str, body: reqwest::Body) -> (u16, Value) {
        Self::send(
            self.request(reqwest::Method::PATCH, &format!("caches/{id}"))
                .header("content-type", "application/octet-stream")
                .header("content-range", range)
                .body(body),
        )
        .await
    }

    async fn commit(&self, id: i64, size: u64) -> (u16, Value) {
        Self::send(
            self.request(reqwest::Method::POST, &format!("caches/{id}"))
                .json(&json!({ "size": size })),
        )
        .await
    }

    /// Lookup: status and body.
    async fn lookup(&self, keys: &[&str]) -> (u16, Value) {
        let r = self
            .request(reqwest::Method::GET, "cache")
            .query(&[("keys", keys.join(",").as_str()), ("version", V)]);
        Self::send(r).await
    }

    /// The archive of a hit, downloaded as the toolkit does: one plain GET.
    async fn restore(&self, key: &str) -> Option<(String, Vec<u8>)> {
        let (st, v) = self.lookup(&[key]).await;
        if st == 204 {
            return None;
        }
        assert_eq!(st, 200, "{v}");
        let url = v["archiveLocation"].as_str().expect("archiveLocation");
        let r = reqwest::get(url).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let key = v["cacheKey"].as_str().unwrap().to_string();
        Some((key, r.bytes().await.unwrap().to_vec()))
    }

    /// Reserve, one PATCH, commit.
    async fn save(&self, key: &str, bytes: &[u8]) -> i64 {
        let id = self.reserved(key).await;
        if !bytes.is_empty() {
            let (st, v) = self.patch(id, 0, bytes.to_vec()).await;
            assert_eq!(st, 204, "{v}");
        }
        let (st, v) = self.commit(id, bytes.len() as u64).await;
        assert_eq!(st, 204, "{v}");
        id
    }
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// A body sent with `Transfer-Encoding: chunked` (no Content-Length), as the
/// toolkit streams its chunks.
fn streamed(bytes: Vec<u8>) -> reqwest::Body {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(stream::iter(pieces))
}

fn assert_refused(got: (u16, Value), status: u16, needle: &str) {
    let (st, v) = got;
    assert_eq!(st, status, "{v}");
    let message = v["message"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
    assert!(v["typeKey"].is_string(), "{v}");
}

#[tokio::test]
async fn chunks_in_any_order_in_parallel_and_retried_make_one_entry() {
    let server = Server::start();
    let api = V1::new(&server);
    let data = random(10 * 1024 * 1024 + 12_345);
    let chunk = 4 * 1024 * 1024;
    let (st, v) = api.reserve("deps-linux-abc", Some(data.len() as u64)).await;
    assert_eq!(st, 201, "{v}");
    let id = v["cacheId"].as_i64().unwrap();
    assert!(id > 0);

    // The short last chunk first, the others at once, streamed with no
    // Content-Length; then the middle one again, as a retry would.
    let last = (data.len() / chunk) * chunk;
    let (st, v) = api.patch(id, last as u64, data[last..].to_vec()).await;
    assert_eq!(st, 204, "{v}");
    let sends = (0..last).step_by(chunk).map(|start| {
        let body = streamed(data[start..start + chunk].to_vec());
        let range = format!("bytes {start}-{}/*", start + chunk - 1);
        let api = &api;
        async move { api.patch_raw(id, &range, body).await }
    });
    for (st, v) in futures::future::join_all(sends).await {
        assert_eq!(st, 204, "{v}");
    }
    let (st, v) = api
        .patch(id, chunk as u64, data[chunk..2 * chunk].to_vec())
        .await;
    assert_eq!(st, 204, "{v}");

    // Not visible before the commit.
    assert_eq!(api.lookup(&["deps-linux-abc"]).await.0, 204);
    let (st, v) = api.commit(id, data.len() as u64).await;
    assert_eq!(st, 204, "{v}");

    let (key, back) = api.restore("deps-linux-abc").await.expect("a hit");
    assert_eq!(key, "deps-linux-abc");
    assert!(back == data, "the restored archive differs");

    // A restore key matches by prefix and the answer names the key found.
    let (st, v) = api.lookup(&["deps-linux-new", "deps-linux-"]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["cacheKey"], "deps-linux-abc");
    assert_eq!(v["cacheVersion"], V);
    assert_eq!(v["scope"], "default");
    assert!(v["creationTime"].as_str().unwrap().ends_with('Z'), "{v}");
    // A miss is 204 with no body; another version does not match.
    assert_eq!(api.lookup(&["other"]).await, (204, Value::Null));
    let (st, _) = V1::send(
        api.request(reqwest::Method::GET, "cache")
            .query(&[("keys", "deps-linux-abc"), ("version", "another")]),
    )
    .await;
    assert_eq!(st, 204);

    // The debug listing names the entry.
    let (st, v) = V1::send(
        api.request(reqwest::Method::GET, "caches")
            .query(&[("key", "deps-linux-abc")]),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["totalCount"], 1);
    assert_eq!(v["artifactCaches"][0]["cacheKey"], "deps-linux-abc");

    // A key is written once: a second reservation is a 409 BuildKit
    // recognises, and the entry keeps its content.
    let (st, v) = api.reserve("deps-linux-abc", None).await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["typeKey"], "ArtifactCacheItemAlreadyExistsException");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("Cache already exists."));
    assert!(api.restore("deps-linux-abc").await.unwrap().1 == data);

    // An empty archive is an entry too.
    api.save("empty", b"").await;
    assert_eq!(api.restore("empty").await.unwrap().1, b"");
}

#[tokio::test]
async fn bad_chunks_and_commits_are_refused_and_change_nothing() {
    let server = Server::start_with(&[("HOARD_EVICTION_MAX_ENTRY_BYTES", "1000000")]);
    let api = V1::new(&server);
    let kept = random(5000);
    api.save("keep", &kept).await;
    let id = api.reserved("work").await;

    // The range is required, must be well-formed, forwards and agree with the body.
    let plain = |range: Option<&str>, body: Vec<u8>| {
        let r = api
            .request(reqwest::Method::PATCH, &format!("caches/{id}"))
            .body(body);
        V1::send(match range {
            Some(v) => r.header("content-range", v),
            None => r,
        })
    };
    assert_refused(
        plain(None, vec![1; 10]).await,
        400,
        "Content-Range is required",
    );
    assert_refused(
        plain(Some("items 0-9/*"), vec![1; 10]).await,
        400,
        "Content-Range must be of the form",
    );
    assert_refused(
        plain(Some("bytes 9-0/*"), vec![1; 10]).await,
        400,
        "comes before",
    );
    assert_refused(
        plain(Some("bytes 0-19/*"), vec![1; 10]).await,
        400,
        "Content-Length is 10",
    );
    assert_refused(
        api.patch_raw(id, "bytes 0-19/*", streamed(vec![1; 10]))
            .await,
        400,
        "the body has 10 bytes",
    );
    assert_refused(
        api.patch_raw(id, "bytes 0-9/*", streamed(vec![1; 20]))
            .await,
        400,
        "longer than the 10 bytes",
    );
    // Past the namespace's entry limit.
    assert_refused(
        api.patch(id, 999_995, vec![1; 10]).await,
        400,
        "at most 1000000 bytes",
    );

    // Chunks that do not tile the commit's size.
    assert_eq!(api.patch(id, 0, vec![1; 10]).await.0, 204);
    assert_eq!(api.patch(id, 20, vec![3; 10]).await.0, 204);
    assert_refused(
        api.commit(id, 30).await,
        400,
        "bytes 10-19 were never uploaded",
    );
    assert_eq!(api.patch(id, 5, vec![2; 10]).await.0, 204);
    assert_refused(api.commit(id, 30).await, 400, "overlaps");
    // The size must be the chunks' total, no more and no less.
    let fresh = api.reserved("work-2").await;
    assert_eq!(api.patch(fresh, 0, vec![1; 10]).await.0, 204);
    assert_eq!(api.patch(fresh, 10, vec![2; 10]).await.0, 204);
    assert_refused(api.commit(fresh, 25).await, 400, "20 bytes were uploaded");
    assert_refused(api.commit(fresh, 15).await, 400, "20 bytes were uploaded");
    assert_eq!(api.commit(fresh, 20).await.0, 204);
    let mut want = vec![1; 10];
    want.extend([2; 10]);
    assert_eq!(api.restore("work-2").await.unwrap().1, want);

    // A committed cache takes no more chunks and no second commit.
    assert_refused(
        api.patch(fresh, 0, vec![9; 10]).await,
        400,
        "already committed",
    );
    assert_refused(api.commit(fresh, 20).await, 400, "already committed");
    assert_eq!(api.restore("work-2").await.unwrap().1, want);

    // Unknown ids, malformed JSON, sizes and routes.
    assert_refused(
        api.commit(987_654, 1).await,
        400,
        "no cache upload with id 987654",
    );
    assert_refused(api.patch(987_654, 0, vec![1]).await, 400, "no cache upload");
    assert_refused(
        V1::send(
            api.request(reqwest::Method::POST, "caches")
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await,
        400,
        "JSON",
    );
    assert_refused(
        api.reserve("huge", Some(2_000_000)).await,
        400,
        "at most 1000000 bytes",
    );
    assert_refused(
        V1::send(
            api.request(reqwest::Method::GET, "cache")
                .query(&[("version", V)]),
        )
        .await,
        400,
        "keys is required",
    );
    assert_refused(
        V1::send(api.request(reqwest::Method::GET, "nothing-here")).await,
        404,
        "no such resource",
    );
    assert_refused(
        V1::send(api.request(reqwest::Method::DELETE, "caches/1")).await,
        405,
        "not allowed",
    );
    assert_refused(
        V1::send(
            api.request(reqwest::Method::POST, "caches")
                .json(&json!({"key": "k"})),
        )
        .await,
        400,
        "version",
    );

    // Through all of it the stored entry stayed as it was.
    assert!(api.restore("keep").await.unwrap().1 == kept);
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn tenants_reach_only_their_own_uploads_and_entries() {
    let (server, token_a, token_b) = Server::start_with_tenants(&[]);
    // A tenant token in the base URL's path, as for v2.
    let a = V1::at(format!("{}/t/{token_a}/", server.url), None);
    let b = V1::at(format!("{}/t/{token_b}/", server.url), None);
    let secret = random(2048);
    let id = a.reserved("shared-name").await;

    // B cannot write into, or commit, A's upload: it does not exist for B.
    assert_refused(b.patch(id, 0, vec![0; 2048]).await, 400, "no cache upload");
    assert_eq!(a.patch(id, 0, secret.clone()).await.0, 204);
    assert_refused(b.commit(id, 2048).await, 400, "no cache upload");
    assert_eq!(a.commit(id, 2048).await.0, 204);

    assert!(a.restore("shared-name").await.unwrap().1 == secret);
    assert!(b.restore("shared-name").await.is_none());
    // B saves its own under the same name; each reads its own.
    b.save("shared-name", b"b's bytes").await;
    assert_eq!(b.restore("shared-name").await.unwrap().1, b"b's bytes");
    assert!(a.restore("shared-name").await.unwrap().1 == secret);

    // Without a token, or with a wrong one, nothing is answered.
    let nobody = V1::at(format!("{}/", server.url), None);
    assert_refused(nobody.lookup(&["shared-name"]).await, 401, "");
    let stranger = V1::at(format!("{}/t/hoard_not_a_tenant/", server.url), None);
    assert_refused(stranger.reserve("x", None).await, 401, "");
    // The token as a bearer instead of in the path works the same.
    let bearer = V1::at(format!("{}/", server.url), Some(&token_b));
    assert_eq!(bearer.restore("shared-name").await.unwrap().1, b"b's bytes");
}

#[tokio::test]
async fn v1_and_v2_restore_what_the_other_saved() {
    let server = Server::start();
    let api = V1::new(&server);
    let through_v1 = random(300_000);
    api.save("from-v1", &through_v1).await;
    assert_eq!(restore(&server, "from-v1", V).await, Some(through_v1));

    let through_v2 = random(300_000);
    save(&server, "from-v2", V, &through_v2).await;
    assert_eq!(api.restore("from-v2").await.unwrap().1, through_v2);
    // A key held by one API cannot be reserved through the other.
    assert_eq!(api.reserve("from-v2", None).await.0, 409);
}
