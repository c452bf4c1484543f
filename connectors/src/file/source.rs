//! Reading a JSON-lines file in chunks of whole lines.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use weir_engine::connector::decode::JsonLinesDecoder;
use weir_engine::connector::source::{Poll, Source, SourceBatch, SourceSpec};
use weir_engine::error::{EngineError, Result};

use super::FileConfig;

/// Reads a file from its start; position = byte offset of the next unread line.
#[derive(Debug)]
pub struct FileSource {
    name: String,
    config: FileConfig,
    file: File,
    decoder: JsonLinesDecoder,
    /// Bytes read but not yet decoded (an incomplete last line).
    pending: Vec<u8>,
    /// Byte offset of the start of `pending`.
    offset: u64,
    /// Line number of the first line in `pending`.
    line: u64,
    eof_seen: bool,
}

impl FileSource {
    /// Opens the file named by `config`.
    pub fn open(spec: &SourceSpec, config: FileConfig) -> Result<Self> {
        let file = File::open(&config.path).map_err(|e| EngineError::Source {
            source_name: spec.name.clone(),
            message: format!("cannot open {}: {e}", config.path.display()),
        })?;
        let origin = config
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| config.path.display().to_string());
        Ok(Self {
            name: spec.name.clone(),
            decoder: JsonLinesDecoder::new(spec.schema.clone(), origin),
            config,
            file,
            pending: Vec::new(),
            offset: 0,
            line: 1,
            eof_seen: false,
        })
    }

    /// Opens the file and continues at `position` (a checkpointed `{offset, line}`), or at
    /// its start.
    pub fn open_at(
        spec: &SourceSpec,
        config: FileConfig,
        position: Option<&serde_json::Value>,
    ) -> Result<Self> {
        let mut source = Self::open(spec, config)?;
        if let Some(p) = position {
            let offset = p.get("offset").and_then(|v| v.as_u64()).unwrap_or(0);
            let line = p.get("line").and_then(|v| v.as_u64()).unwrap_or(1);
            source.seek(offset, line)?;
        }
        Ok(source)
    }

    /// Continues at byte `offset`, which starts line `line` (a checkpointed position). A
    /// file now shorter than `offset` was truncated or replaced: it is read from its start.
    pub fn seek(&mut self, offset: u64, line: u64) -> Result<()> {
        let len = self.file.metadata().map_err(|e| self.io_error(e))?.len();
        let (offset, line) = if len < offset {
            tracing::warn!(source = %self.name, file = %self.config.path.display(), offset, len, "file is shorter than the checkpointed position; reading it from the start");
            (0, 1)
        } else {
            (offset, line)
        };
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| self.io_error(e))?;
        self.pending.clear();
        self.offset = offset;
        self.line = line;
        Ok(())
    }

    fn io_error(&self, e: std::io::Error) -> EngineError {
        EngineError::Source {
            source_name: self.name.clone(),
            message: format!("reading {}: {e}", self.config.path.display()),
        }
    }

    fn emit(&mut self, upto: usize) -> Result<Poll> {
        let rest = self.pending.split_off(upto);
        let chunk = Arc::new(std::mem::replace(&mut self.pending, rest));
        let lines = memchr::memchr_iter(b'\n', &chunk).count() as u64;
        let decoded = self.decoder.decode(chunk.clone(), self.line)?;
        self.offset += chunk.len() as u64;
        self.line += lines;
        Ok(Poll::Batch(SourceBatch::new(
            decoded.batch,
            decoded.origins,
            decoded.dead_letters,
            serde_json::json!({ "offset": self.offset, "line": self.line }),
        )))
    }
}

impl Source for FileSource {
    fn next_batch(&mut self) -> Result<Poll> {
        let want = self.config.chunk_bytes;
        let start = self.pending.len();
        self.pending.resize(start + want, 0);
        let mut filled = start;
        while filled < self.pending.len() {
            let n = self
                .file
                .read(&mut self.pending[filled..])
                .map_err(|e| self.io_error(e))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        self.pending.truncate(filled);
        let read = filled - start;
        if read == 0 {
            if self.config.follow {
                // Detect truncation/rotation: start over if the file shrank.
                let len = self.file.metadata().map_err(|e| self.io_error(e))?.len();
                if len < self.offset + self.pending.len() as u64 {
                    self.file
                        .seek(SeekFrom::Start(0))
                        .map_err(|e| self.io_error(e))?;
                    self.pending.clear();
                    self.offset = 0;
                    self.line = 1;
                }
                return Ok(Poll::Idle);
            }
            if self.pending.is_empty() {
                self.eof_seen = true;
                return Ok(Poll::End);
            }
            // The last line has no newline: it is complete at end of file.
            let all = self.pending.len();
            return self.emit(all);
        }
        match self.pending.iter().rposition(|b| *b == b'\n') {
            Some(nl) => self.emit(nl + 1),
            // A single line longer than a chunk: keep reading.
            None => self.next_batch(),
        }
    }
}
