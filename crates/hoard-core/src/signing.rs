//! Signed blob URLs: an HMAC-SHA256 over (operation, entry id, expiry), so a URL
//! works for one entry, one operation, until it expires. Checked in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// What a signed URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Put Blob, Put Block, Put Block List on an upload.
    Upload,
    /// Get Blob and Get Blob Properties on a committed entry.
    Download,
}

impl Operation {
    /// The `sp` query value (Azure SAS style: w = write, r = read).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Upload => "w",
            Operation::Download => "r",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        match s {
            "w" => Some(Operation::Upload),
            "r" => Some(Operation::Download),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the URL is not signed")]
    Missing,
    #[error("the URL signature does not match")]
    Mismatch,
    #[error("the URL has expired")]
    Expired,
}

/// Signs and verifies blob URLs with one secret.
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner { secret: <redacted> }")
    }
}

impl UrlSigner {
    pub fn new(secret: &[u8]) -> UrlSigner {
        UrlSigner {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self, op: Operation, entry_id: i64, expires: i64) -> [u8; 32] {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("hoard-blob-url\n{}\n{entry_id}\n{expires}", op.as_str()).as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The hex signature for an operation on an entry until `expires` (Unix seconds).
    pub fn sign(&self, op: Operation, entry_id: i64, expires: i64) -> String {
        hex::encode(self.mac(op, entry_id, expires))
    }

    /// Checks a signature in constant time, then its expiry against `now` (seconds).
    pub fn verify(
        &self,
        op: Operation,
        entry_id: i64,
        expires: i64,
        signature: &str,
        now: i64,
    ) -> Result<(), SignatureError> {
        if signature.is_empty() {
            return Err(SignatureError::Missing);
        }
        // Only the form hoard writes (lower-case hex) verifies: a re-spelled
        // signature is a changed URL.
        let want = hex::encode(self.mac(op, entry_id, expires));
        if signature.len() != want.len() || !bool::from(signature.as_bytes().ct_eq(want.as_bytes()))
        {
            return Err(SignatureError::Mismatch);
        }
        if now > expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_entry_operation_and_expiry() {
        let s = UrlSigner::new(b"secret");
        let sig = s.sign(Operation::Download, 7, 1000);
        assert_eq!(s.verify(Operation::Download, 7, 1000, &sig, 999), Ok(()));
        assert_eq!(
            s.verify(Operation::Download, 7, 1000, &sig, 1001),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            s.verify(Operation::Upload, 7, 1000, &sig, 1),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify(Operation::Download, 8, 1000, &sig, 1),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify(Operation::Download, 7, 2000, &sig, 1),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            UrlSigner::new(b"other").verify(Operation::Download, 7, 1000, &sig, 1),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            s.verify(Operation::Download, 7, 1000, "", 1),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            s.verify(Operation::Download, 7, 1000, "zz", 1),
            Err(SignatureError::Mismatch)
        );
        // The same bytes spelled in upper case are another URL.
        assert_eq!(
            s.verify(Operation::Download, 7, 1000, &sig.to_uppercase(), 1),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = UrlSigner::new(b"topsecret");
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
