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
}

impl WindowKind {
    /// The length of each window.
    pub fn size(&self) -> i64 {
        match self {
            WindowKind::Tumble { size } | WindowKind::Hop { size, .. } => *size,
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
        }
    }

    /// Whether the window starting at `start` is complete at watermark `wm`: every event that
    /// is not late has a time ≥ `wm`, so none can fall in `[start, start + size)` any more.
    pub fn is_closed(&self, start: i64, wm: i64) -> bool {
        start.saturating_add(self.size()) <= wm
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
            WindowKind::Tumble { size } => *size,
            WindowKind::Hop { slide, .. } => *slide,
        }
    }

    #[test]
    fn window_closes_when_watermark_reaches_its_end() {
        let k = WindowKind::Tumble { size: 60 };
        assert!(!k.is_closed(0, 59));
        assert!(k.is_closed(0, 60));
        assert!(k.is_closed(0, i64::MAX));
    }
}
