//! JSON lines → Arrow, a chunk at a time.
//!
//! The whole chunk goes through arrow-json's decoder in one pass. If any line is bad, the
//! chunk is bisected until each bad line stands alone, so a chunk with one malformed line
//! costs a few extra passes instead of one decoder per line. Bad lines become
//! [`DeadLetter`]s; good rows keep their order.

use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::source::{DeadLetter, RowOrigins};

/// A chunk decoded: rows, their origins, and the lines that failed.
#[derive(Debug)]
pub struct Decoded {
    pub batch: RecordBatch,
    pub origins: RowOrigins,
    pub dead_letters: Vec<DeadLetter>,
}

/// Decodes newline-delimited JSON into a declared schema.
#[derive(Debug, Clone)]
pub struct JsonLinesDecoder {
    schema: SchemaRef,
    origin: Arc<str>,
}

impl JsonLinesDecoder {
    /// A decoder for `schema`; `origin` names the input in locations (`origin:line`).
    pub fn new(schema: SchemaRef, origin: impl Into<Arc<str>>) -> Self {
        Self {
            schema,
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

        let mut batches = Vec::new();
        let mut good = Vec::new();
        let mut dead_letters = Vec::new();
        self.decode_range(
            &chunk,
            &spans,
            0,
            spans.len(),
            &mut batches,
            &mut good,
            &mut dead_letters,
            &line_numbers,
        )?;
        let batch = concat_batches(&self.schema, &batches)?;
        Ok(Decoded {
            batch,
            origins: RowOrigins::Lines {
                file: self.origin.clone(),
                line_numbers: good.iter().map(|&i| line_numbers[i]).collect(),
                raw: chunk.clone(),
                spans: good.iter().map(|&i| spans[i]).collect(),
            },
            dead_letters,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn decode_range(
        &self,
        chunk: &[u8],
        spans: &[(usize, usize)],
        lo: usize,
        hi: usize,
        batches: &mut Vec<RecordBatch>,
        good: &mut Vec<usize>,
        dead: &mut Vec<DeadLetter>,
        line_numbers: &[u64],
    ) -> Result<()> {
        if lo >= hi {
            return Ok(());
        }
        let bytes = &chunk[spans[lo].0..spans[hi - 1].1];
        match self.decode_bytes(bytes, hi - lo) {
            Ok(Some(batch)) if batch.num_rows() == hi - lo => {
                batches.push(batch);
                good.extend(lo..hi);
                Ok(())
            }
            Ok(other) if hi - lo == 1 => {
                let rows = other.map(|b| b.num_rows()).unwrap_or(0);
                dead.push(self.dead_letter(
                    chunk,
                    spans[lo],
                    line_numbers[lo],
                    format!("expected one JSON object, found {rows}"),
                ));
                Ok(())
            }
            Err(e) if hi - lo == 1 => {
                dead.push(self.dead_letter(chunk, spans[lo], line_numbers[lo], e.to_string()));
                Ok(())
            }
            _ => {
                let mid = lo + (hi - lo) / 2;
                self.decode_range(chunk, spans, lo, mid, batches, good, dead, line_numbers)?;
                self.decode_range(chunk, spans, mid, hi, batches, good, dead, line_numbers)
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

    fn dead_letter(
        &self,
        chunk: &[u8],
        span: (usize, usize),
        line: u64,
        error: String,
    ) -> DeadLetter {
        DeadLetter {
            location: format!("{}:{}", self.origin, line),
            raw: String::from_utf8_lossy(&chunk[span.0..span.1]).into_owned(),
            error,
        }
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
}
