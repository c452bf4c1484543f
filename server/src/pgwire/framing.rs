//! Checks the framing of what a client sends before the protocol decoder reads it.
//!
//! The `pgwire` decoder trusts lengths and counts: a Query whose length is 0–3 is read
//! from the bytes that follow it, an Execute without its `max_rows` waits for bytes that
//! belong to the next message (the connection hangs), a Bind whose counts do not match its
//! bytes panics. PostgreSQL answers each with `FATAL 08P01 invalid message format`. So does
//! Weir: [`Checked`] sits between the socket and the decoder, follows message boundaries
//! and checks each message's layout; the first bad message ends the stream with an
//! [`InvalidData`](std::io::ErrorKind::InvalidData) error that the connection loop answers
//! with 08P01. Every message before it is delivered as usual.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest startup-phase message (startup parameters, SSL and cancel requests).
const MAX_STARTUP_LEN: usize = 10_000;

/// Message types whose bodies are checked (others only need a length of at least 4).
const CHECKED_BODIES: &[u8] = b"QEPBCDSHX";

/// Follows message boundaries of the client's stream and checks each message.
#[derive(Debug, Default)]
pub struct FrameCheck {
    /// After the startup message: typed messages (`type`, `len`, body).
    typed: bool,
    /// The current message's header bytes so far (5 typed, 4 untyped).
    header: Vec<u8>,
    /// Body bytes still to come for the current message.
    remaining: usize,
    /// The current message's body, for the types that are checked.
    body: Option<Vec<u8>>,
}

/// Where a bad message starts in a slice given to [`FrameCheck::feed`], and why.
#[derive(Debug)]
pub struct BadMessage {
    pub at: usize,
    pub reason: String,
}

impl FrameCheck {
    /// Follows `bytes`, the next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), BadMessage> {
        let mut i = 0;
        // Where the message being read started within `bytes` (0 if in an earlier slice).
        let mut start = 0;
        while i < bytes.len() {
            if self.header.is_empty() && self.remaining == 0 && self.body.is_none() {
                start = i;
            }
            let header_len = if self.typed { 5 } else { 4 };
            if self.header.len() < header_len {
                let take = (header_len - self.header.len()).min(bytes.len() - i);
                self.header.extend_from_slice(&bytes[i..i + take]);
                i += take;
                if self.header.len() < header_len {
                    break;
                }
                self.begin()
                    .map_err(|reason| BadMessage { at: start, reason })?;
                if self.remaining > 0 {
                    continue;
                }
            } else {
                let take = self.remaining.min(bytes.len() - i);
                if let Some(body) = &mut self.body {
                    body.extend_from_slice(&bytes[i..i + take]);
                }
                self.remaining -= take;
                i += take;
            }
            if self.remaining == 0 {
                self.finish()
                    .map_err(|reason| BadMessage { at: start, reason })?;
            }
        }
        Ok(())
    }

    /// A header is complete: checks its length and sets up the body.
    fn begin(&mut self) -> Result<(), String> {
        let (kind, len) = if self.typed {
            let len = i32::from_be_bytes(self.header[1..5].try_into().unwrap());
            (Some(self.header[0]), len)
        } else {
            (
                None,
                i32::from_be_bytes(self.header[..4].try_into().unwrap()),
            )
        };
        if len < 4 {
            return Err(format!(
                "message length {len} is shorter than its own length field"
            ));
        }
        let len = len as usize;
        match kind {
            None if !(8..=MAX_STARTUP_LEN).contains(&len) => {
                return Err(format!("startup packet length {len} is out of range"));
            }
            None => self.body = Some(Vec::with_capacity(len - 4)),
            Some(k) if CHECKED_BODIES.contains(&k) => {
                self.body = Some(Vec::with_capacity((len - 4).min(1 << 16)))
            }
            Some(_) => self.body = None,
        }
        self.remaining = len - 4;
        Ok(())
    }

    /// A message is complete: checks its body and moves to the next.
    fn finish(&mut self) -> Result<(), String> {
        let header = std::mem::take(&mut self.header);
        let body = self.body.take();
        let Some(body) = body else { return Ok(()) };
        if !self.typed {
            // Protocol 3.x starts the typed phase; SSL, GSS and cancel requests do not.
            let code = u32::from_be_bytes(body[..4].try_into().unwrap());
            if code >> 16 == 3 {
                self.typed = true;
            }
            return Ok(());
        }
        let kind = header[0] as char;
        let ok = match header[0] {
            b'S' | b'H' | b'X' => body.is_empty(),
            b'Q' => Layout::new(&body).cstr().end(),
            b'E' => Layout::new(&body).cstr().int32().end(),
            b'C' | b'D' => Layout::new(&body).byte().cstr().end(),
            b'P' => {
                let mut l = Layout::new(&body).cstr().cstr();
                let n = l.count();
                l.repeat(n, 4).end()
            }
            b'B' => bind_ok(&body),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "invalid message format: a '{kind}' message of {} bytes does not match its layout",
                body.len() + 4
            ))
        }
    }
}

