//! What a CPU has left over, for benchmarks: spins at the lowest priority (`SCHED_IDLE`)
//! for a number of seconds and prints how many rounds of fixed work it ran per second.
//! Pinned to a CPU beside the system under test, it gets only the time nothing else
//! wants, so the CPU's busy share is `1 - rate / idle rate` (the idle rate measured by a
//! run alone). Unlike `/proc/stat`, this sees work done in short bursts out of idle
//! (a softirq woken by an IPI), which tick-based accounting misses.
//!
//! ```text
//! soak SECONDS
//! ```

#![allow(unsafe_code)]

use std::time::{Duration, Instant};

/// One round: a few microseconds of arithmetic the compiler cannot skip.
fn round(mut x: u64) -> u64 {
    for _ in 0..2_000 {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
    x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => return Err("usage: soak SECONDS".into()),
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sets this thread's own policy; the parameter is live across the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let (mut rounds, mut x) = (0u64, 1u64);
    while Instant::now() < until {
        for _ in 0..16 {
            x = round(x);
        }
        rounds += 16;
    }
    println!("{:.0}", rounds as f64 / start.elapsed().as_secs_f64());
    std::hint::black_box(x);
    Ok(())
}
