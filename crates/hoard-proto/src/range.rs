//! `Range` / `x-ms-range` headers: one byte range, as Azure Blob accepts them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b`, both inclusive.
    Closed(u64, u64),
    /// `bytes=a-`
    From(u64),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("the range header is not of the form bytes=a-b, bytes=a- or bytes=-n")]
    Syntax,
    #[error("the range does not overlap the blob")]
    Unsatisfiable,
}

/// Parses a single byte range. Several ranges are refused: Azure serves one.
pub fn parse_range(value: &str) -> Result<ByteRange, RangeError> {
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Syntax)?
        .trim();
    let (a, b) = spec.split_once('-').ok_or(RangeError::Syntax)?;
    let num = |s: &str| -> Result<u64, RangeError> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(RangeError::Syntax);
        }
        s.parse().map_err(|_| RangeError::Syntax)
    };
    match (a.trim(), b.trim()) {
        ("", "") => Err(RangeError::Syntax),
        ("", n) => Ok(ByteRange::Suffix(num(n)?)),
        (s, "") => Ok(ByteRange::From(num(s)?)),
        (s, e) => {
            let (s, e) = (num(s)?, num(e)?);
            if e < s {
                return Err(RangeError::Syntax);
            }
            Ok(ByteRange::Closed(s, e))
        }
    }
}

impl ByteRange {
    /// The half-open `[start, end)` this range selects in a blob of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<(u64, u64), RangeError> {
        let (start, end) = match self {
            ByteRange::Closed(s, e) => (s, e.saturating_add(1).min(size)),
            ByteRange::From(s) => (s, size),
            ByteRange::Suffix(0) => return Err(RangeError::Unsatisfiable),
            ByteRange::Suffix(n) => (size.saturating_sub(n), size),
        };
        if start >= size || start >= end {
            return Err(RangeError::Unsatisfiable);
        }
        Ok((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(parse_range("bytes=0-99"), Ok(ByteRange::Closed(0, 99)));
        assert_eq!(parse_range("bytes=100-"), Ok(ByteRange::From(100)));
        assert_eq!(parse_range("bytes=-5"), Ok(ByteRange::Suffix(5)));
        assert_eq!(parse_range(" bytes= 3 - 4 "), Ok(ByteRange::Closed(3, 4)));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "bytes=",
            "bytes=-",
            "items=0-1",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=0-1,3-4",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse_range(bad), Err(RangeError::Syntax), "{bad}");
        }
    }

    #[test]
    fn resolves_against_size() {
        assert_eq!(ByteRange::Closed(0, 99).resolve(50), Ok((0, 50)));
        assert_eq!(ByteRange::From(10).resolve(50), Ok((10, 50)));
        assert_eq!(ByteRange::Suffix(5).resolve(50), Ok((45, 50)));
        assert_eq!(ByteRange::Suffix(500).resolve(50), Ok((0, 50)));
        assert_eq!(
            ByteRange::From(50).resolve(50),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            ByteRange::Closed(0, 0).resolve(0),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            ByteRange::Suffix(0).resolve(10),
            Err(RangeError::Unsatisfiable)
        );
    }
}
