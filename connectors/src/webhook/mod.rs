//! `connector = 'webhook'` sinks: rows POSTed as JSON to an HTTP endpoint, with retries.
//!
//! ```sql
//! CREATE SINK kpi_hook FROM kpi_1m WITH (connector = 'webhook',
//!     url = 'http://127.0.0.1:8080/hooks/kpi', timeout = '5 seconds',
//!     headers = 'Authorization: ${env:HOOK_TOKEN}; X-Team: ops', batch = 'true');
//! ```
//!
//! With `batch = 'true'` (the default) each write is one POST of a JSON array of row objects
//! (every column of the row, as [`row_object`] writes it); with `batch = 'false'` each row is
//! one POST of a JSON object. Requests carry `Content-Type: application/json` and an
//! `Idempotency-Key`: per row, the row's key columns joined with `:` (timestamps as epoch
//! seconds, a hash of the body appended when the view updates rows in place, a hash of the
//! body alone when the relation has no key); per batch, a hash of the body.
//!
//! A 2xx answer acknowledges the rows. 408, 429, 5xx, connection errors and requests without
//! an answer within `timeout` are transient: the engine retries the write with backoff while
//! the sink's queue fills. Any other status (a 4xx, a redirect) is permanent and stops the
//! sink, naming the status and the start of the answer's body.
//!
//! Delivery is **at least once**. A write that failed or timed out may have reached the
//! receiver anyway, a retried write may hold more rows than the failed one, a per-row write
//! that fails halfway is retried whole, and after a crash the rows not acknowledged at the
//! last checkpoint, and the replay's rows, are POSTed again. Receivers dedupe on the
//! `Idempotency-Key` (per-row mode) or on each object's key columns (batch mode, where a
//! batch may be cut differently after a restart).
//!
//! The built-in client speaks plain HTTP/1.1 only: `https://` URLs are refused; send to a
//! local relay (a reverse proxy on the same host) that forwards over TLS.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use weir_engine::connector::sink::{
    mask_url, settings_from, SinkError, SinkFactory, SinkSpec, SinkWriter, QUEUE_OPTIONS,
};
use weir_engine::error::{EngineError, Result};

use crate::options::{resolve_secret, Options};
use crate::rows::{cell_key_text, row_object};

/// Factory of webhook sinks.
#[derive(Debug)]
pub struct WebhookSinkConnector;

/// `timeout` when absent, as the catalog keeps it.
const DEFAULT_TIMEOUT: &str = "5 seconds";

/// Most bytes of an answer's body read (the rest is dropped).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Bytes of an answer's body quoted in a permanent error.
const QUOTED_ANSWER_BYTES: usize = 200;

/// The header naming a request for the receiver's dedupe (lowercase, as `HeaderName`s are).
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// An HTTP endpoint's options as written: `url`, `timeout`, `headers` (the webhook and
/// Alertmanager sinks take them alike).
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// As written (possibly a `${env:…}` reference).
    pub(crate) url: String,
    pub(crate) timeout: Duration,
    /// `(name, value)`; values may be secret references.
    pub(crate) headers: Vec<(String, String)>,
}

impl Endpoint {
    /// Reads the endpoint's options from `o` (and skips the sink queue's).
    pub(crate) fn from_options(o: &mut Options) -> Result<Self> {
        for q in QUEUE_OPTIONS {
            o.optional(q);
        }
        let url = o.required("url")?;
        if !is_reference(&url) {
            check_url(&url).map_err(|message| invalid("url", message))?;
        }
        let timeout = o.duration("timeout")?.unwrap_or(Duration::from_secs(5));
        if timeout.is_zero() {
            return Err(invalid("timeout", "must be positive".into()));
        }
        let headers = match o.optional("headers") {
            None => Vec::new(),
            Some(text) => parse_headers(&text)?,
        };
        Ok(Self {
            url,
            timeout,
            headers,
        })
    }

