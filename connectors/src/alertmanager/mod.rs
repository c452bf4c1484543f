//! `connector = 'alertmanager'` sinks: alert rules' messages posted to Prometheus
//! Alertmanager's API (`POST /api/v2/alerts`).
//!
//! ```sql
//! CREATE SINK am FROM weir.alerts WITH (connector = 'alertmanager',
//!     url = 'http://127.0.0.1:9093', labels = 'team=ops, env=prod');
//! ```
//!
//! Only alert messages can go there: the sink reads `weir.alerts` (every rule) or one rule.
//! Each message becomes one Alertmanager alert with the labels `alertname` (the rule),
//! `severity`, `key` (when the rule has one) and the sink's `labels`, and the annotations
//! `summary`, `alert_id`, `payload` (the rule's row as JSON) and `event_time`. A `firing`
//! message starts it (`startsAt` = the event time); its `resolved` message ends it (`endsAt`
//! = the event time it cleared). When a write holds both messages of an alert they are sent
//! as one alert that has started and ended.
//!
//! Alertmanager identifies an alert by its labels, so a key's successive alerts are one
//! alert that fires, resolves and fires again, as a Prometheus rule's are; posting the same
//! message again changes nothing it has notified about. That is what makes delivery safe to
//! repeat: after a crash the messages not acknowledged at the last checkpoint are posted
//! again (at least once), and Alertmanager sends no second notification for them. Weir does
//! not re-post firing alerts: one that no `resolved` message ends (rules with OVER windows
//! have none) ends in Alertmanager after its `resolve_timeout` (5 minutes by default).
//!
//! Connection errors, no answer within `timeout`, 408, 429 and 5xx are retried with backoff
//! while Alertmanager is down; another status (a 400 for a malformed alert) stops the sink.
//! Plain HTTP only, as for webhooks; `headers` adds request headers (an `Authorization`
//! for a proxy in front of Alertmanager, say).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use serde_json::{json, Map, Value};
use weir_engine::connector::sink::{settings_from, SinkError, SinkFactory, SinkSpec, SinkWriter};
use weir_engine::error::{EngineError, Result};

use crate::options::Options;
use crate::rows::{rfc3339, timestamp_ns};
use crate::webhook::{is_reference, Endpoint, Target};

/// Factory of Alertmanager sinks.
#[derive(Debug)]
pub struct AlertmanagerSinkConnector;

/// The API path under the base URL.
const ALERTS_PATH: &str = "/api/v2/alerts";

/// The columns of alert messages the sink reads.
const COLUMNS: [&str; 7] = [
    "alert_id",
    "name",
    "severity",
    "key",
    "status",
    "event_time",
    "payload",
];

#[derive(Debug, Clone)]
struct Config {
    /// Its `url` is the alerts endpoint: the base URL as written with [`ALERTS_PATH`]
    /// appended, unless it already ends with it (or is a `${env:…}` reference).
    endpoint: Endpoint,
    /// Labels added to every alert.
    labels: Vec<(String, String)>,
}

impl Config {
    fn from_spec(spec: &SinkSpec) -> Result<Self> {
        let mut o = Options::new("alertmanager", &spec.options);
        let mut endpoint = Endpoint::from_options(&mut o)?;
        let trimmed = endpoint.url.trim().trim_end_matches('/');
        endpoint.url = if trimmed.ends_with(ALERTS_PATH) || is_reference(trimmed) {
            trimmed.to_string()
        } else {
            format!("{trimmed}{ALERTS_PATH}")
        };
        let labels = match o.optional("labels") {
            None => Vec::new(),
            Some(text) => parse_labels(&text)?,
        };
        o.finish()?;
        Ok(Self { endpoint, labels })
    }
}

fn invalid(option: &str, message: String) -> EngineError {
    EngineError::InvalidOption {
        option: option.into(),
        message,
    }
}

/// Parses `name=value, name2=value2` into Prometheus label pairs.
fn parse_labels(text: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            return Err(invalid(
                "labels",
                format!("expected 'name=value, name2=value2', got '{part}'"),
            ));
        };
        let name = name.trim();
        let valid = name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid || name.starts_with("__") {
            return Err(invalid(
                "labels",
                format!(
                    "'{name}' is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
                ),
            ));
        }
        if ["alertname", "severity", "key"].contains(&name) {
            return Err(invalid(
                "labels",
                format!("{name} is set from the alert and cannot be given"),
            ));
        }
        out.push((name.to_string(), value.trim().to_string()));
    }
    Ok(out)
}

