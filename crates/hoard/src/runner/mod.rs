//! `hoard runner ...`: what a fleet operator runs on (or in) a runner to send
//! its jobs' caches through hoard: `patch` lets the runner's environment win
//! over the URLs GitHub gives each step, `env` prints that environment, and
//! `check` proves the wiring from inside a job.

pub mod check;
pub mod patch;

use anyhow::{bail, Result};

/// The `.env` lines that point a runner's jobs at hoard at `url`.
pub fn env_lines(url: &str) -> Result<String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("the URL must start with http:// or https:// (got {url:?})");
    }
    let base = format!("{}/", url.trim_end_matches('/'));
    Ok(format!(
        "ACTIONS_RESULTS_URL={base}\nACTIONS_CACHE_URL={base}\nACTIONS_CACHE_SERVICE_V2=true\n"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn env_lines_end_the_base_with_a_slash() {
        let lines = super::env_lines("http://hoard.internal:8080").unwrap();
        assert_eq!(
            lines,
            "ACTIONS_RESULTS_URL=http://hoard.internal:8080/\nACTIONS_CACHE_URL=http://hoard.internal:8080/\nACTIONS_CACHE_SERVICE_V2=true\n"
        );
        assert_eq!(
            super::env_lines("https://h/t/tok/").unwrap().lines().next(),
            Some("ACTIONS_RESULTS_URL=https://h/t/tok/")
        );
        assert!(super::env_lines("hoard:8080").is_err());
    }
}
