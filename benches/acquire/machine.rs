//! What the machine is doing, from `/proc`: load average and CPU time of processes.

/// The 1, 5 and 15 minute load averages, or `"unknown"`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Clock ticks (`USER_HZ`) per second; 100 on Linux.
pub const TICKS_PER_SEC: f64 = 100.0;

/// CPU time (user + system) of process `pid` (`"self"` for the bench), in clock ticks
/// ([`TICKS_PER_SEC`]).
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // After the command name: the state is field 3, utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}