/// Bind: portal, statement, parameter formats, parameter values, result formats.
fn bind_ok(body: &[u8]) -> bool {
    let mut l = Layout::new(body).cstr().cstr();
    let formats = l.count();
    l = l.repeat(formats, 2);
    let params = l.count();
    for _ in 0..params {
        l = l.value();
    }
    let results = l.count();
    l.repeat(results, 2).end()
}

/// Walks a message body field by field; any field past the end makes it invalid.
struct Layout<'a> {
    body: &'a [u8],
    at: Option<usize>,
}

impl<'a> Layout<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self { body, at: Some(0) }
    }

    fn skip(mut self, n: usize) -> Self {
        self.at = self
            .at
            .and_then(|a| a.checked_add(n))
            .filter(|&a| a <= self.body.len());
        self
    }

    fn byte(self) -> Self {
        self.skip(1)
    }

    fn int32(self) -> Self {
        self.skip(4)
    }

    fn cstr(mut self) -> Self {
        self.at = self.at.and_then(|a| {
            let rest = self.body.get(a..)?;
            rest.iter().position(|&b| b == 0).map(|n| a + n + 1)
        });
        self
    }

    /// An Int16 count (negative counts are invalid).
    fn count(&mut self) -> usize {
        let n = self.at.and_then(|a| {
            let bytes = self.body.get(a..a + 2)?;
            let n = i16::from_be_bytes([bytes[0], bytes[1]]);
            usize::try_from(n).ok()
        });
        match n {
            Some(n) => {
                self.at = self.at.map(|a| a + 2);
                n
            }
            None => {
                self.at = None;
                0
            }
        }
    }

    fn repeat(self, n: usize, size: usize) -> Self {
        self.skip(n.saturating_mul(size))
    }

    /// A parameter value: an Int32 length (−1 for NULL) and that many bytes.
    fn value(mut self) -> Self {
        let len = self.at.and_then(|a| {
            let b = self.body.get(a..a + 4)?;
            Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        });
        match len {
            Some(-1) => self.skip(4),
            Some(n) if n >= 0 => self.skip(4).skip(n as usize),
            _ => {
                self.at = None;
                self
            }
        }
    }

    fn end(self) -> bool {
        self.at == Some(self.body.len())
    }
}

/// A client stream whose reads stop, with an `InvalidData` error, at the first message
/// that breaks the protocol's framing.
pub struct Checked<S> {
    inner: S,
    check: FrameCheck,
    failed: Option<String>,
}

impl<S> Checked<S> {
    /// Wraps `inner`, whose first bytes were already read into `buffered`: they are
    /// checked too, and cut at a bad message.
    pub fn with_buffered(inner: S, buffered: &mut bytes::BytesMut) -> Self {
        let mut check = FrameCheck::default();
        let failed = check.feed(buffered).err().map(|bad| {
            buffered.truncate(bad.at);
            bad.reason
        });
        Self {
            inner,
            check,
            failed,
        }
    }
}

