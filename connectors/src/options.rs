//! Typed reading of `WITH (...)` options: unknown keys are rejected by name, bad values say
//! which option and what is expected.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

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

    /// Like [`parse`](Self::parse), and the value must lie in `min..=max` (sizes and rates
    /// that would exhaust memory are refused when the object is created, not when it runs).
    pub fn parse_in<T: FromStr + PartialOrd + std::fmt::Display>(
        &mut self,
        key: &str,
        what: &str,
        min: T,
        max: T,
    ) -> Result<Option<T>> {
        let value = self.parse::<T>(key, &format!("{what} between {min} and {max}"))?;
        match value {
            Some(v) if v < min || v > max => Err(EngineError::InvalidOption {
                option: key.into(),
                message: format!("expected {what} between {min} and {max}, got {v}"),
            }),
            v => Ok(v),
        }
    }

    /// A boolean option (`true`/`false`).
    pub fn flag(&mut self, key: &str) -> Result<Option<bool>> {
        self.parse(key, "'true' or 'false'")
    }

    /// An optional duration (`'10 seconds'`, `'500ms'`, `'1 minute'`, a bare number is
    /// seconds).
    pub fn duration(&mut self, key: &str) -> Result<Option<Duration>> {
        match self.remaining.remove(key) {
            None => Ok(None),
            Some(v) => parse_duration(&v)
                .map(Some)
                .ok_or_else(|| EngineError::InvalidOption {
                    option: key.into(),
                    message: format!(
                        "expected a duration such as '10 seconds' or '500ms' (at most 100 years), got '{v}'"
                    ),
                }),
        }
    }

    /// Removes and returns every option whose key starts with `prefix`, the prefix stripped.
    pub fn take_prefixed(&mut self, prefix: &str) -> BTreeMap<String, String> {
        let keys: Vec<String> = self
            .remaining
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| {
                let v = self.remaining.remove(&k)?;
                Some((k[prefix.len()..].to_string(), v))
            })
            .collect()
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

pub use weir_engine::connector::sink::resolve_secret;
pub use weir_engine::connector::{parse_duration, MAX_DURATION};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10 seconds"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2 minutes"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("ten seconds"), None);
        assert_eq!(parse_duration("5 fortnights"), None);
        // Huge values are refused, not a panic (hostile-test finding 11).
        assert_eq!(parse_duration("99999999999999999999s"), None);
        assert_eq!(parse_duration("1e400"), None);
        assert_eq!(
            parse_duration("101 hours"),
            Some(Duration::from_secs(363_600))
        );
    }

    #[test]
    fn secret_references() {
        std::env::set_var("WEIR_TEST_SECRET_REF", "hunter2");
        assert_eq!(
            resolve_secret("k", "${env:WEIR_TEST_SECRET_REF}").unwrap(),
            "hunter2"
        );
        assert_eq!(resolve_secret("k", "plain").unwrap(), "plain");
        assert!(resolve_secret("k", "${env:WEIR_TEST_SECRET_MISSING}").is_err());
        assert!(resolve_secret("k", "${vault:x}").is_err());
    }
}
