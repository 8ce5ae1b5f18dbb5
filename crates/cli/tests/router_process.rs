//! `strata router` as a process of its own in a network namespace, between two others
//! with the kernel's stack (a client, and the outside world behind NAT): the kernel's
//! ping and curl cross it, masqueraded; a port forward reaches the inside; SIGTERM stops
//! it cleanly. Needs root (CI runs as root); skipped without it unless
//! `STRATA_REQUIRE_NETNS` is set. Namespaces and processes go however the test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_testkit::netns::{Scene, allowed as netns_allowed, run};

/// Runs `curl` in `ns` until it answers (the server may take a moment to listen).
fn fetch(ns: &str, url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-s", "-m", "2", url])
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "curl {url} from {ns}: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn http_server(ns: &str, bind: &str, dir: &std::path::Path) -> Child {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "python3",
            "-m",
            "http.server",
            "80",
            "--bind",
            bind,
        ])
        .arg("--directory")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_strata_router_process_routes_and_nats_between_kernel_namespaces() {
    if !netns_allowed() {
        return;
    }
    let id = std::process::id();
    let (mut cleanup, names) = Scene::new(&["in", "nat", "out"]);
    let (inside, nat, world) = (names[0].clone(), names[1].clone(), names[2].clone());
    let dir = std::env::temp_dir().join(format!("strata-router-process-{id}"));
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    cleanup.dir = Some(dir.clone());
    let ip = |args: &[&str]| run("ip", args);
    ip(&[
        "-n", &inside, "link", "add", "i0", "type", "veth", "peer", "name", "eth0", "netns", &nat,
    ]);
    ip(&[
        "-n", &world, "link", "add", "w0", "type", "veth", "peer", "name", "eth1", "netns", &nat,
    ]);
    for (ns, dev) in [
        (&inside, "i0"),
        (&nat, "eth0"),
        (&nat, "eth1"),
        (&world, "w0"),
    ] {
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    ip(&[
        "-n",
        &inside,
        "addr",
        "add",
        "192.168.200.10/24",
        "dev",
        "i0",
    ]);
    ip(&[
        "-n",
        &inside,
        "route",
        "add",
        "default",
        "via",
        "192.168.200.1",
    ]);
    // The world knows no route to the inside: only NAT gets answers back.
    ip(&["-n", &world, "addr", "add", "203.0.113.100/24", "dev", "w0"]);
    std::fs::write(dir.join("in/index.html"), "inside\n").unwrap();
    std::fs::write(dir.join("out/index.html"), "the world\n").unwrap();
    cleanup
        .children
        .push(http_server(&inside, "192.168.200.10", &dir.join("in")));
    cleanup
        .children
        .push(http_server(&world, "203.0.113.100", &dir.join("out")));

    let config = dir.join("router.toml");
    std::fs::write(
        &config,
        format!(
            "netns = \"{nat}\"\nname = \"NATVM\"\n\
             [[interface]]\nname = \"eth0\"\naddress = \"192.168.200.1/24\"\n\
             [[interface]]\nname = \"eth1\"\naddress = \"203.0.113.1/24\"\n\
             [[route]]\nprefix = \"10.255.0.0/16\"\ntype = \"reject\"\n\
             [nat]\nexternal = \"eth1\"\n\
             [[nat.forward]]\nprotocol = \"tcp\"\nport = 8080\nto = \"192.168.200.10:80\"\n"
        ),
    )
    .unwrap();
    cleanup.children.push(
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["router", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    // Out through NAT: the world sees the router's address, not the client's.
    assert_eq!(
        fetch(&inside, "http://203.0.113.100/index.html"),
        "the world\n"
    );
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &inside,
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            "203.0.113.100",
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    // In through the port forward.
    assert_eq!(
        fetch(&world, "http://203.0.113.1:8080/index.html"),
        "inside\n"
    );
    // A reject route answers host unreachable.
    let rejected = Command::new("ip")
        .args([
            "netns",
            "exec",
            &inside,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.255.0.1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&rejected.stdout);
    assert!(!rejected.status.success());
    assert!(text.contains("Destination Host Unreachable"), "{text}");

    // SIGTERM: it stops, says what it moved, exits 0.
    let mut router = cleanup.children.pop().unwrap();
    run("kill", &["-TERM", &router.id().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = router.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the router did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut router.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("routing") && log.contains("stopped"), "{log}");
}

#[test]
fn a_router_file_that_breaks_a_rule_is_refused() {
    let dir = std::env::temp_dir().join(format!("strata-router-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[[interface]]\nname = \"eth0\"\naddress = \"10.0.0.1/24\"\n[nat]\nexternal = \"eth9\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["router", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nat.external \"eth9\" is none of the interfaces"),
        "{err}"
    );
    std::fs::write(
        &file,
        "[[interface]]\nname = \"eth0\"\naddres = \"10.0.0.1/24\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["router", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("addres"), "{err}");
    // A good file, and a way of reading links that does not exist.
    std::fs::write(
        &file,
        "[[interface]]\nname = \"eth0\"\naddress = \"10.0.0.1/24\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["router", "--config"])
        .arg(&file)
        .env("STRATA_LINK", "telepathy")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("STRATA_LINK=telepathy: expected \"socket\", \"ring\" or \"xdp\""),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["router", "--config"])
        .arg(&file)
        .env("STRATA_LINK", "xdp")
        .env("STRATA_XDP_FRAMES", "lots")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("STRATA_XDP_FRAMES=lots: expected a number of frames"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
