//! What Strata's tests share across crates.
//!
//! [`Counting`] is the system allocator, counting what each thread allocates: how many
//! allocations (a per-packet path must make none) and how many bytes are live (what a
//! table costs). A test binary installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: strata_testkit::Counting = strata_testkit::Counting;
//! ```
//!
//! and reads [`allocations`] and [`live_bytes`] around the code it measures. The counts
//! are per thread, so tests running in parallel threads do not disturb each other.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // Const-initialised: reaching them allocates nothing (the allocator uses them).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

/// The system allocator, counting this thread's allocations and live bytes.
#[derive(Debug)]
pub struct Counting;

fn count(allocations: u64, bytes: i64) {
    // `try_with`: during thread teardown the counters may be gone already.
    let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + allocations));
    let _ = LIVE.try_with(|l| l.set(l.get() + bytes));
}

fn size(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// SAFETY: every call is passed to the system allocator unchanged; the counting is the
// only addition, and it neither allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(1, size(layout.size()));
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(0, -size(layout.size()));
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(1, size(new_size) - size(layout.size()));
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations this thread has made (reallocations included).
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Bytes this thread has allocated and not freed (requested sizes: the allocator's own
/// per-block overhead is not in it).
pub fn live_bytes() -> i64 {
    LIVE.with(Cell::get)
}
