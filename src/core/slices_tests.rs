use proptest::prelude::*;
use rstest::rstest;

use super::*;

fn node(name: &str, key: &str) -> SliceNode {
    SliceNode {
        name: name.into(),
        wire_guard_public_key: key.into(),
        ..Default::default()
    }
}

fn site_of(count: usize) -> BTreeMap<String, BTreeMap<String, SliceNode>> {
    let nodes = (0..count)
        .map(|i| (format!("n{i:05}"), node(&format!("n{i:05}"), "")))
        .collect();
    BTreeMap::from([("s".to_string(), nodes)])
}

/// Applies a plan to the previous objects, as the controller's writes would.
fn apply(
    prev: &BTreeMap<String, SiteNodeSliceSpec>,
    plan: &SlicePlan,
) -> BTreeMap<String, SiteNodeSliceSpec> {
    let mut out = prev.clone();
    for d in &plan.deletes {
        out.remove(d);
    }
    for u in &plan.upserts {
        out.insert(u.clone(), plan.desired[u].clone());
    }
    out
}

#[rstest]
#[case::empty(0, 0)]
#[case::one(1, 1)]
#[case::exactly_full(500, 1)]
#[case::one_over(501, 2)]
#[case::many(1234, 3)]
fn slices_hold_at_most_500(#[case] count: usize, #[case] slices: usize) {
    let plan = plan_slices(&site_of(count), &BTreeMap::new());
    assert_eq!(plan.desired.len(), slices);
    assert_eq!(plan.upserts.len(), slices);
    assert_eq!(plan.slice_count("s"), slices);
    let total: usize = plan.desired.values().map(|s| s.nodes.len()).sum();
    assert_eq!(total, count);
    assert!(
        plan.desired
            .values()
            .all(|s| s.nodes.len() <= MAX_NODES_PER_SLICE)
    );
}

#[rstest]
#[case::join_when_room(1234, Change::Join, 1, 0)]
#[case::join_when_full(1000, Change::Join, 1, 0)]
#[case::leave(1234, Change::Leave(7), 1, 0)]
#[case::leave_last_of_a_slice(501, Change::Leave(500), 0, 1)]
#[case::key_change(1234, Change::Rekey(900), 1, 0)]
#[case::nothing(1234, Change::None, 0, 0)]
fn one_change_rewrites_one_slice(
    #[case] count: usize,
    #[case] change: Change,
    #[case] upserts: usize,
    #[case] deletes: usize,
) {
    let mut nodes = site_of(count);
    let prev = plan_slices(&nodes, &BTreeMap::new()).desired;
    let site = nodes.get_mut("s").unwrap();
    match change {
        Change::Join => {
            site.insert("joiner".into(), node("joiner", ""));
        }
        Change::Leave(i) => {
            site.remove(&format!("n{i:05}"));
        }
        Change::Rekey(i) => {
            site.get_mut(&format!("n{i:05}"))
                .unwrap()
                .wire_guard_public_key = "k".into();
        }
        Change::None => {}
    }
    let plan = plan_slices(&nodes, &prev);
    assert_eq!(plan.upserts.len(), upserts, "{:?}", plan.upserts);
    assert_eq!(plan.deletes.len(), deletes, "{:?}", plan.deletes);
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Join,
    Leave(usize),
    Rekey(usize),
    None,
}

#[test]
fn joiner_refills_the_hole_a_leaver_left() {
    let mut nodes = site_of(1000);
    let prev = plan_slices(&nodes, &BTreeMap::new()).desired;
    nodes.get_mut("s").unwrap().remove("n00003");
    let after_leave = apply(&prev, &plan_slices(&nodes, &prev));
    nodes
        .get_mut("s")
        .unwrap()
        .insert("zz".into(), node("zz", ""));
    let plan = plan_slices(&nodes, &after_leave);
    assert_eq!(plan.upserts, vec!["s-0".to_string()]);
}

#[test]
fn orphaned_and_misnamed_slices_are_deleted() {
    let mut prev = plan_slices(&site_of(3), &BTreeMap::new()).desired;
    let mut stray = prev["s-0"].clone();
    prev.insert("handmade".into(), stray.clone());
    stray.site_name = "gone".into();
    prev.insert("gone-0".into(), stray);
    let plan = plan_slices(&site_of(3), &prev);
    assert_eq!(
        plan.deletes,
        vec!["gone-0".to_string(), "handmade".to_string()]
    );
    assert!(plan.upserts.is_empty());
}

#[test]
fn duplicated_node_is_kept_once() {
    let mut prev = plan_slices(&site_of(3), &BTreeMap::new()).desired;
    let mut dup = prev["s-0"].clone();
    dup.slice_index = 1;
    prev.insert("s-1".into(), dup);
    let plan = plan_slices(&site_of(3), &prev);
    assert_eq!(plan.desired.len(), 1);
    assert_eq!(plan.deletes, vec!["s-1".to_string()]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// From any history of joins and leaves, one more join or leave writes exactly one object
    /// and every node is published exactly once.
    #[test]
    fn single_change_is_one_write(
        history in prop::collection::vec((any::<bool>(), 0u32..1600), 1..6),
        leave in any::<bool>(),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut prev = BTreeMap::new();
        for (add, n) in history {
            if add {
                let round = names.len();
                names.extend((0..n).map(|i| format!("h{round}-{i}")));
            } else {
                let drop: Vec<String> = names.iter().step_by(3).take(n as usize).cloned().collect();
                for d in drop { names.remove(&d); }
            }
            let nodes = BTreeMap::from([("s".to_string(), names.iter().map(|n| (n.clone(), node(n, ""))).collect())]);
            prev = apply(&prev, &plan_slices(&nodes, &prev));
        }
        if leave && !names.is_empty() {
            let victim = names.iter().nth(pick.index(names.len())).cloned().unwrap();
            names.remove(&victim);
        } else {
            names.insert("new-node".into());
        }
        let nodes: BTreeMap<String, BTreeMap<String, SliceNode>> =
            BTreeMap::from([("s".to_string(), names.iter().map(|n| (n.clone(), node(n, ""))).collect())]);
        let plan = plan_slices(&nodes, &prev);
        prop_assert_eq!(plan.upserts.len() + plan.deletes.len(), 1);
        let published: Vec<&str> = plan.desired.values().flat_map(|s| s.nodes.iter().map(|n| n.name.as_str())).collect();
        prop_assert_eq!(published.len(), names.len());
        prop_assert_eq!(published.iter().copied().collect::<BTreeSet<_>>().len(), names.len());
        prop_assert!(plan.desired.values().all(|s| !s.nodes.is_empty() && s.nodes.len() <= MAX_NODES_PER_SLICE));
    }
}
