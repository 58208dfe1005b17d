//! What only object storage does: direct downloads from the bucket, and listings
//! longer than one page.

use base64::Engine;
use futures::StreamExt;
use hoard_e2e::client::{commit_blocks, create, delete, entry_id_of, lookup, put_block, save};
use hoard_e2e::{Backend, Deployment, Server};

const V: &str = "direct-version";

/// `storage.direct_download`: lookups of single-object entries hand out a
/// presigned URL of the bucket, so the bytes skip hoard; entries of several
/// blocks are compacted into one object in the background, and then served by
/// the bucket too.
#[tokio::test]
async fn every_entry_is_served_by_the_bucket() {
    let deployment = Deployment::new(Backend::PgS3);
    let endpoint = deployment.s3.as_ref().unwrap().endpoint();
    let server = Server::start_on(
        deployment,
        &[
            ("HOARD_STORAGE_DIRECT_DOWNLOAD", "true"),
            ("HOARD_DOWNLOADS_URL_TTL_SECS", "120"),
            ("HOARD_DOWNLOADS_DELETE_GRACE_SECS", "1"),
        ],
    );
    let data: Vec<u8> = (0..(3 << 20) as u32).map(|i| (i % 253) as u8).collect();
    save(&server, "whole", V, &data).await;
    let url = lookup(&server, "whole", V).await.unwrap();
    assert!(url.starts_with(&endpoint), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(url.contains("X-Amz-Expires=120"), "{url}");
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert!(got.bytes().await.unwrap() == data);
    let part = reqwest::Client::new()
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert!(part.bytes().await.unwrap() == data[100..200]);
    // A changed signature is refused by the bucket.
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &url[at..at + 1] == "0" { "1" } else { "0" };
    let forged = format!("{}{flipped}{}", &url[..at], &url[at + 1..]);
    assert_eq!(reqwest::get(&forged).await.unwrap().status().as_u16(), 403);

    // An entry of several blocks (BuildKit's shape: 1 MiB each) becomes one
    // object in the background; until then hoard serves it from its blocks.
    let (entry, blocks) = save_blocks(&server, "blocks").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let url = bucket_url_once_compacted(&server, "blocks", &endpoint, &entry).await;
    assert!(reqwest::get(&url).await.unwrap().bytes().await.unwrap() == blocks);
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"hoard_compactions_total{result="done"} 1"#)
            && metrics.contains(&format!("hoard_compacted_bytes_total {}", blocks.len())),
        "{metrics}"
    );
    // The blocks' objects go after the grace period; one object is left.
    while server.entry_objects(&entry).len() > 1 {
        assert!(std::time::Instant::now() < deadline + std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(server.entry_objects(&entry)[0].contains("whole-"));
}

/// Saves `key` as five 1 MiB blocks; returns the entry id and the bytes.
async fn save_blocks(server: &Server, key: &str) -> (String, Vec<u8>) {
    let upload = create(server, key, V).await;
    let b64 = |i: usize| base64::engine::general_purpose::STANDARD.encode(format!("block-{i:06}"));
    let ids: Vec<String> = (0..5).map(b64).collect();
    let mut blocks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let block = vec![i as u8 + 1; 1 << 20];
        assert_eq!(put_block(&upload, id, block.clone()).await, 201);
        blocks.extend(block);
    }
    commit_blocks(server, &upload, key, V, &ids, blocks.len() as u64).await;
    (entry_id_of(&upload), blocks)
}

/// The bucket URL a lookup of `key` answers once the entry is one object
/// (hoard's own URL until then); fails after 20 s.
async fn bucket_url_once_compacted(
    server: &Server,
    key: &str,
    endpoint: &str,
    entry: &str,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let url = lookup(server, key, V).await.unwrap();
        if url.starts_with(endpoint) {
            return url;
        }
        assert!(url.starts_with(&server.url), "{url}");
        assert!(
            std::time::Instant::now() < deadline,
            "not compacted: {:?}",
            server.entry_objects(entry)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Entries saved while direct downloads were off are compacted when a replica
/// starts with them on, and then served by the bucket.
#[tokio::test]
async fn entries_saved_before_are_compacted_at_start_up() {
    let deployment = Deployment::new(Backend::PgS3);
    let endpoint = deployment.s3.as_ref().unwrap().endpoint();
    let before = Server::start_on(deployment.clone(), &[]);
    let (entry, blocks) = save_blocks(&before, "saved-before").await;
    drop(before);
    let server = Server::start_on(deployment, &[("HOARD_STORAGE_DIRECT_DOWNLOAD", "true")]);
    let url = bucket_url_once_compacted(&server, "saved-before", &endpoint, &entry).await;
    assert!(reqwest::get(&url).await.unwrap().bytes().await.unwrap() == blocks);
}

/// Deleting an entry of 1,100 objects lists them over two pages (S3 answers at
/// most 1,000 keys a page) and deletes every one, once the grace period is over.
#[tokio::test]
async fn deleting_an_entry_of_more_than_a_page_of_objects_removes_them_all() {
    let server = Server::start_on(
        Deployment::new(Backend::PgS3),
        &[
            ("HOARD_DOWNLOADS_DELETE_GRACE_SECS", "0"),
            ("HOARD_UPLOADS_RECLAIM_INTERVAL_SECS", "1"),
        ],
    );
    let upload = create(&server, "many-blocks", V).await;
    let id = entry_id_of(&upload);
    let ids: Vec<String> = (0..1100)
        .map(|i| base64::engine::general_purpose::STANDARD.encode(format!("blk-{i:05}")))
        .collect();
    let statuses: Vec<u16> = futures::stream::iter(&ids)
        .map(|b| put_block(&upload, b, vec![b'x'; 16]))
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 201));
    commit_blocks(&server, &upload, "many-blocks", V, &ids, 1100 * 16).await;
    assert_eq!(server.entry_objects(&id).len(), 1100);

    delete(&server, "many-blocks").await;
    // Deleted by the background pass once the (zero) grace period is over.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !server.entry_objects(&id).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} objects left",
            server.entry_objects(&id).len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(lookup(&server, "many-blocks", V).await, None);
}
