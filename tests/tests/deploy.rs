//! The shipped deployment files: docker-compose.yml, deploy/Dockerfile, the
//! runner image and the Kubernetes overlays. No Docker engine or cluster runs
//! here, so they are checked as a reader and the tools would: the compose
//! file's structure, its hoard environment fed to the real binary's `hoard
//! config check`; every kustomize overlay rendered by `kubectl kustomize`,
//! validated against the Kubernetes schemas (`kubernetes-validate`, installed
//! by scripts/test.sh) and its configuration checked by the binary.

use hoard_e2e::{hoard_bin, Server};
use serde::Deserialize;
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
    assert!(
        text.contains("install -s "),
        "the image's binary is stripped"
    );
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

/// `kubectl kustomize` of an overlay: its documents.
fn kustomize(overlay: &str) -> (String, Vec<Value>) {
    let dir = repo().join("deploy/kubernetes/overlays").join(overlay);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("kubectl (with kustomize) is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    (text, docs)
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"].as_str() == Some(kind))
}

/// Validates rendered manifests against the Kubernetes schemas, strictly
/// (unknown fields are errors).
fn validate_schemas(overlay: &str, rendered: &str) {
    let tool =
        std::env::var("HOARD_KUBERNETES_VALIDATE").unwrap_or_else(|_| "kubernetes-validate".into());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rendered).unwrap();
    let out = Command::new(&tool)
        .args(["--strict", "-k", "1.30.0", "--quiet"])
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/test.sh installs it)"));
    assert!(
        out.status.success(),
        "{overlay}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The overlay's hoard.toml, as its ConfigMap carries it, through `hoard
/// config check` with the Secret's variables set.
fn config_checks(docs: &[Value], env: &[(&str, &str)]) -> String {
    let toml = kind(docs, "ConfigMap").expect("a ConfigMap")["data"]["hoard.toml"]
        .as_str()
        .expect("hoard.toml in the ConfigMap")
        .to_string();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &toml).unwrap();
    let mut cmd = Command::new(hoard_bin());
    cmd.args(["config", "check", "--config"])
        .arg(file.path())
        .env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What every overlay's hoard container must have.
fn check_container(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::from(true));
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"],
        Value::from(false)
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"],
        Value::from("/healthz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"],
        Value::from("/readyz")
    );
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let env = c["env"].as_sequence().unwrap();
    let named = |n: &str| env.iter().find(|e| e["name"].as_str() == Some(n));
    assert_eq!(
        named("HOARD_CONFIG").unwrap()["value"],
        Value::from("/etc/hoard/hoard.toml")
    );
    // Secrets only by reference, never as values in the manifests.
    for e in env {
        let name = e["name"].as_str().unwrap();
        if name.contains("SECRET") || name.contains("DATABASE") || name.contains("ACCESS_KEY") {
            assert!(e["valueFrom"]["secretKeyRef"].is_mapping(), "{name}");
        }
    }
}

#[test]
fn kubernetes_postgres_s3_overlay_runs_replicas_with_secrets_by_reference() {
    let (text, docs) = kustomize("postgres-s3");
    validate_schemas("postgres-s3", &text);
    let d = kind(&docs, "Deployment").expect("a Deployment");
    assert!(d["spec"]["replicas"].as_u64().unwrap() >= 2);
    check_container(d);
    let pdb = kind(&docs, "PodDisruptionBudget").expect("a PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], Value::from(1));
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert!(kind(&docs, "Service").is_some());
    let printed = config_checks(
        &docs,
        &[
            (
                "HOARD_DATABASE_URL",
                "postgres://hoard:pw-in-secret@postgres:5432/hoard",
            ),
            ("AWS_ACCESS_KEY_ID", "key-in-secret"),
            ("AWS_SECRET_ACCESS_KEY", "secret-in-secret"),
        ],
    );
    assert!(
        printed.contains("url = \"s3://hoard-cache/actions\""),
        "{printed}"
    );
    assert!(printed.contains("mode = \"github-jwt\""), "{printed}");
}

#[test]
fn kubernetes_sqlite_overlay_is_one_replica_on_a_volume() {
    let (text, docs) = kustomize("sqlite");
    validate_schemas("sqlite", &text);
    let d = kind(&docs, "Deployment").expect("a Deployment");
    assert_eq!(d["spec"]["replicas"], Value::from(1));
    assert_eq!(d["spec"]["strategy"]["type"], Value::from("Recreate"));
    check_container(d);
    assert!(kind(&docs, "PodDisruptionBudget").is_none());
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap();
    assert!(env
        .iter()
        .all(|e| e["name"].as_str() != Some("HOARD_DATABASE_URL")));
    let claim = kind(&docs, "PersistentVolumeClaim").expect("a PersistentVolumeClaim");
    let volumes = d["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap();
    let data = volumes
        .iter()
        .find(|v| v["name"].as_str() == Some("data"))
        .unwrap();
    assert_eq!(
        data["persistentVolumeClaim"]["claimName"],
        claim["metadata"]["name"]
    );
    assert!(data["emptyDir"].is_null());
    let printed = config_checks(&docs, &[]);
    assert!(
        printed.contains("data_dir = \"/var/lib/hoard\""),
        "{printed}"
    );
}

#[test]
fn runner_image_patches_the_worker_and_points_jobs_at_hoard() {
    let text = std::fs::read_to_string(repo().join("deploy/runner/Dockerfile")).unwrap();
    assert!(text.contains("hoard runner patch"), "{text}");
    assert!(text.contains("--check"), "{text}");
    for var in [
        "ACTIONS_RESULTS_URL",
        "ACTIONS_CACHE_URL",
        "ACTIONS_CACHE_SERVICE_V2",
    ] {
        assert!(text.contains(var), "{var}");
    }
    let user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER instruction");
    assert_eq!(user.trim(), "runner", "jobs run as the runner user");
}

#[test]
fn a_misspelt_variable_is_named_at_start() {
    let server = Server::start_with(&[("HOARD_EVICTON_INTERVAL_SECS", "5")]);
    let log = server.log();
    assert!(
        log.contains("HOARD_EVICTON_INTERVAL_SECS is not a hoard setting"),
        "{log}"
    );
    assert!(
        !log.contains("HOARD_EVICTION_INTERVAL_SECS is not"),
        "{log}"
    );
}

/// Every `hoard_*` name in `text`, as a metric family (histogram series
/// suffixes dropped).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("hoard_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        out.insert(family.to_string());
    }
    out
}

