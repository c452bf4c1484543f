//! The datagen source: paces events to wall time (or not) and decodes them like any JSON.

use std::sync::Arc;

use weir_engine::connector::decode::JsonLinesDecoder;
use weir_engine::connector::source::{Poll, RowOrigins, Source, SourceBatch, SourceSpec};
use weir_engine::error::Result;

use super::{DatagenConfig, EventGenerator};

const MAX_BATCH: u64 = 8192;

/// Generates events `next..`; position = index of the next event.
#[derive(Debug)]
pub struct DatagenSource {
    generator: EventGenerator,
    decoder: JsonLinesDecoder,
    next: u64,
    buf: Vec<u8>,
}

impl DatagenSource {
    /// A source starting at event 0.
    pub fn new(spec: &SourceSpec, config: DatagenConfig) -> Self {
        Self {
            decoder: JsonLinesDecoder::new(spec.schema.clone(), spec.name.clone()),
            generator: EventGenerator::new(config),
            next: 0,
            buf: Vec::new(),
        }
    }

    /// Continues at event `next` (a checkpointed position).
    pub fn skip_to(&mut self, next: u64) {
        self.next = next;
    }

    /// Index one past the last event that is due now.
    fn due(&self) -> u64 {
        let c = self.generator.config();
        let mut due = match c.realtime {
            false => u64::MAX,
            true => {
                let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
                let elapsed = now.saturating_sub(c.start_ns).max(0) as u128;
                (elapsed * c.rate as u128 / 1_000_000_000u128) as u64
            }
        };
        if let Some(count) = c.count {
            due = due.min(count);
        }
        due
    }
}

impl Source for DatagenSource {
    fn next_batch(&mut self) -> Result<Poll> {
        let due = self.due();
        if let Some(count) = self.generator.config().count {
            if self.next >= count {
                return Ok(Poll::End);
            }
        }
        if self.next >= due {
            return Ok(Poll::Idle);
        }
        let end = due.min(self.next + MAX_BATCH);
        self.buf.clear();
        for i in self.next..end {
            self.generator.write_event(i, &mut self.buf);
        }
        let chunk = Arc::new(std::mem::take(&mut self.buf));
        let decoded = self.decoder.decode(chunk, self.next + 1)?;
        let first = self.next;
        self.next = end;
        Ok(Poll::Batch(SourceBatch::new(
            decoded.batch,
            RowOrigins::Sequence { first },
            decoded.dead_letters,
            serde_json::json!({ "next": self.next }),
        )))
    }
}
