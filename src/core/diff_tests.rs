//! Diff tests: empty for identical plans, O(1) operations for a one-node change at any
//! cluster size, readable change lists.

use rstest::rstest;

use super::dataplane::NodeDataplane;
use super::diff::{DataplaneOp, describe, diff};
use super::node_plan::plan_node;
use super::plan_index::{PlanIndex, PlanSettings};
use super::snapshot::Snapshot;
use super::synthetic::{ClusterShape, cluster, node};

fn plan(snap: &Snapshot, name: &str) -> NodeDataplane {
    let index = PlanIndex::new(snap, PlanSettings::default());
    plan_node(&index, name).unwrap().dataplane
}

fn shape(sites: u32, nodes_per_site: u32) -> ClusterShape {
    ClusterShape {
        sites,
        nodes_per_site,
        gateways_per_site: 2,
    }
}

/// The cluster plus one worker joining site-0 (its /24 is the last of site-0's /17).
fn with_joiner(shape: ClusterShape) -> Snapshot {
    let mut snap = cluster(shape);
    let n = node("joiner", "site-0", "10.0.0.250", None, "100.64.127.0/24");
    snap.nodes.insert(n.name.clone(), n);
    snap
}

#[test]
fn identical_plans_have_no_diff() {
    let snap = cluster(shape(4, 10));
    for name in ["site-0-node-0", "site-0-node-5", "site-3-node-9"] {
        let a = plan(&snap, name);
        assert!(diff(&a, &a.clone()).is_empty());
        assert!(
            diff(&a, &plan(&snap, name)).is_empty(),
            "planning is deterministic"
        );
    }
}

#[rstest]
#[case::worker_same_site("site-0-node-5", 3)]
#[case::gateway_same_site("site-0-node-0", 3)]
#[case::worker_other_site("site-1-node-5", 0)]
#[case::gateway_other_site("site-1-node-0", 0)]
fn one_node_joining_costs_constant_ops(#[case] observer: &str, #[case] want: usize) {
    for size in [shape(3, 10), shape(20, 60)] {
        let before = plan(&cluster(size), observer);
        let after = plan(&with_joiner(size), observer);
        let ops = diff(&before, &after);
        assert_eq!(ops.len(), want, "{size:?}:\n{}", describe(&ops));
        let back = diff(&after, &before);
        assert_eq!(back.len(), want, "leaving is as cheap as joining");
    }
}

#[test]
fn joining_node_ops_are_tunnel_route_probe_in_that_order() {
    let size = shape(3, 10);
    let ops = diff(
        &plan(&cluster(size), "site-0-node-5"),
        &plan(&with_joiner(size), "site-0-node-5"),
    );
    assert!(matches!(&ops[0], DataplaneOp::AddTunnel { peer, .. } if peer == "joiner"));
    assert!(
        matches!(&ops[1], DataplaneOp::AddRoute { prefix, .. } if prefix.to_string() == "100.64.127.0/24")
    );
    assert!(matches!(&ops[2], DataplaneOp::AddProbe { peer, .. } if peer == "joiner"));
    let text = describe(&ops);
    assert_eq!(
        text,
        "+ GENEVE tunnel to joiner 10.0.0.15 -> 10.0.0.250 mtu 1450\n\
         + route 100.64.127.0/24 via joiner (GENEVE 10.0.0.250) mtu 1450\n\
         + probe joiner at 100.64.127.1:51821 every 1s, down after 3 x 1s\n"
    );
    let removal = describe(&diff(
        &plan(&with_joiner(size), "site-0-node-5"),
        &plan(&cluster(size), "site-0-node-5"),
    ));
    assert_eq!(
        removal,
        "- route 100.64.127.0/24\n- GENEVE tunnel to joiner 10.0.0.15 -> 10.0.0.250\n- probe joiner\n"
    );
}

#[test]
fn changed_wireguard_peer_is_removed_then_added() {
    let size = shape(3, 10);
    let snap = cluster(size);
    let mut rekeyed = snap.clone();
    rekeyed
        .nodes
        .get_mut("site-1-node-0")
        .unwrap()
        .wg_public_key = Some(super::synthetic::test_key(42));
    let ops = diff(
        &plan(&snap, "site-0-node-0"),
        &plan(&rekeyed, "site-0-node-0"),
    );
    assert_eq!(ops.len(), 2, "{}", describe(&ops));
    assert!(
        matches!(&ops[0], DataplaneOp::RemoveWireGuardPeer { peer, .. } if peer == "site-1-node-0")
    );
    match &ops[1] {
        DataplaneOp::AddWireGuardPeer { peer, config } => {
            assert_eq!(peer, "site-1-node-0");
            assert_eq!(config.public_key, super::synthetic::test_key(42));
        }
        other => panic!("expected AddWireGuardPeer, got {other}"),
    }
}

#[test]
fn changed_setting_replaces_routes_and_clamps_mss() {
    let snap = cluster(shape(3, 10));
    let mut lowered = snap.clone();
    lowered
        .assignments
        .get_mut("site-0-gw-0")
        .unwrap()
        .tunnel_mtu = Some(1300);
    let ops = diff(
        &plan(&snap, "site-0-node-5"),
        &plan(&lowered, "site-0-node-5"),
    );
    assert!(
        ops.iter()
            .any(|o| matches!(o, DataplaneOp::ReplaceRoute { route, .. } if route.mtu == 1300))
    );
    // Pods keep the widest route's MTU; the narrowed routes get their TCP MSS clamped.
    assert!(!ops.iter().any(|o| matches!(o, DataplaneOp::SetCni { .. })));
    assert!(ops.iter().any(|o| matches!(
        o,
        DataplaneOp::SetMasquerade { masquerade } if !masquerade.mss_clamp_cidrs.is_empty()
    )));
    assert!(
        describe(&ops).contains("; clamp MSS to [100.64.0.0/24, "),
        "{}",
        describe(&ops)
    );
}
