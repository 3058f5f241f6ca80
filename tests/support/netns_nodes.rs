//! Two-node and gateway topologies for the node agent's namespace tests, with plans built the
//! way the planner builds them (one tunnel per peer, one route per remote pod CIDR).

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this support module"
)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use unbounded_net::core::dataplane::{
    Encap, NextHop, NodeDataplane, OVERLAY_VNI, Route, TunnelPeer,
};

/// A tunnel from `local` to `remote`.
pub fn tunnel(encap: Encap, local: &str, remote: &str, mtu: u32) -> TunnelPeer {
    TunnelPeer {
        encap,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        vni: matches!(encap, Encap::Vxlan | Encap::Geneve).then_some(OVERLAY_VNI),
        mtu,
    }
}

/// A route to `prefix` through `peers` (name, underlay).
pub fn route(encap: Encap, peers: &[(&str, &str)], mtu: u32) -> Route {
    Route {
        nexthops: peers
            .iter()
            .map(|(peer, underlay)| NextHop {
                peer: peer.to_string(),
                encap,
                underlay: underlay.parse::<IpAddr>().unwrap(),
                vni: matches!(encap, Encap::Vxlan | Encap::Geneve).then_some(OVERLAY_VNI),
            })
            .collect(),
        mtu,
        pin: None,
    }
}

/// Plan of a node with one encapsulated link per peer and a route to each peer's pod CIDR.
/// `peers`: (name, local underlay, remote underlay, remote pod CIDR).
pub fn mesh_plan(
    node: &str,
    encap: Encap,
    mtu: u32,
    peers: &[(&str, &str, &str, &str)],
) -> NodeDataplane {
    let mut plan = NodeDataplane {
        node: node.into(),
        ..Default::default()
    };
    for (peer, local, remote, cidr) in peers {
        plan.tunnels
            .insert(peer.to_string(), tunnel(encap, local, remote, mtu));
        plan.routes.insert(
            cidr.parse::<IpNet>().unwrap(),
            route(encap, &[(peer, remote)], mtu),
        );
    }
    plan
}

/// Interface names of every owned tunnel in a namespace's `ip -o link` output.
pub fn owned_links(ip_o_link: &str) -> Vec<String> {
    ip_o_link
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| unbounded_net::node::render::is_owned_tunnel_name(n))
        .collect()
}

pub fn peers_map<V: Clone>(entries: &[(&str, V)]) -> BTreeMap<String, V> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}
