//! Event-time watermarks and lateness — pure decisions, no I/O.
//!
//! The watermark is the largest event time seen so far minus the declared delay. An event is
//! late when its time is below the watermark *as it stood just before that event*; this is a
//! property of the event's position in the source order, so it does not depend on how the
//! input is cut into micro-batches.

/// Tracks the watermark of one source, in nanoseconds since the epoch.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    delay_ns: i64,
    max_event_time: Option<i64>,
    finished: bool,
}

impl WatermarkTracker {
    /// A tracker for `WATERMARK FOR col AS col - delay`.
    pub fn new(delay_ns: i64) -> Self {
        Self {
            delay_ns,
            max_event_time: None,
            finished: false,
        }
    }

    /// The current watermark: `i64::MIN` before any event, `i64::MAX` after end of input.
    pub fn watermark(&self) -> i64 {
        if self.finished {
            return i64::MAX;
        }
        match self.max_event_time {
            Some(t) => t.saturating_sub(self.delay_ns),
            None => i64::MIN,
        }
    }

    /// Observes a batch of event times in source order and returns, per event, `None` when it
    /// is on time or `Some(watermark it missed)` when it is late. Null times are never late
    /// (the pipeline dead-letters them).
    pub fn observe(&mut self, times: impl IntoIterator<Item = Option<i64>>) -> Vec<Option<i64>> {
        let mut max = self.max_event_time;
        let delay = self.delay_ns;
        let late = times
            .into_iter()
            .map(|t| match t {
                None => None,
                Some(t) => {
                    let late = match max {
                        Some(m) if t < m.saturating_sub(delay) => Some(m.saturating_sub(delay)),
                        _ => None,
                    };
                    if max.is_none_or(|m| t > m) {
                        max = Some(t);
                    }
                    late
                }
            })
            .collect();
        self.max_event_time = max;
        late
    }

    /// Marks the end of a bounded input: every window may close.
    pub fn finish(&mut self) {
        self.finished = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_does_not_depend_on_batch_cuts() {
        let times: Vec<Option<i64>> = [10, 12, 5, 30, 27, 9, 31, 28, 40, 20]
            .iter()
            .map(|&t| Some(t))
            .collect();
        let mut whole = WatermarkTracker::new(3);
        let expected: Vec<bool> = whole
            .observe(times.clone())
            .iter()
            .map(Option::is_some)
            .collect();
        for cut in 0..times.len() {
            let mut split = WatermarkTracker::new(3);
            let mut got: Vec<bool> = split
                .observe(times[..cut].to_vec())
                .iter()
                .map(Option::is_some)
                .collect();
            got.extend(
                split
                    .observe(times[cut..].to_vec())
                    .iter()
                    .map(Option::is_some),
            );
            assert_eq!(got, expected, "cut at {cut}");
            assert_eq!(split.watermark(), whole.watermark());
        }
        // 5 < 12-3, 9 < 30-3, 20 < 40-3; 27 and 28 are within the delay.
        assert_eq!(
            expected,
            vec![false, false, true, false, false, true, false, false, false, true]
        );
    }

    #[test]
    fn end_of_input_closes_everything() {
        let mut w = WatermarkTracker::new(1_000);
        assert_eq!(w.watermark(), i64::MIN);
        w.observe([Some(5_000)]);
        assert_eq!(w.watermark(), 4_000);
        w.finish();
        assert_eq!(w.watermark(), i64::MAX);
    }
}
