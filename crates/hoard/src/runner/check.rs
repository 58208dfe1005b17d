//! `hoard runner check`: run as a step of a job, it reports what that job's
//! cache client would reach: which API and URL `@actions/cache` picks from the
//! job's environment, whether that URL is hoard, and what hoard makes of the
//! job's runtime token (auth mode, namespace, scopes, whether restores and
//! saves are allowed). It asks hoard's `_hoard/whoami`; the token is sent
//! there only, and never printed.

use anyhow::Result;
use serde::Deserialize;
use std::time::Duration;

/// The variables a runner gives a step, as the cache client reads them.
#[derive(Debug, Default, Clone)]
pub struct JobEnv {
    pub github_server_url: Option<String>,
    pub cache_service_v2: Option<String>,
    pub results_url: Option<String>,
    pub cache_url: Option<String>,
    pub runtime_token: Option<String>,
    pub cache_mode: Option<String>,
}

impl JobEnv {
    pub fn from_process() -> JobEnv {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        JobEnv {
            github_server_url: var("GITHUB_SERVER_URL"),
            cache_service_v2: var("ACTIONS_CACHE_SERVICE_V2"),
            results_url: var("ACTIONS_RESULTS_URL"),
            cache_url: var("ACTIONS_CACHE_URL"),
            runtime_token: var("ACTIONS_RUNTIME_TOKEN"),
            cache_mode: var("ACTIONS_CACHE_MODE"),
        }
    }

    /// GHES by the toolkit's rule: any server but github.com, *.ghe.com and
    /// *.localhost.
    fn is_ghes(&self) -> bool {
        let url = self
            .github_server_url
            .as_deref()
            .unwrap_or("https://github.com");
        let host = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split(['/', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        !(host == "github.com" || host.ends_with(".ghe.com") || host.ends_with(".localhost"))
    }

    /// The API `@actions/cache` speaks here and the variable and URL it uses.
    pub fn cache_target(&self) -> (&'static str, &'static str, Option<&str>) {
        if !self.is_ghes() && self.cache_service_v2.is_some() {
            ("v2", "ACTIONS_RESULTS_URL", self.results_url.as_deref())
        } else if self.cache_url.is_some() {
            ("v1", "ACTIONS_CACHE_URL", self.cache_url.as_deref())
        } else {
            ("v1", "ACTIONS_RESULTS_URL", self.results_url.as_deref())
        }
    }
}

/// `url` with a tenant token in its path (`/t/<token>/`) masked, for logs.
pub fn masked(url: &str) -> String {
    match url.split_once("/t/") {
        Some((head, rest)) => {
            let after = rest.find('/').map_or("", |i| &rest[i..]);
            format!("{head}/t/***{after}")
        }
        None => url.to_string(),
    }
}

/// hoard's answer.
#[derive(Debug, Deserialize)]
pub struct WhoAmI {
    pub service: String,
    pub version: Option<String>,
    pub reached: Option<String>,
    pub auth_mode: Option<String>,
    pub namespace: Option<String>,
    #[serde(default)]
    pub read_scopes: Vec<String>,
    pub write_scope: Option<String>,
    #[serde(default)]
    pub can_restore: bool,
    #[serde(default)]
    pub can_save: bool,
    pub message: Option<String>,
}

/// Asks the hoard at `base` (ending with `/`) about `token`: the answer and
/// its status, or why there was none.
async fn ask(base: &str, token: Option<&str>) -> Result<(u16, Option<WhoAmI>)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut req = client.get(format!("{base}_hoard/whoami"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    // The error's own text would carry the URL, tenant token and all.
    let resp = req.send().await.map_err(|e| {
        anyhow::Error::new(e.without_url()).context(format!("no answer from {}", masked(base)))
    })?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    let who = serde_json::from_slice::<WhoAmI>(&body)
        .ok()
        .filter(|w| w.service == "hoard");
    Ok((status, who))
}

/// Prints the report; true when the job's cache client reaches hoard and
/// hoard accepts its token.
pub async fn run(env: &JobEnv, url_override: Option<&str>) -> Result<bool> {
    let (api, var, url) = env.cache_target();
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
    println!(
        "cache client: {api} API (GITHUB_SERVER_URL={}, ACTIONS_CACHE_SERVICE_V2={})",
        shown(&env.github_server_url),
        shown(&env.cache_service_v2)
    );
    println!("ACTIONS_CACHE_MODE={}", shown(&env.cache_mode));
    let Some(url) = url_override.or(url) else {
        println!("FAIL: {var} is not set: the cache client has nowhere to go");
        return Ok(false);
    };
    let base = format!("{}/", url.trim_end_matches('/'));
    println!("the cache client uses {var}={}", masked(&base));
    if env.runtime_token.is_none() {
        println!(
            "FAIL: ACTIONS_RUNTIME_TOKEN is not set: the cache client refuses to run without one"
        );
        return Ok(false);
    }
    let (status, who) = match ask(&base, env.runtime_token.as_deref()).await {
        Ok(answer) => answer,
        Err(e) => {
            println!("FAIL: {e:#}");
            return Ok(false);
        }
    };
    let Some(who) = who else {
        println!("FAIL: {} answered {status} and is not hoard: this job's cache does not go through hoard (is the runner patched and its .env set? see `hoard runner patch --check`)", masked(&base));
        return Ok(false);
    };
    let mode = who.auth_mode.as_deref().unwrap_or("?");
    if status != 200 {
        println!(
            "FAIL: hoard ({mode}) refused the job's token: {}",
            who.message.as_deref().unwrap_or("no reason given")
        );
        return Ok(false);
    }
    println!(
        "reached hoard {} at {} (auth mode {mode})",
        who.version.as_deref().unwrap_or("?"),
        who.reached.as_deref().unwrap_or("?")
    );
    println!("namespace: {}", who.namespace.as_deref().unwrap_or("?"));
    println!("read scopes: {}", who.read_scopes.join(", "));
    println!(
        "write scope: {}",
        who.write_scope.as_deref().unwrap_or("(none)")
    );
    let word = |b: bool| if b { "allowed" } else { "denied" };
    println!(
        "restore: {}; save: {}",
        word(who.can_restore),
        word(who.can_save)
    );
    println!("OK: this job's cache goes through hoard");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::{masked, JobEnv};

    #[test]
    fn tenant_tokens_in_urls_are_masked() {
        assert_eq!(
            masked("http://h:8080/t/hoard_a_secret/"),
            "http://h:8080/t/***/"
        );
        assert_eq!(masked("http://h:8080/"), "http://h:8080/");
    }

    #[test]
    fn the_toolkits_choice_of_api_and_url() {
        let mut env = JobEnv {
            results_url: Some("http://r/".into()),
            cache_url: Some("http://c/".into()),
            cache_service_v2: Some("true".into()),
            ..JobEnv::default()
        };
        assert_eq!(
            env.cache_target(),
            ("v2", "ACTIONS_RESULTS_URL", Some("http://r/"))
        );
        env.github_server_url = Some("https://ghes.example.internal".into());
        assert_eq!(
            env.cache_target(),
            ("v1", "ACTIONS_CACHE_URL", Some("http://c/"))
        );
        env.github_server_url = Some("https://acme.ghe.com".into());
        assert_eq!(env.cache_target().0, "v2");
        env.cache_service_v2 = None;
        env.cache_url = None;
        assert_eq!(
            env.cache_target(),
            ("v1", "ACTIONS_RESULTS_URL", Some("http://r/"))
        );
    }
}
