//! Which nexthops of a route carry traffic, given the peers' health: every healthy one (ECMP),
//! or — for a pinned route — the single healthy gateway every node picks for the route's key.
//!
//! Why pin: WireGuard accepts a packet from a peer only if its source lies in that peer's
//! allowed IPs, and one device gives a prefix to one peer. If node X sent to site R through
//! gateway g1 while R's replies came back through g2, X's device would drop them. So both ends
//! pick the gateway by rendezvous hashing over a key they both derive (the pair of sites, see
//! `node_plan`), among the gateways they consider healthy: the same choice whenever their health
//! views agree, spread across site pairs, and when a gateway fails only the pairs it carried
//! move. Unpinned routes are plain ECMP.
//!
//! Fail open: when no nexthop is healthy, all are kept (a route to its tunnels beats falling
//! back to the default route in plaintext); a pinned route then keeps its best-scored one.

use std::collections::{BTreeMap, BTreeSet};

use super::dataplane::{Encap, NextHop, NodeDataplane, Route, WireGuardConfig};

/// Rendezvous score of `peer` for `key` (FNV-1a 64, stable across builds and machines).
pub fn score(key: &str, peer: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0u8]).chain(peer.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs that differ in the last byte; fold.
    h ^ (h >> 29)
}

/// The nexthops that carry traffic for `route`.
pub fn active_nexthops<'a>(route: &'a Route, unhealthy: &BTreeSet<String>) -> Vec<&'a NextHop> {
    let healthy: Vec<&NextHop> = route
        .nexthops
        .iter()
        .filter(|h| !unhealthy.contains(&h.peer))
        .collect();
    let pool = if healthy.is_empty() {
        route.nexthops.iter().collect()
    } else {
        healthy
    };
    match &route.pin {
        None => pool,
        Some(key) => pool
            .into_iter()
            .max_by_key(|h| (score(key, &h.peer), std::cmp::Reverse(&h.peer)))
            .into_iter()
            .collect(),
    }
}

/// The WireGuard configuration to apply now: every shared prefix stays only on the peer(s)
/// whose nexthop is active for it; a peer's own pod CIDRs always stay (they are more specific,
/// so its own pods' traffic passes the source check whichever gateway carries the site).
pub fn wireguard_effective(plan: &NodeDataplane, unhealthy: &BTreeSet<String>) -> WireGuardConfig {
    let mut give: BTreeMap<&str, BTreeSet<ipnet::IpNet>> = BTreeMap::new();
    let mut routed: BTreeSet<ipnet::IpNet> = BTreeSet::new();
    for (prefix, route) in &plan.routes {
        if !route.nexthops.iter().any(|h| h.encap == Encap::WireGuard) {
            continue;
        }
        routed.insert(*prefix);
        for h in active_nexthops(route, unhealthy) {
            if h.encap == Encap::WireGuard {
                give.entry(h.peer.as_str()).or_default().insert(*prefix);
            }
        }
    }
    let mut out = plan.wireguard.clone();
    for (name, peer) in out.peers.iter_mut() {
        let mine = give.remove(name.as_str()).unwrap_or_default();
        peer.allowed_ips
            .retain(|p| !routed.contains(p) || mine.contains(p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dataplane::WireGuardPeer;

    fn hop(peer: &str) -> NextHop {
        NextHop {
            peer: peer.into(),
            encap: Encap::WireGuard,
            underlay: "192.0.2.1".parse().unwrap(),
            vni: None,
        }
    }

    fn route(pin: Option<&str>) -> Route {
        Route {
            nexthops: vec![hop("gw1"), hop("gw2"), hop("gw3")],
            mtu: 1400,
            pin: pin.map(str::to_string),
        }
    }

    #[test]
    fn unpinned_is_ecmp_over_healthy_and_fails_open() {
        let r = route(None);
        assert_eq!(active_nexthops(&r, &BTreeSet::new()).len(), 3);
        let down: BTreeSet<String> = ["gw1".to_string()].into();
        let peers: Vec<_> = active_nexthops(&r, &down).iter().map(|h| &h.peer).collect();
        assert_eq!(peers, ["gw2", "gw3"]);
        let all: BTreeSet<String> = ["gw1", "gw2", "gw3"].map(String::from).into();
        assert_eq!(active_nexthops(&r, &all).len(), 3);
    }

    #[test]
    fn pinned_picks_one_and_only_its_failure_moves_it() {
        // Over many keys both ends agree (same function), each gateway gets some keys, and
        // pulling one gateway moves only the keys it had.
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..300 {
            let key = format!("site-{i}|site-x");
            let r = route(Some(&key));
            let before = active_nexthops(&r, &BTreeSet::new());
            assert_eq!(before.len(), 1);
            *count.entry(before[0].peer.clone()).or_default() += 1;
            let down: BTreeSet<String> = ["gw2".to_string()].into();
            let after = active_nexthops(&r, &down);
            assert_eq!(after.len(), 1);
            if before[0].peer != "gw2" {
                assert_eq!(after[0].peer, before[0].peer, "key {key} moved needlessly");
            } else {
                assert_ne!(after[0].peer, "gw2");
            }
        }
        assert_eq!(count.len(), 3, "{count:?}");
        assert!(count.values().all(|c| *c > 50), "{count:?}");
    }

    #[test]
    fn wireguard_gives_a_shared_prefix_to_the_active_peer_only() {
        let mut plan = NodeDataplane::default();
        let prefix: ipnet::IpNet = "10.9.0.0/16".parse().unwrap();
        let r = route(Some("a|b"));
        let chosen = active_nexthops(&r, &BTreeSet::new())[0].peer.clone();
        plan.routes.insert(prefix, r);
        for gw in ["gw1", "gw2", "gw3"] {
            let own: ipnet::IpNet = format!("10.1.{}.0/24", &gw[2..]).parse().unwrap();
            plan.wireguard.peers.insert(
                gw.into(),
                WireGuardPeer {
                    public_key: String::new(),
                    endpoint: None,
                    allowed_ips: vec![own, prefix],
                    persistent_keepalive: None,
                },
            );
        }
        let eff = wireguard_effective(&plan, &BTreeSet::new());
        for (name, p) in &eff.peers {
            assert_eq!(p.allowed_ips.contains(&prefix), *name == chosen, "{name}");
            assert_eq!(p.allowed_ips.len(), 1 + usize::from(*name == chosen));
        }
        let down: BTreeSet<String> = [chosen.clone()].into();
        let eff = wireguard_effective(&plan, &down);
        assert!(!eff.peers[&chosen].allowed_ips.contains(&prefix));
        assert_eq!(
            eff.peers
                .values()
                .filter(|p| p.allowed_ips.contains(&prefix))
                .count(),
            1
        );
    }
}
