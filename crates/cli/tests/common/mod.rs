//! What the interop tests share: cleanup, waiting, addresses, the speaker's config.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod netns;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// When the test ends, passed or not: kills the processes it holds and the daemon whose
/// pid file it names, then removes the test's directory.
pub struct Guard {
    pub children: Vec<Child>,
    pub pid_file: Option<PathBuf>,
    pub dir: PathBuf,
}

impl Guard {
    /// A fresh directory for the test, removed when the guard goes.
    pub fn new(name: &str) -> Guard {
        let dir = std::env::temp_dir().join(format!("strata-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Guard {
            children: Vec::new(),
            pid_file: None,
            dir,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = self
            .pid_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `f` until it holds; panics naming `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Two loopback addresses of this test run's own: (the peer's, ours).
pub fn loopback_pair(tag: u8) -> (String, String) {
    let x = (std::process::id() % 200) as u8 + 20;
    (format!("127.{x}.{tag}.2"), format!("127.{x}.{tag}.3"))
}

/// Writes the speaker's config (a status file and a control socket in `dir`): AS 64501
/// on `ours`, one neighbor AS 64500 at `peer`,
/// announcing 192.168.133.74/32 with next hop 192.0.2.20 (outside 127/8: GoBGP refuses
/// loopback next hops). `extra` lines go into the neighbor section.
pub fn speaker_config(dir: &Path, ours: &str, peer: &str, extra: &str) -> (PathBuf, PathBuf) {
    let status = dir.join("status.txt");
    let config = dir.join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "asn = 64501\nrouter_id = \"{ours}\"\nlocal = \"{ours}\"\nstatus_file = \"{}\"\n\
             control_socket = \"{}\"\n\
             [[neighbor]]\naddress = \"{peer}\"\nasn = 64500\nhold_time = 9\n{extra}\
             [[announce]]\nprefix = \"192.168.133.74/32\"\nnext_hop = \"192.0.2.20\"\n",
            status.display(),
            dir.join("control.sock").display()
        ),
    )
    .unwrap();
    (config, status)
}

/// Starts `strata bgp run --config config`.
pub fn speaker(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bgp", "run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// What `strata bgp show --config config` (with `extra` arguments) prints.
pub fn bgp_show(config: &Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bgp", "show"])
        .args(extra)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the status file says `text`.
pub fn status_says(status: &Path, text: &str) -> bool {
    std::fs::read_to_string(status).is_ok_and(|s| s.contains(text))
}

/// A BGP message with a header around `body`.
pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

/// Reads one whole BGP message, header included.
pub fn read_message(s: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 19];
    s.read_exact(&mut header).unwrap();
    let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
    let mut body = vec![0u8; len - 19];
    s.read_exact(&mut body).unwrap();
    [header.to_vec(), body].concat()
}

pub fn bird_present() -> bool {
    let ok = Command::new("bird").arg("--version").output().is_ok();
    if !ok {
        assert!(
            std::env::var_os("STRATA_REQUIRE_BIRD").is_none(),
            "BIRD is required but not installed"
        );
        eprintln!("bird not installed; skipping");
    }
    ok
}

pub fn birdc(ctl: &Path, args: &[&str]) -> String {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(ctl)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts BIRD on `dir/bird.conf`; the guard stops it and removes `dir`. Returns the
/// guard and the control socket.
pub fn start_bird(dir: PathBuf) -> (Guard, PathBuf) {
    let ctl = dir.join("bird.ctl");
    let pid = dir.join("bird.pid");
    let guard = Guard {
        children: Vec::new(),
        pid_file: Some(pid.clone()),
        dir: dir.clone(),
    };
    let started = Command::new("bird")
        .arg("-c")
        .arg(dir.join("bird.conf"))
        .arg("-s")
        .arg(&ctl)
        .arg("-P")
        .arg(&pid)
        .status()
        .unwrap();
    assert!(started.success());
    (guard, ctl)
}

/// Whether GoBGP is installed; a test without it is skipped, unless STRATA_REQUIRE_GOBGP
/// says it must run.
pub fn gobgp_present() -> bool {
    let ok = Command::new("gobgpd").arg("--version").output().is_ok();
    if !ok {
        assert!(
            std::env::var_os("STRATA_REQUIRE_GOBGP").is_none(),
            "gobgpd is required but not installed"
        );
        eprintln!("gobgpd not installed; skipping");
    }
    ok
}

/// Starts gobgpd on `config` (TOML) with its API on `ip`:50051.
pub fn start_gobgpd(config: &Path, ip: &str) -> Child {
    Command::new("gobgpd")
        .arg("-f")
        .arg(config)
        .args([
            "-t",
            "toml",
            "--api-hosts",
            &format!("{ip}:50051"),
            "-l",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs the `gobgp` client against the daemon whose API is on `ip`; its output.
pub fn gobgp(ip: &str, args: &[&str]) -> String {
    let out = Command::new("gobgp")
        .args(["-u", ip, "-p", "50051"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends SIGHUP to a running speaker: it reads its file's announcements again.
pub fn hangup(speaker: &Child) {
    let pid = speaker.id().to_string();
    let sent = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(sent.success(), "kill -HUP {pid}");
}

/// `promtool check metrics` takes the text (see [`strata_testkit::assert_promtool_accepts`]).
pub fn promtool_accepts(text: &str) {
    strata_testkit::assert_promtool_accepts(text);
}
