//! What the generator reads about processes: a server's CPU time and memory from `/proc`, the
//! generator's own CPU time, and CPU pinning.

use std::time::Duration;

/// Reads a server process's figures from `/proc/<pid>` (Linux). Every reading is `None` where
/// `/proc` is missing or the process is gone.
#[derive(Clone, Copy, Debug)]
pub struct ServerProbe {
    pub pid: u32,
}

impl ServerProbe {
    /// User plus system CPU time so far (`/proc/<pid>/stat` fields 14 and 15).
    pub fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        parse_stat_cpu_ticks(&stat).map(ticks_to_duration)
    }

    /// Major page faults so far (`/proc/<pid>/stat` field 12): pages, code included, that had
    /// to be read back after the kernel reclaimed them.
    pub fn major_faults(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        parse_stat_major_faults(&stat)
    }

    /// Resident set size now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// Peak resident set size since start or the last [`reset_peak`](Self::reset_peak), in KiB
    /// (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// Resets `VmHWM` to the current RSS (writing 5 to `clear_refs`; needs the same user).
    /// Returns whether it worked.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }

    /// Open file descriptors now.
    pub fn fds(&self) -> Option<usize> {
        Some(
            std::fs::read_dir(format!("/proc/{}/fd", self.pid))
                .ok()?
                .count(),
        )
    }

    fn status_kib(&self, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        parse_status_kib(&status, key)
    }
}

/// utime + stime in clock ticks from a `/proc/<pid>/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// majflt from a `/proc/<pid>/stat` line.
pub fn parse_stat_major_faults(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(9)?.parse().ok()
}

/// Major page faults of this process so far.
pub fn self_major_faults() -> Option<u64> {
    parse_stat_major_faults(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// A `Key:   123 kB` value from `/proc/<pid>/status`.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}

/// CPU time (user + system) of this whole process so far.
pub fn self_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; on failure it stays zeroed.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time all processes of the machine spent so far (`/proc/stat`: user, nice, system,
/// steal), summed over CPUs. Interrupt and softirq time is left out: on loopback it is mostly
/// the benchmark's own network traffic, charged to no process.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy_ticks(&stat).map(ticks_to_duration)
}

/// Busy ticks from the `cpu` line of `/proc/stat`.
pub fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(7).unwrap_or(&0))
}

/// Interrupt and softirq time of one CPU so far (`/proc/stat`, line `cpuN`): on loopback,
/// much of TCP's delivery work runs there and is charged to no process.
pub fn cpu_irq_time(cpu: usize) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_irq_ticks(&stat, cpu).map(ticks_to_duration)
}

/// irq + softirq ticks of `cpuN` from `/proc/stat`.
pub fn parse_cpu_irq_ticks(stat: &str, cpu: usize) -> Option<u64> {
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Some(v.get(5)? + v.get(6)?)
}

/// The CPUs of the machine, whatever this thread's affinity.
pub fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Peak RSS of this process, in KiB.
pub fn self_peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, "VmHWM:")
}

/// Number of CPUs this process may run on.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Pins the calling thread (and the threads it creates later) to `cpu`. Returns whether it
/// worked; pinning is best effort.
pub fn pin_current_thread(cpu: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_SET and sched_setaffinity only touch it and the
    // calling thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Sets the nice value of the calling thread (and of threads it creates later). Returns
/// whether it worked; negative values need privilege.
pub fn set_nice(nice: i32) -> bool {
    // SAFETY: setpriority only changes the scheduling priority of the calling thread.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0 }
}

/// The soft open-file limit of this process.
pub fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    ok.then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_and_status() {
        let stat = "1234 (parley (srv) x) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 37 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(287));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(parse_stat_major_faults(stat), Some(0));
        let stat2 = "1 (x) S 1 1 1 0 -1 0 500 0 42 0 250 37";
        assert_eq!(parse_stat_major_faults(stat2), Some(42));
        let status = "Name:\tparley\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(51200));
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(40960));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
        let stat = "cpu  100 1 20 5000 7 3 4 5 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_machine_busy_ticks(stat), Some(126));
        let stat = "cpu  1 2 3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\ncpu1 0 0 0 0 0 10 20 0\n";
        assert_eq!(parse_cpu_irq_ticks(stat, 1), Some(30));
        assert_eq!(parse_cpu_irq_ticks(stat, 0), Some(13));
        assert_eq!(parse_cpu_irq_ticks(stat, 2), None);
    }

    #[test]
    fn reads_this_process() {
        let me = ServerProbe {
            pid: std::process::id(),
        };
        assert!(me.cpu().is_some());
        assert!(me.rss_kib().unwrap_or(0) > 0);
        assert!(me.peak_rss_kib().unwrap_or(0) >= me.rss_kib().unwrap_or(0) / 2);
        assert!(me.fds().unwrap_or(0) >= 3);
    }
}
