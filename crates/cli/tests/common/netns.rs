//! Two network namespaces joined by a veth pair, for single-hop tests against real
//! daemons, and reading times out of our speaker's log.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Two namespaces joined by a veth pair, and the processes started in them; all gone
/// when dropped, failed test or not.
pub struct Netns {
    /// The namespaces: a at 10.99.0.1, b at 10.99.0.2 on the veth pair.
    pub a: String,
    pub b: String,
    /// The veth ends in a and in b.
    pub veth: (String, String),
    pub children: Vec<Child>,
    /// Pid files of daemons started in the namespaces, killed when dropped.
    pub pid_files: Vec<PathBuf>,
    pub dir: PathBuf,
}

impl Netns {
    /// `None` when namespaces cannot be made (not root).
    pub fn new(tag: &str) -> Option<Netns> {
        let id = std::process::id();
        let (va, vb) = (
            format!("v{tag}a{}", id % 10000),
            format!("v{tag}b{}", id % 10000),
        );
        let n = Netns {
            veth: (va.clone(), vb.clone()),
            a: format!("strata-t{tag}a-{id}"),
            b: format!("strata-t{tag}b-{id}"),
            children: Vec::new(),
            pid_files: Vec::new(),
            dir: std::env::temp_dir().join(format!("strata-bfd-{tag}-{id}")),
        };
        std::fs::create_dir_all(&n.dir).unwrap();
        let ok = ip(&["netns", "add", &n.a]);
        if !ok {
            return None;
        }
        assert!(ip(&["netns", "add", &n.b]));
        assert!(ip(&[
            "link", "add", &va, "netns", &n.a, "type", "veth", "peer", "name", &vb, "netns", &n.b
        ]));
        for (ns, dev, addr) in [(&n.a, &va, "10.99.0.1/24"), (&n.b, &vb, "10.99.0.2/24")] {
            assert!(ip(&["-n", ns, "addr", "add", addr, "dev", dev]));
            assert!(ip(&["-n", ns, "link", "set", dev, "up"]));
            assert!(ip(&["-n", ns, "link", "set", "lo", "up"]));
        }
        Some(n)
    }

    pub fn exec(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self
            .pid_files
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
        {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        ip(&["netns", "del", &self.a]);
        ip(&["netns", "del", &self.b]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The lines of `dir/strata.log` (our speaker's log) that contain `text`.
pub fn log_lines(dir: &Path, text: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join("strata.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(text))
        .map(str::to_string)
        .collect()
}

/// Seconds since midnight UTC.
pub fn seconds_of_day(t: std::time::SystemTime) -> f64 {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap();
    (since.as_secs() % 86_400) as f64 + f64::from(since.subsec_nanos()) / 1e9
}

/// `HH:MM:SS.ffffff` as seconds since midnight.
pub fn parse_time(t: &str) -> Option<f64> {
    let h: f64 = t.get(0..2)?.parse().ok()?;
    let m: f64 = t.get(3..5)?.parse().ok()?;
    let s: f64 = t.get(6..)?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}
