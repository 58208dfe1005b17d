//! `hoard runner patch`: lets the values a fleet operator puts in a runner's
//! environment (its `.env` file, or the container's environment) reach every
//! step, where the runner would otherwise overwrite them.
//!
//! For each Node.js and container action step, the runner's worker sets
//! `ACTIONS_RESULTS_URL` and `ACTIONS_CACHE_URL` in the step's environment from
//! its connection to GitHub (`Environment["ACTIONS_RESULTS_URL"] = ...` in
//! Runner.Worker.dll). A step inherits the worker's own environment, which
//! holds the `.env` values, so renaming the two string literals the worker
//! assigns to makes it set two harmless variables (`HOARDED_RESULTS_URL`,
//! `HOARDED_CACHE_URL`, which also show what GitHub would have used) and lets
//! the operator's values through. `ACTIONS_CACHE_SERVICE_V2` is only ever set
//! to true by the runner, so `.env` can set it without a patch, and
//! `ACTIONS_CACHE_MODE` is the runner's read-only signal, which must stay.
//!
//! A .NET assembly keeps string literals once each in its `#US` heap: a
//! compressed byte length (2 per UTF-16 unit, plus 1), the UTF-16LE units, and
//! a flag byte. The patch replaces exactly those entries with ones of the same
//! length, so nothing else in the file moves; it works on any runner release
//! whose worker still assigns these literals, and refuses a file where it does
//! not find each of them exactly once.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The worker assembly, relative to the runner's directory.
pub const WORKER: &str = "bin/Runner.Worker.dll";
/// The unpatched worker is kept beside it under this suffix.
pub const BACKUP_SUFFIX: &str = ".hoard-backup";

/// Literal, and what it becomes: same length, so offsets do not change.
const RENAMES: [(&str, &str); 2] = [
    ("ACTIONS_RESULTS_URL", "HOARDED_RESULTS_URL"),
    ("ACTIONS_CACHE_URL", "HOARDED_CACHE_URL"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Unpatched,
    Patched,
    /// Not a worker this patch knows; says what was found.
    Unknown(String),
}

/// The `#US` heap entry of `s` (ASCII without the characters that set the
/// flag byte, which holds for every literal here; lengths under 128 bytes).
pub fn us_entry(s: &str) -> Vec<u8> {
    debug_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    debug_assert!(s.len() * 2 < 127);
    let mut e = Vec::with_capacity(2 + s.len() * 2);
    e.push((s.len() * 2 + 1) as u8);
    for b in s.bytes() {
        e.extend([b, 0]);
    }
    e.push(0);
    e
}

fn positions(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// What `bytes` (a worker assembly) is.
pub fn inspect(bytes: &[u8]) -> State {
    let dotnet = bytes.starts_with(b"MZ")
        && !positions(bytes, b"BSJB").is_empty()
        && !positions(bytes, b"#US\0").is_empty();
    if !dotnet {
        return State::Unknown(
            "not a .NET assembly (no MZ header, metadata root or #US heap)".into(),
        );
    }
    let mut originals = 0;
    let mut renamed = 0;
    let mut found = Vec::new();
    for (from, to) in RENAMES {
        let o = positions(bytes, &us_entry(from)).len();
        let r = positions(bytes, &us_entry(to)).len();
        found.push(format!("{from} {o}x, {to} {r}x"));
        match (o, r) {
            (1, 0) => originals += 1,
            (0, 1) => renamed += 1,
            _ => {}
        }
    }
    if originals == RENAMES.len() {
        State::Unpatched
    } else if renamed == RENAMES.len() {
        State::Patched
    } else {
        State::Unknown(format!(
            "expected each literal exactly once, either as the runner has it or renamed; found {}",
            found.join("; ")
        ))
    }
}

/// `bytes` with every literal renamed one way (`forward`) or back.
fn rename(bytes: &[u8], forward: bool) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (from, to) in RENAMES {
        let (from, to) = if forward { (from, to) } else { (to, from) };
        let (from, to) = (us_entry(from), us_entry(to));
        for at in positions(bytes, &from) {
            out[at..at + to.len()].copy_from_slice(&to);
        }
    }
    out
}

pub fn worker_path(runner_dir: &Path) -> PathBuf {
    runner_dir.join(WORKER)
}

fn backup_path(worker: &Path) -> PathBuf {
    let mut name = worker.as_os_str().to_owned();
    name.push(BACKUP_SUFFIX);
    PathBuf::from(name)
}

/// Reads the worker of `runner_dir`, or says why it cannot be the runner's.
fn read_worker(runner_dir: &Path) -> Result<(PathBuf, Vec<u8>), State> {
    let worker = worker_path(runner_dir);
    match std::fs::read(&worker) {
        Ok(bytes) => Ok((worker, bytes)),
        Err(e) => Err(State::Unknown(format!(
            "cannot read {} ({e}): give the runner's directory, the one with config.sh, run.sh and bin/",
            worker.display()
        ))),
    }
}

/// The state of the runner in `runner_dir`.
pub fn check(runner_dir: &Path) -> State {
    match read_worker(runner_dir) {
        Ok((_, bytes)) => inspect(&bytes),
        Err(state) => state,
    }
}

/// Replaces `path` with `bytes` in one step, keeping its permissions.
fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = {
        let mut name = path.as_os_str().to_owned();
        name.push(".hoard-tmp");
        PathBuf::from(name)
    };
    let permissions = std::fs::metadata(path)?.permissions();
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, permissions)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Patches the runner in `runner_dir`; a patched one is left as it is. What
/// it did, in words.
pub fn patch(runner_dir: &Path) -> Result<String> {
    let (worker, bytes) = read_worker(runner_dir).map_err(refusal)?;
    match inspect(&bytes) {
        State::Patched => Ok(format!("{} is already patched", worker.display())),
        State::Unknown(why) => Err(refusal(State::Unknown(why))),
        State::Unpatched => {
            let backup = backup_path(&worker);
            if !backup.exists() {
                std::fs::copy(&worker, &backup)
                    .with_context(|| format!("keeping a backup at {}", backup.display()))?;
            }
            replace(&worker, &rename(&bytes, true))?;
            Ok(format!(
                "patched {} (the original is kept at {}); restart the runner",
                worker.display(),
                backup.display()
            ))
        }
    }
}

