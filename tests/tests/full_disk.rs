//! A real full disk under hoard: a small tmpfs mounted by the test (CI runs as
//! root) holds the database, the blobs or both. Saves and restores run before,
//! during and after the disk is full; afterwards, and after a restart, exactly
//! the saves hoard acknowledged exist and restore byte-identical.

use hoard_e2e::client::{lookup, restore, twirp};
use hoard_e2e::{Backend, Deployment, Server};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const V: &str = "full-disk-version";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` where this process may not mount (not root): the test says so and
    /// passes only there; CI runs as root.
    fn mount(size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid only reads the process's credentials.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t tmpfs failed");
        Some(Tmpfs { path, _dir: dir })
    }

    /// Fills the file system with a file until it is full; returns the file.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        // The last few bytes too.
        while f.write_all(&[0u8; 512]).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// One save by plain HTTP, step by step: `Ok(())` only when Finalize said ok.
/// Every refusal must be a 503 (Twirp `unavailable` or Azure `ServerBusy`).
async fn try_save(server: &Server, key: &str, data: &[u8]) -> Result<(), String> {
    let http = reqwest::Client::new();
    let (s, v) = twirp(
        &http,
        &server.twirp_url("CreateCacheEntry"),
        json!({"key": key, "version": V}),
    )
    .await;
    if s != 200 {
        assert_unavailable(s, &v.to_string(), "create");
        return Err(format!("create {s}"));
    }
    let url = v["signed_upload_url"].as_str().unwrap().to_string();
    put_and_finalize(server, &url, key, data).await
}

async fn put_and_finalize(
    server: &Server,
    url: &str,
    key: &str,
    data: &[u8],
) -> Result<(), String> {
    let http = reqwest::Client::new();
    let r = http
        .put(url)
        .header("x-ms-blob-type", "BlockBlob")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status != 201 {
        let body = r.text().await.unwrap();
        assert_unavailable(status, &body, "put blob");
        return Err(format!("put {status}"));
    }
    let (s, v) = twirp(
        &http,
        &server.twirp_url("FinalizeCacheEntryUpload"),
        json!({"key": key, "version": V, "size_bytes": data.len().to_string()}),
    )
    .await;
    if s != 200 {
        assert_unavailable(s, &v.to_string(), "finalize");
        return Err(format!("finalize {s}"));
    }
    assert_eq!(v["ok"], json!(true), "{v}");
    Ok(())
}

fn assert_unavailable(status: u16, body: &str, step: &str) {
    assert_eq!(status, 503, "{step} refused with {status}: {body}");
    assert!(
        body.contains("unavailable") || body.contains("ServerBusy"),
        "{step}: {body}"
    );
}

fn content(key: &str) -> Vec<u8> {
    let seed = key
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    (0..96 * 1024u32)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

/// Where the tmpfs goes: under the database, the blobs, or both.
#[derive(Clone, Copy, Debug)]
enum Full {
    Both,
    DatabaseOnly,
    BlobsOnly,
}

async fn scenario(which: Full) {
    let Some(small) = Tmpfs::mount("4m") else {
        return;
    };
    let elsewhere = tempfile::tempdir().unwrap();
    let (data_dir, storage): (&Path, PathBuf) = match which {
        Full::Both => (&small.path, small.path.join("blobs")),
        Full::DatabaseOnly => (&small.path, elsewhere.path().join("blobs")),
        Full::BlobsOnly => (elsewhere.path(), small.path.join("blobs")),
    };
    let storage_url = storage.to_string_lossy().into_owned();
    let env = [("HOARD_STORAGE_URL", storage_url.as_str())];
    let server = Server::start_at(Deployment::new(Backend::SqliteDir), data_dir, &env);

    let mut acknowledged: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for i in 0..3 {
        let key = format!("before-{i}");
        try_save(&server, &key, &content(&key)).await.unwrap();
        acknowledged.push(key);
    }
    // Reserved before the fault, uploaded during it.
    let (s, v) = twirp(
        &reqwest::Client::new(),
        &server.twirp_url("CreateCacheEntry"),
        json!({"key": "reserved-before", "version": V}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let reserved_url = v["signed_upload_url"].as_str().unwrap().to_string();

    let filler = small.fill();
    let mut refusals = 0;
    for i in 0..12 {
        let key = format!("during-{i}");
        match try_save(&server, &key, &content(&key)).await {
            Ok(()) => acknowledged.push(key),
            Err(_) => {
                refusals += 1;
                refused.push(key);
            }
        }
    }
    let reserved = put_and_finalize(
        &server,
        &reserved_url,
        "reserved-before",
        &content("reserved-before"),
    )
    .await;
    if reserved.is_ok() {
        acknowledged.push("reserved-before".into());
    }
    assert!(
        refusals > 0,
        "{which:?}: no save was refused on a full disk"
    );
    // Reads keep working while writes cannot.
    for key in acknowledged.iter().filter(|k| k.starts_with("before-")) {
        let got = restore(&server, key, V).await.expect("a hit while full");
        assert!(
            got == content(key),
            "{key} restored byte-identical while full"
        );
    }

    // Space returns: writes work again without a restart, and are durable.
    std::fs::remove_file(&filler).unwrap();
    if reserved.is_err() {
        put_and_finalize(
            &server,
            &reserved_url,
            "reserved-before",
            &content("reserved-before"),
        )
        .await
        .expect("the upload reserved before the fault completes once space is back");
        acknowledged.push("reserved-before".into());
    }
    for i in 0..3 {
        let key = format!("after-{i}");
        try_save(&server, &key, &content(&key))
            .await
            .unwrap_or_else(|e| panic!("{which:?}: {key} refused after space returned: {e}"));
        acknowledged.push(key);
    }
    check_exactly(&server, &acknowledged, &refused, "before the restart").await;
    assert!(
        server.log().contains("disk is full") || server.log().contains("No space left"),
        "the cause is logged:\n{}",
        server.log()
    );

    let server = server.restart();
    check_exactly(&server, &acknowledged, &refused, "after the restart").await;
}

async fn check_exactly(server: &Server, acknowledged: &[String], refused: &[String], when: &str) {
    for key in acknowledged {
        let got = restore(server, key, V)
            .await
            .unwrap_or_else(|| panic!("acknowledged {key} missing {when}"));
        assert!(got == content(key), "{key} byte-identical {when}");
    }
    for key in refused {
        assert_eq!(
            lookup(server, key, V).await,
            None,
            "refused {key} exists {when}"
        );
    }
}

#[tokio::test]
async fn database_and_blobs_on_a_full_disk() {
    scenario(Full::Both).await;
}

#[tokio::test]
async fn database_on_a_full_disk_blobs_elsewhere() {
    scenario(Full::DatabaseOnly).await;
}

#[tokio::test]
async fn blobs_on_a_full_disk_database_elsewhere() {
    scenario(Full::BlobsOnly).await;
}
