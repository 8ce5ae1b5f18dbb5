//! The topology chart: its structure pinned by snapshots (DOT and Mermaid list every box,
//! edge and label), graphviz's acceptance of the DOT, and a drawing in which no two
//! boxes or labels overlap, for the POC lab and for a lab ten times its size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write;

use strata_lab::diagram::Graph;
use strata_lab::diagram::svg::{self, Layout, Overlay};
use strata_lab::{Clock, Lab};

fn booted(name: &str, text: &str) -> Lab {
    let topology = strata_lab::file::parse(name, text).expect("the lab file parses");
    let mut lab = Lab::new(topology, Clock::Virtual).expect("the lab starts");
    let (up, all) = lab.boot(strata_lab::BOOT_LIMIT);
    assert_eq!(up, all, "every BGP session comes up");
    lab
}

fn poc() -> Lab {
    booted(
        strata_lab::AZURE_STACK_POC_NAME,
        strata_lab::AZURE_STACK_POC,
    )
}

/// Every pair of boxes is apart or nested (a VM in its host); every label lies inside
/// one box or clear of all, and clear of every other label; no line runs through a box
/// it neither starts nor ends in.
fn assert_no_overlap(g: &Graph, l: &Layout) {
    for ((x1, y1), (x2, y2)) in l.segments() {
        let (lo_x, hi_x, lo_y, hi_y) = (x1.min(x2), x1.max(x2), y1.min(y2), y1.max(y2));
        for (n, r) in l.boxes.iter().enumerate() {
            let crosses = lo_x < r.x + r.w - 0.5
                && hi_x > r.x + 0.5
                && lo_y < r.y + r.h - 0.5
                && hi_y > r.y + 0.5;
            let inside = |x: f64, y: f64| {
                x >= r.x - 0.5 && x <= r.x + r.w + 0.5 && y >= r.y - 0.5 && y <= r.y + r.h + 0.5
            };
            assert!(
                !crosses || inside(x1, y1) || inside(x2, y2),
                "the line ({x1:.0},{y1:.0})-({x2:.0},{y2:.0}) runs through {}'s box",
                g.nodes[n].name
            );
        }
    }
    for (a, ra) in l.boxes.iter().enumerate() {
        assert!(ra.w > 0.0 && ra.h > 0.0, "{} has a box", g.nodes[a].name);
        for (b, rb) in l.boxes.iter().enumerate().skip(a + 1) {
            assert!(
                !ra.overlaps(rb) || ra.contains(rb) || rb.contains(ra),
                "boxes {} {ra:?} and {} {rb:?} overlap",
                g.nodes[a].name,
                g.nodes[b].name
            );
        }
    }
    for (i, x) in l.labels.iter().enumerate() {
        for y in &l.labels[i + 1..] {
            assert!(
                !x.rect.overlaps(&y.rect),
                "labels {:?} and {:?} overlap",
                x.text,
                y.text
            );
        }
        for (n, r) in l.boxes.iter().enumerate() {
            assert!(
                !x.rect.overlaps(r) || r.contains(&x.rect),
                "label {:?} crosses the edge of {}'s box",
                x.text,
                g.nodes[n].name
            );
        }
        assert!(
            x.rect.x + x.rect.w <= l.width && x.rect.y + x.rect.h <= l.height,
            "label {:?} lies outside the drawing",
            x.text
        );
    }
}

#[test]
fn the_poc_chart_has_every_network_node_session_and_vip() {
    let lab = poc();
    let g = Graph::of(&lab);
    insta::assert_snapshot!("poc_dot", g.dot());
    insta::assert_snapshot!("poc_mermaid", g.mermaid());

    // The drawing names every network with its prefix, every node, and every NIC.
    let svg = svg::render(&g, None);
    for text in [
        "management",
        "192.168.100.0/24",
        "CCI_External,",
        "192.168.200.0/24",
        "provider",
        "203.0.113.0/24",
        "vSwitch CCI_External (VFP)",
        "PAhostVNIC 192.168.233.21/24",
        "192.168.133.74/32",
        "announced by MuxVM, MuxVM2",
        "network controller, southbound :8081",
    ] {
        assert!(svg.contains(text), "the SVG shows {text:?}");
    }
    for node in &g.nodes {
        assert!(
            svg.contains(&format!("data-node=\"{}\"", node.name)),
            "{} is drawn",
            node.name
        );
    }
}

