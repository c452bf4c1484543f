//! Per-connection settings (`SET`, `SHOW`), with PostgreSQL's defaults.

use std::collections::BTreeMap;

use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{Result, SqlError};
use crate::system::Columns;

/// A boolean as PostgreSQL spells it: `true`/`false`, `on`/`off`, `yes`/`no`, `1`/`0`, in
/// any case; `None` for anything else.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// The server version reported to clients.
pub const SERVER_VERSION: &str = "16.0";

/// Settings every session starts with: (name, value, description).
pub const DEFAULTS: &[(&str, &str, &str)] = &[
    (
        "application_name",
        "",
        "Sets the application name to be reported.",
    ),
    (
        "background_ddl",
        "off",
        "CREATE MATERIALIZED VIEW returns at once instead of when the view has caught up.",
    ),
    (
        "client_encoding",
        "UTF8",
        "Sets the client's character set encoding.",
    ),
    (
        "datestyle",
        "ISO, MDY",
        "Sets the display format for date and time values.",
    ),
    (
        "default_transaction_isolation",
        "read committed",
        "Sets the transaction isolation level of each new transaction.",
    ),
    (
        "extra_float_digits",
        "1",
        "Sets the number of digits displayed for floating-point values.",
    ),
    (
        "integer_datetimes",
        "on",
        "Shows whether datetimes are integer based.",
    ),
    (
        "intervalstyle",
        "postgres",
        "Sets the display format for interval values.",
    ),
    (
        "is_superuser",
        "on",
        "Shows whether the current user is a superuser.",
    ),
    (
        "max_identifier_length",
        "63",
        "Shows the maximum identifier length.",
    ),
    (
        "search_path",
        "public",
        "Sets the schema search order for names that are not schema-qualified.",
    ),
    (
        "server_encoding",
        "UTF8",
        "Shows the server (database) character set encoding.",
    ),
    (
        "server_version",
        SERVER_VERSION,
        "Shows the server version.",
    ),
    (
        "server_version_num",
        "160000",
        "Shows the server version as an integer.",
    ),
    (
        "standard_conforming_strings",
        "on",
        "Causes '...' strings to treat backslashes literally.",
    ),
    (
        "statement_timeout",
        "0",
        "Sets the maximum allowed duration of any statement.",
    ),
    (
        "timezone",
        "UTC",
        "Sets the time zone for displaying and interpreting time stamps.",
    ),
    (
        "transaction_isolation",
        "read committed",
        "Shows the current transaction's isolation level.",
    ),
    (
        "transaction_read_only",
        "off",
        "Shows whether the current transaction is read-only.",
    ),
];

/// Looks up a default setting.
pub fn default_setting(name: &str) -> Option<&'static str> {
    let name = name.to_lowercase();
    DEFAULTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, v, _)| *v)
}

/// A `statement_timeout` value as PostgreSQL reads it: a bare number is milliseconds,
/// otherwise an interval (`'2s'`, `'1 min'`); 0 is no limit.
fn parse_timeout(value: &str) -> Result<Option<std::time::Duration>> {
    let v = value.trim();
    let ms = if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) {
        v.parse::<u64>().ok()
    } else {
        crate::dialect::parse_interval_ns(v)
            .ok()
            .filter(|ns| *ns >= 0)
            .map(|ns| ns as u64 / 1_000_000)
    };
    match ms {
        Some(0) => Ok(None),
        Some(ms) if ms <= 365 * 86_400_000 => Ok(Some(std::time::Duration::from_millis(ms))),
        _ => Err(SqlError::InvalidParameter(format!(
            "invalid value for parameter \"statement_timeout\": \"{value}\"; use milliseconds or an interval such as '2s' (0 turns it off)"
        ))),
    }
}

/// One client's session.
#[derive(Debug, Clone, Default)]
pub struct Session {
    overrides: BTreeMap<String, String>,
    /// Where NOTICE messages of the running statement go (a pgwire client), if anywhere.
    notices: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Open `SUBSCRIBE` cursors (`DECLARE … CURSOR FOR SUBSCRIBE …`).
    cursors: crate::database::subscribe::Cursors,
}

