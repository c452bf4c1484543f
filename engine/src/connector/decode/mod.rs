//! JSON → Arrow, many records at a time.
//!
//! Each record first goes through [`scan`], a scanner straight into Arrow builders for the
//! records it is sure of; the records it steps aside from go through arrow-json's decoder,
//! runs of them in one pass. If any of those is bad, its run is bisected until each bad
//! record stands alone, so a chunk with one malformed record costs a few extra passes
//! instead of one decoder per record. Bad records become [`DeadLetter`]s (with arrow-json's
//! error); good rows keep their order.

mod scan;

use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::record_batch::RecordBatch;

use crate::connector::source::{DeadLetter, RowOrigins};
use crate::error::Result;
use scan::Scanner;

/// The scanner is given up for the rest of a part when it steps aside from more than one
/// record in this many (after [`SCAN_PROBE`] records): arrow-json then takes the part whole.
const SCAN_GIVE_UP: usize = 4;
const SCAN_PROBE: usize = 1_024;

/// What one part of an input decodes to: its batches, and its good and failed records by
/// index in the spans.
type Part = (Vec<RecordBatch>, Vec<usize>, Vec<(usize, String)>);

/// Fewer records than this per thread are decoded on one.
const MIN_PART_RECORDS: usize = 4_096;

/// How many threads decode one large input: the cores this process may run on
/// (`taskset`, cgroup limits), or `WEIR_DECODE_THREADS`.
fn decode_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("WEIR_DECODE_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
            .clamp(1, 64)
    })
}

/// A chunk decoded: rows, their origins, and the lines that failed.
#[derive(Debug)]
pub struct Decoded {
    pub batch: RecordBatch,
    pub origins: RowOrigins,
    pub dead_letters: Vec<DeadLetter>,
}

/// Records decoded from spans of a buffer: the rows of the good records in order, which
/// records they were, and why the others failed.
#[derive(Debug)]
pub struct SpansDecoded {
    /// One row per good record, in record order.
    pub batch: RecordBatch,
    /// Indices (into the spans) of the good records.
    pub good: Vec<usize>,
    /// (index into the spans, error) of each record that failed.
    pub failures: Vec<(usize, String)>,
}

/// Decodes JSON records — one object each — into a declared schema, many records per
/// decoder pass.
///
/// Records are given as byte spans of one buffer; whatever lies between spans must be
/// whitespace (the callers put a newline between records). A record counts as good when it
/// holds exactly one JSON object that fits the schema (a `NOT NULL` column present, every
/// value of its column's type). If a pass over a range fails or yields the wrong number of
/// rows, the range is bisected until each bad record stands alone.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    schema: SchemaRef,
}

