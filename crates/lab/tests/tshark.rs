//! The lab's captures, read by tshark: every frame decodes without a malformed-packet or
//! error-level expert note, and ARP, ICMP, TCP, HTTP and DNS are all recognised.
//!
//! Skipped (with a message) when tshark is not installed, unless STRATA_REQUIRE_TSHARK is
//! set, as the README's test command sets it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;

use strata_lab::{Clock, Lab};

fn tshark(args: &[&str]) -> Option<String> {
    let out = Command::new("tshark").args(args).output().ok()?;
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn tshark_decodes_every_capture() {
    if Command::new("tshark").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("STRATA_REQUIRE_TSHARK").is_none(),
            "tshark is required but not installed"
        );
        eprintln!("tshark not installed; skipping");
        return;
    }
    let topology = strata_lab::file::parse(
        strata_lab::AZURE_STACK_POC_NAME,
        strata_lab::AZURE_STACK_POC,
    )
    .unwrap();
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    assert!(lab.run_scenarios().iter().all(|r| r.passed));
    let dir = std::env::temp_dir().join(format!("strata-tshark-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(dir.clone());
    let files = lab.write_captures(&dir).unwrap();
    let mut protocols = BTreeSet::new();
    for file in &files {
        let f = file.to_str().unwrap();
        let bad = tshark(&[
            "-r",
            f,
            "-Y",
            "_ws.malformed || _ws.expert.severity == error",
        ])
        .unwrap();
        assert!(bad.trim().is_empty(), "{f}: tshark flags frames:\n{bad}");
        let layers = tshark(&["-r", f, "-T", "fields", "-e", "frame.protocols"]).unwrap();
        for line in layers.lines() {
            protocols.extend(line.split(':').map(str::to_string));
        }
        // Every TCP segment's and IPv4 header's checksum verifies in tshark too.
        let bad_sums = tshark(&[
            "-r",
            f,
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-Y",
            "tcp.checksum.status == 0 || ip.checksum.status == 0 || udp.checksum.status == 0",
        ])
        .unwrap();
        assert!(
            bad_sums.trim().is_empty(),
            "{f}: bad checksums:\n{bad_sums}"
        );
    }
    // BFD between BGPVM and the Muxes (RFC 5881): UDP 3784, TTL 255, from source ports
    // 49152 and up, sessions Up at 100 ms with a multiplier of 3.
    let management = dir.join("management.pcap");
    let bfd = tshark(&[
        "-r",
        management.to_str().unwrap(),
        "-Y",
        "bfd && bfd.sta == 3",
        "-T",
        "fields",
        "-e",
        "udp.dstport",
        "-e",
        "ip.ttl",
        "-e",
        "udp.srcport",
        "-e",
        "bfd.detect_time_multiplier",
        "-e",
        "bfd.desired_min_tx_interval",
        "-e",
        "bfd.version",
    ])
    .unwrap();
    let bfd_rows: Vec<Vec<&str>> = bfd.lines().map(|l| l.split('\t').collect()).collect();
    assert!(bfd_rows.len() > 100, "BFD Up packets: {bfd}");
    for row in &bfd_rows {
        assert_eq!(row[0], "3784");
        assert_eq!(row[1], "255");
        assert!(row[2].parse::<u16>().unwrap() >= 49152, "{row:?}");
        assert_eq!(row[3], "3");
        assert_eq!(row[5], "1");
    }
    assert!(
        bfd_rows.iter().any(|r| r[4] == "100000"),
        "the fast interval once Up: {bfd}"
    );
    // VXLAN from the Mux: UDP 4789, VNI 4096, the inner TCP to the VIP, and an outer
    // source port that varies with the inner flow.
    let provider = dir.join("provider.pcap");
    let vxlan = tshark(&[
        "-r",
        provider.to_str().unwrap(),
        "-Y",
        "vxlan && tcp.flags.syn == 1 && ip.dst == 192.168.133.74",
        "-T",
        "fields",
        "-e",
        "udp.dstport",
        "-e",
        "vxlan.vni",
        "-e",
        "ip.dst",
        "-e",
        "udp.srcport",
    ])
    .unwrap();
    let rows: Vec<Vec<&str>> = vxlan.lines().map(|l| l.split('\t').collect()).collect();
    assert!(
        rows.len() >= 40,
        "one SYN per connection to the VIP: {vxlan}"
    );
    for row in &rows {
        assert_eq!(row[0], "4789");
        assert_eq!(row[1], "4096");
        // Outer and inner destination: the host's PA, then the VIP.
        assert_eq!(row[2], "192.168.233.21,192.168.133.74");
    }
    let source_ports: BTreeSet<&str> = rows.iter().map(|r| r[3]).collect();
    assert!(
        source_ports.len() > rows.len() / 2,
        "source ports vary by flow: {source_ports:?}"
    );
    // The host agent clamps the MSS of the VIP's flows to fit the encapsulation: every
    // SYN-ACK the client gets from the VIP says 1410, and so do the SYNs the DIPs get
    // through the VIP (PortalVM also gets one SYN straight to its own address, unclamped).
    let inside = dir.join("nat-internal.pcap");
    let mss = tshark(&[
        "-r",
        inside.to_str().unwrap(),
        "-Y",
        "tcp.flags.syn == 1 && tcp.flags.ack == 1 && ip.src == 192.168.133.74",
        "-T",
        "fields",
        "-e",
        "tcp.options.mss_val",
    ])
    .unwrap();
    assert!(mss.lines().count() >= 40, "SYN-ACKs from the VIP: {mss}");
    assert!(mss.lines().all(|l| l == "1410"), "MSS from the VIP: {mss}");
    let vm_link = dir.join("CCI_External.PortalVM.pcap");
    let clamped = tshark(&[
        "-r",
        vm_link.to_str().unwrap(),
        "-Y",
        "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.options.mss_val == 1410",
        "-T",
        "fields",
        "-e",
        "tcp.srcport",
    ])
    .unwrap();
    assert!(
        clamped.lines().count() >= 10,
        "clamped SYNs at PortalVM: {clamped}"
    );
    // BGP between MuxVM and BGPVM: the VIP announced, withdrawn when no DIP is healthy,
    // announced again, each UPDATE as tshark reads it.
    let management = dir.join("management.pcap");
    let bgp = tshark(&[
        "-r",
        management.to_str().unwrap(),
        "-Y",
        "bgp.type == 2",
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "bgp.nlri_prefix",
        "-e",
        "bgp.withdrawn_prefix",
    ])
    .unwrap();
    // Per sender: (announcements of the VIP, withdrawals of it, End-of-RIB markers).
    let mut seen: std::collections::BTreeMap<&str, (usize, usize, usize)> = Default::default();
    for line in bgp.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let entry = seen.entry(fields[0]).or_default();
        let list = |i: usize| -> Vec<&str> {
            fields
                .get(i)
                .map(|f| f.split(',').filter(|p| !p.is_empty()).collect())
                .unwrap_or_default()
        };
        let (nlri, withdrawn) = (list(1), list(2));
        let vips = ["192.168.133.74", "192.168.133.80", "192.168.133.90"];
        assert!(
            nlri.iter().chain(&withdrawn).all(|p| vips.contains(p)),
            "unexpected UPDATE {line}: {bgp}"
        );
        if nlri.contains(&"192.168.133.74") {
            entry.0 += 1;
        }
        if withdrawn.contains(&"192.168.133.74") {
            entry.1 += 1;
        }
        if nlri.is_empty() && withdrawn.is_empty() {
            entry.2 += 1;
        }
    }
    // Each Mux announces the VIP at every session start and after the withdrawal when no
    // DIP was healthy, and withdraws it once; BGPVM announces nothing, only End-of-RIB at
    // every session start. (The Muxes' End-of-RIB rides in the same segment as their
    // announcement.)
    for mux in ["192.168.100.20", "192.168.100.21"] {
        let (announced, withdrawn, _) = seen.get(mux).copied().unwrap_or_default();
        assert!(announced >= 3 && withdrawn == 1, "{mux}: {bgp}");
    }
    let (announced, withdrawn, end_of_rib) = seen.get("192.168.100.1").copied().unwrap_or_default();
    assert!(announced == 0 && withdrawn == 0 && end_of_rib >= 4, "{bgp}");
    let opens = tshark(&[
        "-r",
        management.to_str().unwrap(),
        "-Y",
        "bgp.type == 1",
        "-T",
        "fields",
        "-e",
        "bgp.open.myas",
    ])
    .unwrap();
    let mut asns: Vec<&str> = opens.lines().collect();
    asns.sort();
    // BGPVM and both Muxes open sessions (MuxVM again after its restart, once refused
    // while BGPVM was not listening yet).
    asns.dedup();
    assert_eq!(asns, ["64500", "64501"]);
    assert!(opens.lines().count() >= 6, "{opens}");
    // Outbound NAT. Between the hosts and BGPVM, the tenants' connections to the
    // Internet carry their VIP as source, never a DIP.
    let outbound = tshark(&[
        "-r",
        management.to_str().unwrap(),
        "-Y",
        // To the Internet host's servers (not the replies of NATVM's port forward).
        "ip.dst == 203.0.113.100 && tcp.dstport in {80, 8080, 8081}",
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "tcp.srcport",
    ])
    .unwrap();
    for vip in ["192.168.133.80\t", "192.168.133.90\t"] {
        assert!(
            outbound.contains(vip),
            "each tenant's connection: {outbound}"
        );
    }
    for line in outbound.lines() {
        let (src, port) = line.split_once('\t').unwrap();
        assert!(
            ["192.168.133.80", "192.168.133.90"].contains(&src),
            "a tenant's connection left its host as {src}: {outbound}"
        );
        assert!(port.parse::<u16>().unwrap() >= 1024, "{line}");
    }
    // The replies to the VIPs' ports come to the hosts in VXLAN, from a Mux.
    let returns = tshark(&[
        "-r",
        provider.to_str().unwrap(),
        "-Y",
        "vxlan && ip.src == 203.0.113.100",
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
        "-e",
        "vxlan.vni",
    ])
    .unwrap();
    assert!(returns.lines().count() >= 4, "{returns}");
    for line in returns.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (outer_src, inner_src) = f[0].split_once(',').unwrap();
        let (outer_dst, inner_dst) = f[1].split_once(',').unwrap();
        assert!(
            ["192.168.233.20", "192.168.233.22"].contains(&outer_src)
                && ["192.168.233.21", "192.168.233.23"].contains(&outer_dst),
            "from a Mux to a host: {line}"
        );
        assert_eq!(inner_src, "203.0.113.100");
        assert!(
            ["192.168.133.80", "192.168.133.90"].contains(&inner_dst),
            "{line}"
        );
        assert_eq!(f[2], "4096");
    }
    // Outside NATVM, the source is NATVM's external address.
    let external = dir.join("external.pcap");
    let outside = tshark(&[
        "-r",
        external.to_str().unwrap(),
        "-Y",
        "ip.dst == 203.0.113.100",
        "-T",
        "fields",
        "-e",
        "ip.src",
    ])
    .unwrap();
    assert!(outside.lines().count() >= 4, "{outside}");
    assert!(outside.lines().all(|l| l == "203.0.113.1"), "{outside}");
    for want in ["arp", "icmp", "tcp", "http", "dns", "vxlan", "bgp"] {
        assert!(
            protocols.contains(want),
            "no {want} in the captures: {protocols:?}"
        );
    }
}

/// Removes the captures when the test ends, passed or not.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
