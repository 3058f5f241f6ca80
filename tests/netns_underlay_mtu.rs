//! The agent's underlay MTU detection against a real routing table: the default route's
//! interface decides, a route `mtu` lowers it, no default route detects nothing, and an
//! operator's override wins.

#[path = "support/netns.rs"]
mod netns;

use netns::{Netns, require_root, veth};
use unbounded_net::node::underlay_mtu::{DEFAULT_TARGETS, detect, resolve};

fn in_ns<T>(ns: &Netns, f: impl AsyncFnOnce(&rtnetlink::Handle) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The netlink socket opens in the namespace of the thread that creates it.
    ns.enter(|| {
        rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection().unwrap();
            tokio::spawn(conn);
            f(&handle).await
        })
    })
}

#[test]
fn detects_the_mtu_of_the_default_routes_interface() {
    if !require_root("detects_the_mtu_of_the_default_routes_interface") {
        return;
    }
    let node = Netns::new("umtn");
    let router = Netns::new("umtr");
    veth(
        &node,
        "jumbo0",
        "10.88.0.2/24",
        &router,
        "r0",
        "10.88.0.1/24",
    );
    veth(
        &node,
        "small0",
        "10.89.0.2/24",
        &router,
        "r1",
        "10.89.0.1/24",
    );
    node.sh("ip link set jumbo0 mtu 9000 && ip link set small0 mtu 1280");

    let found = in_ns(&node, async |h| detect(h, &DEFAULT_TARGETS).await.unwrap());
    assert_eq!(found, None, "no default route, nothing to detect");
    assert_eq!(in_ns(&node, async |h| resolve(h, None).await), 1500);

    node.sh("ip route add default via 10.88.0.1");
    let found = in_ns(&node, async |h| detect(h, &DEFAULT_TARGETS).await.unwrap());
    assert_eq!(found, Some(9000), "the default route leaves by jumbo0");

    node.sh("ip route change default via 10.88.0.1 mtu 8000");
    let found = in_ns(&node, async |h| detect(h, &DEFAULT_TARGETS).await.unwrap());
    assert_eq!(found, Some(8000), "the route's own mtu lowers it");

    node.sh("ip route replace default via 10.89.0.1");
    assert_eq!(in_ns(&node, async |h| resolve(h, None).await), 1280);
    assert_eq!(in_ns(&node, async |h| resolve(h, Some(1400)).await), 1400);
    assert_eq!(
        in_ns(&node, async |h| resolve(h, Some(10)).await),
        1280,
        "an override out of range is ignored"
    );
}