    /// A client for it; `what` names the sink kind in errors.
    pub(crate) fn connect(&self, what: &str) -> std::result::Result<Target, SinkError> {
        Target::connect(what, &self.url, &self.headers, self.timeout)
    }

    /// A client for it once the target accepts a connection: what a writer's `open` does,
    /// so `CREATE SINK` refuses a receiver that is not there.
    pub(crate) async fn open(&self, what: &str) -> std::result::Result<Target, SinkError> {
        let target = self.connect(what)?;
        target.reachable().await?;
        Ok(target)
    }
}

#[derive(Debug, Clone)]
struct WebhookConfig {
    endpoint: Endpoint,
    /// One POST per write (a JSON array) rather than one per row.
    batch: bool,
}

impl WebhookConfig {
    fn from_spec(spec: &SinkSpec) -> Result<Self> {
        let mut o = Options::new("webhook", &spec.options);
        let endpoint = Endpoint::from_options(&mut o)?;
        let batch = o.flag("batch")?.unwrap_or(true);
        o.finish()?;
        Ok(Self { endpoint, batch })
    }
}

fn invalid(option: &str, message: String) -> EngineError {
    EngineError::InvalidOption {
        option: option.into(),
        message,
    }
}

/// Whether an option value is a `${env:…}` / `${file:…}` reference, resolved when the sink
/// connects.
pub(crate) fn is_reference(value: &str) -> bool {
    value.trim().starts_with("${")
}

/// The URL as a URI, if it is a plain `http://` URL with a host.
fn check_url(url: &str) -> std::result::Result<Uri, String> {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(format!(
            "'{}': TLS is not supported by the built-in webhook client (plain HTTP only); \
             point url at a local relay, such as a reverse proxy on 127.0.0.1, that forwards \
             to the HTTPS endpoint",
            mask_url(url)
        ));
    }
    if !lower.starts_with("http://") {
        return Err(format!("expected an http:// URL, got '{}'", mask_url(url)));
    }
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("'{}' is not a valid URL: {e}", mask_url(url)))?;
    if uri.host().is_none_or(|h| h.is_empty()) {
        return Err(format!("'{}' has no host", mask_url(url)));
    }
    Ok(uri)
}

