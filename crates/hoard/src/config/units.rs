//! Durations and sizes as people write them: `*_secs` keys take a number of
//! seconds or a duration (`"90s"`, `"15m"`, `"1h 30m"`, `"7d"`, humantime's
//! syntax); `*_bytes` keys a number of bytes or a size (`"512MiB"`, `"10 GiB"`,
//! `"1.5GB"`, bytesize's syntax). The same text works in the TOML file and in
//! the environment. Values are stored as plain numbers, as before.

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A number, or text that `parse` reads as one.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(i64),
    Text(String),
}

/// Seconds from `"15m"`-style text or a plain number.
pub fn parse_secs(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    humantime::parse_duration(t)
        .map(|d| d.as_secs())
        .map_err(|e| {
            format!("{text:?} is not a number of seconds or a duration like \"15m\" ({e})")
        })
}

/// Bytes from `"10GiB"`-style text or a plain number.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{text:?} is not a number of bytes or a size like \"10GiB\" ({e})"))
}

fn read<'de, D, T>(d: D, parse: fn(&str) -> Result<u64, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let n = match NumberOrText::deserialize(d)? {
        NumberOrText::Number(n) => {
            u64::try_from(n).map_err(|_| de::Error::custom("must not be negative"))?
        }
        NumberOrText::Text(t) => parse(&t).map_err(de::Error::custom)?,
    };
    T::try_from(n).map_err(|_| de::Error::custom(format!("{n} is too large")))
}

pub fn secs<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    read(d, parse_secs)
}

pub fn bytes<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    read(d, parse_bytes)
}

pub fn opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bytes(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(parse_secs("90"), Ok(90));
        assert_eq!(parse_secs("15m"), Ok(900));
        assert_eq!(parse_secs("1h 30m"), Ok(5400));
        assert_eq!(parse_secs("7d"), Ok(7 * 86400));
        assert!(parse_secs("soon").is_err());
        assert_eq!(parse_bytes("8388608"), Ok(8 << 20));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("10 GiB"), Ok(10 << 30));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert!(parse_bytes("lots").is_err());
    }
}
