//! What each attempt costs in CPU time, for the job's `status.usage`.
//!
//! A pod proves several jobs at once (one per slot) in one process whose threads (the rayon
//! pool, the wasm interpreter) are shared, so no thread's clock belongs to one job. The meter
//! reads the process's CPU time instead (its own threads, and the exec provers it ran and
//! reaped) each time an attempt starts or ends, and splits what was spent since the last reading
//! evenly between the attempts running in that interval. The pod's own overhead while jobs run
//! (heartbeats, the HTTP server) lands on those jobs, which is what running them cost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zkfleet_contract::lease::Usage;

/// Splits the process's CPU time between the attempts that ran.
#[derive(Clone, Debug)]
pub struct CpuMeter {
    inner: Arc<Mutex<Inner>>,
    clock: fn() -> Duration,
}

#[derive(Debug, Default)]
struct Inner {
    /// The process's CPU time at the last reading.
    last: Duration,
    next_id: u64,
    /// CPU time each running attempt has been given so far.
    running: HashMap<u64, Duration>,
}

impl Inner {
    /// Reads the clock and hands what was spent since the last reading to the running attempts.
    fn settle(&mut self, now: Duration) {
        let spent = now.saturating_sub(self.last);
        self.last = now;
        if self.running.is_empty() {
            return;
        }
        let share = spent / self.running.len() as u32;
        for used in self.running.values_mut() {
            *used += share;
        }
    }
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self::with_clock(process_cpu_time)
    }
}

impl CpuMeter {
    /// A meter over another CPU clock (tests drive one by hand).
    pub fn with_clock(clock: fn() -> Duration) -> Self {
        let inner = Inner {
            last: clock(),
            ..Inner::default()
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
            clock,
        }
    }

    /// Starts metering one attempt; [`Metered::finish`] ends it.
    pub fn start(&self) -> Metered {
        let mut inner = self.inner.lock().expect("cpu meter lock");
        inner.settle((self.clock)());
        let id = inner.next_id;
        inner.next_id += 1;
        inner.running.insert(id, Duration::ZERO);
        Metered {
            meter: self.clone(),
            id,
            started: Instant::now(),
        }
    }
}

/// One attempt being metered. Dropping it without [`Metered::finish`] (the lease was revoked)
/// stops its share too.
#[derive(Debug)]
pub struct Metered {
    meter: CpuMeter,
    id: u64,
    started: Instant,
}

impl Metered {
    /// What the attempt used from its start until now.
    pub fn finish(self) -> Usage {
        let cpu = self.take();
        Usage {
            wall_millis: self.started.elapsed().as_millis() as u64,
            cpu_millis: cpu.as_millis() as u64,
        }
    }

    fn take(&self) -> Duration {
        let mut inner = self.meter.inner.lock().expect("cpu meter lock");
        inner.settle((self.meter.clock)());
        inner.running.remove(&self.id).unwrap_or_default()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.take();
    }
}

/// CPU time of this process's threads, plus that of the child processes it has reaped (exec
/// provers count once they exit, which is when their attempt ends).
pub fn process_cpu_time() -> Duration {
    let own = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let own = Duration::new(own.tv_sec.max(0) as u64, own.tv_nsec.max(0) as u32);
    own + children_cpu_time()
}

fn children_cpu_time() -> Duration {
    let Ok(stat) = procfs::process::Process::myself().and_then(|p| p.stat()) else {
        return Duration::ZERO;
    };
    let ticks = (stat.cutime.max(0) + stat.cstime.max(0)) as u64;
    Duration::from_secs_f64(ticks as f64 / procfs::ticks_per_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    static FAKE_CPU_MILLIS: AtomicU64 = AtomicU64::new(0);

    fn fake_clock() -> Duration {
        Duration::from_millis(FAKE_CPU_MILLIS.load(Ordering::SeqCst))
    }

    fn spend(millis: u64) {
        FAKE_CPU_MILLIS.fetch_add(millis, Ordering::SeqCst);
    }

    #[test]
    fn cpu_time_is_split_between_the_attempts_running_together() {
        let meter = CpuMeter::with_clock(fake_clock);
        spend(500); // idle: nobody pays for it
        let a = meter.start();
        spend(100); // a alone
        let b = meter.start();
        spend(200); // a and b: 100 each
        let dropped = meter.start();
        spend(300); // three running: 100 each
        drop(dropped); // a revoked attempt stops taking a share
        spend(40); // a and b again
        let a = a.finish();
        spend(60); // b alone
        let b = b.finish();
        assert_eq!(a.cpu_millis, 100 + 100 + 100 + 20);
        assert_eq!(b.cpu_millis, 100 + 100 + 20 + 60);
    }

    #[test]
    fn the_process_clock_counts_work_done() {
        let meter = CpuMeter::default();
        let metered = meter.start();
        let mut x = 0u64;
        let thread_cpu = || {
            let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
            Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
        };
        let spin_from = thread_cpu();
        // Spin until this thread alone has used 50 ms of CPU, however busy the machine is.
        while thread_cpu() - spin_from < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let usage = metered.finish();
        assert!(usage.cpu_millis >= 50, "{usage:?}");
        assert!(usage.wall_millis >= 50, "{usage:?}");
    }
}
