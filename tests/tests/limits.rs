//! Every configurable limit exceeded once: the protocol's error (Twirp JSON,
//! Azure XML, HTTP status), `Retry-After` on 429, and nothing stored changes.

use hoard_e2e::client::{azure, create, finalize, put_block, restore, save, twirp};
use hoard_e2e::Server;
use serde_json::{json, Value};

const V: &str = "0123456789abcdef";

async fn call(s: &Server, method: &str, body: Value) -> (u16, Value) {
    twirp(&reqwest::Client::new(), &s.twirp_url(method), body).await
}

/// Keys of the committed entries a caller sees.
async fn listed(s: &Server) -> Vec<String> {
    let (st, v) = call(s, "ListCacheEntries", json!({})).await;
    assert_eq!(st, 200, "{v}");
    let mut keys: Vec<String> = v["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["key"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

#[tokio::test]
async fn request_limits_answer_in_the_protocol() {
    let s = Server::start_with(&[
        ("HOARD_LIMITS_MAX_KEY_CHARS", "16"),
        ("HOARD_LIMITS_MAX_VERSION_CHARS", "20"),
        ("HOARD_LIMITS_MAX_BLOCKS", "3"),
        ("HOARD_LIMITS_MAX_HEADER_BYTES", "4096"),
        ("HOARD_LIMITS_MAX_TWIRP_BODY_BYTES", "2048"),
        ("HOARD_UPLOADS_MAX_BLOCK_BYTES", "65536"),
        ("HOARD_EVICTION_MAX_ENTRY_BYTES", "150000"),
    ]);
    let kept = vec![7u8; 1000];
    save(&s, "kept", V, &kept).await;

    // Key and version lengths: 400 invalid_argument, at the limit accepted.
    let (st, v) = call(
        &s,
        "CreateCacheEntry",
        json!({"key": "k".repeat(17), "version": V}),
    )
    .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );
    assert!(v["msg"].as_str().unwrap().contains("at most 16"), "{v}");
    let (st, v) = call(
        &s,
        "CreateCacheEntry",
        json!({"key": "k", "version": "v".repeat(21)}),
    )
    .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );
    let (st, v) = call(
        &s,
        "GetCacheEntryDownloadURL",
        json!({"key": "k".repeat(17), "version": V}),
    )
    .await;
    assert_eq!(st, 400, "{v}");

    // The Twirp body limit: 400 malformed.
    let (st, v) = call(
        &s,
        "LookupCacheEntry",
        json!({"key": "k", "version": V, "pad": "x".repeat(3000)}),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("malformed")), "{v}");

    // Headers: 431, in Twirp JSON on the Twirp side and Azure XML on the blob side.
    let big = "x".repeat(5000);
    let r = reqwest::Client::new()
        .post(s.twirp_url("ListCacheEntries"))
        .header("content-type", "application/json")
        .header("x-padding", &big)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 431);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["code"], "malformed");
    let url = create(&s, "blocks", V).await;
    let r = reqwest::Client::new()
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .header("x-padding", &big)
        .body("abc")
        .send()
        .await
        .unwrap();
    let (st, code, body) = azure(r).await;
    assert_eq!(st, 431);
    assert!(
        body.contains("<Code>InvalidHeaderValue</Code>") && code.is_empty(),
        "{body}"
    );

    // A block over the block limit: 413 RequestBodyTooLarge.
    let r = reqwest::Client::new()
        .put(format!("{url}&comp=block&blockid=YWFh"))
        .body(vec![0u8; 65537])
        .send()
        .await
        .unwrap();
    let (st, code, _) = azure(r).await;
    assert_eq!((st, code.as_str()), (413, "RequestBodyTooLarge"));

    // More blocks than allowed: 400 BlockListTooLong.
    let ids = ["YWFh", "YmJi", "Y2Nj", "ZGRk"];
    for id in ids {
        assert_eq!(put_block(&url, id, vec![1u8; 100]).await, 201);
    }
    let list: String = ids
        .iter()
        .map(|id| format!("<Latest>{id}</Latest>"))
        .collect();
    let r = reqwest::Client::new()
        .put(format!("{url}&comp=blocklist"))
        .body(format!("<BlockList>{list}</BlockList>"))
        .send()
        .await
        .unwrap();
    let (st, code, _) = azure(r).await;
    assert_eq!((st, code.as_str()), (400, "BlockListTooLong"));

    // An entry over the entry size limit: 413 on Put Blob.
    let url = create(&s, "big", V).await;
    let r = reqwest::Client::new()
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body(vec![0u8; 150_001])
        .send()
        .await
        .unwrap();
    let (st, code, _) = azure(r).await;
    assert_eq!((st, code.as_str()), (413, "RequestBodyTooLarge"));

    // Nothing refused was stored; what was saved is intact.
    assert_eq!(listed(&s).await, vec!["kept"]);
    assert_eq!(restore(&s, "kept", V).await.as_deref(), Some(&kept[..]));
    assert!(
        s.log().contains("auth mode trusted-network"),
        "the default mode warns at start"
    );
}

