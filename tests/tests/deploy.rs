//! The shipped deployment files: docker-compose.yml and deploy/Dockerfile. No
//! Docker engine runs here, so they are checked as a reader would: the compose
//! file's structure, and its hoard environment fed to the real binary's
//! `hoard config check`. docs/deploy.md gives `docker compose config` for
//! machines with the compose client.

use hoard_e2e::{hoard_bin, Server};
use serde_yaml::Value;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    serde_yaml::from_str(&text).expect("docker-compose.yml is YAML")
}

/// `${NAME:-default}` as compose expands it when NAME is unset.
fn expand_defaults(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${") + start;
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map(|(_, d)| d).unwrap_or(""));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn compose_wires_hoard_postgres_and_minio() {
    let c = compose();
    let services = c["services"].as_mapping().expect("services");
    for name in ["hoard", "postgres", "minio", "create-bucket"] {
        assert!(services.contains_key(name), "service {name}");
    }
    for name in ["hoard", "postgres", "minio"] {
        assert!(
            c["services"][name]["healthcheck"]["test"].is_sequence(),
            "{name} has a health check"
        );
    }
    let hoard = &c["services"]["hoard"];
    assert_eq!(hoard["build"]["dockerfile"], "deploy/Dockerfile");
    assert!(repo().join("deploy/Dockerfile").exists());
    assert_eq!(
        hoard["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    assert_eq!(
        hoard["depends_on"]["create-bucket"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(
        c["services"]["create-bucket"]["depends_on"]["minio"]["condition"],
        "service_healthy"
    );
    // Every named volume a service mounts is declared.
    let declared = c["volumes"].as_mapping().expect("volumes");
    for (_, service) in services {
        for v in service["volumes"].as_sequence().into_iter().flatten() {
            let name = v.as_str().unwrap().split(':').next().unwrap();
            assert!(declared.contains_key(name), "volume {name} is declared");
        }
    }
    // The bucket the init job creates is the one hoard uses.
    let init = c["services"]["create-bucket"]["entrypoint"][2]
        .as_str()
        .unwrap();
    assert!(init.contains("mb --ignore-existing local/hoard"));
    assert_eq!(
        hoard["environment"]["HOARD_STORAGE_URL"],
        "s3://hoard/cache"
    );
}

#[test]
fn compose_environment_is_a_valid_hoard_configuration() {
    let c = compose();
    let env = c["services"]["hoard"]["environment"]
        .as_mapping()
        .expect("hoard environment");
    let mut cmd = Command::new(hoard_bin());
    cmd.args(["config", "check"]).env_clear();
    let mut secrets = Vec::new();
    for (k, v) in env {
        let (k, v) = (k.as_str().unwrap(), expand_defaults(v.as_str().unwrap()));
        if k.contains("SECRET") {
            secrets.push(v.clone());
        }
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("url = \"s3://hoard/cache\""), "{printed}");
    assert!(printed.contains("endpoint = \"http://minio:9000\""));
    assert!(printed.contains("postgres://hoard:***@postgres:5432/hoard"));
    secrets.push("hoard-postgres-password".into());
    for s in secrets {
        assert!(!printed.contains(&s), "a secret was printed: {printed}");
    }
}

#[test]
fn dockerfile_builds_small_and_runs_unprivileged() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let instructions: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let froms = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(froms >= 2, "multi-stage");
    assert!(text.contains("cargo build --release --locked -p hoard"));
    let user = instructions
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER instruction");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    assert!(text.contains("HEALTHCHECK"));
    assert!(text.contains("CMD [\"hoard\", \"healthcheck\"]"));
}

#[test]
fn the_healthcheck_command_tells_up_from_down() {
    let server = Server::start();
    let up = Command::new(hoard_bin())
        .args(["healthcheck", "--url", &server.url])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let port = server.url.rsplit(':').next().unwrap().to_string();
    drop(server);
    let down = Command::new(hoard_bin())
        .args(["healthcheck", "--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!down.status.success());
}
