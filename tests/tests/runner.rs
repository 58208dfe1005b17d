//! `hoard runner ...` through the real binary: the worker patch on runner
//! directories laid out as the runner ships them (the worker assembly's string
//! literals stored as a .NET compiler stores them), and the self-check a job
//! runs against hoard in the auth modes that need no token issuer.

use hoard_e2e::{hoard_bin, Server};
use std::path::Path;
use std::process::{Command, Output};

/// A `#US` heap entry as the metadata writer stores a string literal:
/// compressed byte length, UTF-16LE, then 1 when a unit is outside plain
/// ASCII or one of the characters that need special handling, else 0.
fn us_entry(s: &str) -> Vec<u8> {
    let units: Vec<u16> = s.encode_utf16().collect();
    let special = units
        .iter()
        .any(|&u| u >= 0x7f || matches!(u, 0x01..=0x08 | 0x0e..=0x1f | 0x27 | 0x2d));
    let len = units.len() * 2 + 1;
    let mut e = if len < 0x80 {
        vec![len as u8]
    } else {
        vec![0x80 | (len >> 8) as u8, len as u8]
    };
    for u in units {
        e.extend(u.to_le_bytes());
    }
    e.push(special as u8);
    e
}

/// The literals the worker's Node.js action handler uses, in its order, and
/// some others of the assembly (a long one, one with a quote, one with a
/// non-ASCII character, one that starts like a patched literal).
const WORKER_LITERALS: &[&str] = &[
    "ACTIONS_RUNTIME_URL",
    "ACTIONS_RUNTIME_TOKEN",
    "CacheServerUrl",
    "ACTIONS_CACHE_URL",
    "PipelinesServiceUrl",
    "GenerateIdTokenUrl",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ResultsServiceUrl",
    "ACTIONS_RESULTS_URL",
    "actions_uses_cache_service_v2",
    "ACTIONS_CACHE_SERVICE_V2",
    "NODE_ICU_DATA",
    "The task was marked as \"done\", but the process has not closed after 5 seconds. Treating the task as complete.",
    "Can't find the action's entry point",
    "Résumé",
    "ACTIONS_CACHE_URL_FALLBACK",
];

/// A worker assembly: DOS and PE headers, a metadata root with its stream
/// headers, a `#Strings` heap (identifiers, UTF-8: never touched) and the
/// `#US` heap of `literals`.
fn worker_assembly(literals: &[&str]) -> Vec<u8> {
    let mut b = vec![0u8; 0x80];
    b[0..2].copy_from_slice(b"MZ");
    b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    b.extend(b"PE\0\0");
    b.extend([0x64, 0x86]); // x86-64
    b.extend(vec![0u8; 0x200 - b.len()]);
    b.extend(b"BSJB");
    b.extend([1, 0, 1, 0, 0, 0, 0, 0, 12, 0, 0, 0]);
    b.extend(b"v4.0.30319\0\0");
    b.extend([0, 0, 5, 0]);
    for name in ["#~", "#Strings", "#US", "#GUID", "#Blob"] {
        b.extend([0u8; 8]);
        b.extend(name.as_bytes());
        b.push(0);
        while b.len() % 4 != 0 {
            b.push(0);
        }
    }
    b.push(0);
    for ident in [
        "NodeScriptActionHandler",
        "RunAsync",
        "Environment",
        "ACTIONS_CACHE_URL",
    ] {
        b.extend(ident.as_bytes());
        b.push(0);
    }
    b.push(0);
    for l in literals {
        b.extend(us_entry(l));
    }
    b.extend(vec![0u8; 64]);
    b
}

/// A runner directory as its release archive unpacks, with `worker` as the
/// worker assembly.
fn runner_dir(worker: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    std::fs::write(dir.path().join("config.sh"), "#!/bin/bash\n").unwrap();
    std::fs::write(dir.path().join("run.sh"), "#!/bin/bash\n").unwrap();
    std::fs::write(dir.path().join("bin/Runner.Listener.dll"), b"MZ").unwrap();
    std::fs::write(dir.path().join("bin/Runner.Worker.dll"), worker).unwrap();
    dir
}