/// Parses `Name: value; Name2: value2`.
fn parse_headers(text: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in text.split(';') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((name, value)) = part.split_once(':') else {
            return Err(invalid(
                "headers",
                format!("expected 'Name: value; Name2: value2', got '{part}'"),
            ));
        };
        let (name, value) = (name.trim(), value.trim());
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("headers", format!("'{name}' is not a header name")))?;
        if header == hyper::header::CONTENT_LENGTH
            || header == hyper::header::TRANSFER_ENCODING
            || header.as_str() == IDEMPOTENCY_KEY
        {
            return Err(invalid(
                "headers",
                format!("{name} is set by the sink and cannot be given"),
            ));
        }
        if !is_reference(value) && HeaderValue::from_str(value).is_err() {
            return Err(invalid(
                "headers",
                format!("the value of {name} is not a valid header value"),
            ));
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

impl SinkFactory for WebhookSinkConnector {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn validate(&self, spec: &SinkSpec) -> Result<BTreeMap<String, String>> {
        let config = WebhookConfig::from_spec(spec)?;
        settings_from(&spec.options)?;
        let mut options = spec.options.clone();
        options
            .entry("timeout".into())
            .or_insert_with(|| DEFAULT_TIMEOUT.into());
        options
            .entry("batch".into())
            .or_insert_with(|| config.batch.to_string());
        Ok(options)
    }

    fn create(&self, spec: &SinkSpec) -> Result<Box<dyn SinkWriter>> {
        let config = WebhookConfig::from_spec(spec)?;
        let key = spec
            .key
            .iter()
            .filter_map(|k| spec.schema.index_of(k).ok())
            .collect();
        Ok(Box::new(WebhookWriter {
            sink: spec.name.clone(),
            config,
            key,
            updating: spec.updating,
            target: None,
        }))
    }
}

/// Where requests go, once the URL and headers are resolved: a client (with its own
/// connection pool), the URL and the user's headers. The Alertmanager sink posts through it
/// as well.
pub(crate) struct Target {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    /// The URL with any password masked, for messages.
    shown: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The user's headers include a `Content-Type`.
    content_type: bool,
    timeout: Duration,
}

impl Target {
    /// Resolves `url` and `headers` (which may be `${env:…}`/`${file:…}` references);
    /// `what` names the sink kind in errors (`webhook`, `alertmanager`).
    pub(crate) fn connect(
        what: &str,
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> std::result::Result<Self, SinkError> {
        let permanent = |e: EngineError| SinkError::Permanent(format!("{what}: {e}"));
        let resolved = resolve_secret("url", url).map_err(permanent)?;
        let uri =
            check_url(&resolved).map_err(|m| SinkError::Permanent(format!("{what} url {m}")))?;
        let mut resolved_headers = Vec::new();
        for (name, value) in headers {
            let text = resolve_secret("headers", value).map_err(permanent)?;
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| SinkError::Permanent(format!("{what} header {name}: {e}")))?;
            let mut v = HeaderValue::from_str(text.trim()).map_err(|_| {
                SinkError::Permanent(format!(
                    "{what} header {name}: the value is not a valid header value"
                ))
            })?;
            v.set_sensitive(is_reference(value));
            resolved_headers.push((header, v));
        }
        let content_type = resolved_headers.iter().any(|(n, _)| *n == CONTENT_TYPE);
        let client = Client::builder(TokioExecutor::new())
            .http1_title_case_headers(true)
            .build_http();
        Ok(Self {
            client,
            uri,
            shown: format!("{what} {}", mask_url(url)),
            headers: resolved_headers,
            content_type,
            timeout,
        })
    }

    /// Whether the target accepts a TCP connection within the timeout (transient error if
    /// not).
    async fn reachable(&self) -> std::result::Result<(), SinkError> {
        let host = self
            .uri
            .host()
            .unwrap_or("localhost")
            .trim_matches(['[', ']']);
        let port = self.uri.port_u16().unwrap_or(80);
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect((host, port))).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SinkError::Transient(format!(
                "{}: cannot connect: {e}",
                self.shown
            ))),
            Err(_) => Err(SinkError::Transient(format!(
                "{}: no connection within {:?}",
                self.shown, self.timeout
            ))),
        }
    }

    /// POSTs one JSON body (with `extra` headers) and classifies the answer: Ok for 2xx,
    /// transient for 408, 429, 5xx, connection errors and no answer within the timeout,
    /// permanent otherwise.
    pub(crate) async fn post(
        &self,
        body: String,
        extra: &[(HeaderName, HeaderValue)],
    ) -> std::result::Result<(), SinkError> {
        let url = &self.shown;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone());
        if !self.content_type {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in extra.iter().chain(&self.headers) {
            request = request.header(name.clone(), value.clone());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SinkError::Permanent(format!("{url}: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| SinkError::Transient(format!("{url}: {}", error_chain(&e))))?;
            let status = response.status();
            // The body is read (up to a bound) so that the connection can be reused.
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Ok::<_, SinkError>((status, body))
        };
        let (status, answer) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                SinkError::Transient(format!("{url}: no answer within {:?}", self.timeout))
            })??;
        classify(url, status, &answer)
    }
}

struct WebhookWriter {
    sink: String,
    config: WebhookConfig,
    /// Columns of a row's `Idempotency-Key`.
    key: Vec<usize>,
    /// Rows are written again with newer values under the same key.
    updating: bool,
    target: Option<Target>,
}

impl WebhookWriter {
    fn connect(&mut self) -> std::result::Result<(), SinkError> {
        self.target = Some(self.config.endpoint.connect("webhook")?);
        Ok(())
    }

