//! The configuration's defaults, file, environment and checks.

use super::auth::{AuthMode, GITHUB_JWKS_URL};
use super::env::{parse_bool, parse_tenants, unknown_variables, CONFIG_VARIABLES};
use super::*;

/// Every leaf key of a TOML table, dotted.
fn leaf_keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                leaf_keys(v, &format!("{prefix}{k}."), out);
            }
        }
        _ => out.push(prefix.trim_end_matches('.').to_string()),
    }
}

/// One source of truth for defaults: the shipped example file states every
/// key at the value the code uses, and configuration.md documents each.
#[test]
fn the_example_file_is_the_defaults_and_every_key_is_documented() {
    let text = include_str!("../../../../deploy/hoard.example.toml");
    let example: toml::Value = toml::from_str(text).expect("the example parses");
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let (mut in_example, mut in_code) = (Vec::new(), Vec::new());
    leaf_keys(&example, "", &mut in_example);
    leaf_keys(&defaults, "", &mut in_code);
    assert_eq!(in_example, in_code, "the example names every key, no other");
    assert_eq!(example, defaults, "the example states the defaults");
    let parsed: Config = toml::from_str(text).unwrap();
    parsed.validate().unwrap();
    let docs = include_str!("../../../../docs/configuration.md");
    for key in in_code {
        assert!(
            docs.contains(&format!("`{key}`")) || docs.contains(&format!("`[[{key}]]`")),
            "docs/configuration.md does not document {key}"
        );
    }
}

#[test]
fn passthrough_goes_to_github_unless_told_otherwise() {
    let c = Config::default();
    assert_eq!(
        c.passthrough.upstream,
        "https://results-receiver.actions.githubusercontent.com/"
    );
    assert!(c.validate().is_ok());
    let off: Config = toml::from_str("[passthrough]\nupstream = \"\"\n").unwrap();
    assert!(off.validate().is_ok());
    for bad in [
        "[passthrough]\nupstream = \"results.internal\"\n",
        "[passthrough]\nupstream = \"ftp://results.internal/\"\n",
        "[passthrough]\ntimeout_secs = 0\n",
    ] {
        let c: Config = toml::from_str(bad).unwrap();
        assert!(c.validate().is_err(), "{bad}");
    }
}

#[test]
fn defaults_and_file() {
    let c = Config::default();
    assert_eq!(c.listen, "127.0.0.1:8080");
    assert_eq!(c.uploads.pending_timeout_secs, 3600);
    let parsed: Config =
        toml::from_str("listen = \"0.0.0.0:9000\"\n[uploads]\npending_timeout_secs = 5\n").unwrap();
    assert_eq!(parsed.listen, "0.0.0.0:9000");
    assert_eq!(parsed.uploads.pending_timeout_secs, 5);
    assert_eq!(parsed.uploads.url_ttl_secs, 3600);
    assert!(toml::from_str::<Config>("nonsense = 1").is_err());
    let parsed: Config = toml::from_str(
        "[database]\nurl = \"postgres://db/hoard\"\n[storage]\nurl = \"s3://b/p\"\npath_style = false\n",
    )
    .unwrap();
    assert_eq!(parsed.database.url, "postgres://db/hoard");
    assert_eq!(parsed.storage.path_style, Some(false));
    assert_eq!(parsed.storage.part_size_bytes, 8 * 1024 * 1024);
    assert!(parse_bool("X", "maybe").is_err());
    let parsed: Config = toml::from_str(
        "[eviction]\nretention_days = 0\n[[eviction.namespaces]]\npattern = \"org/*\"\nbudget_bytes = 100\nmax_entry_bytes = 50\nprotected_keys = [\"tool-*\"]\n[[eviction.scopes]]\npattern = \"refs/pull/*\"\nretention_days = 3\n",
    )
    .unwrap();
    let policy = parsed.eviction.policy();
    assert_eq!(policy.defaults.retention_ms, None);
    assert_eq!(policy.defaults.budget_bytes, Some(10 << 30));
    assert_eq!(policy.limits("org/x").budget_bytes, Some(100));
    assert_eq!(policy.limits("org/x").protected.len(), 1);
    assert_eq!(policy.limits("org/x").max_entry_bytes, Some(50));
    assert_eq!(policy.defaults.max_entry_bytes, Some(10 << 30));
    assert_eq!(policy.scopes[0].retention_ms, Some(3 * DAY_MS));
    assert!(parse_bool("X", " TRUE ").unwrap());
    let mut secret = Config::default();
    secret.signing.secret = "sign-me".into();
    secret.storage.secret_access_key = "s3-secret".into();
    secret.database.url = "postgres://u:pg-secret@db/x".into();
    let printed = toml::to_string(&secret.masked()).unwrap();
    for s in ["sign-me", "s3-secret", "pg-secret"] {
        assert!(!printed.contains(s), "{printed}");
    }
}