impl JsonDecoder {
    /// A decoder for `schema`. Object keys not in the schema are ignored.
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema }
    }

    /// The schema rows are decoded into.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes the records at `spans` of `buf`. A large input is cut into parts decoded on
    /// the cores the process may use, one thread each; the rows keep their order.
    pub fn decode_spans(&self, buf: &[u8], spans: &[(usize, usize)]) -> Result<SpansDecoded> {
        self.decode_in(buf, spans, decode_threads())
    }

    /// Decodes the records in at most `threads` parts of at least [`MIN_PART_RECORDS`].
    fn decode_in(
        &self,
        buf: &[u8],
        spans: &[(usize, usize)],
        threads: usize,
    ) -> Result<SpansDecoded> {
        let parts = threads.min(spans.len() / MIN_PART_RECORDS).max(1);
        let size = spans.len().div_ceil(parts).max(1);
        let ranges: Vec<(usize, usize)> = (0..spans.len())
            .step_by(size)
            .map(|lo| (lo, (lo + size).min(spans.len())))
            .collect();
        let decode = |(lo, hi): (usize, usize)| -> Result<Part> {
            let mut part: Part = (Vec::new(), Vec::with_capacity(hi - lo), Vec::new());
            match Scanner::new(&self.schema) {
                Some(scanner) => self.scan_range(scanner, buf, spans, lo, hi, &mut part)?,
                None => {
                    self.decode_range(buf, spans, lo, hi, &mut part.0, &mut part.1, &mut part.2)
                }
            }
            Ok(part)
        };
        let decoded: Vec<Part> = match ranges.as_slice() {
            [] | [_] => ranges.iter().copied().map(decode).collect::<Result<_>>()?,
            [first, rest @ ..] => std::thread::scope(|scope| {
                let handles: Vec<_> = rest
                    .iter()
                    .map(|&range| scope.spawn(move || decode(range)))
                    .collect();
                let mut out = vec![decode(*first)?];
                for h in handles {
                    out.push(h.join().map_err(|_| {
                        crate::error::EngineError::Internal("a decoding thread panicked".into())
                    })??);
                }
                Ok::<_, crate::error::EngineError>(out)
            })?,
        };
        let mut batches = Vec::new();
        let mut good = Vec::with_capacity(spans.len());
        let mut failures = Vec::new();
        for (b, g, f) in decoded {
            batches.extend(b);
            good.extend(g);
            failures.extend(f);
        }
        // One copy of the rows, whatever the number of parts.
        let batch = concat_batches(&self.schema, &batches)?;
        Ok(SpansDecoded {
            batch,
            good,
            failures,
        })
    }

    /// Decodes records `lo..hi` with the scanner, and the runs of records it steps aside
    /// from with arrow-json, in order.
    fn scan_range(
        &self,
        mut scanner: Scanner,
        buf: &[u8],
        spans: &[(usize, usize)],
        lo: usize,
        hi: usize,
        (batches, good, failures): &mut Part,
    ) -> Result<()> {
        if lo >= hi {
            return Ok(());
        }
        // One UTF-8 check for the part; records are checked one by one only if it fails.
        let utf8 = std::str::from_utf8(&buf[spans[lo].0..spans[hi - 1].1]).is_ok();
        let mut aside_from = None;
        let mut asides = 0;
        let mut i = lo;
        while i < hi {
            let (start, end) = spans[i];
            if scanner.push(&buf[start..end], utf8) {
                if let Some(from) = aside_from.take() {
                    // The run before this record, ahead of the rows the scanner now holds.
                    self.decode_range(buf, spans, from, i, batches, good, failures);
                }
                good.push(i);
            } else {
                asides += 1;
                if aside_from.is_none() {
                    batches.extend(scanner.finish()?);
                    aside_from = Some(i);
                }
                let seen = i + 1 - lo;
                if seen >= SCAN_PROBE && asides * SCAN_GIVE_UP > seen {
                    break;
                }
            }
            i += 1;
        }
        batches.extend(scanner.finish()?);
        let rest = aside_from.unwrap_or(i);
        self.decode_range(buf, spans, rest, hi, batches, good, failures);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn decode_range(
        &self,
        buf: &[u8],
        spans: &[(usize, usize)],
        lo: usize,
        hi: usize,
        batches: &mut Vec<RecordBatch>,
        good: &mut Vec<usize>,
        failures: &mut Vec<(usize, String)>,
    ) {
        if lo >= hi {
            return;
        }
        let bytes = &buf[spans[lo].0..spans[hi - 1].1];
        match self.decode_bytes(bytes, hi - lo) {
            Ok(Some(batch)) if batch.num_rows() == hi - lo => {
                batches.push(batch);
                good.extend(lo..hi);
            }
            Ok(other) if hi - lo == 1 => {
                let rows = other.map(|b| b.num_rows()).unwrap_or(0);
                failures.push((lo, format!("expected one JSON object, found {rows}")));
            }
            Err(e) if hi - lo == 1 => failures.push((lo, e.to_string())),
            _ => {
                let mid = lo + (hi - lo) / 2;
                self.decode_range(buf, spans, lo, mid, batches, good, failures);
                self.decode_range(buf, spans, mid, hi, batches, good, failures);
            }
        }
    }

    fn decode_bytes(
        &self,
        bytes: &[u8],
        rows: usize,
    ) -> std::result::Result<Option<RecordBatch>, datafusion::arrow::error::ArrowError> {
        let mut decoder = ReaderBuilder::new(self.schema.clone())
            .with_batch_size(rows + 1)
            .build_decoder()?;
        let mut offset = 0;
        while offset < bytes.len() {
            let read = decoder.decode(&bytes[offset..])?;
            if read == 0 {
                break;
            }
            offset += read;
        }
        decoder.flush()
    }
}

