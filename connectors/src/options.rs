//! Typed reading of `WITH (...)` options: unknown keys are rejected by name, bad values say
//! which option and what is expected.

use std::collections::BTreeMap;
use std::str::FromStr;

use weir_engine::error::{EngineError, Result};

/// Options of one connector, consumed key by key.
#[derive(Debug)]
pub struct Options {
    connector: &'static str,
    remaining: BTreeMap<String, String>,
}

impl Options {
    /// Wraps the options of a `connector` source (the `connector` key itself is ignored).
    pub fn new(connector: &'static str, options: &BTreeMap<String, String>) -> Self {
        let mut remaining = options.clone();
        remaining.remove("connector");
        Self {
            connector,
            remaining,
        }
    }

    /// A required string option.
    pub fn required(&mut self, key: &str) -> Result<String> {
        self.remaining
            .remove(key)
            .ok_or_else(|| EngineError::InvalidOption {
                option: key.into(),
                message: format!("connector '{}' requires option {key}", self.connector),
            })
    }

    /// An optional string option.
    pub fn optional(&mut self, key: &str) -> Option<String> {
        self.remaining.remove(key)
    }

    /// An optional option parsed as `T`, with `what` describing the expected value.
    pub fn parse<T: FromStr>(&mut self, key: &str, what: &str) -> Result<Option<T>> {
        match self.remaining.remove(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| EngineError::InvalidOption {
                    option: key.into(),
                    message: format!("expected {what}, got '{v}'"),
                }),
        }
    }

    /// A boolean option (`true`/`false`).
    pub fn flag(&mut self, key: &str) -> Result<Option<bool>> {
        self.parse(key, "'true' or 'false'")
    }

    /// Fails on any option not consumed yet.
    pub fn finish(self) -> Result<()> {
        match self.remaining.keys().next() {
            None => Ok(()),
            Some(k) => Err(EngineError::InvalidOption {
                option: k.clone(),
                message: format!("unknown option {k} for connector '{}'", self.connector),
            }),
        }
    }
}
