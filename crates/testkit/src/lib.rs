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

/// Runs an independent tool over `input` on its stdin (`promtool check metrics`, `dot
/// -Tsvg`): its output, or `None` when the tool is not installed, which fails the test
/// instead when the environment variable `require` is set (the test script sets it
/// after installing the tool).
pub fn pipe_through(
    program: &str,
    args: &[&str],
    input: &[u8],
    require: &str,
) -> Option<std::process::Output> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os(require).is_none(),
            "{program} is required ({require}) but not installed"
        );
        eprintln!("skipped: {program} is not installed");
        return None;
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A tool that exits early closes its end; what it said is in its output.
        let _ = stdin.write_all(input);
    }
    child.wait_with_output().ok()
}

/// `promtool check metrics` accepts the text (when promtool is installed, or required by
/// `STRATA_REQUIRE_PROMTOOL`).
pub fn assert_promtool_accepts(text: &str) {
    if let Some(out) = pipe_through(
        "promtool",
        &["check", "metrics"],
        text.as_bytes(),
        "STRATA_REQUIRE_PROMTOOL",
    ) {
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Network namespaces a test builds: made here, removed (with the processes the test
/// started) however the test ends.
pub mod netns {
    use std::path::PathBuf;
    use std::process::{Child, Command};

    /// Whether this test may build namespaces: root. Without root the test is skipped,
    /// unless `STRATA_REQUIRE_NETNS` says it must run (the test script sets it as root).
    pub fn allowed() -> bool {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root {
            assert!(
                std::env::var_os("STRATA_REQUIRE_NETNS").is_none(),
                "network namespaces are required (STRATA_REQUIRE_NETNS) but this is not root"
            );
            eprintln!("skipped: not root");
        }
        root
    }

    /// Runs a command that must succeed; its standard output.
    pub fn run(program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Namespaces named `strata-test-<pid>-<name>`, with the processes and the
    /// directory a test adds; all removed when it is dropped.
    #[derive(Debug, Default)]
    pub struct Scene {
        pub namespaces: Vec<String>,
        pub children: Vec<Child>,
        pub dir: Option<PathBuf>,
    }

    impl Scene {
        /// Makes the namespaces `names` (each prefixed); returns their full names.
        /// First removes those a killed test left (its process is gone, so its `Drop`
        /// never ran).
        pub fn new(names: &[&str]) -> (Scene, Vec<String>) {
            sweep();
            let id = std::process::id();
            let full: Vec<String> = names
                .iter()
                .map(|n| format!("strata-test-{id}-{n}"))
                .collect();
            let mut scene = Scene::default();
            for ns in &full {
                run("ip", &["netns", "add", ns]);
                scene.namespaces.push(ns.clone());
            }
            (scene, full)
        }
    }

    /// Removes every `strata-test-<pid>-…` namespace whose process is gone.
    pub fn sweep() {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix("strata-test-") else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
                let _ = Command::new("ip").args(["netns", "del", name]).output();
            }
        }
    }

    impl Drop for Scene {
        fn drop(&mut self) {
            for c in &mut self.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            for ns in &self.namespaces {
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
            }
            if let Some(dir) = &self.dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}