/// Decodes newline-delimited JSON into a declared schema.
#[derive(Debug, Clone)]
pub struct JsonLinesDecoder {
    json: JsonDecoder,
    origin: Arc<str>,
}

impl JsonLinesDecoder {
    /// A decoder for `schema`; `origin` names the input in locations (`origin:line`).
    pub fn new(schema: SchemaRef, origin: impl Into<Arc<str>>) -> Self {
        Self {
            json: JsonDecoder::new(schema),
            origin: origin.into(),
        }
    }

    /// Decodes every line of `chunk` (which holds whole lines only). `first_line` is the
    /// 1-based number of its first line.
    pub fn decode(&self, chunk: Arc<Vec<u8>>, first_line: u64) -> Result<Decoded> {
        let mut spans = Vec::new();
        let mut line_numbers = Vec::new();
        let mut start = 0;
        let mut line = first_line;
        for end in memchr_newlines(&chunk) {
            push_line(&chunk, start, end, line, &mut spans, &mut line_numbers);
            start = end + 1;
            line += 1;
        }
        if start < chunk.len() {
            push_line(
                &chunk,
                start,
                chunk.len(),
                line,
                &mut spans,
                &mut line_numbers,
            );
        }
        let decoded = self.json.decode_spans(&chunk, &spans)?;
        let dead_letters = decoded
            .failures
            .into_iter()
            .map(|(i, error)| DeadLetter {
                location: format!("{}:{}", self.origin, line_numbers[i]),
                raw: String::from_utf8_lossy(&chunk[spans[i].0..spans[i].1]).into_owned(),
                error,
            })
            .collect();
        Ok(Decoded {
            batch: decoded.batch,
            origins: RowOrigins::Lines {
                file: self.origin.clone(),
                line_numbers: decoded.good.iter().map(|&i| line_numbers[i]).collect(),
                spans: decoded.good.iter().map(|&i| spans[i]).collect(),
                raw: chunk,
            },
            dead_letters,
        })
    }
}

fn push_line(
    chunk: &[u8],
    start: usize,
    end: usize,
    line: u64,
    spans: &mut Vec<(usize, usize)>,
    line_numbers: &mut Vec<u64>,
) {
    let mut e = end;
    if e > start && chunk[e - 1] == b'\r' {
        e -= 1;
    }
    if chunk[start..e].iter().all(|b| b.is_ascii_whitespace()) {
        return;
    }
    spans.push((start, e));
    line_numbers.push(line);
}

