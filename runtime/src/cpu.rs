//! CPU limits by time slicing: a container with `resources.limits.cpu` may run its guest for
//! that many CPU-seconds per second. Time in the guest is metered between entering and
//! leaving Wasm (host calls, such as a sleep or a read, are not charged), and at each epoch
//! tick (10 ms) a guest that has spent more than its share is paused until its share has
//! caught up. The share accrues as a token bucket of at most one 100 ms period's worth, as
//! the kernel's CFS quota per period allows, so a guest idle for a while may burst briefly.
//! All instances of a container (an HTTP container's requests) draw on one share.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The period over which a limit is enforced (CFS's default `cpu.cfs_period_us`).
pub const PERIOD: Duration = Duration::from_millis(100);

/// A container's CPU share, which all its instances draw on (an HTTP container runs an
/// instance per request).
#[derive(Debug, Clone)]
pub struct CpuLimit(Arc<Mutex<Bucket>>);

#[derive(Debug)]
struct Bucket {
    /// CPUs the container may use (0.5 for `500m`).
    cpus: f64,
    /// CPU time it may still use now, in seconds; negative when it is in debt.
    balance: f64,
    /// When the balance was last brought up to date.
    updated: Instant,
    /// CPU time spent in Wasm in all.
    used: Duration,
}

impl CpuLimit {
    /// A share of `millicores` (`limits.cpu` in thousandths of a CPU).
    pub fn new(millicores: u64, now: Instant) -> Self {
        let cpus = millicores.max(1) as f64 / 1000.0;
        CpuLimit(Arc::new(Mutex::new(Bucket {
            cpus,
            balance: cpus * PERIOD.as_secs_f64(),
            updated: now,
            used: Duration::ZERO,
        })))
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// CPU time the container's instances have spent in Wasm so far.
    pub fn used(&self) -> Duration {
        self.bucket().used
    }
}

/// One instance's CPU meter, charging its container's share.
#[derive(Debug)]
pub struct CpuMeter {
    limit: CpuLimit,
    /// When the guest last entered Wasm, while it runs there (or when a pause ends).
    entered: Option<Instant>,
}

impl CpuMeter {
    pub fn new(limit: &CpuLimit) -> Self {
        CpuMeter {
            limit: limit.clone(),
            entered: None,
        }
    }

    /// The guest starts (or goes back to) running Wasm.
    pub fn enter(&mut self, now: Instant) {
        // Already running, or paused (entering again when the pause is over).
        self.entered.get_or_insert(now);
    }

    /// The guest leaves Wasm (a host call, or a pause).
    pub fn leave(&mut self, now: Instant) {
        if let Some(entered) = self.entered.take() {
            let ran = now.saturating_duration_since(entered);
            let mut bucket = self.limit.bucket();
            bucket.used += ran;
            bucket.balance -= ran.as_secs_f64();
        }
    }

    /// At an epoch tick (the guest is in Wasm, though the tick itself may have been counted
    /// as a host call): how long the guest must pause to keep its container within its limit,
    /// if at all.
    pub fn tick(&mut self, now: Instant) -> Option<Duration> {
        self.leave(now);
        let pause = {
            let mut bucket = self.limit.bucket();
            let earned = now.saturating_duration_since(bucket.updated).as_secs_f64() * bucket.cpus;
            bucket.balance = (bucket.balance + earned).min(bucket.cpus * PERIOD.as_secs_f64());
            bucket.updated = bucket.updated.max(now);
            (bucket.balance < 0.0).then(|| Duration::from_secs_f64(-bucket.balance / bucket.cpus))
        };
        // Paused, the guest is out of Wasm until the pause is over.
        self.entered = Some(now + pause.unwrap_or_default());
        pause
    }
}

/// Thousandths of a CPU in a quantity (`500m`, `2`, `0.25`).
pub fn millicores(quantity: &str) -> Option<u64> {
    let value = match quantity.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()?,
        None => quantity.parse::<f64>().ok()? * 1000.0,
    };
    (value.is_finite() && value > 0.0).then(|| value.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_convert_to_millicores() {
        assert_eq!(millicores("500m"), Some(500));
        assert_eq!(millicores("2"), Some(2000));
        assert_eq!(millicores("0.25"), Some(250));
        assert_eq!(millicores("0"), None);
        assert_eq!(millicores("lots"), None);
    }

    #[test]
    fn a_busy_guest_is_held_to_its_share() {
        // Simulated time: a guest that never leaves Wasm, ticked every 10 ms, limited to
        // 200m, over ten seconds; with the tick itself seen as a host call (`hooks`, as the
        // engine's call hooks see it) and without.
        for hooks in [false, true] {
            let start = Instant::now();
            let limit = CpuLimit::new(200, start);
            let mut meter = CpuMeter::new(&limit);
            let mut now = start;
            meter.enter(now);
            let tick = Duration::from_millis(10);
            let end = start + Duration::from_secs(10);
            while now < end {
                now += tick;
                if hooks {
                    meter.leave(now);
                }
                let pause = meter.tick(now);
                if hooks {
                    meter.enter(now);
                }
                if let Some(pause) = pause {
                    now += pause;
                }
            }
            let share = limit.used().as_secs_f64() / (now - start).as_secs_f64();
            assert!((0.18..=0.23).contains(&share), "hooks {hooks}: {share}");
        }
    }

    #[test]
    fn time_in_host_calls_is_not_charged() {
        let start = Instant::now();
        let limit = CpuLimit::new(100, start);
        let mut meter = CpuMeter::new(&limit);
        let mut now = start;
        for _ in 0..100 {
            // 1 ms of Wasm, then 99 ms blocked in a host call: 1% of a CPU.
            meter.enter(now);
            now += Duration::from_millis(1);
            meter.leave(now);
            now += Duration::from_millis(99);
            meter.enter(now);
            assert_eq!(meter.tick(now), None);
            meter.leave(now);
        }
        assert_eq!(limit.used(), Duration::from_millis(100));
    }

    #[test]
    fn instances_of_a_container_share_its_limit() {
        // Two busy instances (two requests at once) under one 200m limit: together they get
        // a fifth of a CPU, not two fifths.
        let start = Instant::now();
        let limit = CpuLimit::new(200, start);
        let mut meters = [CpuMeter::new(&limit), CpuMeter::new(&limit)];
        let mut paused_until = [start; 2];
        let mut now = start;
        for meter in &mut meters {
            meter.enter(now);
        }
        while now < start + Duration::from_secs(10) {
            now += Duration::from_millis(10);
            for (meter, until) in meters.iter_mut().zip(&mut paused_until) {
                if *until <= now
                    && let Some(pause) = meter.tick(now)
                {
                    *until = now + pause;
                }
            }
        }
        let share = limit.used().as_secs_f64() / (now - start).as_secs_f64();
        assert!((0.18..=0.25).contains(&share), "{share}");
    }
}
