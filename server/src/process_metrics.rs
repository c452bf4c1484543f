//! Facts about the `weir` process for `/metrics` (Linux `/proc`), the ones the shipped
//! Prometheus rules use: CPU seconds, open and allowed file descriptors, start time, and
//! the CPUs and memory the process may use.

use std::fmt::Write;

/// Appends the process metrics in the text exposition format.
pub fn render(out: &mut String) {
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    };
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the stat line, starttime 22 (1-based; the
    // slice starts at field 3).
    let cpu = field(11).zip(field(12)).map(|(u, s)| (u + s) / ticks);
    metric(
        "weir_process_cpu_seconds_total",
        "counter",
        "User and system CPU time of the weir process.",
        cpu,
    );
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    metric(
        "weir_process_start_time_seconds",
        "gauge",
        "Start time of the weir process (Unix seconds).",
        boot.zip(field(19)).map(|(b, t)| b + t / ticks),
    );
    let open = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    metric(
        "weir_process_open_fds",
        "gauge",
        "Open file descriptors of the weir process.",
        open,
    );
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
    metric(
        "weir_process_max_fds",
        "gauge",
        "File descriptors the weir process may open.",
        max,
    );
    metric(
        "weir_process_cpus",
        "gauge",
        "CPUs the weir process may use.",
        std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as f64),
    );
    metric(
        "weir_process_memory_limit_bytes",
        "gauge",
        "Memory the weir process may use: its cgroup's limit, else the machine's memory.",
        memory_limit(),
    );
}

fn memory_limit() -> Option<f64> {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok());
    cgroup.or_else(|| {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kb: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kb * 1024.0)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_metrics_are_there_with_plausible_values() {
        let mut out = String::new();
        super::render(&mut out);
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing from\n{out}"))
                .parse()
                .unwrap()
        };
        assert!(value("weir_process_cpu_seconds_total") >= 0.0);
        assert!(value("weir_process_open_fds") >= 3.0);
        assert!(value("weir_process_max_fds") >= value("weir_process_open_fds"));
        assert!(value("weir_process_cpus") >= 1.0);
        assert!(value("weir_process_memory_limit_bytes") > 1e8);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("weir_process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
    }
}