    /// The `Idempotency-Key` of one row POSTed alone.
    fn row_key(&self, batch: &RecordBatch, row: usize, body: &str) -> String {
        if self.key.is_empty() {
            return format!("{:016x}", fnv1a(body.as_bytes()));
        }
        let mut key = self
            .key
            .iter()
            .map(|&c| cell_key_text(batch.column(c), row))
            .collect::<Vec<_>>()
            .join(":");
        if self.updating {
            key.push_str(&format!(":{:016x}", fnv1a(body.as_bytes())));
        }
        key
    }

    /// POSTs one body with its `Idempotency-Key`.
    async fn post(&self, body: String, key: &str) -> std::result::Result<(), SinkError> {
        let target = self.target.as_ref().ok_or_else(|| {
            SinkError::Transient(format!(
                "webhook {}: not connected",
                mask_url(&self.config.endpoint.url)
            ))
        })?;
        let value = HeaderValue::from_str(&header_safe(key))
            .map_err(|_| SinkError::Permanent(format!("webhook: bad Idempotency-Key '{key}'")))?;
        let result = target
            .post(body, &[(HeaderName::from_static(IDEMPOTENCY_KEY), value)])
            .await;
        if let Err(e) = &result {
            tracing::debug!(sink = %self.sink, error = %e, "webhook refused a write");
        }
        result
    }
}

/// Ok for 2xx; transient for 408, 429 and 5xx; permanent otherwise.
fn classify(url: &str, status: StatusCode, answer: &[u8]) -> std::result::Result<(), SinkError> {
    if status.is_success() {
        return Ok(());
    }
    let quoted = String::from_utf8_lossy(&answer[..answer.len().min(QUOTED_ANSWER_BYTES)]);
    let quoted = quoted.trim();
    let mut message = format!("{url}: HTTP {status}");
    if status.is_redirection() {
        message.push_str(" (redirects are not followed)");
    }
    if !quoted.is_empty() {
        message.push_str(": ");
        message.push_str(quoted);
    }
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Err(SinkError::Transient(message))
    } else {
        Err(SinkError::Permanent(message))
    }
}

/// An error with its sources (`client error (Connect): tcp connect error: Connection
/// refused …`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

/// `text` with bytes other than visible ASCII (and `%`) percent-encoded, so it is a valid
/// header value.
fn header_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// FNV-1a, 64 bits: a hash that stays the same across runs and builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[async_trait::async_trait(?Send)]
impl SinkWriter for WebhookWriter {
    async fn open(&mut self, _resume: &Value) -> std::result::Result<(), SinkError> {
        self.target = Some(self.config.endpoint.open("webhook").await?);
        Ok(())
    }

