//! What each attempt costs in CPU time, for the job's `status.usage`.
//!
//! A pod proves several jobs at once (one per slot) in one process whose threads (the rayon
//! pool, the wasm interpreter) are shared, so no thread's clock belongs to one job. The meter
//! reads the process's CPU time instead each time an attempt starts or ends, and splits what
//! was spent since the last reading evenly between the attempts running in that interval. The
//! pod's own overhead while jobs run (heartbeats, the HTTP server) lands on those jobs, which is
//! what running them cost.
//!
//! An exec prover is one process of one attempt, so its CPU time is not split: the thread
//! proving an attempt carries its [`Attribution`], and when it reaps its prover ([`reap`]) the
//! prover's CPU time goes to that attempt alone. Otherwise one tenant's hour-long STARK proof
//! would be billed in part to whichever tenant's job ran beside it.

use std::cell::RefCell;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zkfleet_contract::lease::Usage;

/// Splits the process's CPU time between the attempts that ran.
#[derive(Clone, Debug)]
pub struct CpuMeter {
    inner: Arc<Mutex<Inner>>,
    clock: fn() -> Duration,
    /// CPU time of the reaped child processes (part of `clock`).
    children: fn() -> Duration,
}

#[derive(Debug, Default)]
struct Inner {
    /// The process's CPU time at the last reading.
    last: Duration,
    next_id: u64,
    /// CPU time each running attempt has been given so far.
    running: HashMap<u64, Duration>,
    /// CPU time of exec provers reaped since the last reading, already given to their own
    /// attempts: not split again.
    attributed: Duration,
}

impl Inner {
    /// Reads the clock and hands what was spent since the last reading to the running attempts.
    fn settle(&mut self, now: Duration) {
        let spent = now
            .saturating_sub(self.last)
            .saturating_sub(std::mem::take(&mut self.attributed));
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
        Self::with_clocks(process_cpu_time, children_cpu_time)
    }
}

impl CpuMeter {
    /// A meter over other CPU clocks: the whole process's and its reaped children's (tests
    /// drive them by hand).
    pub fn with_clocks(clock: fn() -> Duration, children: fn() -> Duration) -> Self {
        let inner = Inner {
            last: clock(),
            ..Inner::default()
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
            clock,
            children,
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
    /// Who pays for the exec provers of this attempt, for the thread that proves it.
    pub fn attribution(&self) -> Attribution {
        Attribution {
            meter: self.meter.clone(),
            id: self.id,
        }
    }

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

/// The attempt a thread proves for: the exec provers it reaps are that attempt's alone.
#[derive(Clone, Debug)]
pub struct Attribution {
    meter: CpuMeter,
    id: u64,
}

thread_local! {
    static PAYER: RefCell<Option<Attribution>> = const { RefCell::new(None) };
}

impl Attribution {
    /// Makes this thread's reaped provers this attempt's until the guard is dropped.
    pub fn on_this_thread(&self) -> OnThisThread {
        PAYER.with(|p| *p.borrow_mut() = Some(self.clone()));
        OnThisThread(())
    }
}

/// While it lives, the thread's reaped provers are charged to one attempt.
#[must_use]
pub struct OnThisThread(());

impl Drop for OnThisThread {
    fn drop(&mut self) {
        PAYER.with(|p| *p.borrow_mut() = None);
    }
}

/// Reaps a child with `try_wait`. When this thread proves for an attempt and the child was
/// reaped, the child's CPU time (the growth of the children's clock across the reap, taken
/// under the meter's lock so no other reap or reading falls in between) goes to that attempt.
pub fn reap<T>(
    try_wait: impl FnOnce() -> std::io::Result<Option<T>>,
) -> std::io::Result<Option<T>> {
    let payer = PAYER.with(|p| p.borrow().clone());
    let Some(payer) = payer else {
        return try_wait();
    };
    let mut inner = payer.meter.inner.lock().expect("cpu meter lock");
    let before = (payer.meter.children)();
    let reaped = try_wait()?;
    if reaped.is_some() {
        let cpu = (payer.meter.children)().saturating_sub(before);
        inner.attributed += cpu;
        if let Some(used) = inner.running.get_mut(&payer.id) {
            *used += cpu;
        }
    }
    Ok(reaped)
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

    static FAKE_CHILDREN_MILLIS: AtomicU64 = AtomicU64::new(0);

    fn fake_children() -> Duration {
        Duration::from_millis(FAKE_CHILDREN_MILLIS.load(Ordering::SeqCst))
    }

    #[test]
    fn an_exec_provers_cpu_time_goes_to_its_own_attempt_alone() {
        // A clock of its own: the other test moves FAKE_CPU_MILLIS.
        static CPU: AtomicU64 = AtomicU64::new(0);
        fn clock() -> Duration {
            Duration::from_millis(CPU.load(Ordering::SeqCst))
        }
        let meter = CpuMeter::with_clocks(clock, fake_children);
        let heavy = meter.start();
        let light = meter.start();
        CPU.fetch_add(100, Ordering::SeqCst); // the agent's threads: 50 each
        let reaped = {
            let _payer = heavy.attribution().on_this_thread();
            reap(|| {
                // The heavy tenant's prover exits having used 10 s.
                FAKE_CHILDREN_MILLIS.fetch_add(10_000, Ordering::SeqCst);
                CPU.fetch_add(10_000, Ordering::SeqCst);
                Ok(Some(()))
            })
        };
        assert!(reaped.unwrap().is_some());
        // Without a payer (a thread not proving for an attempt) nothing is attributed.
        assert!(reap(|| Ok(None::<()>)).unwrap().is_none());
        CPU.fetch_add(20, Ordering::SeqCst); // 10 each
        let light = light.finish();
        let heavy = heavy.finish();
        assert_eq!(light.cpu_millis, 60, "none of the other tenant's prover");
        assert_eq!(heavy.cpu_millis, 10_060);
    }

    #[test]
    fn cpu_time_is_split_between_the_attempts_running_together() {
        let meter = CpuMeter::with_clocks(fake_clock, fake_children);
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
