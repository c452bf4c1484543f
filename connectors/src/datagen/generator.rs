//! The seed's events as JSON lines, a pure function of (config, index).

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use super::DatagenConfig;

/// How much earlier a late event's time is than its place in the stream.
pub const LATE_BY_NS: i64 = 60_000_000_000;

/// Generates event *i* of a datagen stream.
#[derive(Debug, Clone)]
pub struct EventGenerator {
    config: DatagenConfig,
}

/// splitmix64: a fast, well-mixed hash of a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl EventGenerator {
    /// A generator for `config`.
    pub fn new(config: DatagenConfig) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &DatagenConfig {
        &self.config
    }

    /// Nominal event time of event `i` (before disorder), ns since the epoch.
    pub fn nominal_time_ns(&self, i: u64) -> i64 {
        let offset = (i as u128 * 1_000_000_000u128 / self.config.rate as u128) as i64;
        self.config.start_ns.saturating_add(offset)
    }

    /// The `source` field of event `i` (`src-0042`): the key events are partitioned by.
    pub fn source_of(&self, i: u64) -> String {
        let base = mix(self.config.seed ^ mix(i));
        format!("src-{:04}", base % self.config.sources as u64)
    }

    /// Whether event `i` falls in an error burst: its nominal time, counted from `start`, is
    /// in the first `burst_length` of a `burst_every` period (whatever its source).
    pub fn in_burst(&self, i: u64) -> bool {
        let c = &self.config;
        match c.burst_every_ns {
            None => false,
            Some(every) => {
                let offset = i as u128 * 1_000_000_000u128 / c.rate as u128;
                let length = c.burst_length_ns as u128;
                offset % (every as u128) < length
            }
        }
    }

    /// The probability that event `i`, of source number `source`, has status `error`.
    fn error_rate_of(&self, i: u64, source: u32) -> f64 {
        let c = &self.config;
        if source < c.burst_sources && self.in_burst(i) {
            c.burst_error_rate
        } else {
            c.error_rate
        }
    }

    /// Whether event `i` is replaced by a malformed message when a fraction `rate` of
    /// messages is malformed (deterministic in the seed and `i`).
    pub fn is_malformed(&self, i: u64, rate: f64) -> bool {
        rate > 0.0 && unit(mix(self.config.seed ^ mix(i) ^ 0x6d61_6c66)) < rate
    }

    /// Appends a malformed stand-in for event `i` (no trailing newline): in turn broken
    /// JSON, not JSON at all, a metric of the wrong type, and an event without its
    /// timestamp.
    pub fn write_malformed(&self, i: u64, out: &mut Vec<u8>) {
        let source = self.source_of(i);
        let _ = match i % 4 {
            0 => write!(out, "{{\"event_id\":\"broken-{i}\",\"source\":\"{source}"),
            1 => write!(out, "not json at all #{i}"),
            2 => write!(
                out,
                "{{\"event_id\":\"bad-{i}\",\"source\":\"{source}\",\"timestamp\":\"2026-11-27T10:00:00Z\",\"attributes\":{{\"metric\":\"not a number\"}}}}"
            ),
            _ => write!(
                out,
                "{{\"event_id\":\"untimed-{i}\",\"source\":\"{source}\",\"attributes\":{{\"metric\":1.0,\"status\":\"ok\"}}}}"
            ),
        };
    }

    /// Whether event `i` is written late when a fraction `rate` of events is (deterministic
    /// in the seed and `i`): it keeps its place in the stream, its time [`LATE_BY_NS`]
    /// earlier — behind any watermark delay under a minute.
    pub fn is_late(&self, i: u64, rate: f64) -> bool {
        rate > 0.0 && unit(mix(self.config.seed ^ mix(i) ^ 0x6c61_7465)) < rate
    }

    /// Appends event `i` as one JSON line (with trailing newline) to `out`.
    pub fn write_event(&self, i: u64, out: &mut Vec<u8>) {
        self.write_event_shifted(i, 0, out);
    }

    /// Appends event `i`, its time [`LATE_BY_NS`] earlier, as one JSON line.
    pub fn write_late_event(&self, i: u64, out: &mut Vec<u8>) {
        self.write_event_shifted(i, LATE_BY_NS, out);
    }

    fn write_event_shifted(&self, i: u64, shift_ns: i64, out: &mut Vec<u8>) {
        let c = &self.config;
        let base = mix(c.seed ^ mix(i));
        let h = [
            base,
            mix(base ^ 1),
            mix(base ^ 2),
            mix(base ^ 3),
            mix(base ^ 4),
            mix(base ^ 5),
        ];
        let mut t = self.nominal_time_ns(i) - shift_ns;
        if c.disorder_ms > 0 {
            t -= ((unit(h[5]) * c.disorder_ms as f64) * 1e6) as i64;
        }
        let source = (h[0] % c.sources as u64) as u32;
        let user = h[1] % 10_000;
        // Box–Muller: a normal metric around 50 with sd 15, never negative.
        let z = (-2.0 * unit(h[2]).max(1e-12).ln()).sqrt()
            * (2.0 * std::f64::consts::PI * unit(h[3])).cos();
        let mut metric = (50.0 + 15.0 * z).max(0.0);
        if unit(h[4]) < c.outlier_rate {
            // At least 25 × 20: an outlier always stands far out of the N(50, 15) baseline.
            metric = metric.max(25.0) * 20.0;
        }
        let status = if unit(mix(base ^ 6)) < self.error_rate_of(i, source) {
            "error"
        } else {
            "ok"
        };
        let ts =
            DateTime::<Utc>::from_timestamp_nanos(t).to_rfc3339_opts(SecondsFormat::Millis, true);
        let id = mix(base ^ 7);
        let _ = writeln!(
            out,
            "{{\"event_id\":\"{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}\",\"source\":\"src-{:04}\",\"timestamp\":\"{}\",\"attributes\":{{\"user_id\":\"u{}\",\"metric\":{:.3},\"status\":\"{}\"}}}}",
            (base >> 32) as u32,
            (base >> 16) as u16,
            (base & 0xfff) as u16,
            ((id >> 48) as u16 & 0x3fff) | 0x8000,
            id & 0xffff_ffff_ffff,
            source,
            ts,
            user,
            metric,
            status
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(extra: &[(&str, &str)]) -> DatagenConfig {
        let mut o: BTreeMap<String, String> = [("start", "2026-11-27T10:00:00Z"), ("rate", "1000")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in extra {
            o.insert(k.to_string(), v.to_string());
        }
        DatagenConfig::from_options(&o).unwrap()
    }

    #[test]
    fn late_events_are_a_minute_early_and_about_their_rate() {
        let g = EventGenerator::new(config(&[]));
        let late = (0..100_000).filter(|&i| g.is_late(i, 0.01)).count();
        assert!((800..1200).contains(&late), "{late}");
        assert!(!(0..1000).any(|i| g.is_late(i, 0.0)));
        let mut line = Vec::new();
        g.write_late_event(61_500, &mut line);
        let line = String::from_utf8(line).unwrap();
        assert!(
            line.contains("\"timestamp\":\"2026-11-27T10:00:01.500Z\""),
            "{line}"
        );
    }

    #[test]
    fn events_are_deterministic_and_timed_by_index() {
        let g = EventGenerator::new(config(&[]));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        g.write_event(1500, &mut a);
        g.write_event(1500, &mut b);
        assert_eq!(a, b);
        let line = String::from_utf8(a).unwrap();
        assert!(
            line.contains("\"timestamp\":\"2026-11-27T10:00:01.500Z\""),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v["attributes"]["metric"].as_f64().unwrap() >= 0.0);
        assert!(v["source"].as_str().unwrap().starts_with("src-00"));
    }

    #[test]
    fn keys_match_events_and_malformed_ones_do_not_parse_as_events() {
        let g = EventGenerator::new(config(&[("sources", "7")]));
        let mut buf = Vec::new();
        for i in 0..50 {
            buf.clear();
            g.write_event(i, &mut buf);
            let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            assert_eq!(v["source"].as_str().unwrap(), g.source_of(i));
            buf.clear();
            g.write_malformed(i, &mut buf);
            let bad = serde_json::from_slice::<serde_json::Value>(&buf)
                .map(|v| v["timestamp"].is_null() || !v["attributes"]["metric"].is_number());
            assert!(bad.unwrap_or(true), "{}", String::from_utf8_lossy(&buf));
        }
        let n = (0..100_000).filter(|&i| g.is_malformed(i, 0.01)).count();
        assert!((800..1200).contains(&n), "{n}");
    }

    #[test]
    fn error_rate_is_respected() {
        let g = EventGenerator::new(config(&[("error_rate", "0.2")]));
        let mut buf = Vec::new();
        for i in 0..10_000 {
            g.write_event(i, &mut buf);
        }
        let text = String::from_utf8(buf).unwrap();
        let errors = text.matches("\"status\":\"error\"").count();
        assert!((1700..2300).contains(&errors), "{errors}");
    }

    #[test]
    fn error_bursts_hit_the_first_sources_at_the_start_of_each_period() {
        let g = EventGenerator::new(config(&[
            ("sources", "4"),
            ("error_rate", "0.01"),
            ("burst_every", "10 seconds"),
            ("burst_length", "2 seconds"),
            ("burst_error_rate", "0.5"),
        ]));
        // (events, errors), indexed by [affected source][in a burst].
        let mut counts = [[(0u32, 0u32); 2]; 2];
        let mut buf = Vec::new();
        for i in 0..200_000u64 {
            buf.clear();
            g.write_event(i, &mut buf);
            // At 1000 events per second, event i is i ms after the start.
            let burst = i % 10_000 < 2_000;
            assert_eq!(g.in_burst(i), burst, "event {i}");
            let affected = g.source_of(i) == "src-0000";
            let error = std::str::from_utf8(&buf)
                .unwrap()
                .contains("\"status\":\"error\"");
            let c = &mut counts[affected as usize][burst as usize];
            c.0 += 1;
            c.1 += error as u32;
        }
        let rate = |(n, e): (u32, u32)| {
            assert!(n > 1000, "{n} events");
            e as f64 / n as f64
        };
        let in_burst = rate(counts[1][1]);
        assert!((0.45..0.55).contains(&in_burst), "burst: {in_burst}");
        let outside = rate(counts[1][0]);
        assert!((0.005..0.02).contains(&outside), "outside: {outside}");
        for (what, c) in [("burst", counts[0][1]), ("outside", counts[0][0])] {
            let other = rate(c);
            assert!(
                (0.005..0.02).contains(&other),
                "other sources, {what}: {other}"
            );
        }
    }

    #[test]
    fn without_burst_every_nothing_changes() {
        let plain = EventGenerator::new(config(&[("error_rate", "0.05")]));
        assert_eq!(plain.config().burst_every_ns, None);
        assert!(!plain.in_burst(0));
        // A burst at the plain error rate draws the same events.
        let same = EventGenerator::new(config(&[
            ("error_rate", "0.05"),
            ("burst_every", "1 minute"),
            ("burst_error_rate", "0.05"),
        ]));
        assert_eq!(same.config().burst_length_ns, 30_000_000_000);
        assert_eq!(same.config().burst_sources, 1);
        // Bursts change only the events of the affected source inside a burst.
        let bursty = EventGenerator::new(config(&[
            ("error_rate", "0.05"),
            ("burst_every", "20 seconds"),
            ("burst_length", "5 seconds"),
            ("burst_error_rate", "0.9"),
        ]));
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let mut changed = 0;
        // The first minute, at 1000 events per second.
        for i in 0..60_000u64 {
            a.clear();
            b.clear();
            c.clear();
            plain.write_event(i, &mut a);
            same.write_event(i, &mut b);
            bursty.write_event(i, &mut c);
            assert_eq!(a, b, "event {i}");
            if bursty.in_burst(i) && bursty.source_of(i) == "src-0000" {
                changed += (a != c) as u32;
            } else {
                assert_eq!(a, c, "event {i}");
            }
        }
        assert!(changed > 500, "{changed}");
        // Burst options without burst_every are refused, as are bursts longer than periods.
        for extra in [
            &[("burst_length", "1 minute")][..],
            &[("burst_error_rate", "0.3")][..],
            &[("burst_every", "1 minute"), ("burst_length", "2 minutes")][..],
            &[("burst_every", "1 minute"), ("burst_sources", "11")][..],
            &[("burst_every", "soon")][..],
        ] {
            let mut o: BTreeMap<String, String> = [("start", "2026-11-27T10:00:00Z")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            for (k, v) in extra {
                o.insert(k.to_string(), v.to_string());
            }
            assert!(DatagenConfig::from_options(&o).is_err(), "{extra:?}");
        }
    }
}