impl Session {
    /// The session's open cursors.
    pub(crate) fn cursors(&self) -> &crate::database::subscribe::Cursors {
        &self.cursors
    }

    /// Sends the running statement's NOTICE messages to `to`.
    pub fn send_notices(&mut self, to: tokio::sync::mpsc::UnboundedSender<String>) {
        self.notices = Some(to);
    }

    /// A NOTICE for the client, if it listens (PostgreSQL's `RAISE NOTICE`, psql prints it).
    pub fn notice(&self, message: String) {
        if let Some(to) = &self.notices {
            let _ = to.send(message);
        }
    }

    /// A setting's current value.
    pub fn get(&self, name: &str) -> Option<String> {
        let name = name.to_lowercase();
        self.overrides
            .get(&name)
            .cloned()
            .or_else(|| default_setting(&name).map(str::to_string))
    }

    /// Whether a boolean setting is on (`on`, `true`, `1`, `yes`).
    pub fn is_on(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| parse_bool(&v) == Some(true))
    }

    /// `SET name = value`. Unknown settings are accepted (clients set many), as PostgreSQL
    /// accepts custom `x.y` settings; read-only ones are refused.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.to_lowercase();
        if matches!(
            name.as_str(),
            "server_version"
                | "server_version_num"
                | "server_encoding"
                | "integer_datetimes"
                | "max_identifier_length"
                | "is_superuser"
        ) {
            return Err(SqlError::InvalidParameter(format!(
                "parameter \"{name}\" cannot be changed"
            )));
        }
        let mut value = value.trim().trim_matches('\'').to_string();
        if name == "timezone"
            && matches!(
                value.to_lowercase().as_str(),
                "utc" | "gmt" | "z" | "+00:00" | "0" | "local" | "default"
            )
        {
            value = "UTC".into();
        } else if name == "timezone" {
            return Err(SqlError::FeatureNotSupported(format!(
                "Weir shows times in UTC; SET TIME ZONE '{value}' is not supported"
            )));
        } else if name == "statement_timeout" {
            parse_timeout(&value)?;
        }
        self.overrides.insert(name, value);
        Ok(())
    }

    /// `statement_timeout` as a duration; `None` when 0 (no limit).
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        self.get("statement_timeout")
            .and_then(|v| parse_timeout(&v).ok().flatten())
    }

    /// `RESET name` (or `RESET ALL`).
    pub fn reset(&mut self, name: &str) {
        if name.eq_ignore_ascii_case("all") {
            self.overrides.clear();
        } else {
            self.overrides.remove(&name.to_lowercase());
        }
    }

    /// `SHOW name` / `SHOW ALL` as rows.
    pub fn show(&self, name: &str) -> Result<RecordBatch> {
        if name.eq_ignore_ascii_case("all") {
            let mut names: Vec<String> = DEFAULTS.iter().map(|(n, _, _)| n.to_string()).collect();
            names.extend(
                self.overrides
                    .keys()
                    .filter(|k| default_setting(k).is_none())
                    .cloned(),
            );
            let values: Vec<Option<String>> = names.iter().map(|n| self.get(n)).collect();
            let descriptions: Vec<Option<&str>> = names
                .iter()
                .map(|n| {
                    DEFAULTS
                        .iter()
                        .find(|(d, _, _)| d == n)
                        .map(|(_, _, d)| *d)
                        .or(Some(""))
                })
                .collect();
            return Ok(Columns::new()
                .text("name", names.iter().map(Some))
                .text("setting", values)
                .text("description", descriptions)
                .finish()?);
        }
        let value = self.get(name).ok_or_else(|| {
            SqlError::UndefinedObject(format!("unrecognized configuration parameter \"{name}\""))
        })?;
        Ok(Columns::new()
            .text(&name.to_lowercase(), [Some(value)])
            .finish()?)
    }
}
