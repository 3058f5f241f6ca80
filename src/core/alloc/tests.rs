//! Table tests for each allocation rule.

use std::collections::BTreeMap;

use rstest::rstest;

use super::*;
use crate::api::{NodeBlockSizes, PodCidrAssignment};
use crate::core::NodeFacts;

fn pca(blocks: &str) -> PodCidrAssignment {
    PodCidrAssignment {
        cidr_blocks: blocks.split(',').map(|s| s.trim().to_string()).collect(),
        ..Default::default()
    }
}

fn site_with(assignments: Vec<PodCidrAssignment>) -> BTreeMap<String, SiteSpec> {
    let mut m = BTreeMap::new();
    m.insert(
        "s".to_string(),
        SiteSpec {
            node_cidrs: vec!["10.0.0.0/8".into()],
            pod_cidr_assignments: assignments,
            ..Default::default()
        },
    );
    m
}

fn nets(list: &str) -> Vec<IpNet> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect()
}

#[rstest]
#[case::v4_default_24("100.64.0.0/16", None, None, "100.64.0.0/24")]
#[case::v6_default_64("fd00:10::/48", None, None, "fd00:10::/64")]
#[case::dual_stack_v4_first(
    "fd00:10::/48, 100.64.0.0/16",
    None,
    None,
    "100.64.0.0/24, fd00:10::/64"
)]
#[case::v4_block_size_set("100.64.0.0/16", Some(26), None, "100.64.0.0/26")]
#[case::v6_block_size_set("fd00:10::/48", None, Some(80), "fd00:10::/80")]
#[case::second_prefix_of_same_family_is_spare(
    "100.64.0.0/24, 100.65.0.0/24",
    None,
    None,
    "100.64.0.0/24"
)]
fn one_block_per_family(
    #[case] blocks: &str,
    #[case] v4: Option<u8>,
    #[case] v6: Option<u8>,
    #[case] expected: &str,
) {
    let mut a = pca(blocks);
    a.node_block_sizes = Some(NodeBlockSizes { ipv4: v4, ipv6: v6 });
    let mut alloc = PodCidrAllocator::new(&site_with(vec![a]));
    assert_eq!(alloc.allocate("s", "n1").unwrap(), nets(expected));
    assert!(alloc.problems().is_empty(), "{:?}", alloc.problems());
}

/// Assignments separated by `|`, each `BLOCKS [re=REGEX]... [pri=N] [off]`.
fn rows(spec: &str) -> Vec<PodCidrAssignment> {
    spec.split('|')
        .filter(|r| !r.trim().is_empty())
        .map(|row| {
            let mut words = row.split_whitespace();
            let mut a = pca(words.next().unwrap());
            for w in words {
                if let Some(r) = w.strip_prefix("re=") {
                    a.node_regex.push(r.to_string());
                } else if let Some(p) = w.strip_prefix("pri=") {
                    a.priority = Some(p.parse().unwrap());
                } else if w == "off" {
                    a.assignment_enabled = Some(false);
                }
            }
            a
        })
        .collect()
}

#[rstest]
#[case::regex_selects("100.64.0.0/16 re=^gpu- | 100.65.0.0/16", "gpu-1", Ok("100.64.0.0/24"))]
#[case::regex_excludes("100.64.0.0/16 re=^gpu- | 100.65.0.0/16", "cpu-1", Ok("100.65.0.0/24"))]
#[case::any_regex_of_list("100.64.0.0/16 re=^a- re=^b-", "b-7", Ok("100.64.0.0/24"))]
#[case::lower_priority_wins("100.64.0.0/16 pri=10 | 100.65.0.0/16 pri=1", "n", Ok("100.65.0.0/24"))]
#[case::unset_priority_is_zero("100.64.0.0/16 pri=1 | 100.65.0.0/16", "n", Ok("100.65.0.0/24"))]
#[case::equal_priority_keeps_spec_order(
    "100.64.0.0/16 pri=5 | 100.65.0.0/16 pri=5",
    "n",
    Ok("100.64.0.0/24")
)]
#[case::disabled_is_skipped(
    "100.64.0.0/16 pri=0 off | 100.65.0.0/16 pri=9",
    "n",
    Ok("100.65.0.0/24")
)]
#[case::only_disabled("100.64.0.0/16 off", "n", Err("assignmentEnabled"))]
#[case::nothing_matches("100.64.0.0/16 re=^gpu-", "cpu-1", Err("nodeRegex"))]
#[case::invalid_regex_skips_assignment(
    "100.64.0.0/16 re=(unclosed pri=0 | 100.65.0.0/16 pri=9",
    "n",
    Ok("100.65.0.0/24")
)]
#[case::exhausted_falls_through(
    "100.64.0.0/24 pri=0 | 100.65.0.0/16 pri=9",
    "n",
    Ok("100.65.0.0/24")
)]
#[case::exhausted("100.64.0.0/24", "n", Err("exhausted"))]
#[case::no_assignments("", "n", Err("nodeRegex"))]
fn eligible_assignment_rules(
    #[case] spec: &str,
    #[case] node: &str,
    #[case] expected: Result<&str, &str>,
) {
    let mut alloc = PodCidrAllocator::new(&site_with(rows(spec)));
    // One node already holds the first /24 of 100.64.0.0, which makes a /24 pool full.
    alloc.hold(&"100.64.0.0/24".parse().unwrap());
    let got = alloc.allocate("s", node);
    match expected {
        Ok(block) => {
            let want = if block == "100.64.0.0/24" {
                "100.64.1.0/24"
            } else {
                block
            };
            assert_eq!(got.unwrap(), nets(want));
        }
        Err(word) => {
            let e = got.unwrap_err();
            assert!(e.to_string().contains(word), "{e}");
        }
    }
}

