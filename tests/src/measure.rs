//! Figures the benchmarks read: a process's CPU time and memory from /proc, and percentiles.

use std::time::Duration;

/// CPU time (user + system) a process has used so far, from /proc; `pid` may be `self`.
pub fn cpu_time(pid: &str) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The fields after the command name, which is in parentheses, from the state
            // (the stat file's 3rd field) on: utime and stime are its 14th and 15th.
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
            Some(field(14)? + field(15)?)
        })
        .unwrap_or(0);
    // USER_HZ, which Linux fixes at 100 on the architectures it runs on here.
    Duration::from_millis(ticks * 10)
}

/// A `key: value` figure of a /proc file of a process: `write_bytes` of `io` (bytes it caused
/// to be written to disk), `VmHWM` or `VmRSS` of `status` (peak or current resident memory, in
/// KiB); 0 when it cannot be read.
pub fn proc_figure(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The `p` quantile (0 to 1) of sorted durations, in milliseconds; 0 for none.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&sorted, 0.5), 51.0);
        assert_eq!(percentile_ms(&sorted, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
    }

    #[test]
    fn this_process_has_used_cpu_and_memory() {
        let spin: u64 = (0..50_000_000u64).fold(0, |a, b| {
            std::hint::black_box(a.wrapping_add(b.wrapping_mul(b)))
        });
        assert!(spin > 0);
        // Fifty million rounds take more than one 10 ms tick.
        assert!(cpu_time("self") >= Duration::from_millis(10));
        assert!(proc_figure(std::process::id(), "status", "VmRSS") > 0);
        assert_eq!(proc_figure(std::process::id(), "status", "NoSuchKey"), 0);
    }
}
