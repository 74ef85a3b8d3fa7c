//! The gateway process's own accounting (CPU time, resident memory) for `/metrics`.
//!
//! Read from the kernel on each scrape: `getrusage(RUSAGE_SELF)` for CPU seconds (µs
//! resolution, all threads) and peak RSS, `/proc/self/statm` for the RSS now. The load
//! generator divides their deltas by stream-seconds to give the cost of one stream.

use std::fmt::Write as _;

/// One reading of the process's resource use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessSample {
    /// User + system CPU time of every thread, seconds.
    pub cpu_seconds: f64,
    /// Resident set size now, bytes (0 where /proc is missing).
    pub resident_bytes: u64,
    /// Largest resident set size so far, bytes.
    pub resident_peak_bytes: u64,
}

/// Read the calling process's usage now.
pub fn sample() -> ProcessSample {
    // SAFETY: getrusage only writes the struct it is given; an all-zero rusage is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer cannot fail.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0;
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let (cpu_seconds, resident_peak_bytes) = if ok {
        (
            seconds(usage.ru_utime) + seconds(usage.ru_stime),
            // Linux reports ru_maxrss in KiB.
            usage.ru_maxrss.max(0) as u64 * 1024,
        )
    } else {
        (0.0, 0)
    };
    ProcessSample {
        cpu_seconds,
        resident_bytes: resident_bytes().unwrap_or(0),
        resident_peak_bytes,
    }
}

/// Second field of /proc/self/statm (resident pages) times the page size.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(1) as u64)
}

/// Append the Prometheus series (standard `process_*` names) for `s`.
pub fn render(out: &mut String, s: &ProcessSample) {
    let series = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time of the gateway process, seconds.",
            format!("{:.6}", s.cpu_seconds),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the gateway process, bytes.",
            s.resident_bytes.to_string(),
        ),
        (
            "process_resident_memory_peak_bytes",
            "gauge",
            "Largest resident memory of the gateway process so far, bytes.",
            s.resident_peak_bytes.to_string(),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work_and_memory_is_read() {
        let before = sample();
        // Burn a little CPU the optimiser cannot remove.
        let mut x = 1u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = sample();
        assert!(
            after.cpu_seconds > before.cpu_seconds,
            "{before:?} {after:?}"
        );
        assert!(after.resident_bytes > 0);
        assert!(after.resident_peak_bytes >= after.resident_bytes / 2);
    }

    #[test]
    fn renders_standard_names() {
        let mut out = String::new();
        render(
            &mut out,
            &ProcessSample {
                cpu_seconds: 1.5,
                resident_bytes: 4096,
                resident_peak_bytes: 8192,
            },
        );
        assert_eq!(
            crate::metrics::read_sample(&out, "process_cpu_seconds_total"),
            Some(1.5)
        );
        assert_eq!(
            crate::metrics::read_sample(&out, "process_resident_memory_peak_bytes"),
            Some(8192.0)
        );
    }
}