    async fn write(&mut self, batches: &[RecordBatch]) -> std::result::Result<(), SinkError> {
        if self.target.is_none() {
            self.connect()?;
        }
        if self.config.batch {
            let mut rows = Vec::new();
            for batch in batches {
                let all: Vec<usize> = (0..batch.num_columns()).collect();
                for row in 0..batch.num_rows() {
                    rows.push(Value::Object(row_object(batch, row, &all)));
                }
            }
            if rows.is_empty() {
                return Ok(());
            }
            let body = Value::Array(rows).to_string();
            let key = format!("{:016x}", fnv1a(body.as_bytes()));
            self.post(body, &key).await
        } else {
            for batch in batches {
                let all: Vec<usize> = (0..batch.num_columns()).collect();
                for row in 0..batch.num_rows() {
                    let body = Value::Object(row_object(batch, row, &all)).to_string();
                    let key = self.row_key(batch, row, &body);
                    self.post(body, &key).await?;
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::{Arc, Mutex};

    use datafusion::arrow::array::{Int64Array, StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// One request the test server received.
    #[derive(Debug, Clone)]
    struct Received {
        /// Request line and headers.
        head: String,
        body: Vec<u8>,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<String> {
            self.head.lines().skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    /// A tiny HTTP server answering every request with `status` (and closing the
    /// connection).
    struct Server {
        addr: SocketAddr,
        received: Arc<Mutex<Vec<Received>>>,
        status: Arc<AtomicU16>,
    }

    async fn serve(status: u16) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(status));
        let (r, s) = (received.clone(), status.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (r, s) = (r.clone(), s.clone());
                tokio::spawn(async move {
                    let _ = answer(&mut socket, &r, &s).await;
                });
            }
        });
        Server {
            addr,
            received,
            status,
        }
    }

    async fn answer(
        socket: &mut TcpStream,
        received: &Mutex<Vec<Received>>,
        status: &AtomicU16,
    ) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length = head
            .lines()
            .skip(1)
            .find_map(|line| {
                let (n, v) = line.split_once(':')?;
                if n.trim().eq_ignore_ascii_case("content-length") {
                    v.trim().parse::<usize>().ok()
                } else {
                    None
                }
            })
            .unwrap_or(0);
        while buf.len() < head_end + 4 + length {
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[head_end + 4..].to_vec();
        received.lock().unwrap().push(Received { head, body });
        let status = status.load(Ordering::SeqCst);
        let reply = format!("{{\"error\":\"answered {status}\"}}");
        let response = format!(
            "HTTP/1.1 {status} Test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        );
        socket.write_all(response.as_bytes()).await?;
        socket.shutdown().await?;
        Ok(())
    }

    fn spec(options: &[(&str, &str)]) -> SinkSpec {
        let schema = Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new(
                "window_start",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("count", DataType::Int64, false),
        ]));
        let mut o: BTreeMap<String, String> = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        o.insert("connector".into(), "webhook".into());
        SinkSpec {
            name: "hook".into(),
            input: "kpi_1m".into(),
            from_source: false,
            schema,
            key: vec!["source".into(), "window_start".into()],
            event_time: None,
            updating: false,
            once_per_key: false,
            options: o,
        }
    }

    fn batch(spec: &SinkSpec) -> RecordBatch {
        RecordBatch::try_new(
            spec.schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["web", "db"])),
                Arc::new(
                    TimestampNanosecondArray::from(vec![
                        1_700_000_040_000_000_000,
                        1_700_000_040_000_000_000,
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from(vec![3, 5])),
            ],
        )
        .unwrap()
    }

    async fn write(spec: &SinkSpec) -> std::result::Result<(), SinkError> {
        let mut writer = WebhookSinkConnector.create(spec).unwrap();
        writer.open(&Value::Null).await?;
        writer.write(&[batch(spec)]).await
    }

    #[tokio::test]
    async fn a_write_posts_a_json_array_of_the_rows() {
        let server = serve(200).await;
        let url = format!("http://{}/hooks/kpi", server.addr);
        let spec = spec(&[
            ("url", url.as_str()),
            ("headers", "X-Team: ops; Authorization: Bearer abc"),
        ]);
        write(&spec).await.unwrap();
        let received = server.received.lock().unwrap().clone();
        assert_eq!(received.len(), 1);
        let r = &received[0];
        assert!(r.head.starts_with("POST /hooks/kpi HTTP/1.1"), "{}", r.head);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(r.header("x-team").as_deref(), Some("ops"));
        assert_eq!(r.header("authorization").as_deref(), Some("Bearer abc"));
        assert_eq!(r.header("idempotency-key").map(|k| k.len()), Some(16));
        assert_eq!(
            r.json(),
            json!([
                {"source": "web", "window_start": "2023-11-14T22:14:00Z", "count": 3},
                {"source": "db", "window_start": "2023-11-14T22:14:00Z", "count": 5},
            ])
        );
    }

    #[tokio::test]
    async fn without_batch_each_row_is_one_post_keyed_by_its_key_columns() {
        let server = serve(201).await;
        let url = format!("http://{}/", server.addr);
        let spec = spec(&[("url", url.as_str()), ("batch", "false")]);
        write(&spec).await.unwrap();
        let received = server.received.lock().unwrap().clone();
        assert_eq!(received.len(), 2);
        assert_eq!(
            received[0].json(),
            json!({"source": "web", "window_start": "2023-11-14T22:14:00Z", "count": 3})
        );
        assert_eq!(
            received[0].header("idempotency-key").as_deref(),
            Some("web:1700000040")
        );
        assert_eq!(
            received[1].header("idempotency-key").as_deref(),
            Some("db:1700000040")
        );
        assert_eq!(received[1].json()["count"], 5);
    }

    #[tokio::test]
    async fn a_503_is_transient() {
        let server = serve(503).await;
        let url = format!("http://{}/", server.addr);
        match write(&spec(&[("url", url.as_str())])).await {
            Err(SinkError::Transient(m)) => assert!(m.contains("503"), "{m}"),
            other => panic!("expected a transient error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_429_is_transient_and_a_400_permanent() {
        let server = serve(429).await;
        let url = format!("http://{}/", server.addr);
        let spec = spec(&[("url", url.as_str())]);
        assert!(
            matches!(write(&spec).await, Err(SinkError::Transient(_))),
            "429"
        );
        server.status.store(400, Ordering::SeqCst);
        match write(&spec).await {
            Err(SinkError::Permanent(m)) => {
                assert!(m.contains("400"), "{m}");
                assert!(m.contains("answered 400"), "{m}");
            }
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn no_server_and_no_answer_are_transient() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/");
        match write(&spec(&[("url", url.as_str())])).await {
            Err(SinkError::Transient(_)) => {}
            other => panic!("expected a transient error, got {other:?}"),
        }

        // A server that accepts connections and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let url = format!("http://{addr}/");
        match write(&spec(&[("url", url.as_str()), ("timeout", "200ms")])).await {
            Err(SinkError::Transient(m)) => assert!(m.contains("no answer"), "{m}"),
            other => panic!("expected a transient error, got {other:?}"),
        }
    }

    #[test]
    fn validate_fills_defaults_and_refuses_bad_options() {
        let options = WebhookSinkConnector
            .validate(&spec(&[
                ("url", "http://127.0.0.1:8080/hook"),
                ("buffer_rows", "100"),
                ("on_full", "spill"),
            ]))
            .unwrap();
        assert_eq!(options["timeout"], "5 seconds");
        assert_eq!(options["batch"], "true");
        assert_eq!(options["buffer_rows"], "100");

        let err = WebhookSinkConnector.validate(&spec(&[])).unwrap_err();
        assert!(err.to_string().contains("url"), "{err}");
        let err = WebhookSinkConnector
            .validate(&spec(&[("url", "https://hooks.example.com/x")]))
            .unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
        assert!(err.to_string().contains("relay"), "{err}");
        for bad in [
            &[("url", "ftp://example.com/")][..],
            &[("url", "http://127.0.0.1/"), ("timeout", "soon")][..],
            &[("url", "http://127.0.0.1/"), ("batch", "maybe")][..],
            &[("url", "http://127.0.0.1/"), ("headers", "no colon")][..],
            &[
                ("url", "http://127.0.0.1/"),
                ("headers", "Content-Length: 3"),
            ][..],
            &[("url", "http://127.0.0.1/"), ("on_full", "sometimes")][..],
            &[("url", "http://127.0.0.1/"), ("colour", "blue")][..],
        ] {
            assert!(
                WebhookSinkConnector.validate(&spec(bad)).is_err(),
                "{bad:?}"
            );
        }
        // A secret reference is checked when the sink connects.
        assert!(WebhookSinkConnector
            .validate(&spec(&[("url", "${env:WEIR_TEST_WEBHOOK_URL}")]))
            .is_ok());
    }

    #[test]
    fn keys_are_valid_header_values() {
        assert_eq!(header_safe("web:1700000040"), "web:1700000040");
        assert_eq!(header_safe("a b%ü"), "a%20b%25%C3%BC");
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
