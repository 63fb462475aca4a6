//! The stable JSON report (see [`crate::Report`]) and its reader.

use crate::report::{Report, FORMAT, VERSION};
use std::fmt;

/// Why a file could not be read as a report.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadError {
    /// Not JSON at all (binary, empty or cut short).
    NotJson(String),
    /// JSON, but not an alloc-tracker report.
    Foreign,
    /// A report from a newer alloc-tracker than this one.
    FutureVersion(u64),
    /// An alloc-tracker report with missing or malformed fields.
    Malformed(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotJson(why) => write!(f, "not a JSON report ({why})"),
            ReadError::Foreign => write!(f, "JSON, but not an alloc-tracker report"),
            ReadError::FutureVersion(v) => write!(
                f,
                "report version {v} is newer than this alloc-tracker reads (up to {VERSION})"
            ),
            ReadError::Malformed(why) => write!(f, "malformed alloc-tracker report ({why})"),
        }
    }
}

impl std::error::Error for ReadError {}

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a JSON report, telling apart files that are not JSON, JSON that is not ours,
    /// and reports from a newer version.
    ///
    /// ```
    /// let err = alloc_tracker::Report::from_json("{\"hello\": 1}").unwrap_err();
    /// assert_eq!(err.to_string(), "JSON, but not an alloc-tracker report");
    /// ```
    pub fn from_json(text: &str) -> Result<Report, ReadError> {
        // A report is an object: anything else is checked for being JSON at all, skipping
        // its contents without building them.
        if !text.trim_start().starts_with('{') {
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => ReadError::Foreign,
                Err(_) => ReadError::NotJson("a report is a JSON object; this is not JSON".into()),
            });
        }
        // First pass: only `format` and `version`, skipping everything else without building
        // it, so that a huge file that is not ours costs time, not memory.
        let header: Header = serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ReadError::Foreign,
            _ => ReadError::NotJson(e.to_string()),
        })?;
        if header.format.as_ref().and_then(HeaderField::as_str) != Some(FORMAT) {
            return Err(ReadError::Foreign);
        }
        match header.version.as_ref().and_then(HeaderField::as_u64) {
            Some(v) if v > u64::from(VERSION) => return Err(ReadError::FutureVersion(v)),
            Some(_) => {}
            None => return Err(ReadError::Malformed("no version".into())),
        }
        serde_json::from_str(text).map_err(|e| ReadError::Malformed(e.to_string()))
    }
}

/// The two fields that say whose report a file is; every other field is skipped unread.
#[derive(serde::Deserialize)]
struct Header {
    #[serde(default)]
    format: Option<HeaderField>,
    #[serde(default)]
    version: Option<HeaderField>,
}

/// A header field as far as the reader cares: a string, an unsigned integer, or anything
/// else. Arrays and objects are skipped element by element without being built, so a
/// `format` that is itself a huge array costs time, not memory.
enum HeaderField {
    Text(String),
    Unsigned(u64),
    Other,
}

impl HeaderField {
    fn as_str(&self) -> Option<&str> {
        match self {
            HeaderField::Text(s) => Some(s),
            _ => None,
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            HeaderField::Unsigned(v) => Some(*v),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for HeaderField {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(HeaderFieldVisitor)
    }
}

struct HeaderFieldVisitor;

impl<'de> serde::de::Visitor<'de> for HeaderFieldVisitor {
    type Value = HeaderField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HeaderField, E> {
        Ok(HeaderField::Text(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<HeaderField, E> {
        Ok(HeaderField::Text(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HeaderField, E> {
        Ok(HeaderField::Unsigned(v))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<HeaderField, E> {
        Ok(HeaderField::Other)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<HeaderField, E> {
        Ok(HeaderField::Other)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<HeaderField, E> {
        Ok(HeaderField::Other)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<HeaderField, E> {
        Ok(HeaderField::Other)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderField, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(HeaderField::Other)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<HeaderField, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(HeaderField::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_of_the_wrong_kind_are_told_apart_without_being_built() {
        let foreign = |text: &str| matches!(Report::from_json(text), Err(ReadError::Foreign));
        let malformed =
            |text: &str| matches!(Report::from_json(text), Err(ReadError::Malformed(_)));
        assert!(foreign(r#"{"format":[1,[2,{"a":3}]],"version":1}"#));
        assert!(foreign(r#"{"format":{"alloc-tracker":1},"version":1}"#));
        assert!(foreign(r#"{"format":null,"version":1}"#));
        assert!(malformed(r#"{"format":"alloc-tracker","version":[1]}"#));
        assert!(malformed(r#"{"format":"alloc-tracker","version":-1}"#));
        assert!(malformed(r#"{"format":"alloc-tracker","version":1.5}"#));
        assert!(matches!(
            Report::from_json(r#"{"format":"alloc-tracker","version":99999}"#),
            Err(ReadError::FutureVersion(99999))
        ));
    }
}
