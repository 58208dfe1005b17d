//! The management API against its own OpenAPI document, by schemathesis
//! (installed by scripts/test.sh): generated requests, valid and not, on every
//! operation, each answer checked for status, content type and body against the
//! document, no server error; with caches present, so listings carry entries.

use hoard_e2e::client::save;
use hoard_e2e::{new_tenant, Server};
use std::process::Command;

#[tokio::test]
async fn the_live_api_conforms_to_its_openapi_document() {
    let (admin, hash) = new_tenant();
    let server = Server::start_with(&[
        ("HOARD_MANAGEMENT_ADMIN_TOKEN_HASH", &hash),
        ("HOARD_MANAGEMENT_REPOSITORIES", "octo/app=default"),
    ]);
    for (i, key) in ["npm-1", "npm-2", "cargo-1"].iter().enumerate() {
        save(&server, key, "v", &vec![i as u8; 1000 * (i + 1)]).await;
    }
    let tool = std::env::var("HOARD_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    // Schemathesis keeps a cache of what it found in its working directory.
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new(&tool)
        .current_dir(scratch.path())
        .arg("run")
        .arg(format!("{}/_hoard/api/openapi.json", server.url))
        .args(["--url", &server.url])
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .args(["--checks", "all", "--max-examples", "25", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/test.sh installs it)"));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("Tested: 10"),
        "every operation tested: {report}"
    );
    // The admin token never reaches the log.
    assert!(!server.log().contains(&admin));
}
