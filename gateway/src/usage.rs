//! What a process has used so far, from Linux's `/proc`: CPU time (user + system, every
//! thread) and bytes it caused to be written to storage. The benchmarks read it before and
//! after a timed run of the side under test, so each side's cost is its own process's alone
//! (not the broker's, not the load generator's).

use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu: Duration,
    pub written: u64,
}

impl Usage {
    /// This process.
    pub fn of_self() -> Self {
        Self::read("self")
    }

    /// Another process (a child the benchmark started); zero when it cannot be read.
    pub fn of(pid: u32) -> Self {
        Self::read(&pid.to_string())
    }

    fn read(who: &str) -> Self {
        // utime and stime, fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 a
        // second); the command name before them may hold spaces, so split after its ')'.
        let stat = std::fs::read_to_string(format!("/proc/{who}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<u64> = after
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
        let io = std::fs::read_to_string(format!("/proc/{who}/io")).unwrap_or_default();
        let written = io
            .lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Self {
            cpu: Duration::from_millis(ticks * 10),
            written,
        }
    }

    /// What was used between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            written: self.written.saturating_sub(earlier.written),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_cpu_and_a_missing_one_reads_as_zero() {
        let mut spent = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(50) {
            spent = spent.wrapping_add(std::hint::black_box(1));
        }
        assert!(Usage::of_self().cpu >= Duration::from_millis(10), "{spent}");
        assert_eq!(Usage::of(u32::MAX), Usage::default());
    }
}
