//! Limits on what clients may name. Keys are byte-exact strings: never trimmed or
//! lowercased here.

use crate::error::CoreError;

/// key + 9 restore keys, as GitHub allows.
pub const MAX_KEYS_PER_LOOKUP: usize = 10;

/// Readable scopes taken from one token. GitHub's runtime tokens name a few (the
/// job's ref, the default branch, a pull request's base); a token naming
/// hundreds would make every lookup search them all.
pub const MAX_SCOPES_PER_CALLER: usize = 16;

/// Refuses a caller whose token names no readable scope (in the words the
/// toolkit reads as a policy denial, not a failure: `cache read denied:`) or
/// more than hoard searches.
pub fn scopes(read_scopes: &[String]) -> Result<(), CoreError> {
    if read_scopes.is_empty() {
        return Err(CoreError::PermissionDenied(
            "cache read denied: the token grants no readable scope".into(),
        ));
    }
    if read_scopes.iter().any(|s| s.contains('\0')) {
        return Err(CoreError::InvalidArgument(
            "the token names a scope with a NUL character".into(),
        ));
    }
    if read_scopes.len() > MAX_SCOPES_PER_CALLER {
        return Err(CoreError::InvalidArgument(format!(
            "the token names {} readable scopes; at most {MAX_SCOPES_PER_CALLER} are searched",
            read_scopes.len()
        )));
    }
    Ok(())
}

/// How long keys and versions may be, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameLimits {
    /// GitHub's limit (512), which the toolkit also enforces.
    pub key_chars: usize,
    /// The toolkit's versions are 64 hex characters; the default (512) leaves
    /// room for other clients.
    pub version_chars: usize,
}

impl Default for NameLimits {
    fn default() -> Self {
        NameLimits {
            key_chars: 512,
            version_chars: 512,
        }
    }
}

impl NameLimits {
    pub fn key(&self, key: &str) -> Result<(), CoreError> {
        if key.is_empty() {
            return Err(CoreError::InvalidArgument("the key is empty".into()));
        }
        let chars = key.chars().count();
        if chars > self.key_chars {
            return Err(CoreError::InvalidArgument(format!(
                "the key is {chars} characters long; at most {} are allowed",
                self.key_chars
            )));
        }
        Ok(())
    }

    pub fn version(&self, version: &str) -> Result<(), CoreError> {
        if version.is_empty() {
            return Err(CoreError::InvalidArgument("the version is empty".into()));
        }
        // Versions are text in the database; PostgreSQL takes no NUL in text
        // (keys are stored as bytes and may hold anything).
        if version.contains('\0') {
            return Err(CoreError::InvalidArgument(
                "the version contains a NUL character".into(),
            ));
        }
        if version.chars().count() > self.version_chars {
            return Err(CoreError::InvalidArgument(format!(
                "the version is longer than {} characters",
                self.version_chars
            )));
        }
        Ok(())
    }

    /// The key and restore keys of a listing: the key may be empty (list all).
    pub fn list_keys(&self, key: &str, restore: &[String]) -> Result<(), CoreError> {
        if !key.is_empty() {
            self.key(key)?;
        }
        self.restore_keys(restore)
    }

    /// The primary key and the restore keys of a lookup.
    pub fn lookup_keys(&self, primary: &str, restore: &[String]) -> Result<(), CoreError> {
        self.key(primary)?;
        self.restore_keys(restore)
    }

    fn restore_keys(&self, restore: &[String]) -> Result<(), CoreError> {
        if 1 + restore.len() > MAX_KEYS_PER_LOOKUP {
            return Err(CoreError::InvalidArgument(format!(
                "{} keys given; at most {MAX_KEYS_PER_LOOKUP} (key and restore keys) are allowed",
                1 + restore.len()
            )));
        }
        restore.iter().try_for_each(|k| self.key(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_limits_count_characters() {
        let l = NameLimits::default();
        let (key, version, lookup_keys) = (
            |k: &str| l.key(k),
            |v: &str| l.version(v),
            |k: &str, r: &[String]| l.lookup_keys(k, r),
        );
        assert!(key("a").is_ok());
        assert!(key(&"é".repeat(512)).is_ok());
        assert!(key(&"a".repeat(513)).is_err());
        assert!(key("").is_err());
        assert!(version("").is_err());
        assert!(lookup_keys("k", &vec!["r".to_string(); 9]).is_ok());
        assert!(lookup_keys("k", &vec!["r".to_string(); 10]).is_err());
        assert!(lookup_keys("k", &["".to_string()]).is_err());
        assert!(l.list_keys("", &vec!["r".to_string(); 9]).is_ok());
        assert!(l.list_keys("", &vec!["r".to_string(); 10]).is_err());
        assert!(scopes(&vec!["s".to_string(); 16]).is_ok());
        let err = scopes(&vec!["s".to_string(); 17]).unwrap_err().to_string();
        assert!(err.contains("at most 16"), "{err}");
    }
}
