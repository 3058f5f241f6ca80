//! SiteNodeSlices: each Site's nodes published in objects of at most
//! [`MAX_NODES_PER_SLICE`] nodes, with stable slots.
//!
//! A node stays in the slice it was published in for as long as it exists, new nodes fill the
//! lowest slice with room, and slices are numbered densely from 0 where possible. So one node
//! joining, leaving or changing rewrites exactly one slice object, never a reshuffle.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{MAX_NODES_PER_SLICE, SiteNodeSliceSpec, SliceNode};

/// Object name of slice `index` of `site`.
pub fn slice_name(site: &str, index: u32) -> String {
    format!("{site}-{index}")
}

/// Desired slices and the writes that get there from the previous ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlicePlan {
    /// Every desired slice, by object name.
    pub desired: BTreeMap<String, SiteNodeSliceSpec>,
    /// Slices to create or replace (new, or content changed), sorted by name.
    pub upserts: Vec<String>,
    /// Existing slice objects to delete (emptied, orphaned or misnamed), sorted by name.
    pub deletes: Vec<String>,
}

impl SlicePlan {
    /// Number of desired slices of `site`.
    pub fn slice_count(&self, site: &str) -> usize {
        self.desired
            .values()
            .filter(|s| s.site_name == site)
            .count()
    }

    /// True when nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// Plans the slices of every Site.
///
/// `site_nodes`: per Site, its nodes as they should be published (keyed by node name).
/// `previous`: the SiteNodeSlice objects that exist now, by object name. Slices of Sites not in
/// `site_nodes` are deleted.
pub fn plan_slices(
    site_nodes: &BTreeMap<String, BTreeMap<String, SliceNode>>,
    previous: &BTreeMap<String, SiteNodeSliceSpec>,
) -> SlicePlan {
    let mut plan = SlicePlan::default();
    // Previous slices per Site and index; misnamed or duplicate objects are dropped.
    let mut prev_slots: BTreeMap<&str, BTreeMap<u32, &SiteNodeSliceSpec>> = BTreeMap::new();
    for (name, spec) in previous {
        let canonical = slice_name(&spec.site_name, spec.slice_index);
        if *name == canonical && site_nodes.contains_key(&spec.site_name) {
            prev_slots
                .entry(&spec.site_name)
                .or_default()
                .insert(spec.slice_index, spec);
        } else {
            plan.deletes.push(name.clone());
        }
    }
    for (site, nodes) in site_nodes {
        let prev = prev_slots.remove(site.as_str()).unwrap_or_default();
        let slots = assign_slots(nodes, &prev);
        for (index, members) in &slots {
            let name = slice_name(site, *index);
            let spec = SiteNodeSliceSpec {
                site_name: site.clone(),
                slice_index: *index,
                nodes: members.iter().map(|n| nodes[*n].clone()).collect(),
            };
            if prev.get(index).is_none_or(|old| **old != spec) {
                plan.upserts.push(name.clone());
            }
            plan.desired.insert(name, spec);
        }
        for index in prev.keys().filter(|i| !slots.contains_key(i)) {
            plan.deletes.push(slice_name(site, *index));
        }
    }
    plan.upserts.sort();
    plan.deletes.sort();
    plan
}

/// Slot of every node: kept where it was, new nodes into the lowest slice with room.
fn assign_slots<'a>(
    nodes: &'a BTreeMap<String, SliceNode>,
    prev: &BTreeMap<u32, &SiteNodeSliceSpec>,
) -> BTreeMap<u32, BTreeSet<&'a str>> {
    let mut slots: BTreeMap<u32, BTreeSet<&'a str>> = BTreeMap::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    for (index, spec) in prev {
        let members = slots.entry(*index).or_default();
        for n in &spec.nodes {
            // A node listed twice (corrupt input) stays in the lowest slice; an over-full
            // slice (limit lowered) sheds its extra nodes to be placed again.
            if let Some((name, _)) = nodes.get_key_value(&n.name)
                && members.len() < MAX_NODES_PER_SLICE
                && placed.insert(name.as_str())
            {
                members.insert(name.as_str());
            }
        }
    }
    slots.retain(|_, m| !m.is_empty());
    let mut with_room: BTreeSet<u32> = slots
        .iter()
        .filter(|(_, m)| m.len() < MAX_NODES_PER_SLICE)
        .map(|(i, _)| *i)
        .collect();
    let mut next_unused = 0u32;
    for name in nodes.keys().filter(|n| !placed.contains(n.as_str())) {
        let index = match with_room.first() {
            Some(i) => *i,
            None => {
                while slots.contains_key(&next_unused) {
                    next_unused += 1;
                }
                with_room.insert(next_unused);
                next_unused
            }
        };
        let members = slots.entry(index).or_default();
        members.insert(name.as_str());
        if members.len() >= MAX_NODES_PER_SLICE {
            with_room.remove(&index);
        }
    }
    slots
}

#[cfg(test)]
#[path = "slices_tests.rs"]
mod tests;