#[test]
fn auth_modes_and_tenants() {
    let hash = hoard_server::auth::tenant::TokenHash::new("hoard_x").to_string();
    let parsed: Config = toml::from_str(&format!(
        "[auth]\nmode = \"tenant-token+github-jwt\"\n[[auth.tenants]]\nname = \"team-a\"\ntoken_hash = \"{hash}\"\n[auth.github]\npublic_key_files = [\"/k.pem\"]\n"
    ))
    .unwrap();
    let modes = parsed.auth.modes().unwrap();
    assert!(modes.tenant_token && modes.github_jwt);
    assert_eq!(parsed.auth.jwks_url(), None);
    assert!(parsed.validate().is_ok());
    assert!(!toml::to_string(&parsed.masked()).unwrap().contains(&hash));
    let mut c = Config::default();
    assert!(!c.auth.modes().unwrap().tenant_token);
    c.auth.mode = "github-jwt".into();
    assert_eq!(c.auth.jwks_url().as_deref(), Some(GITHUB_JWKS_URL));
    c.auth.mode = "tenant-token".into();
    assert!(c.validate().is_err(), "tenant-token without tenants");
    c.auth.mode = "open-sesame".into();
    assert!(c.validate().is_err());
    c.auth.mode = "tenant-token".into();
    c.auth.tenants = parse_tenants(&format!("a={hash}, b=sha256:00:11")).unwrap();
    assert!(
        c.validate().is_err(),
        "a malformed hash is refused at start"
    );
    assert!(parse_tenants("no-equals-sign").is_err());
    c.auth.tenants = parse_tenants(&format!("a/b={hash}")).unwrap();
    assert!(c.validate().is_err(), "tenant names cannot contain '/'");
}

#[test]
fn durations_and_sizes_in_the_file() {
    let c: Config = toml::from_str(
        "[storage]\npart_size_bytes = \"16MiB\"\n[uploads]\npending_timeout_secs = \"2h\"\nmax_block_bytes = 1048576\n[eviction]\nnamespace_budget_bytes = \"50 GiB\"\n[[eviction.namespaces]]\npattern = \"big/*\"\nbudget_bytes = \"1TiB\"\n[limits]\nbody_idle_timeout_secs = \"45s\"\n",
    )
    .unwrap();
    assert_eq!(c.storage.part_size_bytes, 16 << 20);
    assert_eq!(c.uploads.pending_timeout_secs, 7200);
    assert_eq!(c.uploads.max_block_bytes, 1 << 20);
    assert_eq!(c.eviction.namespace_budget_bytes, 50 << 30);
    assert_eq!(c.eviction.namespaces[0].budget_bytes, Some(1 << 40));
    assert_eq!(c.eviction.namespaces[0].max_entry_bytes, None);
    assert_eq!(c.limits.body_idle_timeout_secs, 45);
    for bad in [
        "[uploads]\npending_timeout_secs = \"soon\"\n",
        "[storage]\npart_size_bytes = \"lots\"\n",
        "[storage]\npart_size_bytes = -1\n",
    ] {
        let err = toml::from_str::<Config>(bad).unwrap_err().to_string();
        assert!(
            err.contains("is not a number") || err.contains("negative"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn durations_and_sizes_in_the_environment() {
    std::env::set_var("HOARD_UPLOADS_PENDING_TIMEOUT_SECS", "90m");
    std::env::set_var("HOARD_STORAGE_UPLOAD_BUFFER_BYTES", "64MiB");
    let c = Config::load(None).unwrap();
    assert_eq!(c.uploads.pending_timeout_secs, 5400);
    assert_eq!(c.storage.upload_buffer_bytes, 64 << 20);
    std::env::set_var("HOARD_STORAGE_UPLOAD_BUFFER_BYTES", "a lot");
    let err = Config::load(None).unwrap_err().to_string();
    assert!(err.contains("HOARD_STORAGE_UPLOAD_BUFFER_BYTES"), "{err}");
}

#[test]
fn auth_modes_by_name_in_either_order() {
    for (text, mode) in [
        ("trusted-network", AuthMode::TrustedNetwork),
        (" tenant-token ", AuthMode::TenantToken),
        ("github-jwt", AuthMode::GithubJwt),
        ("tenant-token+github-jwt", AuthMode::TenantTokenAndGithubJwt),
        (
            "github-jwt + tenant-token",
            AuthMode::TenantTokenAndGithubJwt,
        ),
    ] {
        assert_eq!(AuthMode::from(text), mode, "{text}");
    }
    assert_eq!(
        AuthMode::from("open-sesame"),
        AuthMode::Unknown("open-sesame".into())
    );
    // Printed (and written back) by its canonical name.
    let c: Config = toml::from_str("[auth]\nmode = \"github-jwt+tenant-token\"\n").unwrap();
    assert!(toml::to_string(&c)
        .unwrap()
        .contains("mode = \"tenant-token+github-jwt\""));
}

#[test]
fn misspelt_variables_are_named() {
    // The list is every variable apply_env reads, no more, no less.
    let source = include_str!("env.rs");
    let body = &source[..source.find("pub(super) const CONFIG_VARIABLES").unwrap()];
    let mut read: Vec<&str> = body
        .split('"')
        .filter(|s| {
            s.starts_with("HOARD_")
                && s.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    read.sort_unstable();
    read.dedup();
    assert_eq!(read, CONFIG_VARIABLES);
    let names = [
        "HOARD_LISTEN",
        "HOARD_LOG",
        "HOARD_STORAGE_UR",
        "PATH",
        "HOARD_EVICTON_INTERVAL_SECS",
    ];
    assert_eq!(
        unknown_variables(names.iter().map(|s| s.to_string())),
        ["HOARD_EVICTON_INTERVAL_SECS", "HOARD_STORAGE_UR"]
    );
}