#[test]
fn the_poc_chart_overlaps_nothing_and_hosts_hold_their_vms() {
    let lab = poc();
    let g = Graph::of(&lab);
    let l = svg::layout(&g, None);
    assert_no_overlap(&g, &l);
    let host = g.nodes.iter().position(|n| n.name == "HyperVHost").unwrap();
    for vm in ["PortalVM", "PortalVM2"] {
        let v = g.nodes.iter().position(|n| n.name == vm).unwrap();
        assert!(
            l.boxes[host].contains(&l.boxes[v]),
            "{vm} is drawn in its host"
        );
    }
    // The world is at the top, the provider network at the bottom.
    let bus = |name: &str| {
        let i = g.networks.iter().position(|n| n.name == name).unwrap();
        let label = l
            .labels
            .iter()
            .find(|x| x.text == g.networks[i].name)
            .unwrap();
        label.rect.y
    };
    assert!(bus("external") < bus("nat-internal"));
    assert!(bus("nat-internal") < bus("management"));
    assert!(bus("management") < bus("provider"));
}

#[test]
fn a_trace_is_drawn_as_numbered_arrows() {
    let mut lab = poc();
    let portal = lab
        .topology()
        .scenarios
        .iter()
        .position(|s| s.name == "portal")
        .unwrap();
    let result = lab.run_scenario(portal);
    assert!(result.passed, "{:?}", result.failures);
    let g = Graph::of(&lab);
    let overlay = Overlay {
        request: &result.request,
        reply: &result.reply,
    };
    let l = svg::layout(&g, Some(overlay));
    assert_no_overlap(&g, &l);
    let svg = svg::render(&g, Some(overlay));
    let hops = result.request.len() + result.reply.len();
    assert!(hops >= 8, "the portal flow crosses at least 8 links");
    assert_eq!(
        svg.matches("class=\"hop\"").count(),
        hops,
        "one arrow per hop"
    );
    for k in 1..=hops {
        assert!(svg.contains(&format!(">{k}</text>")), "hop {k} is numbered");
    }
    assert!(
        svg.contains("MuxVM2 → HyperVHost on provider")
            || svg.contains("MuxVM → HyperVHost on provider")
    );
}

/// The POC lab with ten more hosts of eleven VMs each, and four more Muxes (without BGP
/// peers: BGPVM's neighbours are the POC's): 137 nodes.
fn ten_times() -> String {
    let mut text = strata_lab::AZURE_STACK_POC.to_string();
    for h in 0..10 {
        let _ = write!(
            text,
            "\n[[node]]\nname = \"Host{h}\"\nkind = \"host\"\n\
             [[node.nic]]\nname = \"vEthernet 1001\"\nnetwork = \"management\"\naddress = \"192.168.100.{}/24\"\n\
             [[node.nic]]\nname = \"PAhostVNIC\"\nnetwork = \"provider\"\naddress = \"192.168.233.{}/24\"\n\
             [node.vswitch]\nname = \"Switch{h}\"\nuplink = \"management\"\nprovider = \"provider\"\n",
            100 + h,
            100 + h
        );
        for v in 0..11 {
            let _ = write!(
                text,
                "\n[[node]]\nname = \"Tenant{h}VM{v}\"\n[[node.nic]]\nnetwork = \"management\"\n\
                 address = \"192.168.100.{}/24\"\nvswitch = \"Host{h}\"\n",
                110 + h * 11 + v
            );
        }
    }
    for m in 0..4 {
        let _ = write!(
            text,
            "\n[[node]]\nname = \"ExtraMux{m}\"\n[[node.nic]]\nnetwork = \"management\"\naddress = \"192.168.100.{}/24\"\n\
             [[node.nic]]\nnetwork = \"provider\"\naddress = \"192.168.233.{}/24\"\n[node.mux]\nprovider = \"provider\"\n[node.bgp]\nasn = 64501\n",
            30 + m,
            30 + m
        );
    }
    text
}

#[test]
fn a_lab_ten_times_larger_overlaps_nothing() {
    let lab = booted("ten-times.toml", &ten_times());
    let g = Graph::of(&lab);
    assert!(g.nodes.len() >= 130, "{} nodes", g.nodes.len());
    let l = svg::layout(&g, None);
    assert_no_overlap(&g, &l);
    // Hosts stack their VMs in rows, and the management band wraps into rows between
    // copies of its buses: the drawing stays about as wide as the POC's.
    assert!(
        l.width < 3200.0,
        "{} wide for {} nodes",
        l.width,
        g.nodes.len()
    );
    assert!(l.height < 2.0 * l.width, "{} high", l.height);
    let svg = svg::render(&g, None);
    assert!(svg.contains("management (cont.)") && svg.contains("provider (cont.)"));
}

#[test]
fn graphviz_accepts_the_dot() {
    let lab = poc();
    let dot = Graph::of(&lab).dot();
    let Some(result) =
        strata_testkit::pipe_through("dot", &["-Tsvg"], dot.as_bytes(), "STRATA_REQUIRE_GRAPHVIZ")
    else {
        return;
    };
    assert!(
        result.status.success(),
        "dot refused the graph: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let svg = String::from_utf8_lossy(&result.stdout);
    assert!(svg.contains("<svg") && svg.contains("HyperVHost"));
    assert!(
        result.stderr.is_empty(),
        "dot warned: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}
