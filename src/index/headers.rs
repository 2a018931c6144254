//! Stored header values (`ObjectMeta::headers`, `Upload::headers`): the
//! bytes a client sent, exactly, whatever their encoding. HTTP allows any
//! byte but controls in a value, and clients differ (UTF-8, Latin-1, RFC 2047
//! text), so a value is kept as bytes and given back as bytes.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One header value, byte for byte. JSON: a string when the bytes are UTF-8
/// (as every value was stored before this type, so those read back the
/// same), else `{"base64": "<standard base64 of the bytes>"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderBytes(pub Vec<u8>);

impl HeaderBytes {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&[u8]> for HeaderBytes {
    fn from(bytes: &[u8]) -> Self {
        HeaderBytes(bytes.to_vec())
    }
}

impl From<&str> for HeaderBytes {
    fn from(text: &str) -> Self {
        HeaderBytes(text.as_bytes().to_vec())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Json {
    Text(String),
    Bytes { base64: String },
}

impl Serialize for HeaderBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => Json::Bytes { base64: base64::engine::general_purpose::STANDARD.encode(&self.0) }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for HeaderBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Json::deserialize(d)? {
            Json::Text(text) => Ok(HeaderBytes(text.into_bytes())),
            Json::Bytes { base64 } => base64::engine::general_purpose::STANDARD.decode(base64).map(HeaderBytes).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ObjectMeta;

    #[test]
    fn any_bytes_round_trip() {
        for bytes in [&b"text/plain"[..], "Hello Worldé".as_bytes(), b"Hello World\xe9", b"", b"\xff\x80 a"] {
            let json = serde_json::to_string(&HeaderBytes::from(bytes)).unwrap();
            assert_eq!(serde_json::from_str::<HeaderBytes>(&json).unwrap().as_bytes(), bytes, "{json}");
        }
        assert_eq!(serde_json::to_string(&HeaderBytes::from("Hello Worldé")).unwrap(), "\"Hello Worldé\"");
        assert_eq!(serde_json::to_string(&HeaderBytes::from(&b"Hello World\xe9"[..])).unwrap(), r#"{"base64":"SGVsbG8gV29ybGTp"}"#);
        assert!(serde_json::from_str::<HeaderBytes>(r#"{"base64":"not base64!"}"#).is_err());
    }

    #[test]
    fn metadata_stored_as_strings_reads_back_the_same() {
        let old = r#"{"size":3,"mtime":7,"headers":[["content-type","text/plain"],["x-amz-meta-a","é �"]]}"#;
        let meta: ObjectMeta = serde_json::from_str(old).unwrap();
        assert_eq!(meta.headers, [("content-type".into(), "text/plain".into()), ("x-amz-meta-a".into(), "é �".into())]);
        assert_eq!(serde_json::to_string(&meta).unwrap(), old);
    }
}
