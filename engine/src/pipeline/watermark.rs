//! Event-time watermarks and lateness — pure decisions, no I/O.
//!
//! A source is made of one or more *splits* (a file is one split; a Kafka topic has one per
//! partition). Each split's watermark is the largest event time seen in it minus the
//! declared delay; the source's watermark is the minimum over the splits that *hold it back*
//! — every split, unless the source says some are idle (a Kafka partition with nothing new
//! for `idle_timeout`). When every split is idle the watermark stays where it is: a quiet
//! input and an unreachable broker look the same from here, and jumping ahead would make
//! the slower splits' next events late.
//!
//! An event is late when its time is below the source watermark *as it stood just before
//! that event*; this is a property of the event's position in the source order, so it does
//! not depend on how the input is cut into micro-batches.

/// Tracks the watermark of one source, in nanoseconds since the epoch.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WatermarkTracker {
    delay_ns: i64,
    /// For a pair of sources (see [`crate::connector::pair`]): the second source's delay,
    /// which applies to the odd splits (the first source's are even).
    #[serde(default)]
    second_delay_ns: Option<i64>,
    /// (split, largest event time seen in it), in order of first appearance.
    splits: Vec<(i32, i64)>,
    /// Splits that hold the watermark back; `None` means every split seen.
    holding: Option<Vec<i32>>,
    /// Cached source watermark.
    current: i64,
    finished: bool,
}

impl WatermarkTracker {
    /// A tracker for `WATERMARK FOR col AS col - delay`.
    pub fn new(delay_ns: i64) -> Self {
        Self {
            delay_ns,
            second_delay_ns: None,
            splits: Vec::new(),
            holding: None,
            current: i64::MIN,
            finished: false,
        }
    }

    /// A tracker of a pair of sources: odd splits (the second source's) have their own delay.
    pub fn paired(mut self, second_delay_ns: Option<i64>) -> Self {
        self.second_delay_ns = second_delay_ns;
        self
    }

    /// The delay of `split`.
    fn delay(&self, split: i32) -> i64 {
        match self.second_delay_ns {
            Some(d) if split.rem_euclid(2) == 1 => d,
            _ => self.delay_ns,
        }
    }

    /// The current watermark: `i64::MIN` before any event, `i64::MAX` after end of input.
    pub fn watermark(&self) -> i64 {
        if self.finished {
            i64::MAX
        } else {
            self.current
        }
    }

    /// The watermark of each split seen so far, `(split, watermark ns)`.
    pub fn split_watermarks(&self) -> Vec<(i32, i64)> {
        self.splits
            .iter()
            .map(|&(s, m)| (s, m.saturating_sub(self.delay(s))))
            .collect()
    }

    /// Sets which splits hold the watermark back (`None`: all of them). A split named here
    /// that has delivered nothing yet holds the watermark at its minimum.
    pub fn set_holding(&mut self, holding: Option<Vec<i32>>) {
        if self.holding != holding {
            self.holding = holding;
            self.recompute();
        }
    }

    /// Observes a batch of event times in source order and returns, per event, `None` when it
    /// is on time or `Some(watermark it missed)` when it is late. `splits` gives each event's
    /// split (`None`: all in split 0). Null times are never late (the pipeline dead-letters
    /// them).
    pub fn observe(
        &mut self,
        times: impl IntoIterator<Item = Option<i64>>,
        splits: Option<&[i32]>,
    ) -> Vec<Option<i64>> {
        let mut last = usize::MAX;
        times
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let t = t?;
                let split = splits.and_then(|s| s.get(i).copied()).unwrap_or(0);
                let late = (t < self.current).then_some(self.current);
                if last >= self.splits.len() || self.splits[last].0 != split {
                    last = self.slot(split);
                }
                if t > self.splits[last].1 {
                    let old = self.splits[last].1.saturating_sub(self.delay(split));
                    self.splits[last].1 = t;
                    // Only a split at the minimum can move the source watermark.
                    if old <= self.current {
                        self.recompute();
                    }
                }
                late
            })
            .collect()
    }

    /// Marks the end of a bounded input: every window may close.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    fn slot(&mut self, split: i32) -> usize {
        match self.splits.iter().position(|(s, _)| *s == split) {
            Some(p) => p,
            None => {
                self.splits.push((split, i64::MIN));
                self.splits.len() - 1
            }
        }
    }

    fn split_wm(&self, split: i32) -> i64 {
        self.splits
            .iter()
            .find(|(s, _)| *s == split)
            .map(|(_, m)| m.saturating_sub(self.delay(split)))
            .unwrap_or(i64::MIN)
    }

    fn recompute(&mut self) {
        let wm = match &self.holding {
            None => self
                .splits
                .iter()
                .map(|&(s, m)| m.saturating_sub(self.delay(s)))
                .min(),
            Some(h) if h.is_empty() => None,
            Some(h) => h.iter().map(|&s| self.split_wm(s)).min(),
        };
        // The watermark never goes back: a split that starts holding again cannot un-close
        // windows.
        self.current = self.current.max(wm.unwrap_or(i64::MIN));
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
            .observe(times.clone(), None)
            .iter()
            .map(Option::is_some)
            .collect();
        for cut in 0..times.len() {
            let mut split = WatermarkTracker::new(3);
            let mut got: Vec<bool> = split
                .observe(times[..cut].to_vec(), None)
                .iter()
                .map(Option::is_some)
                .collect();
            got.extend(
                split
                    .observe(times[cut..].to_vec(), None)
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
        w.observe([Some(5_000)], None);
        assert_eq!(w.watermark(), 4_000);
        w.finish();
        assert_eq!(w.watermark(), i64::MAX);
    }

    #[test]
    fn source_watermark_is_the_minimum_over_holding_splits() {
        let mut w = WatermarkTracker::new(10);
        w.set_holding(Some(vec![0, 1]));
        // Split 1 has delivered nothing: it holds the watermark at its minimum.
        assert_eq!(
            w.observe([Some(100), Some(200)], Some(&[0, 0])),
            vec![None, None]
        );
        assert_eq!(w.watermark(), i64::MIN);
        w.observe([Some(150)], Some(&[1]));
        assert_eq!(w.watermark(), 140);
        // 145 in split 0 is behind split 0's own watermark (190) but not the source's (140).
        assert_eq!(
            w.observe([Some(145), Some(120)], Some(&[0, 1])),
            vec![None, Some(140)]
        );
        w.observe([Some(300)], Some(&[1]));
        assert_eq!(w.watermark(), 190);
        assert_eq!(w.split_watermarks(), vec![(0, 190), (1, 290)]);
    }

    #[test]
    fn idle_splits_stop_holding_the_watermark_back() {
        let mut w = WatermarkTracker::new(0);
        w.set_holding(Some(vec![0, 1, 2]));
        w.observe([Some(10), Some(50), Some(30)], Some(&[0, 1, 2]));
        assert_eq!(w.watermark(), 10);
        w.set_holding(Some(vec![1, 2]));
        assert_eq!(w.watermark(), 30);
        // All idle (a quiet topic, or a broker that stopped answering): the watermark stays.
        w.set_holding(Some(vec![]));
        assert_eq!(w.watermark(), 30);
        w.set_holding(Some(vec![0, 1, 2]));
        // A split becoming active again never moves the watermark back.
        assert_eq!(w.watermark(), 30);
        assert_eq!(
            w.observe([Some(20), Some(35)], Some(&[0, 0])),
            vec![Some(30), None]
        );
    }
}