#[tokio::test]
async fn open_uploads_per_namespace_get_429_with_retry_after() {
    let s = Server::start_with(&[("HOARD_LIMITS_MAX_OPEN_UPLOADS", "2")]);
    create(&s, "a", V).await;
    let url_b = create(&s, "b", V).await;
    let r = reqwest::Client::new()
        .post(s.twirp_url("CreateCacheEntry"))
        .header("content-type", "application/json")
        .body(json!({"key": "c", "version": V}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["code"], "resource_exhausted", "{v}");
    // Finishing one upload frees a place.
    let r = reqwest::Client::new()
        .put(&url_b)
        .header("x-ms-blob-type", "BlockBlob")
        .body("bbb")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    finalize(&s, "b", V, 3).await;
    create(&s, "c", V).await;
    assert_eq!(listed(&s).await, vec!["b"]);
}

async fn create_as(s: &Server, token: &str, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(s.twirp_url("CreateCacheEntry"))
        .header("content-type", "application/json")
        .bearer_auth(token)
        .body(json!({"key": key, "version": V}).to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn upload_rate_per_namespace_gets_429_with_retry_after() {
    let (s, token_a, token_b) =
        Server::start_with_tenants(&[("HOARD_LIMITS_UPLOADS_PER_MINUTE", "3")]);
    for i in 0..3 {
        assert_eq!(
            create_as(&s, &token_a, &format!("k{i}")).await.status(),
            200
        );
    }
    let r = create_as(&s, &token_a, "k3").await;
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=20).contains(&wait),
        "one upload comes back every 20 s: {wait}"
    );
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["code"], "resource_exhausted");
    // The other tenant has its own allowance.
    assert_eq!(create_as(&s, &token_b, "k3").await.status(), 200);
    // Unknown tenants are refused before any limit is consulted.
    let r = create_as(&s, "hoard_not_a_tenant", "k").await;
    assert_eq!(r.status().as_u16(), 401);
    assert!(!s.log().contains(&token_a) && !s.log().contains(&token_b));
    assert!(!s.log().contains("auth mode trusted-network"));
}

/// A runtime token whose (unverified, trusted-network) `ac` claim names
/// `n` readable scopes.
fn token_with_scopes(n: usize) -> String {
    use base64::Engine;
    let scopes: Vec<Value> = (0..n)
        .map(|i| json!({"Scope": format!("s{i}"), "Permission": 1}))
        .collect();
    let claims = json!({"ac": serde_json::to_string(&scopes).unwrap()});
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.sig",
        b64.encode("{}"),
        b64.encode(claims.to_string())
    )
}

#[tokio::test]
async fn expensive_lookups_are_refused_by_their_size() {
    // Room in the headers for a token of 520 scopes.
    let s = Server::start_with(&[("HOARD_LIMITS_MAX_HEADER_BYTES", "65536")]);
    save(&s, "kept", V, b"kept bytes").await;
    let http = reqwest::Client::new();
    // 520 scopes from a token: refused before any query, naming the limit.
    let (st, v) = twirp_with_token(
        &http,
        &s,
        "GetCacheEntryDownloadURL",
        json!({"key": "kept", "version": V, "restore_keys": vec!["k"; 9]}),
        &token_with_scopes(520),
    )
    .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );
    assert!(v["msg"].as_str().unwrap().contains("at most 16"), "{v}");
    // 16 scopes (none of them the entry's) is a miss, not an error.
    let (st, v) = twirp_with_token(
        &http,
        &s,
        "GetCacheEntryDownloadURL",
        json!({"key": "kept", "version": V, "restore_keys": vec!["k"; 9]}),
        &token_with_scopes(16),
    )
    .await;
    assert_eq!((st, v["ok"].as_bool()), (200, Some(false)), "{v}");
    // A listing with 1,000 restore keys: 400 naming the limit, not a 503.
    let (st, v) = call(
        &s,
        "ListCacheEntries",
        json!({"key": "kept", "restore_keys": vec!["k"; 1000]}),
    )
    .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );
    assert!(v["msg"].as_str().unwrap().contains("at most 10"), "{v}");
    assert_eq!(listed(&s).await, vec!["kept".to_string()]);
}

async fn twirp_with_token(
    http: &reqwest::Client,
    s: &Server,
    method: &str,
    body: Value,
    token: &str,
) -> (u16, Value) {
    let r = http
        .post(s.twirp_url(method))
        .header("content-type", "application/json")
        .bearer_auth(token)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn block_lists_held_in_memory_are_bounded_in_bytes() {
    // Room for two 4 MiB block lists at a time.
    let s = Server::start_with(&[("HOARD_LIMITS_BLOCK_LIST_BUFFER_BYTES", "8388608")]);
    let upload = create(&s, "lists", V).await;
    // Three block lists of 4 MiB each, sent slowly: the third finds no room.
    let addr = s.url.trim_start_matches("http://").to_string();
    let path = &upload[upload.find("/blob/").unwrap()..];
    let mut open = Vec::new();
    for _ in 0..2 {
        use tokio::io::AsyncWriteExt;
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PUT {path}&comp=blocklist HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 4194304\r\n\r\n<BlockList>"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        open.push(c);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = reqwest::Client::new()
        .put(format!("{upload}&comp=blocklist"))
        .body(vec![b' '; 4 << 20])
        .send()
        .await
        .unwrap();
    let retry = r.headers().get("retry-after").cloned();
    let (st, code, _) = azure(r).await;
    assert_eq!((st, code.as_str()), (503, "ServerBusy"));
    assert_eq!(retry.unwrap(), "5");
    drop(open);
    // Once they are gone, a block list is read as usual.
    assert_eq!(put_block(&upload, "QQ==", vec![1u8; 10]).await, 201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = reqwest::Client::new()
            .put(format!("{upload}&comp=blocklist"))
            .body("<BlockList><Latest>QQ==</Latest></BlockList>")
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 201 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.status());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    finalize(&s, "lists", V, 10).await;
    assert_eq!(restore(&s, "lists", V).await.unwrap(), vec![1u8; 10]);
}
