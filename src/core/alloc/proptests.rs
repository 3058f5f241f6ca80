//! Property tests: no overlaps, stability across rebuilds, exhaustion reported, dual-stack.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::api::{NodeBlockSizes, PodCidrAssignment};
use crate::core::NodeFacts;

/// Small pools inside 10.0.0.0/16 and fd00::/56 so overlaps and exhaustion happen often.
fn v4_pool() -> impl Strategy<Value = String> {
    (0u8..4, 20u8..=24).prop_map(|(third, len)| format!("10.0.{}.0/{len}", third * 16))
}

fn v6_pool() -> impl Strategy<Value = String> {
    (0u8..4, 58u8..=62).prop_map(|(x, len)| format!("fd00:0:0:{:x}::/{len}", x * 16))
}

fn assignment() -> impl Strategy<Value = PodCidrAssignment> {
    (
        prop::collection::vec(v4_pool(), 0..3),
        prop::collection::vec(v6_pool(), 0..2),
        prop::option::of(-2i32..3),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::sample::select(vec!["^n[0-4]", "7$", "("])),
    )
        .prop_map(|(v4, v6, priority, enabled, regex)| PodCidrAssignment {
            cidr_blocks: v4.into_iter().chain(v6).collect(),
            node_block_sizes: Some(NodeBlockSizes {
                ipv4: Some(26),
                ipv6: Some(64),
            }),
            node_regex: regex.into_iter().map(str::to_string).collect(),
            priority,
            assignment_enabled: enabled,
        })
}

fn sites() -> impl Strategy<Value = BTreeMap<String, SiteSpec>> {
    prop::collection::vec(prop::collection::vec(assignment(), 0..3), 1..3).prop_map(|sites| {
        sites
            .into_iter()
            .enumerate()
            .map(|(i, pcas)| {
                let spec = SiteSpec {
                    pod_cidr_assignments: pcas,
                    ..Default::default()
                };
                (format!("s{i}"), spec)
            })
            .collect()
    })
}

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

fn assert_disjoint(blocks: &[IpNet]) -> Result<(), TestCaseError> {
    for (i, a) in blocks.iter().enumerate() {
        for b in &blocks[i + 1..] {
            prop_assert!(!overlap(a, b), "{a} overlaps {b}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn never_overlapping_and_stable_across_rebuilds(
        sites in sites(),
        pre_held in prop::collection::vec(v4_pool(), 0..3),
        first in 0usize..40,
        second in 0usize..40,
    ) {
        let mut snap = Snapshot { sites: sites.clone(), ..Default::default() };
        let site_names: Vec<String> = sites.keys().cloned().collect();
        // Nodes that already hold blocks from before (maybe from no current pool).
        for (i, held) in pre_held.iter().enumerate() {
            let name = format!("old{i}");
            let facts = NodeFacts {
                name: name.clone(),
                pod_cidrs: vec![held.parse().unwrap()],
                ..Default::default()
            };
            snap.nodes.insert(name, facts);
        }
        let mut alloc = PodCidrAllocator::from_snapshot(&snap);
        let mut given: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
        for i in 0..first {
            let name = format!("n{i}");
            let site = &site_names[i % site_names.len()];
            if let Ok(blocks) = alloc.allocate(site, &name) {
                given.insert(name, blocks);
            }
        }
        // Restart: rebuild from what the API shows, and keep allocating.
        for (name, blocks) in &given {
            let facts = NodeFacts { name: name.clone(), pod_cidrs: blocks.clone(), ..Default::default() };
            snap.nodes.insert(name.clone(), facts);
        }
        let rebuilt = PodCidrAllocator::from_snapshot(&snap);
        for site in &site_names {
            prop_assert_eq!(rebuilt.usage(site), alloc.usage(site), "usage survives a rebuild");
        }
        let mut alloc = rebuilt;
        for i in 0..second {
            let name = format!("m{i}");
            let site = &site_names[i % site_names.len()];
            if let Ok(blocks) = alloc.allocate(site, &name) {
                given.insert(name, blocks);
            }
        }
        // Every block handed out is disjoint from every other and from the pre-held ones.
        let mut all: Vec<IpNet> = given.values().flatten().copied().collect();
        all.extend(pre_held.iter().map(|s| s.parse::<IpNet>().unwrap()));
        // Pre-held blocks may overlap each other (bad input); check handed-out ones.
        let handed: Vec<IpNet> = given.values().flatten().copied().collect();
        assert_disjoint(&handed)?;
        for h in &handed {
            for p in &pre_held {
                prop_assert!(!overlap(h, &p.parse().unwrap()), "{h} overlaps pre-held {p}");
            }
        }
    }

    #[test]
    fn dual_stack_gets_one_block_per_family(v4 in v4_pool(), v6 in v6_pool(), n in 1usize..80) {
        let pca = PodCidrAssignment {
            cidr_blocks: vec![v4.clone(), v6.clone()],
            node_block_sizes: Some(NodeBlockSizes { ipv4: Some(28), ipv6: Some(64) }),
            ..Default::default()
        };
        let mut sites = BTreeMap::new();
        sites.insert("s".to_string(), SiteSpec { pod_cidr_assignments: vec![pca], ..Default::default() });
        let mut alloc = PodCidrAllocator::new(&sites);
        let v4: IpNet = v4.parse().unwrap();
        let v6: IpNet = v6.parse().unwrap();
        // Capacity is the smaller family's block count.
        let cap4 = 1u64 << (28 - v4.prefix_len());
        let cap6 = 1u64 << (64 - v6.prefix_len());
        let capacity = cap4.min(cap6) as usize;
        let mut ok = 0;
        for i in 0..n {
            match alloc.allocate("s", &format!("n{i}")) {
                Ok(blocks) => {
                    ok += 1;
                    prop_assert_eq!(blocks.len(), 2);
                    prop_assert!(blocks[0].addr().is_ipv4() && v4.contains(&blocks[0]));
                    prop_assert!(blocks[1].addr().is_ipv6() && v6.contains(&blocks[1]));
                }
                Err(e) => {
                    prop_assert!(matches!(e, AllocError::Exhausted { .. }), "{e}");
                    prop_assert!(i >= capacity);
                }
            }
        }
        prop_assert_eq!(ok, n.min(capacity));
        prop_assert_eq!(alloc.is_exhausted("s"), n >= capacity);
        let usage = alloc.usage("s");
        prop_assert_eq!(usage[0].allocated, ok as u64);
        prop_assert_eq!(usage[1].allocated, ok as u64);
    }

    #[test]
    fn deterministic_for_the_same_input(sites in sites(), n in 0usize..30) {
        let run = || {
            let mut alloc = PodCidrAllocator::new(&sites);
            (0..n)
                .map(|i| alloc.allocate("s0", &format!("n{i}")))
                .collect::<Vec<_>>()
        };
        prop_assert_eq!(run(), run());
    }
}
