//! `hoard gc`: the eviction policy applied from the command line, as an operator
//! runs it (cron), with `--dry-run` printing exactly what the real run removes.

use hoard_e2e::client::{create, entry_id_of, put_block, restore, save};
use hoard_e2e::Server;

const V: &str = "gc-version";
const MIB: usize = 1024 * 1024;

/// The entry lines of gc's output (header and totals left out), sorted.
fn entry_lines(out: &std::process::Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("namespace\t") && !l.starts_with("total:") && !l.starts_with("also:")
        })
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn a_namespace_over_budget_keeps_what_was_restored_and_dry_run_tells_the_truth() {
    // 4 MiB saved against a budget of 2.5 MiB.
    let budget = (5 * MIB / 2).to_string();
    // No evictor in the server (it would make room as the saves overflow): gc
    // alone decides here.
    let server = Server::start_with(&[
        ("HOARD_EVICTION_NAMESPACE_BUDGET_BYTES", &budget),
        ("HOARD_EVICTION_INTERVAL_SECS", "0"),
    ]);
    for key in ["e1", "e2", "e3", "e4"] {
        save(&server, key, V, &vec![key.as_bytes()[1]; MIB]).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // e1 and e2 are used again: they are the most recently used now.
    for key in ["e1", "e2"] {
        assert!(restore(&server, key, V).await.is_some());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut server = server;
    server.stop(); // writes the batched access times

    let dry = server.run_cli(&["gc", "--dry-run"]);
    let planned = entry_lines(&dry);
    assert_eq!(planned.len(), 2, "{planned:?}");
    for (line, key) in planned.iter().zip(["e3", "e4"]) {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields[2], key);
        assert_eq!(fields[3], MIB.to_string());
        assert_eq!(fields[5], "namespace over budget");
    }
    assert!(String::from_utf8_lossy(&dry.stdout)
        .contains(&format!("total: would remove 2 entries, {} bytes", 2 * MIB)));

    // Nothing was removed by the dry run; the real run removes exactly that.
    let real = server.run_cli(&["gc"]);
    assert_eq!(entry_lines(&real), planned);
    let again = server.run_cli(&["gc", "--dry-run"]);
    assert!(entry_lines(&again).is_empty(), "under budget now");

    // A week and a day later, everything left has expired (GitHub's 7 days).
    let later = days_from_now(8);
    let expired = entry_lines(&server.run_cli(&["gc", "--dry-run", "--at", &later]));
    assert_eq!(expired.len(), 2);
    assert!(
        expired.iter().all(|l| l.ends_with("\texpired")),
        "{expired:?}"
    );

    let server = server.restart();
    for (key, kept) in [("e1", true), ("e2", true), ("e3", false), ("e4", false)] {
        assert_eq!(restore(&server, key, V).await.is_some(), kept, "{key}");
    }
}

#[tokio::test]
async fn gc_lists_then_reclaims_abandoned_uploads_and_orphaned_objects() {
    // The server itself reclaims and sweeps only hourly: gc does it here.
    let mut server = Server::start_with(&[
        ("HOARD_UPLOADS_PENDING_TIMEOUT_SECS", "1"),
        ("HOARD_UPLOADS_RECLAIM_INTERVAL_SECS", "3600"),
        ("HOARD_STORAGE_ORPHAN_SWEEP_INTERVAL_SECS", "3600"),
        ("HOARD_STORAGE_ORPHAN_GRACE_SECS", "0"),
    ]);
    let kept = save(&server, "kept", V, b"kept bytes").await;
    let upload = create(&server, "abandoned", V).await;
    assert_eq!(put_block(&upload, "QQ==", vec![1u8; 1000]).await, 201);
    let abandoned = entry_id_of(&upload);
    for i in 0..3 {
        server.plant_object(&format!("entries/777777/block-{i}"), b"orphan");
    }
    server.stop();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let dry = server.run_cli(&["gc", "--dry-run"]);
    let lines = entry_lines(&dry);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!((fields[2], fields[5]), ("abandoned", "abandoned upload"));
    let out = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(
        out.contains("also: would reclaim 1 abandoned uploads, would delete 3 orphaned objects"),
        "{out}"
    );
    assert_eq!(
        server.entry_objects("777777").len(),
        3,
        "a dry run deletes nothing"
    );
    assert_eq!(server.entry_objects(&abandoned).len(), 1);

    let real = server.run_cli(&["gc"]);
    let out = String::from_utf8_lossy(&real.stdout).to_string();
    assert!(
        out.contains("also: 1 abandoned uploads reclaimed, 0 deleted entries' objects removed, 3 orphaned objects deleted"),
        "{out}"
    );
    assert!(server.entry_objects("777777").is_empty());
    assert!(server.entry_objects(&abandoned).is_empty());
    assert_eq!(server.entry_objects(&kept).len(), 1);
    let again = String::from_utf8_lossy(&server.run_cli(&["gc", "--dry-run"]).stdout).to_string();
    assert!(
        again.contains("also: would reclaim 0 abandoned uploads, would delete 0 orphaned objects"),
        "{again}"
    );
    let server = server.restart();
    assert_eq!(
        restore(&server, "kept", V).await.as_deref(),
        Some(&b"kept bytes"[..])
    );
}

/// Now plus `days`, in RFC 3339, without a date library in the tests.
fn days_from_now(days: u64) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + days * 86400;
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn maintenance_commands_take_the_servers_flags_and_never_create_a_store() {
    let server = Server::start_with(&[]);
    // With PostgreSQL and S3 the store is wherever their URLs say, data dir or not.
    if server.deployment.s3.is_some() {
        return;
    }
    save(&server, "kept", V, b"bytes").await;
    let elsewhere = tempfile::tempdir().unwrap();
    let missing = elsewhere.path().join("not-a-store");
    // Pointed at a directory with no store: a clear error, nothing created.
    for command in [vec!["gc", "--dry-run"], vec!["verify", "--dry-run"]] {
        let out = server
            .cli(&command)
            .arg("--data-dir")
            .arg(&missing)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?}: {err}");
        assert!(err.contains("no hoard store here"), "{command:?}: {err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");
        // A user's mistake is a message, not a crash report.
        assert!(!err.contains("backtrace"), "{err}");
        assert!(
            !missing.exists(),
            "{command:?} created {}",
            missing.display()
        );
    }
    // The server's own flag works on every subcommand that opens the store.
    if server.deployment.database.is_none() {
        let out = server
            .cli(&["gc", "--dry-run", "--data-dir"])
            .arg(&server.data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = server
            .cli(&["config", "check", "--data-dir", "/srv/hoard"])
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains("data_dir = \"/srv/hoard\""), "{printed}");
    }
}
