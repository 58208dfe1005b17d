//! The real OpenDAL `ghac` service (what sccache uses): binary protobuf Twirp,
//! Azure block uploads, ranged reads and stat.

use hoard_e2e::Server;
use opendal::services::Ghac;
use opendal::Operator;
use rand::RngCore;

fn operator(server: &Server) -> Operator {
    operator_at(&server.results_url())
}

/// An operator whose base URL is `results_url`.
fn operator_at(results_url: &str) -> Operator {
    // OpenDAL reads the runner environment, as it does inside a job.
    std::env::set_var("ACTIONS_CACHE_SERVICE_V2", "true");
    std::env::set_var("ACTIONS_RESULTS_URL", results_url);
    std::env::set_var("ACTIONS_RUNTIME_TOKEN", "opendal-test-token");
    std::env::remove_var("GITHUB_SERVER_URL");
    Operator::new(Ghac::default().root("/sccache").version("hoard-e2e"))
        .expect("ghac builder")
        .finish()
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// Writes a small object and a large one of `large_mib` MiB (in uneven pieces,
/// 8 MiB chunks, 4 in flight where the API allows), reads both back whole and
/// by range, stats them, misses a key never written, and is refused a second
/// write of a saved key without losing its content.
async fn round_trips(op: &Operator, large_mib: usize) {
    let small = random(1024);
    op.write("objects/small one", small.clone())
        .await
        .expect("write 1 KiB");
    assert_eq!(op.read("objects/small one").await.unwrap().to_vec(), small);
    assert_eq!(
        op.stat("objects/small one").await.unwrap().content_length(),
        1024
    );

    let large = random(large_mib * 1024 * 1024);
    let mut w = op
        .writer_with("objects/large")
        .chunk(8 * 1024 * 1024)
        .concurrent(4)
        .await
        .expect("writer");
    for piece in large.chunks(3 * 1024 * 1024 + 17) {
        w.write(piece.to_vec()).await.expect("write piece");
    }
    w.close().await.expect("close");
    assert_eq!(
        op.stat("objects/large").await.unwrap().content_length(),
        large.len() as u64
    );
    let back = op.read("objects/large").await.unwrap().to_vec();
    assert!(back == large, "{large_mib} MiB read back differs");
    let mid = large.len() as u64 / 2;
    let range = op
        .read_with("objects/large")
        .range(mid..mid + 1000)
        .await
        .unwrap()
        .to_vec();
    assert_eq!(range, large[mid as usize..mid as usize + 1000]);

    let err = op.read("objects/missing").await.unwrap_err();
    assert_eq!(err.kind(), opendal::ErrorKind::NotFound);
    let again = op.write("objects/small one", random(1024)).await;
    assert!(
        again.is_err(),
        "a second write of a saved key must be refused"
    );
    assert_eq!(op.read("objects/small one").await.unwrap().to_vec(), small);
}

/// v2: binary protobuf Twirp and Azure blocks (50 MiB: several blocks).
#[tokio::test]
async fn write_read_stat_small_and_large() {
    let server = Server::start();
    round_trips(&operator(&server), 50).await;
}

/// OpenDAL appends to the base URL, so a tenant token in its path survives: each
/// tenant reads its own objects only.
#[tokio::test]
async fn tenant_token_in_the_base_url_path() {
    let (server, token_a, token_b) = Server::start_with_tenants(&[]);
    let as_tenant = |token: &str| operator_at(&format!("{}t/{token}/", server.results_url()));
    let a = as_tenant(&token_a);
    let b = as_tenant(&token_b);
    let bytes = random(4096);
    a.write("objects/o", bytes.clone())
        .await
        .expect("tenant a writes");
    assert_eq!(a.read("objects/o").await.unwrap().to_vec(), bytes);
    let err = b.read("objects/o").await.unwrap_err();
    assert_eq!(err.kind(), opendal::ErrorKind::NotFound);
    let other = random(100);
    b.write("objects/o", other.clone())
        .await
        .expect("tenant b writes its own");
    assert_eq!(b.read("objects/o").await.unwrap().to_vec(), other);
    assert_eq!(a.read("objects/o").await.unwrap().to_vec(), bytes);
    // A wrong token in the path is refused.
    let stranger = as_tenant("hoard_not_a_tenant");
    assert!(stranger.write("objects/x", random(10)).await.is_err());
}

/// OpenDAL on its v1 path, as on a GHES runner (it picks v1 whenever
/// `ACTIONS_CACHE_SERVICE_V2` is empty): JSON reserve, PATCHes with
/// `Content-Range` one after another, commit with the size, and a signed
/// `archiveLocation` read with Range.
#[tokio::test]
async fn v1_write_read_stat_small_and_large() {
    let server = Server::start();
    std::env::set_var("ACTIONS_CACHE_SERVICE_V2", "");
    std::env::set_var("ACTIONS_CACHE_URL", format!("{}/", server.url));
    // Without a results URL only the v1 path can reach the server.
    std::env::remove_var("ACTIONS_RESULTS_URL");
    std::env::set_var("ACTIONS_RUNTIME_TOKEN", "opendal-test-token");
    std::env::remove_var("GITHUB_SERVER_URL");
    let op = Operator::new(Ghac::default().root("/sccache").version("hoard-e2e-v1"))
        .expect("ghac builder")
        .finish();
    round_trips(&op, 20).await;
}
