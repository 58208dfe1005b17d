//! `storage.direct_download`: lookups of single-object entries hand out a
//! presigned URL of the bucket, so the bytes skip hoard; other entries keep
//! hoard's own URL.

use base64::Engine;
use hoard_e2e::client::{commit_blocks, create, lookup, put_block, save};
use hoard_e2e::{Backend, Deployment, Server};

const V: &str = "direct-version";

#[tokio::test]
async fn single_object_entries_are_served_by_the_bucket() {
    let deployment = Deployment::new(Backend::PgS3);
    let endpoint = deployment.s3.as_ref().unwrap().endpoint();
    let server = Server::start_on(
        deployment,
        &[
            ("HOARD_STORAGE_DIRECT_DOWNLOAD", "true"),
            ("HOARD_DOWNLOADS_URL_TTL_SECS", "120"),
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

    // An entry of several blocks is still served through hoard.
    let upload = create(&server, "blocks", V).await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ids = [b64("one"), b64("two")];
    for id in &ids {
        assert_eq!(put_block(&upload, id, vec![1u8; 1000]).await, 201);
    }
    commit_blocks(&server, &upload, "blocks", V, &ids, 2000).await;
    let url = lookup(&server, "blocks", V).await.unwrap();
    assert!(url.starts_with(&server.url), "{url}");
    assert_eq!(
        reqwest::get(&url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len(),
        2000
    );
}
