//! Hostile and broken requests: each gets the protocol's error, the server keeps
//! serving, and no stored entry changes.

use hmac::{Hmac, Mac};
use hoard_e2e::client::{azure, commit_blocks, restore, save, twirp};
use hoard_e2e::Server;
use prost::Message;
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{Read, Write};

const SECRET: &str = "bad-input-test-secret";
const V: &str = "0123456789abcdef";

fn start() -> Server {
    Server::start_with(&[
        ("HOARD_SIGNING_SECRET", SECRET),
        ("HOARD_UPLOADS_MAX_BLOCK_BYTES", "1048576"),
    ])
}

/// Signs as the server does, so expiry can be tested without waiting.
fn sign(op: &str, id: i64, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("hoard-blob-url\n{op}\n{id}\n{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn twirp_raw(s: &Server, method: &str, ctype: &str, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(s.twirp_url(method))
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "Twirp errors are JSON"
    );
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).expect("JSON error body");
    (status, v)
}

async fn upload_url(s: &Server, key: &str) -> String {
    let (st, v) = twirp(
        &reqwest::Client::new(),
        &s.twirp_url("CreateCacheEntry"),
        json!({"key": key, "version": V}),
    )
    .await;
    assert_eq!(st, 200);
    v["signed_upload_url"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn twirp_bad_input_gets_twirp_errors() {
    let s = start();
    save(&s, "keep", V, b"precious").await;

    let (st, v) = twirp_raw(
        &s,
        "CreateCacheEntry",
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("malformed")));
    let (st, v) = twirp_raw(
        &s,
        "CreateCacheEntry",
        "application/protobuf",
        vec![0x12, 0xff, 0x01],
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("malformed")));
    let (st, v) = twirp_raw(&s, "NoSuchMethod", "application/json", b"{}".to_vec()).await;
    assert_eq!((st, v["code"].as_str()), (404, Some("bad_route")));
    let (st, v) = twirp_raw(&s, "CreateCacheEntry", "text/plain", b"{}".to_vec()).await;
    assert_eq!((st, v["code"].as_str()), (404, Some("bad_route")));
    // Missing key, empty key, key over 512 characters, missing version, a
    // version PostgreSQL could not store (not a storage failure to retry).
    for body in [
        json!({"version": V}),
        json!({"key": "", "version": V}),
        json!({"key": "k".repeat(513), "version": V}),
        json!({"key": "k"}),
        json!({"key": "k", "version": "v\u{0}1"}),
    ] {
        let (st, v) = twirp_raw(
            &s,
            "CreateCacheEntry",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(
            (st, v["code"].as_str()),
            (400, Some("invalid_argument")),
            "{body}"
        );
    }
    // The same in protobuf.
    let pb = hoard_proto::twirp::CreateCacheEntryRequest {
        metadata: None,
        key: String::new(),
        version: V.into(),
    };
    let (st, v) = twirp_raw(
        &s,
        "CreateCacheEntry",
        "application/protobuf",
        pb.encode_to_vec(),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid_argument")));
    // Too many restore keys.
    let body = json!({"key": "k", "restore_keys": vec!["r"; 10], "version": V});
    let (st, v) = twirp_raw(
        &s,
        "GetCacheEntryDownloadURL",
        "application/json",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid_argument")));
    // A body far larger than any cache request.
    let (st, v) = twirp_raw(
        &s,
        "CreateCacheEntry",
        "application/json",
        vec![b' '; 1024 * 1024],
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (400, Some("malformed")));
    // GET on a Twirp route.
    let r = reqwest::get(s.twirp_url("CreateCacheEntry")).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);

    assert_eq!(
        restore(&s, "keep", V).await.as_deref(),
        Some(&b"precious"[..])
    );
}

#[tokio::test]
async fn finalize_checks_size_and_reservation() {
    let s = start();
    let http = reqwest::Client::new();
    let url = upload_url(&s, "sized").await;
    let r = http
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body(vec![7u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (st, v) = twirp(
        &http,
        &s.twirp_url("FinalizeCacheEntryUpload"),
        json!({"key": "sized", "version": V, "size_bytes": "99"}),
    )
    .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );
    assert!(
        restore(&s, "sized", V).await.is_none(),
        "a refused finalize leaves the entry invisible"
    );
    let (st, v) = twirp(
        &http,
        &s.twirp_url("FinalizeCacheEntryUpload"),
        json!({"key": "never", "version": V, "size_bytes": "1"}),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (404, Some("not_found")));
    let url2 = upload_url(&s, "empty-upload").await;
    let _ = url2;
    let (st, v) = twirp(
        &http,
        &s.twirp_url("FinalizeCacheEntryUpload"),
        json!({"key": "empty-upload", "version": V, "size_bytes": "0"}),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (412, Some("failed_precondition")));
    // The right size commits, and a retry answers the same entry.
    let (st, a) = twirp(
        &http,
        &s.twirp_url("FinalizeCacheEntryUpload"),
        json!({"key": "sized", "version": V, "size_bytes": "100"}),
    )
    .await;
    assert_eq!(st, 200);
    let (_, b) = twirp(
        &http,
        &s.twirp_url("FinalizeCacheEntryUpload"),
        json!({"key": "sized", "version": V, "size_bytes": 100}),
    )
    .await;
    assert_eq!(a["entry_id"], b["entry_id"]);
    // A second reservation of a committed key is already_exists (409).
    let (st, v) = twirp(
        &http,
        &s.twirp_url("CreateCacheEntry"),
        json!({"key": "sized", "version": V}),
    )
    .await;
    assert_eq!((st, v["code"].as_str()), (409, Some("already_exists")));
    // Put Blob on a finalized entry is refused; the content stays.
    let r = http
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body(vec![1u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(azure(r).await.1, "BlobImmutable");
    assert_eq!(restore(&s, "sized", V).await.unwrap(), vec![7u8; 100]);
}

#[tokio::test]
async fn blob_bad_input_gets_azure_errors() {
    let s = start();
    let http = reqwest::Client::new();
    save(&s, "keep", V, b"precious").await;
    let url = upload_url(&s, "blocks").await;

    // Bad base64 block id, and one that decodes to more than 64 bytes.
    for id in ["%21%21%21", &base64_of(&[1u8; 65])] {
        let r = http
            .put(format!("{url}&comp=block&blockid={id}"))
            .body("x")
            .send()
            .await
            .unwrap();
        let (st, code, body) = azure(r).await;
        assert_eq!(
            (st, code.as_str()),
            (400, "InvalidQueryParameterValue"),
            "{body}"
        );
        assert!(
            body.starts_with("<?xml") && body.contains("<Code>InvalidQueryParameterValue</Code>")
        );
    }
    // A block list naming a block never staged.
    let ok = base64_of(b"block-a");
    let ok_xml = b64(b"block-a");
    let r = http
        .put(format!("{url}&comp=block&blockid={ok}"))
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let list = format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>{ok_xml}</Latest><Latest>{}</Latest></BlockList>", b64(b"block-b"));
    let (st, code, _) = azure(
        http.put(format!("{url}&comp=blocklist"))
            .body(list)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (400, "InvalidBlockList"));
    // Broken XML.
    let (st, code, _) = azure(
        http.put(format!("{url}&comp=blocklist"))
            .body("<BlockList><Latest>")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (400, "InvalidXmlDocument"));
    // Put Blob without the blob type header; an unknown comp.
    let (st, code, _) = azure(http.put(&url).body("x").send().await.unwrap()).await;
    assert_eq!((st, code.as_str()), (400, "MissingRequiredHeader"));
    let (st, code, _) = azure(
        http.put(format!("{url}&comp=appendblock"))
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (400, "InvalidQueryParameterValue"));
    // A block over the configured limit (1 MiB here), declared and streamed.
    let (st, code, _) = azure(
        http.put(format!("{url}&comp=block&blockid={ok}"))
            .body(vec![0u8; 1024 * 1024 + 1])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (413, "RequestBodyTooLarge"));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..5).map(|_| Ok(vec![0u8; 300 * 1024])).collect();
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    // Without a declared length the limit is found while streaming: the answer is
    // 413, or, if the client is still sending when the server stops reading, a
    // reset connection. Either way nothing is stored (checked below).
    match http
        .put(format!("{url}&comp=block&blockid={ok}"))
        .body(streamed)
        .send()
        .await
    {
        Ok(r) => {
            let (st, code, _) = azure(r).await;
            assert_eq!((st, code.as_str()), (413, "RequestBodyTooLarge"));
        }
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    // The earlier block of that id is intact: commit it alone and read it back.
    commit_blocks(&s, &url, "blocks", V, &[ok_xml], 3).await;
    assert_eq!(restore(&s, "blocks", V).await.as_deref(), Some(&b"abc"[..]));
    assert_eq!(
        restore(&s, "keep", V).await.as_deref(),
        Some(&b"precious"[..])
    );
}

#[tokio::test]
async fn ranges_and_signatures() {
    let s = start();
    let http = reqwest::Client::new();
    let id: i64 = save(&s, "ranged", V, b"0123456789").await.parse().unwrap();
    let url = hoard_e2e::client::lookup(&s, "ranged", V).await.unwrap();

    let get = |range: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move { http.get(&url).header("range", range).send().await.unwrap() }
    };
    let r = get("bytes=2-4").await;
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 2-4/10");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"234");
    let r = get("bytes=7-").await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"789");
    let r = http
        .get(&url)
        .header("x-ms-range", "bytes=0-0")
        .header("range", "bytes=5-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"0", "x-ms-range wins");
    let (st, code, _) = azure(get("bytes=10-").await).await;
    assert_eq!((st, code.as_str()), (416, "InvalidRange"));
    let (st, code, _) = azure(get("bytes=zz").await).await;
    assert_eq!((st, code.as_str()), (400, "InvalidHeaderValue"));
    let r = http.head(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-length"], "10");

    // Missing, tampered, wrong-operation, other-entry and expired signatures: 403.
    let base = format!("{}/blob/cache/{id}", s.url);
    let far = 4_000_000_000i64;
    let good = sign("r", id, far);
    assert_eq!(
        http.get(format!("{base}?sp=r&se={far}&sig={good}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let mut tampered = good.clone().into_bytes();
    tampered[10] = if tampered[10] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    let expired = 1_000_000_000i64;
    for bad in [
        base.clone(),
        format!("{base}?sp=r&se={far}"),
        format!("{base}?sp=r&se={far}&sig={tampered}"),
        format!("{base}?sp=r&se={}&sig={good}", far + 1),
        format!("{base}?sp=w&se={far}&sig={}", sign("w", id, far)),
        format!("{}/blob/cache/{}?sp=r&se={far}&sig={good}", s.url, id + 1),
        format!("{base}?sp=r&se={expired}&sig={}", sign("r", id, expired)),
    ] {
        let (st, code, _) = azure(http.get(&bad).send().await.unwrap()).await;
        assert_eq!((st, code.as_str()), (403, "AuthenticationFailed"), "{bad}");
    }
    // A download URL cannot upload.
    let (st, code, _) = azure(
        http.put(&url)
            .header("x-ms-blob-type", "BlockBlob")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (403, "AuthenticationFailed"));
    assert_eq!(
        restore(&s, "ranged", V).await.as_deref(),
        Some(&b"0123456789"[..])
    );
}

#[tokio::test]
async fn body_longer_than_declared_stores_only_the_declared_bytes() {
    let s = start();
    let url = upload_url(&s, "declared").await;
    let path = url.split_once("127.0.0.1").unwrap().1;
    let (port, rest) = path[1..].split_once('/').unwrap();
    let mut tcp = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let req = format!(
        "PUT /{rest} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-ms-blob-type: BlockBlob\r\nContent-Length: 5\r\n\r\nhelloEXTRA-BYTES-NOT-A-REQUEST\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    // The trailing bytes are not a request: the connection is answered 400 or closed.
    let second = answer.matches("HTTP/1.1 ").count();
    assert!(second == 1 || answer.contains("HTTP/1.1 400"), "{answer}");
    let (st, v) = twirp(
        &reqwest::Client::new(),
        &s.twirp_url("FinalizeCacheEntryUpload"),
        json!({"key": "declared", "version": V, "size_bytes": "5"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        restore(&s, "declared", V).await.as_deref(),
        Some(&b"hello"[..])
    );
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Base64 as it goes in a query string.
fn base64_of(bytes: &[u8]) -> String {
    b64(bytes)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// A signed URL re-spelled without changing its numbers is another URL: only
/// the spelling hoard wrote is served.
#[tokio::test]
async fn re_spelled_signed_urls_are_refused() {
    let s = Server::start();
    save(&s, "spelled", "v1", b"spelled bytes").await;
    let url = hoard_e2e::client::lookup(&s, "spelled", "v1")
        .await
        .unwrap();
    let ok = reqwest::get(&url).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let (path, query) = url.split_once('?').unwrap();
    let params: Vec<(&str, &str)> = query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let get = |name: &str| params.iter().find(|(k, _)| *k == name).unwrap().1;
    let (sp, se, sig) = (get("sp"), get("se"), get("sig"));
    let (base, id) = path.rsplit_once('/').unwrap();
    for changed in [
        format!("{path}?sp={sp}&se={se}&sig={}", sig.to_uppercase()),
        format!("{path}?sp={sp}&se=%2B{se}&sig={sig}"),
        format!("{path}?sp={sp}&se=0{se}&sig={sig}"),
        format!("{base}/0{id}?sp={sp}&se={se}&sig={sig}"),
        format!("{base}/%2B{id}?sp={sp}&se={se}&sig={sig}"),
    ] {
        let r = reqwest::get(&changed).await.unwrap();
        let (status, code, body) = azure(r).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "AuthenticationFailed"),
            "{changed}: {body}"
        );
        assert!(!body.contains("spelled bytes"));
    }
}