impl SinkFactory for AlertmanagerSinkConnector {
    fn name(&self) -> &'static str {
        "alertmanager"
    }

    fn validate(&self, spec: &SinkSpec) -> Result<BTreeMap<String, String>> {
        let missing: Vec<&str> = COLUMNS
            .iter()
            .copied()
            .filter(|c| spec.schema.index_of(c).is_err())
            .collect();
        if spec.from_source || !missing.is_empty() {
            return Err(invalid(
                "connector",
                format!(
                    "the alertmanager connector delivers alerts: create the sink FROM weir.alerts \
                     or FROM an alert rule ('{}' has no {})",
                    spec.input,
                    missing.join(", ")
                ),
            ));
        }
        Config::from_spec(spec)?;
        settings_from(&spec.options)?;
        let mut options = spec.options.clone();
        options
            .entry("timeout".into())
            .or_insert_with(|| "5 seconds".into());
        Ok(options)
    }

    fn create(&self, spec: &SinkSpec) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(AlertmanagerWriter {
            config: Config::from_spec(spec)?,
            target: None,
        }))
    }
}

struct AlertmanagerWriter {
    config: Config,
    target: Option<Target>,
}

impl AlertmanagerWriter {
    fn connect(&mut self) -> std::result::Result<(), SinkError> {
        self.target = Some(self.config.endpoint.connect("alertmanager")?);
        Ok(())
    }
}

/// One message's fields.
struct Message<'a> {
    alert_id: &'a str,
    name: &'a str,
    severity: &'a str,
    key: &'a str,
    firing: bool,
    event_time: i64,
    payload: &'a str,
}

/// The messages of `batch` (rows without an event time are skipped: the schema forbids
/// them).
fn messages(batch: &RecordBatch) -> std::result::Result<Vec<Message<'_>>, SinkError> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| SinkError::Permanent(format!("alertmanager: no column {name}")))
    };
    let text = |name: &str| {
        column(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| SinkError::Permanent(format!("alertmanager: {name} is not text")))
    };
    let (ids, names, severities, keys, statuses, payloads) = (
        text("alert_id")?,
        text("name")?,
        text("severity")?,
        text("key")?,
        text("status")?,
        text("payload")?,
    );
    let times = column("event_time")?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let Some(event_time) = timestamp_ns(times, row) else {
            continue;
        };
        if ids.is_null(row) {
            continue;
        }
        out.push(Message {
            alert_id: ids.value(row),
            name: names.value(row),
            severity: severities.value(row),
            key: keys.value(row),
            firing: statuses.value(row) != "resolved",
            event_time,
            payload: payloads.value(row),
        });
    }
    Ok(out)
}

