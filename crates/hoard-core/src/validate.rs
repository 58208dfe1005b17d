//! Limits on what clients may name. Keys are byte-exact strings: never trimmed or
//! lowercased here.

use crate::error::CoreError;

/// GitHub's limit, which the toolkit also enforces.
pub const MAX_KEY_CHARS: usize = 512;
/// The toolkit's versions are 64 hex characters; leave room for other clients.
pub const MAX_VERSION_CHARS: usize = 512;
/// key + 9 restore keys, as GitHub allows.
pub const MAX_KEYS_PER_LOOKUP: usize = 10;

pub fn key(key: &str) -> Result<(), CoreError> {
    if key.is_empty() {
        return Err(CoreError::InvalidArgument("the key is empty".into()));
    }
    let chars = key.chars().count();
    if chars > MAX_KEY_CHARS {
        return Err(CoreError::InvalidArgument(format!(
            "the key is {chars} characters long; at most {MAX_KEY_CHARS} are allowed"
        )));
    }
    Ok(())
}

pub fn version(version: &str) -> Result<(), CoreError> {
    if version.is_empty() {
        return Err(CoreError::InvalidArgument("the version is empty".into()));
    }
    if version.chars().count() > MAX_VERSION_CHARS {
        return Err(CoreError::InvalidArgument(format!(
            "the version is longer than {MAX_VERSION_CHARS} characters"
        )));
    }
    Ok(())
}

/// The primary key and the restore keys of a lookup.
pub fn lookup_keys(primary: &str, restore: &[String]) -> Result<(), CoreError> {
    key(primary)?;
    if 1 + restore.len() > MAX_KEYS_PER_LOOKUP {
        return Err(CoreError::InvalidArgument(format!(
            "{} keys given; at most {MAX_KEYS_PER_LOOKUP} (key and restore keys) are allowed",
            1 + restore.len()
        )));
    }
    for k in restore {
        key(k)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_limits_count_characters() {
        assert!(key("a").is_ok());
        assert!(key(&"é".repeat(512)).is_ok());
        assert!(key(&"a".repeat(513)).is_err());
        assert!(key("").is_err());
        assert!(version("").is_err());
        assert!(lookup_keys("k", &vec!["r".to_string(); 9]).is_ok());
        assert!(lookup_keys("k", &vec!["r".to_string(); 10]).is_err());
        assert!(lookup_keys("k", &["".to_string()]).is_err());
    }
}
