//! Stored bytes changed or lost behind hoard's back, found without a client
//! asking: `hoard verify` (once, with a dry run) and the background scrub both
//! re-read every entry and drop the bad ones; good entries stay.

use hoard_e2e::client::{lookup, restore, save};
use hoard_e2e::Server;
use std::time::{Duration, Instant};

const V: &str = "verify-version";

fn flip_a_byte(server: &Server, id: &str) {
    let name = &server.entry_objects(id)[0];
    let mut bytes = server.objects().read(name);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    server.objects().write(name, &bytes);
}

fn truncate(server: &Server, id: &str) {
    let name = &server.entry_objects(id)[0];
    let bytes = server.objects().read(name);
    server.objects().write(name, &bytes[..bytes.len() - 100]);
}

fn remove(server: &Server, id: &str) {
    server.objects().remove(&server.entry_objects(id)[0]);
}

fn content(seed: u8) -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 253) as u8 ^ seed).collect()
}

fn verify(server: &Server, args: &[&str]) -> (i32, String) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let out = server.run_cli(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn hoard_verify_reports_then_drops_bad_entries() {
    let mut server = Server::start();
    save(&server, "good", V, &content(1)).await;
    let flipped = save(&server, "flipped", V, &content(2)).await;
    let short = save(&server, "truncated", V, &content(3)).await;
    let gone = save(&server, "deleted", V, &content(4)).await;
    flip_a_byte(&server, &flipped);
    truncate(&server, &short);
    remove(&server, &gone);
    server.stop();

    let (code, out) = verify(&server, &["--dry-run"]);
    assert_eq!(code, 1, "{out}");
    for key in ["flipped", "truncated", "deleted"] {
        assert!(
            out.contains(&format!("\t{key}\t")),
            "{key} reported:\n{out}"
        );
    }
    assert!(!out.contains("\tgood\t"), "{out}");
    assert!(
        out.contains("4 entries checked (1200000 bytes), 3 missing or corrupt: would drop 3"),
        "{out}"
    );

    let (code, out) = verify(&server, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("3 missing or corrupt: dropped 3"), "{out}");
    let (code, out) = verify(&server, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 entries checked (300000 bytes), 0 missing"),
        "{out}"
    );

    let server = server.restart();
    assert!(restore(&server, "good", V).await.unwrap() == content(1));
    for key in ["flipped", "truncated", "deleted"] {
        assert_eq!(lookup(&server, key, V).await, None, "{key} dropped");
    }
}

#[tokio::test]
async fn the_background_scrub_drops_bad_entries_and_keeps_good_ones() {
    let server = Server::start_with(&[
        ("HOARD_STORAGE_SCRUB_BYTES_PER_SEC", "50000000"),
        ("HOARD_STORAGE_SCRUB_PAUSE_SECS", "1"),
    ]);
    save(&server, "good", V, &content(5)).await;
    let flipped = save(&server, "flipped", V, &content(6)).await;
    flip_a_byte(&server, &flipped);
    let deadline = Instant::now() + Duration::from_secs(30);
    while lookup(&server, "flipped", V).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "never scrubbed:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.wait_for_log("scrub pass", Duration::from_secs(10)));
    assert!(restore(&server, "good", V).await.unwrap() == content(5));
}
