//! The forwarding model: follows a pod packet hop by hop over the data planes the agents
//! applied (route longest-prefix match, ECMP by flow hash over the nexthops not pulled for
//! health, tunnel encapsulation, gateway, decapsulation at the destination node).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;
use unbounded_net::core::{Encap, NextHop, Route};

use crate::observe::NodeView;

/// Most hops a packet may take before it is declared looping.
const MAX_HOPS: usize = 16;

/// One hop of a traced packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub from: String,
    pub to: String,
    pub encap: Encap,
    pub underlay: IpAddr,
    /// Route MTU at the forwarding node.
    pub mtu: u32,
    /// Largest inner packet the underlay really carries on this hop: the smallest MTU of the
    /// two machines' networks and the link between them, less the encapsulation overhead.
    pub wire_mtu: u32,
    /// How many usable ECMP members the forwarding node chose from.
    pub choices: usize,
}

/// What became of a packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    Delivered { node: String },
    Dropped { at: String, reason: String },
    Looped { at: String },
}

/// A traced packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathTrace {
    pub hops: Vec<Hop>,
    pub outcome: Outcome,
}

impl PathTrace {
    pub fn delivered(&self) -> bool {
        matches!(self.outcome, Outcome::Delivered { .. })
    }

    /// `a -VXLAN-> b -WireGuard-> c: delivered` style summary.
    pub fn describe(&self, src: &str) -> String {
        let mut s = src.to_string();
        for h in &self.hops {
            s.push_str(&format!(" -{}-> {}", h.encap, h.to));
        }
        match &self.outcome {
            Outcome::Delivered { .. } => s.push_str(": delivered"),
            Outcome::Dropped { at, reason } => s.push_str(&format!(": dropped at {at} ({reason})")),
            Outcome::Looped { at } => s.push_str(&format!(": loop at {at}")),
        }
        s
    }
}

/// Which machines can exchange underlay packets right now.
pub trait Underlay {
    fn can_reach(&self, from: &str, to: &str) -> bool;
    /// Largest packet the underlay carries between the two machines (unlimited by default).
    fn mtu(&self, from: &str, to: &str) -> u32 {
        let _ = (from, to);
        u32::MAX
    }
}

/// Longest-prefix match: one map probe per prefix length, longest first.
pub fn lookup(routes: &BTreeMap<IpNet, Route>, dst: IpAddr) -> Option<(&IpNet, &Route)> {
    let max = if dst.is_ipv4() { 32 } else { 128 };
    for len in (0..=max).rev() {
        let Ok(net) = IpNet::new(dst, len) else {
            continue;
        };
        if let Some(hit) = routes.get_key_value(&net.trunc()) {
            return Some(hit);
        }
    }
    None
}

/// The nexthops the kernel would use: those not pulled for health, or all of them when every
/// one is pulled (routes fail open to their tunnels, as the renderer does).
pub fn usable_nexthops<'a>(route: &'a Route, pulled: &BTreeSet<String>) -> Vec<&'a NextHop> {
    let healthy: Vec<&NextHop> = route
        .nexthops
        .iter()
        .filter(|h| !pulled.contains(&h.peer))
        .collect();
    if healthy.is_empty() {
        route.nexthops.iter().collect()
    } else {
        healthy
    }
}