fn memchr_newlines(chunk: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr_iter(b'\n', chunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("n", DataType::Float64, true),
        ]))
    }

    #[test]
    fn bad_lines_become_dead_letters_and_good_rows_keep_order() {
        let text = b"{\"id\":\"a\",\"n\":1}\nnot json\n{\"id\":\"b\",\"n\":2}\n\n{\"id\":\"c\",\"n\":\"x\"}\n{\"id\":\"d\",\"n\":4}\n";
        let d = JsonLinesDecoder::new(schema(), "f.jsonl")
            .decode(Arc::new(text.to_vec()), 1)
            .unwrap();
        assert_eq!(d.batch.num_rows(), 3);
        let ids = d
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        assert_eq!(
            ids.iter().flatten().collect::<Vec<_>>(),
            vec!["a", "b", "d"]
        );
        let locs: Vec<_> = d.dead_letters.iter().map(|l| l.location.as_str()).collect();
        assert_eq!(locs, vec!["f.jsonl:2", "f.jsonl:5"]);
        assert_eq!(d.dead_letters[0].raw, "not json");
        assert_eq!(d.origins.location("s", 2), "f.jsonl:6");
        assert_eq!(d.origins.raw(1).unwrap(), "{\"id\":\"b\",\"n\":2}");
    }

    /// A schema with every kind the scanner takes, a `NOT NULL` column and a struct.
    fn wide_schema() -> SchemaRef {
        use datafusion::arrow::datatypes::{Fields, TimeUnit};
        let attributes = Fields::from(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("metric", DataType::Float64, true),
        ]);
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Float64, true),
            Field::new("k", DataType::Int64, true),
            Field::new("small", DataType::Int32, true),
            Field::new("f", DataType::Float32, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                true,
            ),
            Field::new("ms", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("attributes", DataType::Struct(attributes), true),
        ]))
    }

    /// Decodes with the scanner in front (as sources do) and with arrow-json alone.
    fn both_ways(lines: &[Vec<u8>]) -> (SpansDecoded, SpansDecoded) {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for line in lines {
            spans.push((buf.len(), buf.len() + line.len()));
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        let decoder = JsonDecoder::new(wide_schema());
        let scanned = decoder.decode_in(&buf, &spans, 1).unwrap();
        let (mut batches, mut good, mut failures) = (Vec::new(), Vec::new(), Vec::new());
        decoder.decode_range(
            &buf,
            &spans,
            0,
            spans.len(),
            &mut batches,
            &mut good,
            &mut failures,
        );
        let batch = concat_batches(decoder.schema(), &batches).unwrap();
        (
            scanned,
            SpansDecoded {
                batch,
                good,
                failures,
            },
        )
    }

    #[test]
    fn the_scanner_gives_arrow_jsons_rows_and_errors() {
        let lines: Vec<&str> = vec![
            r#"{"id":"a","n":1.5,"k":7,"small":-3,"f":0.1,"ok":true,"ts":"2026-11-27T10:00:00.123Z","ms":"2026-11-27T10:00:00.123456Z","attributes":{"user_id":"u1","metric":2.5}}"#,
            r#"  { "id" : "b" , "n" : -0 , "attributes" : { "metric" : 1e3 } }  "#,
            r#"{"id":"c","attributes":{},"extra":{"deep":[1,{"x":null},"s",true,false,-2.5e-3]}}"#,
            r#"{"id":"esc\"aped","attributes":{"user_id":"caf\u00e9"}}"#,
            r#"{"id":"é ünïcode","attributes":{"user_id":"日本"}}"#,
            r#"{"id":"d","n":"12","attributes":{}}"#,
            r#"{"id":"e","k":1.0,"attributes":{}}"#,
            r#"{"id":"f","k":1e2,"attributes":{}}"#,
            r#"{"id":"g","k":99999999999999999999,"attributes":{}}"#,
            r#"{"id":"h","small":3000000000,"attributes":{}}"#,
            r#"{"id":"i","n":1e400,"attributes":{}}"#,
            r#"{"id":"j","ts":"2026-11-27T10:00:00+02:00","ms":"2026-11-27 10:00:00","attributes":{}}"#,
            r#"{"id":"k","ts":"2026-02-30T10:00:00Z","attributes":{}}"#,
            r#"{"id":"l","ts":"not a time","attributes":{}}"#,
            r#"{"id":"m","ts":1764237600000000000,"attributes":{}}"#,
            r#"{"n":1,"attributes":{}}"#,
            r#"{"id":null,"attributes":{}}"#,
            r#"{"id":"n"}"#,
            r#"{"id":"o","attributes":null}"#,
            r#"{"id":"p","id":"q","attributes":{}}"#,
            r#"{"id":"r","attributes":{}} trailing"#,
            r#"{"id":"s","attributes":{}} {"id":"t","attributes":{}}"#,
            r#"[1,2]"#,
            r#"{}"#,
            r#"{"id":"u","ok":tru,"attributes":{}}"#,
            r#"{"id":"v","ok":"true","attributes":{}}"#,
            r#"{"id":"w","extra":01,"attributes":{}}"#,
            r#"{"id":"x","extra":[1,],"attributes":{}}"#,
            r#"{"id":"y","attributes":{"metric":"NaN"}}"#,
            r#"{"id":"z","n":.5,"attributes":{}}"#,
            r#"{"id":"ctrl	tab","attributes":{}}"#,
            r#"{"id":"aa","f":3.4028236e38,"attributes":{}}"#,
            r#"{"id":"ab","n":2.2250738585072011e-308,"f":1.00000005,"attributes":{}}"#,
            r#"{"id":"ac","ms":"1969-12-31T23:59:59.9999Z","attributes":{}}"#,
            r#"{"id":"ad","attributes":{"user_id":"u","metric":1,"more":{"a":[[]]}}}"#,
            r#"{"id":"ae","attributes":{"user_id":"u","user_id":"v"}}"#,
        ];
        let mut lines: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
        lines.push(b"{\"id\":\"bad \xff utf8\",\"attributes\":{}}".to_vec());
        lines.push(b"{\"id\":\"skipped bad utf8\",\"x\":\"\xc3\",\"attributes\":{}}".to_vec());
        let (scanned, arrow) = both_ways(&lines);
        assert_eq!(scanned.batch, arrow.batch);
        assert_eq!(scanned.good, arrow.good);
        assert_eq!(scanned.failures, arrow.failures);
        // Both ways took the plain records and refused the bad ones.
        assert!(scanned.good.contains(&0) && scanned.failures.iter().any(|(i, _)| *i == 13));
    }

    #[test]
    fn damaged_records_decode_the_same_either_way() {
        let event = br#"{"id":"e-1","n":12.25,"k":-4,"ok":false,"ts":"2026-11-27T10:00:00.5Z","attributes":{"user_id":"u7","metric":0.125},"tags":["a",{"b":null}]}"#;
        let mut seed = 42u64;
        let mut next = |m: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % m
        };
        let alphabet = b"{}[]\":,.-+eE0123456789 tfnulx\\";
        let lines: Vec<Vec<u8>> = (0..6_000)
            .map(|_| {
                let mut line = event.to_vec();
                for _ in 0..next(3) {
                    let at = next(line.len());
                    match next(3) {
                        0 => {
                            line.remove(at);
                        }
                        1 => line.insert(at, alphabet[next(alphabet.len())]),
                        _ => line[at] = alphabet[next(alphabet.len())],
                    }
                }
                line
            })
            .collect();
        let (scanned, arrow) = both_ways(&lines);
        assert_eq!(scanned.batch, arrow.batch);
        assert_eq!(scanned.good, arrow.good);
        assert_eq!(scanned.failures, arrow.failures);
        assert!(scanned.failures.len() > 1_000 && scanned.good.len() > 1_000);
    }

    #[test]
    fn a_large_input_decoded_in_parts_equals_one_pass() {
        let mut text = String::new();
        for i in 0..20_000 {
            match i % 997 {
                13 => text.push_str("{\"id\": broken\n"),
                14 => text.push_str(&format!("{{\"id\":\"r{i}\",\"n\":\"not a number\"}}\n")),
                _ => text.push_str(&format!("{{\"id\":\"r{i}\",\"n\":{i}}}\n")),
            }
        }
        let buf = text.into_bytes();
        let mut spans = Vec::new();
        let mut start = 0;
        for end in memchr_newlines(&buf) {
            spans.push((start, end));
            start = end + 1;
        }
        let decoder = JsonDecoder::new(schema());
        let parts = decoder.decode_in(&buf, &spans, 2).unwrap();
        let whole = decoder.decode_in(&buf, &spans, 1).unwrap();
        assert_eq!(parts.batch, whole.batch);
        assert_eq!(parts.good, whole.good);
        assert_eq!(parts.failures, whole.failures);
        assert_eq!(whole.failures.len(), 42);
        assert_eq!(whole.batch.num_rows() + whole.failures.len(), 20_000);
    }
}
