//! Table tests for the controller plan, a two-round convergence check, and a proptest that
//! arbitrary snapshots never panic.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;
use rstest::rstest;

use super::*;
use crate::api::{
    GatewayPoolSpec, GatewayPoolType, NodeBlockSizes, PodCidrAssignment,
    SiteGatewayPoolAssignmentSpec, SiteSpec,
};

const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn site(node_cidr: &str, pool: &str) -> SiteSpec {
    SiteSpec {
        node_cidrs: vec![node_cidr.into()],
        pod_cidr_assignments: vec![PodCidrAssignment {
            cidr_blocks: vec![pool.into()],
            node_block_sizes: Some(NodeBlockSizes {
                ipv4: Some(24),
                ipv6: None,
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn node(name: &str, ip: &str) -> NodeFacts {
    NodeFacts {
        name: name.into(),
        internal_ips: vec![ip.parse().unwrap()],
        ..Default::default()
    }
}

fn snapshot(nodes: &[(&str, &str)]) -> Snapshot {
    let mut s = Snapshot::default();
    s.sites
        .insert("east".into(), site("10.1.0.0/16", "100.64.0.0/22"));
    s.sites
        .insert("west".into(), site("10.2.0.0/16", "100.65.0.0/16"));
    for (name, ip) in nodes {
        s.nodes.insert(name.to_string(), node(name, ip));
    }
    s
}

fn plan(s: &Snapshot) -> ControllerPlan {
    plan_controller(s, &BTreeMap::new(), PlanSettings::default())
}

/// Applies the plan's node writes and slice writes, as the shell would.
fn apply(s: &mut Snapshot, slices: &mut BTreeMap<String, SiteNodeSliceSpec>, p: &ControllerPlan) {
    for (n, site) in &p.site_labels {
        s.nodes.get_mut(n).unwrap().site_label = Some(site.clone());
    }
    for (n, cidrs) in &p.pod_cidrs {
        s.nodes.get_mut(n).unwrap().pod_cidrs = cidrs.clone();
    }
    for d in &p.slices.deletes {
        slices.remove(d);
    }
    for u in &p.slices.upserts {
        slices.insert(u.clone(), p.slices.desired[u].clone());
    }
}

#[test]
fn new_nodes_get_label_cidrs_and_slices() {
    let s = snapshot(&[("e1", "10.1.0.1"), ("e2", "10.1.0.2"), ("w1", "10.2.0.1")]);
    let p = plan(&s);
    assert_eq!(p.site_labels["e1"], "east");
    assert_eq!(p.site_labels["w1"], "west");
    assert_eq!(
        p.pod_cidrs["e1"],
        vec!["100.64.0.0/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        p.pod_cidrs["e2"],
        vec!["100.64.1.0/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        p.pod_cidrs["w1"],
        vec!["100.65.0.0/24".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        p.slices.upserts,
        vec!["east-0".to_string(), "west-0".to_string()]
    );
    let east = &p.slices.desired["east-0"];
    assert_eq!(east.nodes.len(), 2);
    assert_eq!(east.nodes[0].pod_cidrs, vec!["100.64.0.0/24".to_string()]);
    let st = &p.site_status["east"];
    assert_eq!((st.node_count, st.slice_count), (2, 1));
    assert_eq!(st.pools[0].allocated, 2);
    assert_eq!(st.pools[0].capacity, 4);
    assert!(st.condition(CONDITION_READY).unwrap().status);
    assert!(p.events.iter().any(|e| e.reason == "PodCIDRAllocated"));
}

#[test]
fn converges_and_never_changes_a_nodes_blocks() {
    let mut s = snapshot(&[("e1", "10.1.0.1"), ("w1", "10.2.0.1")]);
    let mut slices = BTreeMap::new();
    let first = plan_controller(&s, &slices, PlanSettings::default());
    apply(&mut s, &mut slices, &first);
    let second = plan_controller(&s, &slices, PlanSettings::default());
    assert!(second.site_labels.is_empty());
    assert!(second.pod_cidrs.is_empty());
    assert!(second.slices.is_empty(), "{:?}", second.slices);
    // A node joins: exactly one label, one allocation, one slice write; others untouched.
    s.nodes.insert("e2".into(), node("e2", "10.1.0.9"));
    let third = plan_controller(&s, &slices, PlanSettings::default());
    assert_eq!(third.site_labels.len(), 1);
    assert_eq!(third.pod_cidrs.keys().collect::<Vec<_>>(), vec!["e2"]);
    assert_eq!(third.slices.upserts, vec!["east-0".to_string()]);
    assert_ne!(third.pod_cidrs["e2"], s.nodes["e1"].pod_cidrs);
}

#[test]
fn deterministic() {
    let s = snapshot(&[("e1", "10.1.0.1"), ("x", "9.9.9.9"), ("w1", "10.2.0.1")]);
    assert_eq!(plan(&s), plan(&s));
}

/// Expected (Ready, PoolExhausted, Conflict) statuses of Site `east` and Ready's reason.
#[rstest]
#[case::healthy(Tweak::None, (true, false, false), "Reconciled")]
#[case::exhausted(Tweak::FillEast, (false, true, false), "PoolExhausted")]
#[case::overlapping_sites(Tweak::OverlapWest, (false, false, true), "Conflict")]
#[case::invalid_regex(Tweak::BadRegex, (false, false, false), "InvalidSpec")]
#[case::invalid_node_cidr(Tweak::BadNodeCidr, (false, false, false), "InvalidSpec")]
#[case::overlapping_pools(Tweak::OverlapPools, (false, false, true), "Conflict")]
fn site_conditions(#[case] tweak: Tweak, #[case] want: (bool, bool, bool), #[case] reason: &str) {
    let mut s = snapshot(&[("e1", "10.1.0.1"), ("e2", "10.1.0.2")]);
    match tweak {
        Tweak::None => {}
        Tweak::FillEast => {
            for i in 3..8 {
                let n = format!("e{i}");
                s.nodes.insert(n.clone(), node(&n, &format!("10.1.0.{i}")));
            }
        }
        Tweak::OverlapWest => s
            .sites
            .get_mut("west")
            .unwrap()
            .node_cidrs
            .push("10.1.0.0/16".into()),
        Tweak::BadRegex => {
            s.sites.get_mut("east").unwrap().pod_cidr_assignments[0].node_regex = vec!["[".into()]
        }
        Tweak::BadNodeCidr => s
            .sites
            .get_mut("east")
            .unwrap()
            .node_cidrs
            .push("10.1.0.0/40".into()),
        Tweak::OverlapPools => {
            s.sites.get_mut("west").unwrap().pod_cidr_assignments[0].cidr_blocks =
                vec!["100.64.0.0/16".into()]
        }
    }
    let p = plan(&s);
    let st = &p.site_status["east"];
    let status = |t| st.condition(t).unwrap().status;
    assert_eq!(
        (
            status(CONDITION_READY),
            status(CONDITION_POOL_EXHAUSTED),
            status(CONDITION_CONFLICT)
        ),
        want,
        "{st:?}"
    );
    assert_eq!(st.condition(CONDITION_READY).unwrap().reason, reason);
    if want.2 {
        assert!(!st.condition(CONDITION_CONFLICT).unwrap().message.is_empty());
    }
}

#[derive(Debug, Clone, Copy)]
enum Tweak {
    None,
    FillEast,
    OverlapWest,
    BadRegex,
    BadNodeCidr,
    OverlapPools,
}

#[rstest]
#[case::unmatched("9.9.9.9", None, "NoMatchingSite")]
#[case::conflict("10.3.0.1", None, "SiteConflict")]
#[case::already_labelled_right("10.1.0.1", Some("east"), "PodCIDRAllocated")]
#[case::mislabelled("10.1.0.1", Some("west"), "SiteAssigned")]
fn node_outcomes(#[case] ip: &str, #[case] label: Option<&str>, #[case] reason: &str) {
    let mut s = snapshot(&[]);
    s.sites
        .insert("a".into(), site("10.3.0.0/16", "100.80.0.0/16"));
    s.sites
        .insert("b".into(), site("10.3.0.0/16", "100.81.0.0/16"));
    let mut n = node("n", ip);
    n.site_label = label.map(str::to_string);
    s.nodes.insert("n".into(), n);
    let p = plan(&s);
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == reason && e.regarding == ObjectRef::node("n")),
        "{:?}",
        p.events
    );
    let assigned = p.assignment.nodes["n"].site().is_some();
    assert_eq!(p.pod_cidrs.contains_key("n"), assigned);
    assert_eq!(
        p.site_labels.contains_key("n"),
        assigned && label != Some("east")
    );
}

#[test]
fn node_with_unparseable_pod_cidr_is_never_written() {
    let mut s = snapshot(&[]);
    let mut n = node("n", "10.1.0.1");
    n.problems.push(NodeProblem::MalformedPodCidr {
        node: "n".into(),
        value: "garbage".into(),
    });
    s.nodes.insert("n".into(), n);
    let p = plan(&s);
    assert!(p.pod_cidrs.is_empty());
    assert!(p.events.iter().any(|e| e.reason == "MalformedNode"));
}

#[test]
fn gateway_pool_status_lists_members() {
    let mut s = snapshot(&[("gw", "10.1.0.1")]);
    let gw = s.nodes.get_mut("gw").unwrap();
    gw.labels.insert("gateway".into(), "true".into());
    gw.wg_public_key = Some(KEY.into());
    gw.external_ips = vec!["203.0.113.1".parse::<IpAddr>().unwrap()];
    s.gateway_pools.insert(
        "edge".into(),
        GatewayPoolSpec {
            pool_type: GatewayPoolType::External,
            node_selector: BTreeMap::from([("gateway".into(), "true".into())]),
            ..Default::default()
        },
    );
    s.assignments.insert(
        "east-edge".into(),
        SiteGatewayPoolAssignmentSpec {
            sites: vec!["east".into(), "missing".into()],
            gateway_pools: vec!["edge".into()],
            ..Default::default()
        },
    );
    let p = plan(&s);
    let st = &p.gateway_pool_status["edge"];
    assert_eq!(st.nodes.len(), 1);
    assert_eq!(st.nodes[0].name, "gw");
    // The block allocated in this very round is already published.
    assert_eq!(st.nodes[0].pod_cidrs, vec!["100.64.0.0/24".to_string()]);
    assert!(
        p.plan_problems
            .iter()
            .any(|pr| matches!(pr, PlanProblem::UnknownSite { site, .. } if site == "missing"))
    );
}

fn garbage_cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..4, 8u8..=33).prop_map(|(b, l)| format!("10.{b}.0.0/{l}")),
        (0u8..3, 40u8..=130).prop_map(|(b, l)| format!("fd00:{b}::/{l}")),
        Just("not-a-cidr".to_string()),
        Just("".to_string()),
        Just("0.0.0.0/0".to_string()),
        Just("::/0".to_string()),
        Just("10.0.0.1".to_string()),
    ]
}

fn arb_site() -> impl Strategy<Value = SiteSpec> {
    (
        prop::collection::vec(garbage_cidr(), 0..3),
        prop::collection::vec(
            (
                prop::collection::vec(garbage_cidr(), 0..3),
                prop::option::of(0u8..=130),
                prop::option::of(0u8..=130),
                prop::collection::vec(prop::sample::select(vec!["^n1", "(", "x*", ".*"]), 0..2),
                prop::option::of(any::<i32>()),
                prop::option::of(any::<bool>()),
            ),
            0..3,
        ),
    )
        .prop_map(|(node_cidrs, pcas)| SiteSpec {
            node_cidrs,
            pod_cidr_assignments: pcas
                .into_iter()
                .map(
                    |(cidr_blocks, v4, v6, regex, priority, enabled)| PodCidrAssignment {
                        cidr_blocks,
                        node_block_sizes: Some(NodeBlockSizes { ipv4: v4, ipv6: v6 }),
                        node_regex: regex.into_iter().map(str::to_string).collect(),
                        priority,
                        assignment_enabled: enabled,
                    },
                )
                .collect(),
            ..Default::default()
        })
}

fn arb_node() -> impl Strategy<Value = NodeFacts> {
    (
        prop::collection::vec(
            any::<[u8; 4]>().prop_map(|b| IpAddr::from([10, b[1] % 4, b[2], b[3]])),
            0..3,
        ),
        prop::collection::vec(
            garbage_cidr().prop_filter_map("cidr", |c| c.parse::<IpNet>().ok()),
            0..2,
        ),
        prop::option::of(prop::sample::select(vec!["s0", "s1", "gone"])),
        any::<bool>(),
    )
        .prop_map(|(internal_ips, pod_cidrs, label, malformed)| NodeFacts {
            internal_ips,
            pod_cidrs,
            site_label: label.map(str::to_string),
            problems: if malformed {
                vec![NodeProblem::MalformedAddress {
                    node: String::new(),
                    value: "x".into(),
                }]
            } else {
                vec![]
            },
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Arbitrary snapshots (garbage CIDRs, overlapping Sites, missing references, malformed
    /// nodes) never panic, give the same plan twice, and never hand out overlapping blocks.
    #[test]
    fn arbitrary_snapshots_never_panic(
        sites in prop::collection::vec(arb_site(), 0..3),
        nodes in prop::collection::vec(arb_node(), 0..12),
        stale_slices in prop::collection::vec((prop::sample::select(vec!["s0", "s1", "gone"]), 0u32..3), 0..3),
    ) {
        let mut s = Snapshot::default();
        for (i, spec) in sites.into_iter().enumerate() {
            s.sites.insert(format!("s{i}"), spec);
        }
        for (i, mut n) in nodes.into_iter().enumerate() {
            n.name = format!("n{i}");
            s.nodes.insert(n.name.clone(), n);
        }
        s.assignments.insert("dangling".into(), SiteGatewayPoolAssignmentSpec {
            sites: vec!["gone".into()],
            gateway_pools: vec!["nope".into()],
            ..Default::default()
        });
        let slices: BTreeMap<String, SiteNodeSliceSpec> = stale_slices
            .into_iter()
            .map(|(site, i)| (format!("{site}-{i}"), SiteNodeSliceSpec { site_name: site.into(), slice_index: i, nodes: vec![] }))
            .collect();
        let a = plan_controller(&s, &slices, PlanSettings::default());
        let b = plan_controller(&s, &slices, PlanSettings::default());
        prop_assert_eq!(&a, &b);
        for (name, blocks) in &a.pod_cidrs {
            prop_assert!(s.nodes[name].pod_cidrs.is_empty(), "only nodes lacking podCIDRs are written");
            prop_assert!(blocks.len() <= 2);
        }
        let new: Vec<&IpNet> = a.pod_cidrs.values().flatten().collect();
        for (i, x) in new.iter().enumerate() {
            for y in &new[i + 1..] {
                prop_assert!(!x.contains(*y) && !y.contains(*x), "{x} overlaps {y}");
            }
            for held in s.nodes.values().flat_map(|n| &n.pod_cidrs) {
                prop_assert!(!x.contains(held) && !held.contains(*x), "{x} overlaps held {held}");
            }
        }
        prop_assert_eq!(a.site_status.len(), s.sites.len());
        for st in a.site_status.values() {
            prop_assert_eq!(st.conditions.len(), 3);
        }
    }
}