#[tokio::test]
async fn the_dashboard_and_alert_rules_use_only_metrics_hoard_serves() {
    // Series appear once something happened: a save, a restore, a miss, and
    // a usage refresh.
    let server = Server::start_with(&[("HOARD_METRICS_REFRESH_SECS", "1")]);
    hoard_e2e::client::save(&server, "dashboard", "v", b"bytes").await;
    assert!(hoard_e2e::client::restore(&server, "dashboard", "v")
        .await
        .is_some());
    assert!(hoard_e2e::client::lookup(&server, "elsewhere", "v")
        .await
        .is_none());
    let mut scraped = String::new();
    for _ in 0..50 {
        scraped = reqwest::get(format!("{}/metrics", server.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if scraped.contains("hoard_cache_budget_bytes{") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let served: std::collections::BTreeSet<String> = scraped
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect();
    assert!(served.contains("hoard_cache_lookups_total"), "{scraped}");

    let rules: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("deploy/monitoring/hoard-alerts.yaml")).unwrap(),
    )
    .expect("the alert rules are YAML");
    let mut used = std::collections::BTreeSet::new();
    let groups = rules["groups"].as_sequence().expect("rule groups");
    for rule in groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
    {
        let name = rule["alert"].as_str().expect("an alert name");
        let expr = rule["expr"].as_str().expect("an expression");
        assert!(rule["annotations"]["summary"].is_string(), "{name}");
        used.extend(metric_names(expr));
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/monitoring/grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            used.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    let unknown: Vec<&String> = used.difference(&served).collect();
    assert!(unknown.is_empty(), "not served by hoard: {unknown:?}");
    // Every family hoard serves is on the dashboard or in a rule.
    let unused: Vec<&String> = served.difference(&used).collect();
    assert!(unused.is_empty(), "never shown: {unused:?}");
}

#[test]
fn a_data_dir_the_user_cannot_write_is_named_with_the_user() {
    // Root writes anywhere: the server runs as nobody, as in an image whose
    // volume is owned by root.
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("skipped: dropping to another user needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("hoard");
    std::fs::copy(hoard_bin(), &bin).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("HOARD_CONFIG")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("is not writable"), "{err}");
    assert!(err.contains(&data.display().to_string()), "{err}");
    assert!(err.contains("uid 65534"), "{err}");
    assert!(
        !err.contains("code: 14") && !err.contains("backtrace"),
        "{err}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_access_fields() {
    let server = Server::start_with(&[("HOARD_LOG_FORMAT", "json")]);
    let r = reqwest::Client::new()
        .post(format!(
            "{}/twirp/github.actions.results.api.v1.CacheService/GetCacheEntryDownloadURL",
            server.url
        ))
        .header("content-type", "application/json")
        .header("x-request-id", "json-trace-1")
        .body(r#"{"key":"k","version":"v"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "json-trace-1");
    assert!(server.wait_for_log("json-trace-1", std::time::Duration::from_secs(5)));
    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|l| l["fields"]["id"] == "json-trace-1")
        .expect("the request's line");
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["fields"]["message"], "request");
    assert_eq!(access["fields"]["operation"], "GetCacheEntryDownloadURL");
    assert_eq!(access["fields"]["status"], 200);
    assert_eq!(access["fields"]["namespace"], "default");
}