/// The error [`Checked`] ends a stream with; the connection loop answers it with 08P01.
pub fn is_framing_error(e: &io::Error) -> Option<String> {
    (e.kind() == io::ErrorKind::InvalidData)
        .then(|| e.get_ref().map(|r| r.to_string()))
        .flatten()
        .filter(|m| m.starts_with(FRAMING_PREFIX))
        .map(|m| m[FRAMING_PREFIX.len()..].to_string())
}

const FRAMING_PREFIX: &str = "framing: ";

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(reason) = &self.failed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{FRAMING_PREFIX}{reason}"),
            )));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if let Err(bad) = this.check.feed(&buf.filled()[before..]) {
            this.failed = Some(bad.reason.clone());
            if bad.at == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{FRAMING_PREFIX}{}", bad.reason),
                )));
            }
            // Deliver the good messages before it; the next read reports the error.
            buf.set_filled(before + bad.at);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup() -> Vec<u8> {
        let mut body = 196608u32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0weir\0\0");
        let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        m.extend(body);
        m
    }

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend(((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// Feeds `stream` in slices of `step` bytes; the offset of the bad message, if any.
    fn check(stream: &[u8], step: usize) -> Option<usize> {
        let mut c = FrameCheck::default();
        let mut offset = 0;
        for chunk in stream.chunks(step) {
            if let Err(bad) = c.feed(chunk) {
                return Some(offset + bad.at);
            }
            offset += chunk.len();
        }
        None
    }

    #[test]
    fn good_streams_pass_in_any_slicing_and_bad_messages_are_found_where_they_start() {
        let mut good = startup();
        good.extend(typed(b'Q', b"SELECT 1\0"));
        good.extend(typed(b'P', b"\0SELECT $1\0\x00\x01\x00\x00\x00\x14"));
        // Bind: portal, statement, 1 format, 2 params (4 bytes and NULL), 1 result format.
        good.extend(typed(
            b'B',
            b"\0\0\x00\x01\x00\x01\x00\x02\x00\x00\x00\x04abcd\xff\xff\xff\xff\x00\x01\x00\x01",
        ));
        good.extend(typed(b'D', b"P\0"));
        good.extend(typed(b'E', b"\0\x00\x00\x00\x00"));
        good.extend(typed(b'S', b""));
        for step in [1, 2, 3, 7, good.len()] {
            assert_eq!(check(&good, step), None, "step {step}");
        }
        let bad_messages: Vec<Vec<u8>> = vec![
            // Query with length 0..=3.
            vec![b'Q', 0, 0, 0, 0],
            vec![b'Q', 0, 0, 0, 3],
            // Query without its terminating NUL, and with bytes after it.
            typed(b'Q', b"SELECT 1"),
            typed(b'Q', b"SELECT 1\0x"),
            // Execute without max_rows.
            typed(b'E', b"\0"),
            // Bind with a parameter count of -5, and with a value longer than the message.
            typed(b'B', b"\0\0\x00\x00\xff\xfb\x00\x00"),
            typed(b'B', b"\0\0\x00\x00\x00\x01\x00\x00\x00\x09ab\x00\x00"),
            // Sync with a body.
            typed(b'S', b"x"),
        ];
        for bad in bad_messages {
            let mut stream = good.clone();
            let at = stream.len();
            stream.extend(&bad);
            for step in [1, 5, stream.len()] {
                // Found within the bad message: every message before it is delivered
                // (bytes of it already passed on wait in the decoder for the rest).
                let found = check(&stream, step);
                assert!(
                    found.is_some_and(|f| f >= at && f < stream.len()),
                    "{bad:?} step {step}: {found:?}"
                );
                if step == stream.len() {
                    assert_eq!(found, Some(at), "{bad:?}");
                }
            }
        }
        assert!(check(&[0, 0, 0, 3], 4).is_some(), "startup length 3");
    }
}
