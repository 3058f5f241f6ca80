//! A `None` route whose underlay nexthop sits in another Site (an internal IP behind the
//! node's own router, as over a private interconnect): the kernel refuses "via" an address
//! that is not on a connected subnet, so the agent routes through the gateway the kernel uses
//! for that address — and a restarted agent sees nothing to change.
//!
//! a (10.71.1.2) — r — b (10.71.2.2, pods 10.244.72.0/24); r routes the pod CIDR to b, as a
//! customer network carries pod prefixes over an interconnect.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/netns_nodes.rs"]
mod netns_nodes;

use std::collections::BTreeSet;

use netns::{Netns, require_root, veth};
use netns_nodes::route;
use unbounded_net::core::dataplane::{Encap, NodeDataplane};
use unbounded_net::node::netlink::NetlinkDataplane;
use unbounded_net::node::{Dataplane, Reconciler};

#[tokio::test(flavor = "current_thread")]
async fn none_route_via_an_off_link_address_goes_through_the_underlay_gateway() {
    if !require_root("none_route_via_an_off_link_address_goes_through_the_underlay_gateway") {
        return;
    }
    let a = Netns::new("nra");
    let r = Netns::new("nrr");
    let b = Netns::new("nrb");
    veth(&a, "eth0", "10.71.1.2/24", &r, "ea", "10.71.1.1/24");
    veth(&r, "eb", "10.71.2.1/24", &b, "eth0", "10.71.2.2/24");
    a.sh("ip route add default via 10.71.1.1");
    b.sh("ip route add default via 10.71.2.1");
    r.sh("sysctl -qw net.ipv4.ip_forward=1; ip route add 10.244.72.0/24 via 10.71.2.2");

    let mut plan = NodeDataplane {
        node: "a".into(),
        ..Default::default()
    };
    plan.routes.insert(
        "10.244.72.0/24".parse().unwrap(),
        route(Encap::None, &[("b", "10.71.2.2")], 1500),
    );
    let mut dp_b = b.enter(|| {
        NetlinkDataplane::enable_forwarding().unwrap();
        NetlinkDataplane::connect().unwrap()
    });
    dp_b.ensure_pod_bridge("cbr0", &["10.244.72.0/24".parse().unwrap()])
        .await
        .unwrap();
    let dp_a = a.enter(|| NetlinkDataplane::connect().unwrap());
    let mut agent = Reconciler::new(dp_a, "unwgnr0");
    let report = agent.reconcile(&plan, &BTreeSet::new()).await.unwrap();
    assert!(
        report.apply.failures.is_empty(),
        "{:?}",
        report.apply.failures
    );
    let routes = a.sh("ip route show proto 85");
    assert!(routes.contains("10.244.72.0/24 via 10.71.1.1"), "{routes}");
    a.sh("ping -c 2 -i 0.2 -W 2 10.244.72.1");

    // A new agent over the same kernel: the resolved route is what it wants.
    let dp_again = a.enter(|| NetlinkDataplane::connect().unwrap());
    let mut again = Reconciler::new(dp_again, "unwgnr0");
    let report = again.reconcile(&plan, &BTreeSet::new()).await.unwrap();
    assert!(report.ops.is_empty(), "{:?}", report.ops);
    let _ = again.dataplane_mut().read().await.unwrap();
}
