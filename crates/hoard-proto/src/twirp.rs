//! Messages of `github.actions.results.api.v1.CacheService`, in both Twirp encodings.
//!
//! One struct serves protobuf (prost field numbers) and JSON (serde): JSON uses the
//! proto field names, also accepts lowerCamelCase, reads int64 as string or number and
//! writes it as a string, as protobuf-JSON does. Unknown fields are ignored.
//!
//! Long because it is the service's whole message set; each message is short and
//! they are read side by side.

use crate::twirp_error::{TwirpCode, TwirpError};
use serde::{Deserialize, Serialize};

/// The Twirp service path prefix of the cache service.
pub const CACHE_SERVICE: &str = "github.actions.results.api.v1.CacheService";

/// The cache service's methods, by the names their paths spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    CreateCacheEntry,
    FinalizeCacheEntryUpload,
    GetCacheEntryDownloadUrl,
    LookupCacheEntry,
    DeleteCacheEntry,
    ListCacheEntries,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::CreateCacheEntry,
        Method::FinalizeCacheEntryUpload,
        Method::GetCacheEntryDownloadUrl,
        Method::LookupCacheEntry,
        Method::DeleteCacheEntry,
        Method::ListCacheEntries,
    ];

    /// The method's name in the path (`.../CacheService/<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Method::CreateCacheEntry => "CreateCacheEntry",
            Method::FinalizeCacheEntryUpload => "FinalizeCacheEntryUpload",
            Method::GetCacheEntryDownloadUrl => "GetCacheEntryDownloadURL",
            Method::LookupCacheEntry => "LookupCacheEntry",
            Method::DeleteCacheEntry => "DeleteCacheEntry",
            Method::ListCacheEntries => "ListCacheEntries",
        }
    }

    /// The method a path's last segment names; exact, as Twirp routes.
    pub fn parse(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// How a Twirp request body was encoded; the answer uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

impl Encoding {
    /// Picks the encoding from a `Content-Type` header value.
    pub fn from_content_type(value: &str) -> Option<Encoding> {
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else if essence.eq_ignore_ascii_case("application/protobuf")
            || essence.eq_ignore_ascii_case("application/x-protobuf")
        {
            Some(Encoding::Protobuf)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Protobuf => "application/protobuf",
        }
    }
}

/// A message that travels in both encodings.
pub trait TwirpMessage: prost::Message + Default + Serialize + for<'de> Deserialize<'de> {}
impl<T> TwirpMessage for T where T: prost::Message + Default + Serialize + for<'de> Deserialize<'de> {}

/// Decodes a request body; a body that does not parse is `malformed`.
pub fn decode<T: TwirpMessage>(encoding: Encoding, body: &[u8]) -> Result<T, TwirpError> {
    match encoding {
        Encoding::Json => serde_json::from_slice(body).map_err(|e| {
            TwirpError::new(
                TwirpCode::Malformed,
                format!("the JSON body does not parse: {e}"),
            )
        }),
        Encoding::Protobuf => T::decode(body).map_err(|e| {
            TwirpError::new(
                TwirpCode::Malformed,
                format!("the protobuf body does not parse: {e}"),
            )
        }),
    }
}

/// Encodes a response body.
pub fn encode<T: TwirpMessage>(encoding: Encoding, message: &T) -> Vec<u8> {
    match encoding {
        // Serialising these plain structs cannot fail.
        Encoding::Json => serde_json::to_vec(message).unwrap_or_default(),
        Encoding::Protobuf => message.encode_to_vec(),
    }
}

/// `github.actions.results.entities.v1.CacheScope`
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheScope {
    #[prost(string, tag = "1")]
    pub scope: String,
    #[prost(int64, tag = "2")]
    #[serde(with = "int64")]
    pub permission: i64,
}

/// `github.actions.results.entities.v1.CacheMetadata`
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheMetadata {
    #[prost(int64, tag = "1")]
    #[serde(with = "int64", alias = "repositoryId")]
    pub repository_id: i64,
    #[prost(message, repeated, tag = "2")]
    pub scope: Vec<CacheScope>,
}

/// `google.protobuf.Timestamp`; RFC 3339 text in JSON.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn from_millis(ms: i64) -> Timestamp {
        Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
        }
    }
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateCacheEntryRequest {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<CacheMetadata>,
    #[prost(string, tag = "2")]
    pub key: String,
    #[prost(string, tag = "3")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateCacheEntryResponse {
    #[prost(bool, tag = "1")]
    pub ok: bool,
    #[prost(string, tag = "2")]
    #[serde(alias = "signedUploadUrl")]
    pub signed_upload_url: String,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct FinalizeCacheEntryUploadRequest {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<CacheMetadata>,
    #[prost(string, tag = "2")]
    pub key: String,
    #[prost(int64, tag = "3")]
    #[serde(with = "int64", alias = "sizeBytes")]
    pub size_bytes: i64,
    #[prost(string, tag = "4")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct FinalizeCacheEntryUploadResponse {
    #[prost(bool, tag = "1")]
    pub ok: bool,
    #[prost(int64, tag = "2")]
    #[serde(with = "int64", alias = "entryId")]
    pub entry_id: i64,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct GetCacheEntryDownloadUrlRequest {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<CacheMetadata>,
    #[prost(string, tag = "2")]
    pub key: String,
    #[prost(string, repeated, tag = "3")]
    #[serde(alias = "restoreKeys")]
    pub restore_keys: Vec<String>,
    #[prost(string, tag = "4")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct GetCacheEntryDownloadUrlResponse {
    #[prost(bool, tag = "1")]
    pub ok: bool,
    #[prost(string, tag = "2")]
    #[serde(alias = "signedDownloadUrl")]
    pub signed_download_url: String,
    #[prost(string, tag = "3")]
    #[serde(alias = "matchedKey")]
    pub matched_key: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct DeleteCacheEntryRequest {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<CacheMetadata>,
    #[prost(string, tag = "2")]
    pub key: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct DeleteCacheEntryResponse {
    #[prost(bool, tag = "1")]
    pub ok: bool,
    #[prost(int64, tag = "2")]
    #[serde(with = "int64", alias = "entryId")]
    pub entry_id: i64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ListCacheEntriesRequest {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<CacheMetadata>,
    #[prost(string, tag = "2")]
    pub key: String,
    #[prost(string, repeated, tag = "3")]
    #[serde(alias = "restoreKeys")]
    pub restore_keys: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ListCacheEntriesResponse {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<CacheEntry>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LookupCacheEntryRequest {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<CacheMetadata>,
    #[prost(string, tag = "2")]
    pub key: String,
    #[prost(string, repeated, tag = "3")]
    #[serde(alias = "restoreKeys")]
    pub restore_keys: Vec<String>,
    #[prost(string, tag = "4")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct LookupCacheEntryResponse {
    #[prost(bool, tag = "1")]
    pub exists: bool,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<CacheEntry>,
}

/// `github.actions.results.entities.v1.CacheEntry`
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheEntry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub hash: String,
    #[prost(int64, tag = "3")]
    #[serde(with = "int64", alias = "sizeBytes")]
    pub size_bytes: i64,
    #[prost(string, tag = "4")]
    pub scope: String,
    #[prost(string, tag = "5")]
    pub version: String,
    #[prost(message, optional, tag = "6")]
    #[serde(with = "timestamp", alias = "createdAt")]
    pub created_at: Option<Timestamp>,
    #[prost(message, optional, tag = "7")]
    #[serde(with = "timestamp", alias = "lastAccessedAt")]
    pub last_accessed_at: Option<Timestamp>,
    #[prost(message, optional, tag = "8")]
    #[serde(with = "timestamp", alias = "expiresAt")]
    pub expires_at: Option<Timestamp>,
}

/// protobuf-JSON int64: written as a string, read from a string or a number.
mod int64 {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(i64),
        Text(String),
        Null(()),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(n),
            Raw::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| de::Error::custom(format!("not an int64: {t:?}"))),
            Raw::Null(()) => Ok(0),
        }
    }
}

/// protobuf-JSON Timestamp: RFC 3339 text with a `Z` offset.
mod timestamp {
    use super::Timestamp;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(t) => s.collect_str(&format_rfc3339(t)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => parse_rfc3339(&t)
                .map(Some)
                .ok_or_else(|| de::Error::custom(format!("not an RFC 3339 time: {t:?}"))),
        }
    }

    /// Days since 1970-01-01 to a civil date (proleptic Gregorian).
    fn civil_from_days(z: i64) -> (i64, u32, u32) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (if m <= 2 { y + 1 } else { y }, m, d)
    }

    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = m as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    pub fn format_rfc3339(t: &Timestamp) -> String {
        let days = t.seconds.div_euclid(86_400);
        let secs = t.seconds.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (secs / 3600, (secs / 60) % 60, secs % 60);
        if t.nanos == 0 {
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
        } else {
            let ms = t.nanos / 1_000_000;
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
        }
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z`, the only form hoard writes.
    pub fn parse_rfc3339(t: &str) -> Option<Timestamp> {
        let t = t.strip_suffix('Z')?;
        let (date, time) = t.split_once('T')?;
        let mut dp = date.splitn(3, '-');
        let y: i64 = dp.next()?.parse().ok()?;
        let m: u32 = dp.next()?.parse().ok()?;
        let d: u32 = dp.next()?.parse().ok()?;
        let (hms, frac) = match time.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (time, None),
        };
        let mut tp = hms.splitn(3, ':');
        let hh: i64 = tp.next()?.parse().ok()?;
        let mm: i64 = tp.next()?.parse().ok()?;
        let ss: i64 = tp.next()?.parse().ok()?;
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        let nanos = match frac {
            None => 0,
            Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
                let padded = format!("{f:0<9}");
                padded.parse().ok()?
            }
            Some(_) => return None,
        };
        Some(Timestamp {
            seconds: days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss,
            nanos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_from_their_exact_names() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.name()), Some(m));
        }
        assert_eq!(Method::parse("GetCacheEntryDownloadUrl"), None);
        assert_eq!(Method::parse("createCacheEntry"), None);
        assert_eq!(Method::parse(""), None);
    }

    #[test]
    fn json_accepts_snake_and_camel_and_string_int64() {
        let a: FinalizeCacheEntryUploadRequest = decode(
            Encoding::Json,
            br#"{"key":"k","size_bytes":"42","version":"v"}"#,
        )
        .unwrap();
        let b: FinalizeCacheEntryUploadRequest = decode(
            Encoding::Json,
            br#"{"key":"k","sizeBytes":42,"version":"v","x":1}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.size_bytes, 42);
    }

    #[test]
    fn json_writes_int64_as_string() {
        let r = FinalizeCacheEntryUploadResponse {
            ok: true,
            entry_id: 7,
            message: String::new(),
        };
        let text = String::from_utf8(encode(Encoding::Json, &r)).unwrap();
        assert_eq!(text, r#"{"ok":true,"entry_id":"7"}"#);
    }

    #[test]
    fn malformed_bodies_are_malformed() {
        let e = decode::<CreateCacheEntryRequest>(Encoding::Json, b"{not json").unwrap_err();
        assert_eq!(e.code, TwirpCode::Malformed);
        let e = decode::<CreateCacheEntryRequest>(Encoding::Protobuf, &[0x12, 0xff]).unwrap_err();
        assert_eq!(e.code, TwirpCode::Malformed);
        let e =
            decode::<FinalizeCacheEntryUploadRequest>(Encoding::Json, br#"{"size_bytes":"12x"}"#)
                .unwrap_err();
        assert_eq!(e.code, TwirpCode::Malformed);
    }

    #[test]
    fn protobuf_round_trip_uses_field_numbers() {
        let req = GetCacheEntryDownloadUrlRequest {
            metadata: None,
            key: "k".into(),
            restore_keys: vec!["r".into()],
            version: "v".into(),
        };
        let bytes = encode(Encoding::Protobuf, &req);
        // key = field 2 (0x12), restore_keys = 3 (0x1a), version = 4 (0x22)
        assert_eq!(bytes, vec![0x12, 1, b'k', 0x1a, 1, b'r', 0x22, 1, b'v']);
        let back: GetCacheEntryDownloadUrlRequest = decode(Encoding::Protobuf, &bytes).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn timestamps_render_as_rfc3339() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(timestamp::format_rfc3339(&t), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            timestamp::parse_rfc3339("2023-11-14T22:13:20.123Z"),
            Some(t)
        );
        assert_eq!(
            timestamp::format_rfc3339(&Timestamp::from_millis(0)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(timestamp::parse_rfc3339("2023-13-14T22:13:20Z"), None);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_content_type("application/protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }
}
