//! The connector seam: the [`source::Source`] trait every input implements and the registry
//! of `connector = '…'` names, the [`sink::SinkWriter`] trait every output implements, and
//! the JSON decoder sources share ([`decode`]), and [`table::TableLoader`], which reads a
//! table's rows from outside once (`CREATE TABLE … WITH (connector = …)`).

pub mod decode;
pub mod pair;
pub mod sink;
pub mod source;
pub mod table;

use std::time::Duration;

/// The longest duration any option accepts: beyond it, event-time arithmetic in
/// nanoseconds would overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses `'10 seconds'`, `'10s'`, `'500 ms'`, `'2 minutes'`, `'1h'`; a bare number is seconds.
/// `None` for anything else, and for more than [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim().to_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" | "millisecond" | "milliseconds" => 1e-3,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        _ => return None,
    };
    let secs = value * scale;
    let d = Duration::try_from_secs_f64(secs).ok()?;
    (d <= MAX_DURATION).then_some(d)
}