/// The Alertmanager alerts for `messages`, in order: one per alert id, with `endsAt` when
/// its `resolved` message is among them.
fn alerts(messages: &[Message<'_>], extra_labels: &[(String, String)]) -> Vec<Value> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_id: BTreeMap<&str, (Option<&Message>, Option<&Message>)> = BTreeMap::new();
    for m in messages {
        let entry = by_id.entry(m.alert_id).or_insert_with(|| {
            order.push(m.alert_id);
            (None, None)
        });
        if m.firing {
            entry.0 = Some(m);
        } else {
            entry.1 = Some(m);
        }
    }
    order
        .into_iter()
        .filter_map(|id| {
            let (firing, resolved) = by_id[id];
            let m = firing.or(resolved)?;
            let mut labels = Map::new();
            labels.insert("alertname".into(), m.name.into());
            labels.insert("severity".into(), m.severity.into());
            if !m.key.is_empty() {
                labels.insert("key".into(), m.key.into());
            }
            for (name, value) in extra_labels {
                labels.insert(name.clone(), value.clone().into());
            }
            let what = if m.key.is_empty() {
                m.name.to_string()
            } else {
                format!("{} for {}", m.name, m.key)
            };
            let mut alert = json!({
                "labels": labels,
                "annotations": {
                    "summary": format!("{what} ({})", m.severity),
                    "alert_id": m.alert_id,
                    "payload": m.payload,
                    "event_time": rfc3339(m.event_time),
                },
            });
            if let Some(f) = firing {
                alert["startsAt"] = rfc3339(f.event_time).into();
            }
            if let Some(r) = resolved {
                alert["endsAt"] = rfc3339(r.event_time).into();
            }
            Some(alert)
        })
        .collect()
}

#[async_trait::async_trait(?Send)]
impl SinkWriter for AlertmanagerWriter {
    async fn open(&mut self, _resume: &Value) -> std::result::Result<(), SinkError> {
        self.target = Some(self.config.endpoint.open("alertmanager").await?);
        Ok(())
    }

    async fn write(&mut self, batches: &[RecordBatch]) -> std::result::Result<(), SinkError> {
        if self.target.is_none() {
            self.connect()?;
        }
        let mut all = Vec::new();
        for batch in batches {
            all.extend(messages(batch)?);
        }
        let alerts = alerts(&all, &self.config.labels);
        if alerts.is_empty() {
            return Ok(());
        }
        let target = self.target.as_ref().expect("connected above");
        target.post(Value::Array(alerts).to_string(), &[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use datafusion::arrow::array::{StringArray, TimestampNanosecondArray};

    fn spec(options: &[(&str, &str)]) -> SinkSpec {
        let mut o: BTreeMap<String, String> = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        o.insert("connector".into(), "alertmanager".into());
        SinkSpec {
            name: "am".into(),
            input: "weir.alerts".into(),
            from_source: false,
            schema: weir_engine::operator::alert::message_schema(),
            key: vec!["alert_id".into(), "status".into()],
            event_time: None,
            updating: false,
            once_per_key: true,
            options: o,
        }
    }

    fn batch(rows: &[(&str, &str, &str, i64)]) -> RecordBatch {
        let text = |f: fn(&(&str, &str, &str, i64)) -> String| {
            Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>())) as Arc<dyn Array>
        };
        let times = Arc::new(
            TimestampNanosecondArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())
                .with_timezone("+00:00"),
        );
        RecordBatch::try_new(
            weir_engine::operator::alert::message_schema(),
            vec![
                text(|r| r.0.to_string()),
                text(|_| "hot".to_string()),
                text(|_| "critical".to_string()),
                text(|r| r.1.to_string()),
                text(|r| r.2.to_string()),
                times.clone(),
                times,
                text(|_| "{\"value\":97}".to_string()),
            ],
        )
        .unwrap()
    }

    #[test]
    fn messages_become_alertmanager_alerts() {
        let b = batch(&[
            ("a1", "web", "firing", 1_700_000_000_000_000_000),
            ("b1", "db", "firing", 1_700_000_001_000_000_000),
            ("a1", "web", "resolved", 1_700_000_060_000_000_000),
            ("c1", "api", "resolved", 1_700_000_090_000_000_000),
        ]);
        let got = alerts(
            &messages(&b).unwrap(),
            &[("team".to_string(), "ops".to_string())],
        );
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0]["labels"],
            json!({"alertname": "hot", "severity": "critical", "key": "web", "team": "ops"})
        );
        assert_eq!(got[0]["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(got[0]["endsAt"], "2023-11-14T22:14:20Z");
        assert_eq!(got[0]["annotations"]["alert_id"], "a1");
        assert_eq!(got[0]["annotations"]["summary"], "hot for web (critical)");
        assert_eq!(got[0]["annotations"]["payload"], "{\"value\":97}");
        // Still firing: no end; Alertmanager keeps it for its resolve_timeout.
        assert_eq!(got[1]["startsAt"], "2023-11-14T22:13:21Z");
        assert!(got[1].get("endsAt").is_none());
        // A resolution whose firing was sent earlier: an end only.
        assert!(got[2].get("startsAt").is_none());
        assert_eq!(got[2]["endsAt"], "2023-11-14T22:14:50Z");
    }

    #[test]
    fn validate_takes_alerts_only_and_checks_options() {
        let options = AlertmanagerSinkConnector
            .validate(&spec(&[
                ("url", "http://127.0.0.1:9093"),
                ("labels", "team=ops"),
            ]))
            .unwrap();
        assert_eq!(options["timeout"], "5 seconds");
        let config = Config::from_spec(&spec(&[("url", "http://127.0.0.1:9093/")])).unwrap();
        assert_eq!(config.endpoint.url, "http://127.0.0.1:9093/api/v2/alerts");

        let mut rows = spec(&[("url", "http://127.0.0.1:9093")]);
        rows.schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new(
                "source",
                datafusion::arrow::datatypes::DataType::Utf8,
                false,
            ),
        ]));
        rows.input = "kpi_1m".into();
        let err = AlertmanagerSinkConnector.validate(&rows).unwrap_err();
        assert!(err.to_string().contains("FROM weir.alerts"), "{err}");

        for bad in [
            &[][..],
            &[("url", "https://am.example.com")][..],
            &[("url", "http://127.0.0.1:9093"), ("labels", "team")][..],
            &[("url", "http://127.0.0.1:9093"), ("labels", "9x=1")][..],
            &[("url", "http://127.0.0.1:9093"), ("labels", "severity=low")][..],
            &[("url", "http://127.0.0.1:9093"), ("colour", "blue")][..],
        ] {
            assert!(
                AlertmanagerSinkConnector.validate(&spec(bad)).is_err(),
                "{bad:?}"
            );
        }
    }
}