/// Undoes [`patch`]; an unpatched runner is left as it is.
pub fn revert(runner_dir: &Path) -> Result<String> {
    let (worker, bytes) = read_worker(runner_dir).map_err(refusal)?;
    match inspect(&bytes) {
        State::Unpatched => Ok(format!("{} is not patched", worker.display())),
        State::Unknown(why) => Err(refusal(State::Unknown(why))),
        State::Patched => {
            let original = rename(&bytes, false);
            replace(&worker, &original)?;
            let backup = backup_path(&worker);
            if std::fs::read(&backup).is_ok_and(|b| b == original) {
                std::fs::remove_file(&backup)?;
            }
            Ok(format!("reverted {}; restart the runner", worker.display()))
        }
    }
}

fn refusal(state: State) -> anyhow::Error {
    match state {
        State::Unknown(why) => anyhow::anyhow!("unknown runner layout, nothing changed: {why}"),
        other => anyhow::anyhow!("unexpected state {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest file `inspect` takes for an assembly, with these literals.
    fn assembly(literals: &[&str]) -> Vec<u8> {
        let mut b = b"MZ\x90\0BSJB#US\0\0".to_vec();
        for l in literals {
            b.extend(us_entry(l));
        }
        b
    }

    #[test]
    fn us_entries_are_length_utf16_and_flag() {
        assert_eq!(us_entry("AB"), vec![5, b'A', 0, b'B', 0, 0]);
        assert_eq!(us_entry("ACTIONS_RESULTS_URL")[0], 39);
    }

    #[test]
    fn renames_both_ways_and_knows_each_state() {
        let original = assembly(&[
            "ACTIONS_RUNTIME_URL",
            "ACTIONS_CACHE_URL",
            "ACTIONS_RESULTS_URL",
        ]);
        assert_eq!(inspect(&original), State::Unpatched);
        let patched = rename(&original, true);
        assert_eq!(patched.len(), original.len());
        assert_eq!(inspect(&patched), State::Patched);
        assert_eq!(rename(&patched, false), original);
        // A longer literal that starts the same is another entry: untouched.
        let longer = assembly(&[
            "ACTIONS_CACHE_URL_ORIGINAL",
            "ACTIONS_CACHE_URL",
            "ACTIONS_RESULTS_URL",
        ]);
        let p = rename(&longer, true);
        assert_eq!(
            positions(&p, &us_entry("ACTIONS_CACHE_URL_ORIGINAL")).len(),
            1
        );
    }

    #[test]
    fn unknown_when_a_literal_is_missing_twice_or_mixed() {
        let missing = inspect(&assembly(&["ACTIONS_CACHE_URL"]));
        assert!(
            matches!(missing, State::Unknown(ref m) if m.contains("ACTIONS_RESULTS_URL 0x")),
            "{missing:?}"
        );
        let twice = assembly(&[
            "ACTIONS_CACHE_URL",
            "ACTIONS_CACHE_URL",
            "ACTIONS_RESULTS_URL",
        ]);
        assert!(matches!(inspect(&twice), State::Unknown(_)));
        let mixed = assembly(&["HOARDED_CACHE_URL", "ACTIONS_RESULTS_URL"]);
        assert!(matches!(inspect(&mixed), State::Unknown(_)));
        assert!(
            matches!(inspect(b"#!/bin/sh\n"), State::Unknown(ref m) if m.contains("not a .NET assembly"))
        );
    }
}