/// Follows one packet from a pod on `src` to `dst`, choosing ECMP members by `flow_hash`.
/// `owner` maps pod CIDRs to the node they belong to (from the API's Node objects).
pub fn trace(
    views: &BTreeMap<String, NodeView>,
    owner: &dyn Fn(IpAddr) -> Option<String>,
    underlay: &dyn Underlay,
    src: &str,
    dst: IpAddr,
    flow_hash: u64,
) -> PathTrace {
    let mut hops = Vec::new();
    let mut at = src.to_string();
    let mut seen = BTreeSet::new();
    let drop = |hops, at: &str, reason: String| PathTrace {
        hops,
        outcome: Outcome::Dropped {
            at: at.to_string(),
            reason,
        },
    };
    loop {
        let Some(view) = views.get(&at) else {
            return drop(hops, &at, "no such node".into());
        };
        if !view.up {
            return drop(hops, &at, "machine is down".into());
        }
        if owner(dst).as_deref() == Some(at.as_str()) {
            return PathTrace {
                hops,
                outcome: Outcome::Delivered { node: at },
            };
        }
        if !seen.insert(at.clone()) || hops.len() >= MAX_HOPS {
            return PathTrace {
                hops,
                outcome: Outcome::Looped { at },
            };
        }
        let Some(plan) = &view.applied else {
            return drop(hops, &at, "agent has applied no plan".into());
        };
        let Some((_, route)) = lookup(&plan.routes, dst) else {
            return drop(hops, &at, format!("no route to {dst}"));
        };
        let candidates = usable_nexthops(route, &view.pulled);
        if candidates.is_empty() {
            return drop(hops, &at, format!("route to {dst} has no nexthop"));
        }
        let nh = candidates[(flow_hash % candidates.len() as u64) as usize];
        if !underlay.can_reach(&at, &nh.peer) {
            return drop(hops, &at, format!("underlay to {} is cut", nh.peer));
        }
        hops.push(Hop {
            from: at.clone(),
            to: nh.peer.clone(),
            encap: nh.encap,
            underlay: nh.underlay,
            mtu: route.mtu,
            wire_mtu: underlay
                .mtu(&at, &nh.peer)
                .saturating_sub(unbounded_net::core::overhead(
                    nh.encap,
                    nh.underlay.is_ipv6(),
                )),
            choices: candidates.len(),
        });
        at = nh.peer.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use unbounded_net::core::NodeDataplane;

    struct Open;
    impl Underlay for Open {
        fn can_reach(&self, _: &str, _: &str) -> bool {
            true
        }
    }

    fn nh(peer: &str, encap: Encap) -> NextHop {
        NextHop {
            peer: peer.into(),
            encap,
            underlay: "10.0.0.1".parse().unwrap(),
            vni: None,
        }
    }

    fn view(routes: Vec<(&str, Vec<NextHop>)>) -> NodeView {
        let mut plan = NodeDataplane::default();
        for (p, nhs) in routes {
            plan.routes.insert(
                p.parse().unwrap(),
                Route {
                    nexthops: nhs,
                    mtu: 1400,
                    pin: None,
                },
            );
        }
        NodeView {
            up: true,
            applied: Some(plan),
            ..Default::default()
        }
    }

    fn owner(ip: IpAddr) -> Option<String> {
        let s = ip.to_string();
        if s.starts_with("10.2.") {
            Some("c".into())
        } else if s.starts_with("10.1.") {
            Some("a".into())
        } else {
            None
        }
    }

    #[test]
    fn follows_gateways_pulls_unhealthy_members_and_detects_loops() {
        let mut views = BTreeMap::new();
        views.insert(
            "a".into(),
            view(vec![(
                "10.2.0.0/16",
                vec![nh("g1", Encap::Vxlan), nh("g2", Encap::Vxlan)],
            )]),
        );
        views.insert(
            "g1".into(),
            view(vec![("10.2.0.0/24", vec![nh("c", Encap::WireGuard)])]),
        );
        views.insert(
            "g2".into(),
            view(vec![("10.2.0.0/16", vec![nh("a", Encap::Vxlan)])]),
        );
        views.insert("c".into(), view(vec![]));
        let dst: IpAddr = "10.2.0.2".parse().unwrap();
        // Hash 0 picks g1: delivered over two hops with their encapsulations.
        let t = trace(&views, &owner, &Open, "a", dst, 0);
        assert!(t.delivered(), "{}", t.describe("a"));
        assert_eq!(
            t.hops.iter().map(|h| h.encap).collect::<Vec<_>>(),
            vec![Encap::Vxlan, Encap::WireGuard]
        );
        // Hash 1 picks g2, which sends it back: a loop.
        let t = trace(&views, &owner, &Open, "a", dst, 1);
        assert!(
            matches!(t.outcome, Outcome::Looped { .. }),
            "{}",
            t.describe("a")
        );
        // g2 pulled for health: every hash now goes through g1.
        views.get_mut("a").unwrap().pulled.insert("g2".into());
        assert!(trace(&views, &owner, &Open, "a", dst, 1).delivered());
        // g1 down: dropped where it happened.
        views.get_mut("g1").unwrap().up = false;
        let t = trace(&views, &owner, &Open, "a", dst, 1);
        assert_eq!(
            t.outcome,
            Outcome::Dropped {
                at: "g1".into(),
                reason: "machine is down".into()
            }
        );
        // No route at all.
        let t = trace(&views, &owner, &Open, "a", "192.0.2.1".parse().unwrap(), 0);
        assert!(matches!(t.outcome, Outcome::Dropped { ref at, .. } if at == "a"));
    }
}
