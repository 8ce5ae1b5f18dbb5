//! One test per step of RFC 4271 9.1.2.2, each built so that the step named decides and
//! a process without that step (or with it in the wrong place) would choose otherwise.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::codec::{AsPath, AsSegment, Origin};

const US: u32 = 65000;

/// A path through `asns`, ORIGIN IGP, no MED, LOCAL_PREF 100.
fn path(asns: &[u32]) -> Path {
    Path {
        as_path: AsPath::sequence(asns.to_vec()),
        ..Path::local(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
    }
}

fn with(p: Path, f: impl FnOnce(&mut Path)) -> Path {
    let mut p = p;
    f(&mut p);
    p
}

/// A candidate from the neighbor whose BGP Identifier and address are both `id`.
fn from<'a>(p: &'a Path, external: bool, id: [u8; 4]) -> Candidate<'a> {
    Candidate {
        path: p,
        external,
        peer_id: Ipv4Addr::from(id),
        peer_address: IpAddr::V4(Ipv4Addr::from(id)),
    }
}

fn best(candidates: &[Candidate<'_>]) -> usize {
    select(candidates, &Rules::new(US)).unwrap().best
}

#[test]
fn no_path_no_selection_and_one_path_is_best_alone() {
    assert_eq!(select(&[], &Rules::new(US)), None);
    let p = path(&[65001]);
    let one = select(&[from(&p, true, [10, 0, 0, 1])], &Rules::new(US)).unwrap();
    assert_eq!((one.best, one.equal), (0, vec![]));
}

#[test]
fn a_highest_local_pref_of_internal_routes_wins_over_a_shorter_path() {
    let long = with(path(&[65001, 65002, 65003]), |p| p.local_pref = 200);
    let short = with(path(&[65001]), |p| p.local_pref = 100);
    // The long path's neighbor has the higher Identifier: only (a) can pick it.
    let c = [
        from(&short, false, [10, 0, 0, 1]),
        from(&long, false, [10, 0, 0, 2]),
    ];
    assert_eq!(best(&c), 1);
}

#[test]
fn a_local_pref_from_an_external_neighbor_is_ignored() {
    // An eBGP neighbor that sets LOCAL_PREF 1000 cannot win with a longer path.
    let greedy = with(path(&[65001, 65009]), |p| p.local_pref = 1000);
    let honest = path(&[65002]);
    let c = [
        from(&greedy, true, [10, 0, 0, 1]),
        from(&honest, true, [10, 0, 0, 2]),
    ];
    assert_eq!(best(&c), 1);
}

#[test]
fn a_external_routes_get_the_preference_our_policy_gives_them() {
    let internal = with(path(&[65001, 65002]), |p| p.local_pref = 150);
    let external = path(&[65003]);
    let c = [
        from(&internal, false, [10, 0, 0, 1]),
        from(&external, true, [10, 0, 0, 2]),
    ];
    assert_eq!(best(&c), 0, "150 beats the default 100");
    let rules = Rules {
        external_preference: 200,
        ..Rules::new(US)
    };
    assert_eq!(select(&c, &rules).unwrap().best, 1);
}

#[test]
fn b_shortest_as_path_wins_and_an_as_set_counts_as_one() {
    let three = path(&[65001, 65002, 65003]);
    let set = AsPath {
        segments: vec![
            AsSegment {
                set: false,
                asns: vec![65004],
            },
            AsSegment {
                set: true,
                asns: vec![1, 2, 3, 4],
            },
        ],
    };
    let two = Path {
        as_path: set,
        // Worse in every later step.
        origin: Origin::Incomplete,
        ..path(&[])
    };
    let c = [
        from(&three, true, [10, 0, 0, 1]),
        from(&two, true, [10, 0, 0, 2]),
    ];
    assert_eq!(best(&c), 1);
}

#[test]
fn c_lowest_origin_wins() {
    let incomplete = with(path(&[65001]), |p| p.origin = Origin::Incomplete);
    let egp = with(path(&[65001]), |p| {
        p.origin = Origin::Egp;
        p.med = Some(100);
    });
    let igp = with(path(&[65001]), |p| p.med = Some(200));
    let c = [
        from(&incomplete, true, [10, 0, 0, 1]),
        from(&igp, true, [10, 0, 0, 3]),
        from(&egp, true, [10, 0, 0, 2]),
    ];
    assert_eq!(best(&c), 1);
    assert_eq!(best(&c[..1]), 0);
    assert_eq!(best(&[c[0], c[2]]), 1, "EGP before INCOMPLETE");
}

#[test]
fn d_lowest_med_wins_between_paths_from_one_neighboring_as() {
    let high = with(path(&[65001]), |p| p.med = Some(10));
    let low = with(path(&[65001]), |p| p.med = Some(5));
    let c = [
        from(&high, true, [10, 0, 0, 1]),
        from(&low, true, [10, 0, 0, 2]),
    ];
    assert_eq!(best(&c), 1);
}

#[test]
fn d_med_is_not_compared_between_neighboring_ases() {
    let a = with(path(&[65001]), |p| p.med = Some(50));
    let b = with(path(&[65002]), |p| p.med = Some(5));
    let c = [from(&a, true, [10, 0, 0, 1]), from(&b, true, [10, 0, 0, 2])];
    let s = select(&c, &Rules::new(US)).unwrap();
    assert_eq!((s.best, s.equal), (0, vec![1]), "decided by the Identifier");
    let always = Rules {
        always_compare_med: true,
        ..Rules::new(US)
    };
    let s = select(&c, &always).unwrap();
    assert_eq!((s.best, s.equal), (1, vec![]));
}

#[test]
fn d_a_missing_med_is_the_lowest() {
    let none = path(&[65001]);
    let one = with(path(&[65001]), |p| p.med = Some(1));
    let c = [
        from(&one, true, [10, 0, 0, 1]),
        from(&none, true, [10, 0, 0, 2]),
    ];
    assert_eq!(best(&c), 1);
}

#[test]
fn d_med_removes_paths_pairwise_not_as_a_sort() {
    // A beats B within AS 65001; C, from AS 65002, is compared with neither. Left: A
    // and C, and C's neighbor has the lower Identifier. (Sorting by MED would pick A.)
    let a = with(path(&[65001]), |p| p.med = Some(10));
    let b = with(path(&[65001]), |p| p.med = Some(20));
    let c_ = with(path(&[65002]), |p| p.med = Some(15));
    let c = [
        from(&a, true, [10, 0, 0, 3]),
        from(&b, true, [10, 0, 0, 1]),
        from(&c_, true, [10, 0, 0, 2]),
    ];
    let s = select(&c, &Rules::new(US)).unwrap();
    assert_eq!((s.best, s.equal), (2, vec![0]));
}

#[test]
fn d_paths_originated_in_our_as_share_our_as_as_their_neighbor() {
    // Internal routes with an empty AS_PATH, and one starting with an AS_SET (an
    // aggregate made inside the AS), all come from the local AS: their MEDs compare.
    let empty = with(path(&[]), |p| p.med = Some(10));
    let aggregate = Path {
        as_path: AsPath {
            segments: vec![AsSegment {
                set: true,
                asns: vec![65001],
            }],
        },
        med: Some(5),
        ..path(&[])
    };
    let lower = with(path(&[]), |p| p.med = Some(7));
    let c = [
        from(&empty, false, [10, 0, 0, 1]),
        from(&lower, false, [10, 0, 0, 2]),
    ];
    assert_eq!(best(&c), 1);
    // An AS_SET counts one in (b): compare it with a one-AS internal path of AS US.
    let us = with(path(&[US]), |p| p.med = Some(9));
    let c = [
        from(&us, false, [10, 0, 0, 1]),
        from(&aggregate, false, [10, 0, 0, 2]),
    ];
    assert_eq!(
        best(&c),
        1,
        "AS {US} and the set's origin are one neighbor AS"
    );
}

#[test]
fn e_external_wins_over_internal() {
    let internal = path(&[65001]);
    let external = path(&[65001]);
    let c = [
        from(&internal, false, [10, 0, 0, 1]),
        from(&external, true, [10, 0, 0, 2]),
    ];
    let s = select(&c, &Rules::new(US)).unwrap();
    assert_eq!((s.best, s.equal), (1, vec![]));
}

#[test]
fn g_lowest_bgp_identifier_wins_compared_as_a_number() {
    let a = path(&[65001]);
    let b = path(&[65002]);
    let c = [
        from(&a, true, [10, 0, 0, 2]),
        from(&b, true, [9, 255, 255, 255]),
    ];
    assert_eq!(best(&c), 1);
}

#[test]
fn h_lowest_neighbor_address_breaks_a_tie_of_identifiers() {
    // Two sessions with one router.
    let a = path(&[65001]);
    let b = path(&[65001]);
    let mut c = [from(&a, true, [10, 0, 0, 9]), from(&b, true, [10, 0, 0, 9])];
    c[0].peer_address = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2));
    c[1].peer_address = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
    assert_eq!(best(&c), 1);
}

#[test]
fn multipath_is_what_ties_through_step_f() {
    let a = path(&[65001]);
    let b = path(&[65001]);
    let longer = path(&[65001, 65002]);
    let internal = path(&[65001]);
    let c = [
        from(&a, true, [10, 0, 0, 2]),
        from(&longer, true, [10, 0, 0, 0]),
        from(&b, true, [10, 0, 0, 1]),
        from(&internal, false, [10, 0, 0, 3]),
    ];
    let s = select(&c, &Rules::new(US)).unwrap();
    assert_eq!((s.best, s.equal), (2, vec![0]));
}
