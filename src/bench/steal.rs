//! The CPU steal share: how much of the machine's time a hypervisor took
//! while a figure was measured, read from `/proc/stat`.

/// Measures the share of the machine's CPU time stolen by a hypervisor
/// from its start on, read from `/proc/stat`.
pub(super) struct StealMeter {
    start: Option<CpuTicks>,
}

/// The machine's CPU time since boot, in clock ticks, over all CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTicks {
    steal: u64,
    total: u64,
}

impl CpuTicks {
    fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// From the `cpu` line of `/proc/stat`: user, nice, system, idle,
    /// iowait, irq, softirq, steal (guest time is already in user and
    /// nice, so it is not added again).
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|line| line.starts_with("cpu "))?;
        let ticks = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|tick| tick.parse::<u64>().ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            steal: *ticks.get(7)?,
            total: ticks.iter().sum(),
        })
    }
}

impl StealMeter {
    pub(super) fn start() -> Self {
        Self {
            start: CpuTicks::now(),
        }
    }

    pub(super) fn percent(&self) -> Option<f64> {
        steal_percent(self.start?, CpuTicks::now()?)
    }
}

fn steal_percent(start: CpuTicks, end: CpuTicks) -> Option<f64> {
    let total = end.total.checked_sub(start.total).filter(|&t| t > 0)?;
    let steal = end.steal.checked_sub(start.steal)?;
    Some(100.0 * steal as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_read_the_machine_line_of_proc_stat() {
        let stat = "cpu  100 5 50 800 10 1 2 32 7 0\ncpu0 50 2 25 400 5 0 1 16 3 0\nintr 1\n";
        let ticks = CpuTicks::parse(stat).expect("a cpu line");
        assert_eq!(ticks.steal, 32);
        // Guest time (7) is already counted in user time.
        assert_eq!(ticks.total, 100 + 5 + 50 + 800 + 10 + 1 + 2 + 32);
        assert_eq!(CpuTicks::parse("intr 1\n"), None);
        assert_eq!(
            CpuTicks::parse("cpu  1 2 3\n"),
            None,
            "a line without steal"
        );
    }

    #[test]
    fn steal_is_the_share_of_cpu_time_in_between() {
        let start = CpuTicks {
            steal: 10,
            total: 1_000,
        };
        let end = CpuTicks {
            steal: 60,
            total: 1_200,
        };
        assert_eq!(steal_percent(start, end), Some(25.0));
        assert_eq!(steal_percent(start, start), None, "no time passed");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_reports_its_cpu_time() {
        let ticks = CpuTicks::now().expect("/proc/stat on Linux");
        assert!(ticks.total > 0 && ticks.steal <= ticks.total);
    }
}
