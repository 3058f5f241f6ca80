use std::collections::BTreeMap;

use rstest::rstest;

use super::*;
use crate::core::NodeFacts;

/// `"a=10.0.0.0/8,fd00::/16; b=10.1.0.0/16"`: Sites in the order written.
fn sites(defs: &str) -> BTreeMap<String, SiteSpec> {
    defs.split(';')
        .map(|d| {
            let (name, cidrs) = d.trim().split_once('=').unwrap();
            let spec = SiteSpec {
                node_cidrs: cidrs.split(',').map(|c| c.trim().to_string()).collect(),
                ..Default::default()
            };
            (name.to_string(), spec)
        })
        .collect()
}

/// `"10.0.0.1, fd00::1"`; empty string = no IPs.
fn ips(list: &str) -> Vec<IpAddr> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

const A_B_NESTED: &str = "a=10.0.0.0/8; b=10.1.0.0/16";

#[rstest]
#[case::inside_one_site(A_B_NESTED, "10.2.3.4", Some("a"))]
#[case::most_specific_wins(A_B_NESTED, "10.1.3.4", Some("b"))]
#[case::most_specific_wins_whatever_the_order("b=10.1.0.0/16; a=10.0.0.0/8", "10.1.3.4", Some("b"))]
#[case::outside_every_site(A_B_NESTED, "192.168.1.1", None)]
#[case::no_internal_ip(A_B_NESTED, "", None)]
#[case::ipv6("v6=fd00:1::/48", "fd00:1::5", Some("v6"))]
#[case::dual_stack_agreeing("a=10.0.0.0/8,fd00::/16", "10.0.0.1, fd00::1", Some("a"))]
#[case::host_bits_ignored("a=10.1.2.3/16", "10.1.9.9", Some("a"))]
#[case::invalid_entry_skipped("a=nonsense,10.0.0.0/8", "10.0.0.1", Some("a"))]
fn assigns_by_most_specific_prefix(
    #[case] defs: &str,
    #[case] node_ips: &str,
    #[case] expected: Option<&str>,
) {
    let index = SiteIndex::new(&sites(defs));
    let got = index.assign(&ips(node_ips));
    assert_eq!(got.site(), expected, "{got:?}");
    if expected.is_none() {
        assert_eq!(got, SiteMatch::Unmatched);
    }
}

#[rstest]
#[case::equal_prefix_tie("a=10.0.0.0/16; b=10.0.0.0/16", "10.0.0.1", "a, b")]
#[case::tie_same_order_reversed("b=10.0.0.0/16; a=10.0.0.0/16", "10.0.0.1", "a, b")]
#[case::ips_disagree("a=10.0.0.0/8; b=fd00::/16", "10.0.0.1, fd00::1", "a, b")]
fn ambiguity_is_a_conflict(#[case] defs: &str, #[case] node_ips: &str, #[case] expected: &str) {
    let got = SiteIndex::new(&sites(defs)).assign(&ips(node_ips));
    assert_eq!(
        got,
        SiteMatch::Conflict {
            sites: expected.split(", ").map(str::to_string).collect()
        }
    );
}

#[rstest]
#[case::disjoint("a=10.0.0.0/16; b=10.1.0.0/16", 0)]
#[case::nested(A_B_NESTED, 1)]
#[case::identical("a=10.0.0.0/16; b=10.0.0.0/16", 1)]
#[case::same_site_nested_is_fine("a=10.0.0.0/8,10.1.0.0/16", 0)]
#[case::three_deep("a=10.0.0.0/8; b=10.1.0.0/16; c=10.1.1.0/24", 3)]
#[case::other_family_never_overlaps("a=0.0.0.0/0; b=::/0", 0)]
fn overlapping_sites_are_reported(#[case] defs: &str, #[case] count: usize) {
    let index = SiteIndex::new(&sites(defs));
    assert_eq!(index.overlaps.len(), count, "{:?}", index.overlaps);
    for o in &index.overlaps {
        assert_ne!(o.site_a, o.site_b);
        assert!(o.cidr_a.contains(&o.cidr_b) || o.cidr_b.contains(&o.cidr_a));
        assert!(!o.message().is_empty());
    }
}

#[test]
fn invalid_node_cidrs_are_reported_by_site() {
    let index = SiteIndex::new(&sites("a=10.0.0.0/33,10.0.0.0/8; b=x"));
    assert_eq!(
        index.invalid,
        vec![
            InvalidNodeCidr {
                site: "a".into(),
                value: "10.0.0.0/33".into()
            },
            InvalidNodeCidr {
                site: "b".into(),
                value: "x".into()
            },
        ]
    );
    assert!(index.invalid[1].to_string().contains("Site b"));
}

#[test]
fn assign_sites_covers_every_node() {
    let mut snap = Snapshot {
        sites: sites(A_B_NESTED),
        ..Default::default()
    };
    for (name, ip) in [("n1", "10.1.0.1"), ("n2", "10.9.0.1"), ("n3", "8.8.8.8")] {
        snap.nodes.insert(
            name.into(),
            NodeFacts {
                name: name.into(),
                internal_ips: ips(ip),
                ..Default::default()
            },
        );
    }
    let out = assign_sites(&snap);
    assert_eq!(out.nodes.len(), 3);
    assert_eq!(out.nodes["n1"].site(), Some("b"));
    assert_eq!(out.nodes["n2"].site(), Some("a"));
    assert_eq!(out.nodes["n3"], SiteMatch::Unmatched);
    assert_eq!(out.nodes_of("a").collect::<Vec<_>>(), vec!["n2"]);
    assert_eq!(out.overlaps.len(), 1);
}