fn hoard(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(hoard_bin());
    cmd.args(args).env("HOARD_LOG", "warn");
    for var in [
        "GITHUB_SERVER_URL",
        "ACTIONS_CACHE_SERVICE_V2",
        "ACTIONS_RESULTS_URL",
        "ACTIONS_CACHE_URL",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_CACHE_MODE",
        "HOARD_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hoard")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn patch(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["runner", "patch", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    hoard(&args, &[])
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

#[test]
fn patch_check_again_and_revert_on_a_runner_layout() {
    let original = worker_assembly(WORKER_LITERALS);
    let dir = runner_dir(&original);
    let worker = dir.path().join("bin/Runner.Worker.dll");
    let backup = dir.path().join("bin/Runner.Worker.dll.hoard-backup");

    let o = patch(dir.path(), &["--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not patched"));

    let o = patch(dir.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let patched = std::fs::read(&worker).unwrap();
    assert_eq!(patched.len(), original.len());
    assert_eq!(std::fs::read(&backup).unwrap(), original);
    // Exactly the two literals changed, and nothing else in the file.
    assert_eq!(count(&patched, &us_entry("ACTIONS_RESULTS_URL")), 0);
    assert_eq!(count(&patched, &us_entry("ACTIONS_CACHE_URL")), 0);
    assert_eq!(count(&patched, &us_entry("HOARDED_RESULTS_URL")), 1);
    assert_eq!(count(&patched, &us_entry("HOARDED_CACHE_URL")), 1);
    let changed = original
        .iter()
        .zip(&patched)
        .filter(|(a, b)| a != b)
        .count();
    let per_literal = "ACTIONS_"
        .bytes()
        .zip("HOARDED_".bytes())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 2 * per_literal, "bytes changed");
    for kept in [
        "ACTIONS_CACHE_URL_FALLBACK",
        "ACTIONS_CACHE_SERVICE_V2",
        "Résumé",
    ] {
        assert_eq!(count(&patched, &us_entry(kept)), 1, "{kept}");
    }
    assert_eq!(
        count(&patched, b"ACTIONS_CACHE_URL\0"),
        1,
        "the identifier heap is untouched"
    );

    let o = patch(dir.path(), &["--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A second run changes nothing and keeps the first backup.
    let o = patch(dir.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("already patched"), "{}", text(&o));
    assert_eq!(std::fs::read(&worker).unwrap(), patched);
    assert_eq!(std::fs::read(&backup).unwrap(), original);

    let o = patch(dir.path(), &["--revert"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&worker).unwrap(), original);
    assert!(!backup.exists());
    let o = patch(dir.path(), &["--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn an_unknown_layout_is_refused_and_left_alone() {
    // A future worker that no longer assigns ACTIONS_RESULTS_URL this way.
    let literals: Vec<&str> = WORKER_LITERALS
        .iter()
        .copied()
        .filter(|l| *l != "ACTIONS_RESULTS_URL")
        .collect();
    let original = worker_assembly(&literals);
    let dir = runner_dir(&original);
    let o = patch(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let said = text(&o);
    assert!(said.contains("unknown runner layout"), "{said}");
    assert!(said.contains("ACTIONS_RESULTS_URL 0x"), "{said}");
    assert_eq!(
        std::fs::read(dir.path().join("bin/Runner.Worker.dll")).unwrap(),
        original
    );
    assert!(!dir
        .path()
        .join("bin/Runner.Worker.dll.hoard-backup")
        .exists());
    assert_eq!(patch(dir.path(), &["--check"]).status.code(), Some(2));

    // Not an assembly at all, and not a runner directory at all.
    let script = runner_dir(b"#!/bin/sh\necho worker\n");
    let o = patch(script.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("not a .NET assembly"), "{}", text(&o));
    let empty = tempfile::tempdir().unwrap();
    let o = patch(empty.path(), &["--check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("config.sh, run.sh and bin/"),
        "{}",
        text(&o)
    );
}

#[test]
fn env_prints_the_runner_lines() {
    let o = hoard(
        &["runner", "env", "--url", "http://hoard.internal:8080"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "ACTIONS_RESULTS_URL=http://hoard.internal:8080/\nACTIONS_CACHE_URL=http://hoard.internal:8080/\nACTIONS_CACHE_SERVICE_V2=true\n"
    );
    let o = hoard(
        &["runner", "env"],
        &[("HOARD_PUBLIC_URL", "https://cache.example")],
    );
    assert!(
        text(&o).starts_with("ACTIONS_RESULTS_URL=https://cache.example/\n"),
        "{}",
        text(&o)
    );
    let o = hoard(&["runner", "env"], &[("HOARD_PUBLIC_URL", "")]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--url"), "{}", text(&o));
}

fn check(env: &[(&str, &str)]) -> Output {
    hoard(&["runner", "check"], env)
}

#[tokio::test]
async fn check_trusted_network() {
    let server = Server::start();
    let base = format!("{}/", server.url);
    let o = check(&[
        ("ACTIONS_RESULTS_URL", &base),
        ("ACTIONS_CACHE_SERVICE_V2", "true"),
        ("ACTIONS_RUNTIME_TOKEN", "any-token"),
    ]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("cache client: v2 API"), "{said}");
    assert!(
        said.contains(&format!(
            "reached hoard {} at {base}",
            env!("CARGO_PKG_VERSION")
        )),
        "{said}"
    );
    assert!(said.contains("auth mode trusted-network"), "{said}");
    assert!(said.contains("namespace: default"), "{said}");
    assert!(said.contains("restore: allowed; save: allowed"), "{said}");
    assert!(!said.contains("any-token"), "the token is never printed");

    // A GHES job uses ACTIONS_CACHE_URL: here it points elsewhere, not hoard.
    let elsewhere = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let o = check(&[
        ("GITHUB_SERVER_URL", "https://ghes.example.internal"),
        ("ACTIONS_RESULTS_URL", &base),
        ("ACTIONS_CACHE_URL", &elsewhere),
        ("ACTIONS_RUNTIME_TOKEN", "t"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("v1 API"), "{}", text(&o));
    assert!(text(&o).contains("ACTIONS_CACHE_URL="), "{}", text(&o));
    // No token: the toolkit would not run at all.
    let o = check(&[
        ("ACTIONS_RESULTS_URL", &base),
        ("ACTIONS_CACHE_SERVICE_V2", "true"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("ACTIONS_RUNTIME_TOKEN is not set"),
        "{}",
        text(&o)
    );
}

#[tokio::test]
async fn check_tenant_token_in_the_url_and_refused() {
    let (server, token_a, _) = Server::start_with_tenants(&[]);
    let base = format!("{}/t/{token_a}/", server.url);
    let o = check(&[
        ("ACTIONS_RESULTS_URL", &base),
        ("ACTIONS_CACHE_SERVICE_V2", "true"),
        ("ACTIONS_RUNTIME_TOKEN", "job-token"),
    ]);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("auth mode tenant-token"), "{said}");
    assert!(said.contains("namespace: a"), "{said}");
    assert!(
        !said.contains(&token_a),
        "the tenant token is never printed"
    );
    assert!(said.contains("/t/***/"), "{said}");

    let wrong = format!("{}/t/hoard_not_a_tenant/", server.url);
    let o = check(&[
        ("ACTIONS_RESULTS_URL", &wrong),
        ("ACTIONS_CACHE_SERVICE_V2", "true"),
        ("ACTIONS_RUNTIME_TOKEN", "job-token"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("refused the job's token"), "{}", text(&o));

    // whoami itself, as a plain client sees it.
    let r = reqwest::get(format!("{}/_hoard/whoami", server.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["service"], "hoard");
    assert_eq!(body["auth_mode"], "tenant-token");
}
