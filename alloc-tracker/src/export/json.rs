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
        if header.format.as_ref().and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(ReadError::Foreign);
        }
        match header.version.as_ref().and_then(|v| v.as_u64()) {
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
    format: Option<serde_json::Value>,
    #[serde(default)]
    version: Option<serde_json::Value>,
}