#[test]
fn unknown_site_is_an_error() {
    let mut alloc = PodCidrAllocator::new(&site_with(vec![pca("100.64.0.0/16")]));
    assert!(matches!(
        alloc.allocate("nope", "n"),
        Err(AllocError::UnknownSite { .. })
    ));
}

#[test]
fn dual_stack_is_all_or_nothing() {
    // v6 pool of one block: the second node cannot get a full pair and gets nothing.
    let mut a = pca("100.64.0.0/16, fd00::/64");
    a.node_block_sizes = Some(NodeBlockSizes {
        ipv4: None,
        ipv6: Some(64),
    });
    let mut alloc = PodCidrAllocator::new(&site_with(vec![a]));
    assert_eq!(alloc.allocate("s", "n1").unwrap().len(), 2);
    assert!(matches!(
        alloc.allocate("s", "n2"),
        Err(AllocError::Exhausted { .. })
    ));
    assert_eq!(alloc.usage("s")[0].allocated, 1, "no v4 block leaked");
    assert!(alloc.is_exhausted("s"));
}

#[rstest]
#[case::bad_cidr("100.64.0.0/99", "not a CIDR")]
#[case::block_larger_than_pool("100.64.0.0/28", "larger than the pool")]
fn bad_pool_config_is_reported(#[case] block: &str, #[case] word: &str) {
    let alloc = PodCidrAllocator::new(&site_with(vec![pca(block)]));
    assert_eq!(alloc.problems().len(), 1);
    assert!(
        alloc.problems()[0].to_string().contains(word),
        "{}",
        alloc.problems()[0]
    );
}

#[test]
fn invalid_regex_is_reported() {
    let mut a = pca("100.64.0.0/16");
    a.node_regex = vec!["(".into()];
    let alloc = PodCidrAllocator::new(&site_with(vec![a]));
    assert!(matches!(
        alloc.problems(),
        [PoolProblem::InvalidNodeRegex { assignment: 0, .. }]
    ));
}

#[test]
fn overlapping_pools_never_hand_out_overlapping_blocks() {
    let mut sites = site_with(vec![pca("100.64.0.0/16")]);
    sites.insert(
        "t".into(),
        SiteSpec {
            pod_cidr_assignments: vec![pca("100.64.0.0/20")],
            ..Default::default()
        },
    );
    let mut alloc = PodCidrAllocator::new(&sites);
    assert!(matches!(
        alloc.problems(),
        [PoolProblem::OverlappingPools { .. }]
    ));
    let a = alloc.allocate("s", "a").unwrap();
    let b = alloc.allocate("t", "b").unwrap();
    assert_ne!(a, b);
    assert!(!a[0].contains(&b[0]) && !b[0].contains(&a[0]));
}

#[test]
fn rebuild_keeps_blocks_outside_every_pool_held() {
    // A node holds a block of a pool that was since removed; a new pool covering it later
    // must not hand it out again.
    let mut snap = Snapshot {
        sites: site_with(vec![pca("100.64.0.0/23")]),
        ..Default::default()
    };
    snap.nodes.insert(
        "old".into(),
        NodeFacts {
            name: "old".into(),
            pod_cidrs: nets("100.64.0.0/24"),
            ..Default::default()
        },
    );
    let mut alloc = PodCidrAllocator::from_snapshot(&snap);
    assert_eq!(alloc.allocate("s", "new").unwrap(), nets("100.64.1.0/24"));
    assert!(matches!(
        alloc.allocate("s", "newer"),
        Err(AllocError::Exhausted { .. })
    ));
    assert_eq!(
        alloc.usage("s"),
        vec![PoolUsage {
            cidr: "100.64.0.0/23".into(),
            allocated: 2,
            capacity: 2
        }]
    );
}
