//! The reader thread of a pipeline: polls the source and hands batches to the processor
//! over a bounded channel.

use super::*;

// One message per micro-batch: the size of the empty variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Message {
    Batch(SourceBatch),
    Idle,
    Waiting,
    End,
}

pub(super) fn read_loop(
    factory: Arc<dyn SourceFactory>,
    spec: SourceSpec,
    position: serde_json::Value,
    stats: Arc<SourceStats>,
    stop: Arc<AtomicBool>,
    tx: std::sync::mpsc::SyncSender<Message>,
) {
    let mut source = match factory.open(&spec, (!position.is_null()).then_some(&position)) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(source = %spec.name, error = %e, "cannot open source");
            stats.set_status(format!("error: {e}"));
            return;
        }
    };
    stats.set_status("running");
    let mut status = SourceStatus::Running;
    while !stop.load(Ordering::Acquire) {
        let polled = source.next_batch();
        let now = source.status();
        if now != status {
            match &now {
                SourceStatus::Running => tracing::info!(source = %spec.name, "source running"),
                other => {
                    tracing::warn!(source = %spec.name, status = %other.text(), "source unhealthy")
                }
            }
            stats.set_status(now.text());
            status = now;
        }
        let splits = source.splits();
        if !splits.is_empty() {
            *stats.splits.lock() = splits;
        }
        let msg = match polled {
            Ok(Poll::Batch(b)) => Message::Batch(b),
            Ok(Poll::Idle) => Message::Idle,
            Ok(Poll::Waiting) => Message::Waiting,
            Ok(Poll::End) => Message::End,
            Err(e) => {
                tracing::error!(source = %spec.name, error = %e, "source failed");
                stats.set_status(format!("error: {e}"));
                return;
            }
        };
        let end = matches!(msg, Message::End);
        let idle = matches!(msg, Message::Idle | Message::Waiting);
        // Send, but keep watching the stop flag while the processor applies backpressure.
        let mut msg = Some(msg);
        while let Some(m) = msg.take() {
            match tx.try_send(m) {
                Ok(()) => {}
                Err(std::sync::mpsc::TrySendError::Full(m)) => {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    msg = Some(m);
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
            }
        }
        if end {
            return;
        }
        if idle {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
