//! SiteNodeSlice layout: a Site's nodes in slices of at most 500, each node keeping its slot
//! so that one node joining or leaving rewrites one slice, not all of them.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{MAX_NODES_PER_SLICE, SiteNodeSliceSpec, SliceNode};
use crate::core::NodeFacts;

/// Name of slice `index` of `site`.
pub fn slice_name(site: &str, index: u32) -> String {
    format!("{site}-{index}")
}

/// Which nodes go in which slice. `existing` is the current layout (slice index → node names);
/// `members` are the Site's nodes now. Nodes stay where they are; departed nodes leave a hole;
/// newcomers fill the lowest slice with room, then new slices. Empty slices are omitted.
pub fn layout(
    existing: &BTreeMap<u32, Vec<String>>,
    members: &BTreeSet<&str>,
    capacity: usize,
) -> BTreeMap<u32, BTreeSet<String>> {
    let mut out: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    for (index, nodes) in existing {
        let slot = out.entry(*index).or_default();
        for n in nodes {
            // A node listed twice (by hand, or an older bug) keeps its first slot only.
            if slot.len() < capacity && members.contains(n.as_str()) && placed.insert(n.as_str()) {
                slot.insert(n.clone());
            }
        }
    }
    let mut next_index = 0u32;
    for n in members.iter().filter(|n| !placed.contains(*n)) {
        loop {
            let slot = out.entry(next_index).or_default();
            if slot.len() < capacity {
                slot.insert((*n).to_string());
                break;
            }
            next_index += 1;
        }
    }
    out.retain(|_, nodes| !nodes.is_empty());
    out
}

/// The spec of one slice, nodes sorted by name.
pub fn slice_spec(
    site: &str,
    index: u32,
    nodes: &BTreeSet<String>,
    facts: &BTreeMap<String, NodeFacts>,
) -> SiteNodeSliceSpec {
    let strings = |ips: &[std::net::IpAddr]| ips.iter().map(|ip| ip.to_string()).collect();
    SiteNodeSliceSpec {
        site_name: site.to_string(),
        slice_index: index,
        nodes: nodes
            .iter()
            .filter_map(|n| facts.get(n))
            .map(|f| SliceNode {
                name: f.name.clone(),
                wire_guard_public_key: f.wg_public_key.clone().unwrap_or_default(),
                internal_ips: strings(&f.internal_ips),
                external_ips: strings(&f.external_ips),
                pod_cidrs: f.pod_cidrs.iter().map(|c| c.to_string()).collect(),
            })
            .collect(),
    }
}

/// The slice capacity the API allows.
pub const CAPACITY: usize = MAX_NODES_PER_SLICE;

#[cfg(test)]
mod tests {
    use super::*;

    fn names(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("n{i:04}")).collect()
    }

    #[test]
    fn nodes_keep_their_slot_and_one_join_touches_one_slice() {
        let all = names(0..1200);
        let members: BTreeSet<&str> = all.iter().map(String::as_str).collect();
        let first = layout(&BTreeMap::new(), &members, CAPACITY);
        assert_eq!(first.len(), 3);
        assert!(first.values().all(|s| s.len() <= CAPACITY));
        let existing: BTreeMap<u32, Vec<String>> = first
            .iter()
            .map(|(i, s)| (*i, s.iter().cloned().collect()))
            .collect();

        // One node leaves from slice 0, one joins: only slice 0 changes (the newcomer fills
        // the hole), slices 1 and 2 are untouched.
        let mut after: BTreeSet<&str> = members.clone();
        after.remove("n0007");
        after.insert("zz-new");
        let second = layout(&existing, &after, CAPACITY);
        let changed: Vec<u32> = second
            .iter()
            .filter(|(i, s)| first.get(i) != Some(*s))
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(changed, vec![0]);
        assert!(second[&0].contains("zz-new"));
    }

    #[test]
    fn duplicates_and_departed_nodes_are_dropped() {
        let existing = BTreeMap::from([
            (0, vec!["a".to_string(), "b".to_string()]),
            (1, vec!["a".to_string(), "c".to_string()]),
        ]);
        let members = BTreeSet::from(["a", "c"]);
        let out = layout(&existing, &members, 2);
        assert_eq!(out[&0], BTreeSet::from(["a".to_string()]));
        assert_eq!(out[&1], BTreeSet::from(["c".to_string()]));
    }

    #[test]
    fn full_slices_spill_into_new_ones() {
        let all = names(0..5);
        let members: BTreeSet<&str> = all.iter().map(String::as_str).collect();
        let out = layout(&BTreeMap::new(), &members, 2);
        assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(out[&2].len(), 1);
    }
}
