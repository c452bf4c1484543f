//! Window assignment — pure functions over event times in nanoseconds.
//!
//! `TUMBLE` and `HOP` are planned in `weir-sql` as `date_bin` expressions; this module is the
//! engine's side of the same definition: which windows an event belongs to, and when a window
//! may close.

/// The window kind of a view, as far as the engine needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size` ns.
    Tumble { size: i64 },
    /// Windows of `size` ns starting every `slide` ns (`size` a multiple of `slide`).
    Hop { slide: i64, size: i64 },
    /// Windows growing by `step` ns from the start of each `size`-ns period until they
    /// span it: `[p, p + step)`, `[p, p + 2·step)`, … `[p, p + size)`. Windows of one period
    /// share their start, so a view keys them by their end.
    Cumulate { step: i64, size: i64 },
    /// Per group key, events less than `gap` ns apart are one window (see
    /// [`super::session`]); a window's length depends on its events.
    Session { gap: i64 },
}

impl WindowKind {
    /// The length of each window (a session window's gap: its shortest length).
    pub fn size(&self) -> i64 {
        match self {
            WindowKind::Tumble { size }
            | WindowKind::Hop { size, .. }
            | WindowKind::Cumulate { size, .. } => *size,
            WindowKind::Session { gap } => *gap,
        }
    }

    /// The group column a view keys its windows by: `window_end` for `CUMULATE` (its windows
    /// share starts), `window_start` otherwise.
    pub fn key_column(&self) -> &'static str {
        match self {
            WindowKind::Cumulate { .. } => "window_end",
            _ => "window_start",
        }
    }

    /// How far past its key ([`key_column`](Self::key_column)) a window ends.
    fn key_to_end(&self) -> i64 {
        match self {
            WindowKind::Cumulate { .. } => 0,
            other => other.size(),
        }
    }

    /// Start times of all windows containing `t`, ascending.
    pub fn windows_of(&self, t: i64) -> Vec<i64> {
        match *self {
            WindowKind::Tumble { size } => vec![t.div_euclid(size) * size],
            WindowKind::Hop { slide, size } => {
                let last = t.div_euclid(slide) * slide;
                let k = size / slide;
                (0..k).rev().map(|i| last - i * slide).collect()
            }
            WindowKind::Cumulate { step, size } => {
                let period = t.div_euclid(size) * size;
                let first = (t - period) / step + 1;
                (first..=size / step).map(|_| period).collect()
            }
            // Decided by the session operator, from the key's other events.
            WindowKind::Session { .. } => vec![t],
        }
    }

    /// Whether the window keyed `key` (its start; its end for `CUMULATE`) is complete at
    /// watermark `wm`: every event that is not late has a time ≥ `wm`, so none can fall in
    /// the window any more.
    pub fn is_closed(&self, key: i64, wm: i64) -> bool {
        key.saturating_add(self.key_to_end()) <= wm
    }

    /// The smallest window key that can still receive events at watermark `wm`.
    pub fn open_from(&self, wm: i64) -> i64 {
        wm.saturating_sub(self.key_to_end()).saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_lands_in_exactly_its_windows() {
        let kinds = [
            WindowKind::Tumble { size: 60 },
            WindowKind::Hop {
                slide: 10,
                size: 60,
            },
        ];
        for kind in kinds {
            for t in -200i64..200 {
                let ws = kind.windows_of(t);
                assert_eq!(ws.len() as i64, kind.size() / 60 * (60 / kind_slide(&kind)));
                for w in &ws {
                    assert!(*w <= t && t < w + kind.size(), "{kind:?} t={t} w={w}");
                }
                // No other window start on the slide grid contains t.
                let slide = kind_slide(&kind);
                let grid = (t - 400).div_euclid(slide) * slide;
                let all: Vec<i64> = (0..100)
                    .map(|i| grid + i * slide)
                    .filter(|w| *w <= t && t < w + kind.size())
                    .collect();
                assert_eq!(all, ws);
            }
        }
    }

    fn kind_slide(kind: &WindowKind) -> i64 {
        match kind {
            WindowKind::Tumble { size } | WindowKind::Session { gap: size } => *size,
            WindowKind::Hop { slide, .. } | WindowKind::Cumulate { step: slide, .. } => *slide,
        }
    }

    #[test]
    fn window_closes_when_watermark_reaches_its_end() {
        let k = WindowKind::Tumble { size: 60 };
        assert!(!k.is_closed(0, 59));
        assert!(k.is_closed(0, 60));
        assert!(k.is_closed(0, i64::MAX));
        // CUMULATE windows are keyed by their end.
        let c = WindowKind::Cumulate { step: 10, size: 60 };
        assert_eq!(c.key_column(), "window_end");
        assert!(!c.is_closed(30, 29));
        assert!(c.is_closed(30, 30));
        assert_eq!(c.open_from(30), 31);
        assert_eq!(k.open_from(60), 1);
    }

    #[test]
    fn cumulate_windows_grow_to_the_period() {
        let c = WindowKind::Cumulate { step: 10, size: 60 };
        // t = 65: period 60, windows [60,70) … [60,120): six, one per end above 65.
        assert_eq!(c.windows_of(65), vec![60; 6]);
        assert_eq!(c.windows_of(60), vec![60; 6]);
        assert_eq!(c.windows_of(119), vec![60]);
        assert_eq!(c.windows_of(-1), vec![-60]);
    }
}
