//! Lab file errors: each names file:line:column and what was expected.

use super::*;

const BASE: &str = r#"
[lab]
name = "t"

[[network]]
name = "lan"
prefix = "10.0.0.0/24"

[[node]]
name = "a"
[[node.nic]]
network = "lan"
address = "10.0.0.1/24"

[[node]]
name = "b"
[[node.nic]]
network = "lan"
address = "10.0.0.2/24"
"#;

fn error(extra: &str) -> LabFileError {
    let text = format!("{BASE}{extra}");
    match parse("t.toml", &text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

/// The line of `needle` in BASE + extra, 1-based.
fn line_of(extra: &str, needle: &str) -> usize {
    let text = format!("{BASE}{extra}");
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

#[test]
fn base_is_valid() {
    let t = parse("t.toml", BASE).unwrap();
    assert_eq!(t.nodes.len(), 2);
    assert_eq!(t.networks[0].prefix.to_string(), "10.0.0.0/24");
}

#[test]
fn toml_syntax_error_has_position() {
    let extra = "\n[[node]\nname = 1\n";
    let e = error(extra);
    assert_eq!(e.file, "t.toml");
    assert_eq!(e.line, BASE.lines().count() + 2, "{e}");
    assert!(
        e.to_string().starts_with(&format!("t.toml:{}:", e.line)),
        "{e}"
    );
}

#[test]
fn unknown_field_is_named() {
    let extra =
        "\n[[scenario]]\nname = \"s\"\nfrom = \"a\"\nping = \"10.0.0.2\"\ncolour = \"red\"\n";
    let e = error(extra);
    assert!(e.message.contains("colour"), "{e}");
    assert_eq!(e.line, line_of(extra, "colour"));
}

#[test]
fn unknown_node_in_scenario() {
    let extra = "\n[[scenario]]\nname = \"s\"\nfrom = \"nobody\"\nping = \"10.0.0.2\"\n";
    let e = error(extra);
    assert_eq!(e.line, line_of(extra, "nobody"));
    assert_eq!(e.column, 8, "points at the value");
    assert!(e.message.contains("unknown node \"nobody\""), "{e}");
    assert!(e.message.contains("nodes: a, b"), "{e}");
}

#[test]
fn nic_on_missing_network() {
    let extra =
        "\n[[node]]\nname = \"c\"\n[[node.nic]]\nnetwork = \"wan\"\naddress = \"10.0.1.1/24\"\n";
    let e = error(extra);
    assert_eq!(e.line, line_of(extra, "\"wan\""));
    assert!(e.message.contains("does not exist"), "{e}");
}

#[test]
fn duplicate_address() {
    let extra =
        "\n[[node]]\nname = \"c\"\n[[node.nic]]\nnetwork = \"lan\"\naddress = \"10.0.0.2/24\"\n";
    let e = error(extra);
    assert_eq!(e.line, BASE.lines().count() + 6, "{e}");
    assert!(e.message.contains("duplicate address 10.0.0.2"), "{e}");
    assert!(e.message.contains("\"b\""), "{e}");
}

#[test]
fn overlapping_networks() {
    let extra = "\n[[network]]\nname = \"wide\"\nprefix = \"10.0.0.0/16\"\n";
    let e = error(extra);
    assert_eq!(e.line, line_of(extra, "10.0.0.0/16"));
    assert!(e.message.contains("overlaps network \"lan\""), "{e}");
}

#[test]
fn address_off_its_network() {
    let extra =
        "\n[[node]]\nname = \"c\"\n[[node.nic]]\nnetwork = \"lan\"\naddress = \"10.9.9.9/24\"\n";
    let e = error(extra);
    assert!(e.message.contains("is not on network \"lan\""), "{e}");
}

#[test]
fn unreachable_next_hop() {
    let extra = "\n[[node]]\nname = \"c\"\n[[node.nic]]\nnetwork = \"lan\"\naddress = \"10.0.0.3/24\"\n[[node.route]]\nprefix = \"0.0.0.0/0\"\nvia = \"192.0.2.1\"\n";
    let e = error(extra);
    assert_eq!(e.line, line_of(extra, "192.0.2.1"));
    assert!(e.message.contains("next hop 192.0.2.1"), "{e}");
    assert!(e.message.contains("unreachable"), "{e}");
}

#[test]
fn bad_address_syntax_and_bad_kind() {
    let extra =
        "\n[[node]]\nname = \"c\"\n[[node.nic]]\nnetwork = \"lan\"\naddress = \"10.0.0.300/24\"\n";
    let e = error(extra);
    assert!(e.message.contains("expected the NIC's address"), "{e}");
    let extra = "\n[[node]]\nname = \"c\"\nkind = \"toaster\"\n[[node.nic]]\nnetwork = \"lan\"\naddress = \"10.0.0.3/24\"\n";
    let e = error(extra);
    assert_eq!(e.line, line_of(extra, "toaster"));
    assert!(e.message.contains("toaster"), "{e}");
}

#[test]
fn duplicate_node() {
    let extra =
        "\n[[node]]\nname = \"a\"\n[[node.nic]]\nnetwork = \"lan\"\naddress = \"10.0.0.3/24\"\n";
    let e = error(extra);
    assert!(e.message.contains("duplicate node \"a\""), "{e}");
}

#[test]
fn the_poc_lab_parses() {
    let t = parse(crate::AZURE_STACK_POC_NAME, crate::AZURE_STACK_POC).unwrap();
    let host = &t.nodes[t.node("HyperVHost").unwrap()];
    assert!(
        host.nics
            .iter()
            .any(|n| n.name == "PAhostVNIC" && n.addr.addr().to_string() == "192.168.233.21")
    );
    assert!(host.nics.iter().any(|n| n.name == "vEthernet 1001"));
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse("x.toml", &text);
    }

    #[test]
    fn mutated_poc_never_panics(cut in 0usize..12_000, junk in "[\\[\\]=\"a-z0-9./ \n]{0,8}") {
        let base = crate::AZURE_STACK_POC;
        let at = base.floor_char_boundary(cut.min(base.len()));
        let text = format!("{}{junk}{}", &base[..at], &base[at..]);
        let _ = parse("x.toml", &text);
    }
}

/// The POC lab with one line replaced.
fn poc_with(from: &str, to: &str) -> Result<Topology, LabFileError> {
    let text = crate::AZURE_STACK_POC;
    assert!(text.contains(from), "{from}");
    parse("poc.toml", &text.replacen(from, to, 1))
}

fn poc_line(needle: &str) -> usize {
    crate::AZURE_STACK_POC
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

#[test]
fn the_controller_and_the_vip_prefix_are_checked_with_their_lines() {
    // A VIP outside vipPrefix.
    let e = poc_with(
        "vipPrefix = \"192.168.133.0/24\"",
        "vipPrefix = \"192.168.134.0/24\"",
    )
    .unwrap_err();
    assert_eq!(
        e.line,
        poc_line("privateIPAddress = \"192.168.133.74\""),
        "{e}"
    );
    assert!(e.to_string().contains("not an address of vipPrefix"), "{e}");
    // A prefix with no room.
    let e = poc_with(
        "vipPrefix = \"192.168.133.0/24\"",
        "vipPrefix = \"192.168.133.74/31\"",
    )
    .unwrap_err();
    assert!(e.to_string().contains("has no room for VIPs"), "{e}");
    // A VNI the controller would not use.
    let e = poc_with("vni = 4096", "vni = 5000").unwrap_err();
    assert_eq!(e.line, poc_line("vni = 4096"), "{e}");
    // Muxes and no controller.
    let e = poc_with("[node.controller]\nsouthbound_port = 8081\n", "").unwrap_err();
    // The first Mux's provider line, two lines up once the controller's are gone.
    assert_eq!(e.line, poc_line("provider = \"provider\"") - 2, "{e}");
    assert!(
        e.to_string().contains("no node has [node.controller]"),
        "{e}"
    );
    // Two controllers.
    let e = poc_with(
        "[node.mux]\nprovider = \"provider\"\n",
        "[node.mux]\nprovider = \"provider\"\n[node.controller]\n",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("NCVM already runs the network controller"),
        "{e}"
    );
    // Port 0.
    let e = poc_with("southbound_port = 8081", "southbound_port = 0").unwrap_err();
    assert!(e.to_string().contains("southbound_port 0"), "{e}");
    // And as it is, the controller is on NCVM, port 8081.
    let t = poc_with("", "").unwrap();
    let nc = t.nodes.iter().find(|n| n.controller.is_some()).unwrap();
    assert_eq!(nc.name, "NCVM");
    assert_eq!(nc.controller.as_ref().unwrap().southbound_port, 8081);
}

#[test]
fn discard_routes_need_a_type_and_no_next_hop() {
    let route = |body: &str| format!("[[node.route]]\nprefix = \"10.9.0.0/16\"\n{body}");
    let t = parse(
        "t.toml",
        &format!("{BASE}{}", route("type = \"reject\"\nnote = \"pool\"\n")),
    )
    .unwrap();
    let r = &t.nodes[1].routes[0];
    assert_eq!((r.via, r.kind), (None, RouteKind::Reject));
    let t = parse(
        "t.toml",
        &format!("{BASE}{}", route("type = \"blackhole\"\n")),
    )
    .unwrap();
    assert_eq!(t.nodes[1].routes[0].kind, RouteKind::Blackhole);

    let extra = route("type = \"drop\"\n");
    let e = error(&extra);
    assert_eq!(e.line, line_of(&extra, "type = \"drop\""), "{e}");
    assert!(
        e.to_string().contains(
            "expected the route's type to be \"blackhole\" or \"reject\", found \"drop\""
        ),
        "{e}"
    );
    let extra = route("via = \"10.0.0.1\"\ntype = \"reject\"\n");
    let e = error(&extra);
    assert!(
        e.to_string()
            .contains("has both a next hop (via) and a type"),
        "{e}"
    );
    let extra = route("note = \"nothing else\"\n");
    let e = error(&extra);
    assert_eq!(e.line, line_of(&extra, "prefix = \"10.9.0.0/16\""), "{e}");
    assert!(
        e.to_string()
            .contains("needs a next hop (via = \"ADDRESS\") or a type"),
        "{e}"
    );
}

#[test]
fn bgp_neighbors_are_checked_against_the_nodes_they_name() {
    let neighbor = "address = \"192.168.100.21\"\nasn = 64501\npassive = true\nhold_time = 30";
    // The AS said of MuxVM2 is not its own.
    let e = poc_with(
        neighbor,
        "address = \"192.168.100.21\"\nasn = 64599\npassive = true\nhold_time = 30",
    )
    .unwrap_err();
    let text = crate::AZURE_STACK_POC.replacen(
        neighbor,
        "address = \"192.168.100.21\"\nasn = 64599\npassive = true\nhold_time = 30",
        1,
    );
    let line = text.lines().position(|l| l == "asn = 64599").unwrap() + 1;
    assert_eq!(e.line, line, "{e}");
    assert!(
        e.to_string().contains(
            "BGP neighbor 192.168.100.21 is \"MuxVM2\", whose [node.bgp] asn is 64501, not 64599"
        ),
        "{e}"
    );
    // A node that speaks no BGP, and an address no node has.
    let e = poc_with(
        neighbor,
        "address = \"192.168.100.3\"\nasn = 64501\npassive = true\nhold_time = 30",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("BGP neighbor 192.168.100.3 is \"ADVM\", which has no [node.bgp]"),
        "{e}"
    );
    let e = poc_with(
        neighbor,
        "address = \"192.168.100.99\"\nasn = 64501\npassive = true\nhold_time = 30",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("is the address of no node in this lab"),
        "{e}"
    );
}

#[test]
fn vips_are_not_addresses_of_a_lab_network() {
    let e = poc_with(
        "vipPrefix = \"192.168.133.0/24\"",
        "vipPrefix = \"192.168.0.0/16\"",
    )
    .unwrap_err();
    assert_eq!(e.line, poc_line("vipPrefix = "), "{e}");
    assert!(
        e.to_string().contains(
            "vipPrefix 192.168.0.0/16 overlaps network \"management\" (192.168.100.0/24)"
        ),
        "{e}"
    );
}

#[test]
fn templates_stamp_out_nodes_with_their_own_values() {
    let extra = r#"
[[node]]
copies = 3
name = "vm{i}"
description = "VM {i} of 3, {{templated}}"
[[node.nic]]
network = "lan"
address = "10.0.0.{10 + i * 2}/24"
"#;
    let t = parse("t.toml", &format!("{BASE}{extra}")).unwrap();
    let names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "vm1", "vm2", "vm3"]);
    assert_eq!(t.nodes[4].nics[0].addr.to_string(), "10.0.0.16/24");
    assert_eq!(t.nodes[3].description, "VM 2 of 3, {templated}");
}

#[test]
fn a_template_error_names_the_templates_line() {
    // The second copy has the first one's address: the template's address line says.
    let extra = "\n[[node]]\ncopies = 3\nname = \"vm{i}\"\n[[node.nic]]\nnetwork = \"lan\"\naddress = \"10.0.{i / 3}.5/24\"\n";
    let e = error(extra);
    assert_eq!(e.line, line_of(extra, "address = \"10.0.{i"), "{e}");
    assert!(
        e.message.contains("duplicate address 10.0.0.5: \"vm1\""),
        "{e}"
    );
    for (bad, what) in [
        (
            "copies = 0",
            "expected copies as an integer from 1 to 100000",
        ),
        ("copies = \"3\"", "expected copies as an integer"),
        ("copies = 2\nname = \"vm{j}\"", "expected i, integers"),
        ("copies = 2\nname = \"vm{i\"", "without its '}'"),
        (
            "copies = 2\nname = \"vm{1..=2}\"",
            "only in an array of strings",
        ),
    ] {
        let extra = format!(
            "\n[[node]]\n{bad}\n[[node.nic]]\nnetwork = \"lan\"\naddress = \"10.0.0.9/24\"\n"
        );
        let e = error(&extra);
        assert!(e.message.contains(what), "{bad}: {e}");
        let needle = bad.lines().last().unwrap();
        assert_eq!(e.line, line_of(&extra, needle), "{bad}: {e}");
    }
}

#[test]
fn the_datacenter_lab_is_stamped_from_templates() {
    let text = include_str!("../../../../labs/datacenter.toml");
    let t = parse("labs/datacenter.toml", text).unwrap();
    let hosts = t.nodes.iter().filter(|n| n.vswitch.is_some()).count();
    let vms = t.nodes.iter().filter(|n| n.name.starts_with("VM")).count();
    let muxes = t.nodes.iter().filter(|n| n.mux.is_some()).count();
    assert_eq!((hosts, vms, muxes), (100, 2000, 8));
    let slb = t.slb.as_ref().unwrap();
    assert_eq!(slb.load_balancers.len(), 100);
    assert_eq!(slb.outbound.len(), 100);
    assert!(slb.outbound.iter().all(|o| o.members.len() == 20));
    // VM 2000 is tenant 100's last, on host 100.
    let vm = t.nodes.iter().find(|n| n.name == "VM2000").unwrap();
    assert_eq!(vm.nics[0].addr.to_string(), "10.0.17.250/16");
    assert_eq!(t.nodes[vm.nics[0].vswitch_host.unwrap()].name, "Host100");
}
