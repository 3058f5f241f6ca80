//! Renders the planner's per-node plan into the kernel objects of the netlink dataplane.
//!
//! Pure. Bad entries (an MTU below 576, an IPIP link over IPv6, a WireGuard peer with a
//! garbage key) skip that peer or prefix and are returned as [`RenderProblem`]s naming the
//! object; the rest of the node is still rendered.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::kernel::{KernelNextHop, KernelRoute, KernelState, TunnelDevice, TunnelKind};
use crate::core::dataplane::{Encap, NodeDataplane, OVERLAY_VNI, Route, TunnelPeer};
use crate::core::snapshot::is_wireguard_key;
use crate::core::steering::active_nexthops;

/// Smallest MTU the agent accepts on a link or route (the IPv4 minimum reassembly size).
pub const MIN_MTU: u32 = 576;
/// Largest MTU the agent accepts: a link never exceeds its underlay, and nodes publish
/// underlay MTUs up to this (an AWS jumbo underlay is 9001, loopback-like ones larger).
pub const MAX_MTU: u32 = crate::core::mtu::MAX_UNDERLAY_MTU;

/// Something in the plan the agent skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderProblem {
    #[error("peer {peer}: tunnel MTU {mtu} is outside {MIN_MTU}..={MAX_MTU}; peer skipped")]
    TunnelMtu { peer: String, mtu: u32 },
    #[error(
        "peer {peer}: {encap} link needs local and remote addresses of one family ({local} / {remote}); peer skipped"
    )]
    AddressFamily {
        peer: String,
        encap: Encap,
        local: IpAddr,
        remote: IpAddr,
    },
    #[error("peer {peer}: IPIP carries IPv4 underlay only, got {remote}; peer skipped")]
    IpipOverIpv6 { peer: String, remote: IpAddr },
    #[error("peer {peer}: {encap} is not a per-peer tunnel encapsulation; peer skipped")]
    NotATunnel { peer: String, encap: Encap },
    #[error("peer {peer}: WireGuard public key {key:?} is not a 32-byte base64 key; peer skipped")]
    WireGuardKey { peer: String, key: String },
    #[error("peer {peer}: interface name {name} is already used by peer {other}; peer skipped")]
    NameClash {
        peer: String,
        other: String,
        name: String,
    },
    #[error("route {prefix}: MTU {mtu} is outside {MIN_MTU}..={MAX_MTU}; route skipped")]
    RouteMtu { prefix: IpNet, mtu: u32 },
    #[error("route {prefix}: no usable nexthop (all of its peers were skipped); route skipped")]
    NoNextHop { prefix: IpNet },
}

/// Interface name of the per-peer tunnel to `peer` (at most 15 bytes, as Linux requires).
pub fn tunnel_name(kind: TunnelKind, peer: &str) -> String {
    format!("un{}{:08x}", kind.tag(), fnv1a32(peer.as_bytes()))
}

/// Name prefixes of every interface the netlink dataplane owns.
pub fn is_owned_tunnel_name(name: &str) -> bool {
    ["unvx", "ungn", "unip"]
        .iter()
        .any(|p| name.len() == 12 && name.starts_with(p))
}

/// Whether an owned interface carries Ethernet (VXLAN, GENEVE) and so is reached through
/// the well-known tunnel gateway.
pub fn is_l2_tunnel_name(name: &str) -> bool {
    is_owned_tunnel_name(name) && !name.starts_with("unip")
}

/// VNI of the VXLAN link between two underlay addresses. Linux refuses two VXLAN devices
/// with one VNI on one port, so per-peer devices need one VNI per link; both ends derive the
/// same value from the unordered address pair (the plan's single VNI serves the flow-based
/// eBPF devices). Never 0 or the shared [`OVERLAY_VNI`].
pub fn link_vni(a: IpAddr, b: IpAddr) -> u32 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut bytes = Vec::with_capacity(32);
    for ip in [lo, hi] {
        match ip {
            IpAddr::V4(v) => bytes.extend_from_slice(&v.octets()),
            IpAddr::V6(v) => bytes.extend_from_slice(&v.octets()),
        }
    }
    2 + fnv1a32(&bytes) % ((1 << 24) - 2)
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The kernel state for `plan`, with `unhealthy` peers pulled from ECMP. If every nexthop of
/// a route is unhealthy the route keeps them all: a route that fails open to its tunnels is
/// better than one that silently falls back to the default route in plaintext.
pub fn render(
    plan: &NodeDataplane,
    wireguard_device: &str,
    unhealthy: &BTreeSet<String>,
) -> (KernelState, Vec<RenderProblem>) {
    let mut state = KernelState::default();
    let mut problems = Vec::new();
    let mut peer_device: BTreeMap<&str, String> = BTreeMap::new();
    let mut name_owner: BTreeMap<String, &str> = BTreeMap::new();

    for (peer, t) in &plan.tunnels {
        match tunnel_device(peer, t) {
            Ok(dev) => {
                if let Some(other) = name_owner.get(&dev.name) {
                    problems.push(RenderProblem::NameClash {
                        peer: peer.clone(),
                        other: other.to_string(),
                        name: dev.name.clone(),
                    });
                    continue;
                }
                name_owner.insert(dev.name.clone(), peer);
                peer_device.insert(peer, dev.name.clone());
                state.tunnels.insert(dev.name.clone(), dev);
            }
            Err(p) => problems.push(p),
        }
    }
    let mut wg_peers = BTreeSet::new();
    for (peer, p) in &plan.wireguard.peers {
        if is_wireguard_key(&p.public_key) {
            wg_peers.insert(peer.as_str());
        } else {
            problems.push(RenderProblem::WireGuardKey {
                peer: peer.clone(),
                key: p.public_key.clone(),
            });
        }
    }

    for (prefix, route) in &plan.routes {
        if !(MIN_MTU..=MAX_MTU).contains(&route.mtu) {
            problems.push(RenderProblem::RouteMtu {
                prefix: *prefix,
                mtu: route.mtu,
            });
            continue;
        }
        // Only nexthops the kernel can use take part (a peer skipped above is no candidate).
        let usable = Route {
            nexthops: route
                .nexthops
                .iter()
                .filter(|nh| match nh.encap {
                    Encap::None => true,
                    Encap::WireGuard => wg_peers.contains(nh.peer.as_str()),
                    Encap::Vxlan | Encap::Geneve | Encap::Ipip => {
                        peer_device.contains_key(nh.peer.as_str())
                    }
                })
                .cloned()
                .collect(),
            mtu: route.mtu,
            pin: route.pin.clone(),
        };
        let mut nexthops: Vec<KernelNextHop> = active_nexthops(&usable, unhealthy)
            .into_iter()
            .map(|nh| match nh.encap {
                Encap::None => KernelNextHop::Gateway(nh.underlay),
                Encap::WireGuard => KernelNextHop::Device(wireguard_device.to_string()),
                Encap::Vxlan | Encap::Geneve | Encap::Ipip => {
                    KernelNextHop::Device(peer_device[nh.peer.as_str()].clone())
                }
            })
            .collect();
        nexthops.sort();
        nexthops.dedup();
        if nexthops.is_empty() {
            problems.push(RenderProblem::NoNextHop { prefix: *prefix });
            continue;
        }
        state.routes.insert(
            *prefix,
            KernelRoute {
                nexthops,
                mtu: route.mtu,
            },
        );
    }
    (state, problems)
}

fn tunnel_device(peer: &str, t: &TunnelPeer) -> Result<TunnelDevice, RenderProblem> {
    if !(MIN_MTU..=MAX_MTU).contains(&t.mtu) {
        return Err(RenderProblem::TunnelMtu {
            peer: peer.to_string(),
            mtu: t.mtu,
        });
    }
    if t.local.is_ipv4() != t.remote.is_ipv4() {
        return Err(RenderProblem::AddressFamily {
            peer: peer.to_string(),
            encap: t.encap,
            local: t.local,
            remote: t.remote,
        });
    }
    let kind = match t.encap {
        Encap::Vxlan => TunnelKind::Vxlan {
            vni: link_vni(t.local, t.remote),
        },
        Encap::Geneve => TunnelKind::Geneve {
            vni: t.vni.unwrap_or(OVERLAY_VNI),
        },
        Encap::Ipip if t.remote.is_ipv4() => TunnelKind::Ipip,
        Encap::Ipip => {
            return Err(RenderProblem::IpipOverIpv6 {
                peer: peer.to_string(),
                remote: t.remote,
            });
        }
        other => {
            return Err(RenderProblem::NotATunnel {
                peer: peer.to_string(),
                encap: other,
            });
        }
    };
    Ok(TunnelDevice {
        name: tunnel_name(kind, peer),
        kind,
        local: t.local,
        remote: t.remote,
        mtu: t.mtu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dataplane::{NextHop, Route, WireGuardPeer};

    const KEY: &str = "YBk0Kc9rPz6Yx3dDUqVJtD6rXqv3y9TAfHhmB4yF7Ww=";

    fn nh(peer: &str, encap: Encap, underlay: &str) -> NextHop {
        NextHop {
            peer: peer.into(),
            encap,
            underlay: underlay.parse().unwrap(),
            vni: None,
        }
    }

    fn tunnel(encap: Encap, remote: &str, mtu: u32) -> TunnelPeer {
        TunnelPeer {
            encap,
            local: "192.0.2.1".parse().unwrap(),
            remote: remote.parse().unwrap(),
            vni: Some(OVERLAY_VNI),
            mtu,
        }
    }

    fn plan() -> NodeDataplane {
        let mut p = NodeDataplane {
            node: "a".into(),
            ..Default::default()
        };
        p.tunnels
            .insert("gw1".into(), tunnel(Encap::Vxlan, "192.0.2.11", 1450));
        p.tunnels
            .insert("gw2".into(), tunnel(Encap::Vxlan, "192.0.2.12", 1450));
        p.tunnels
            .insert("tiny".into(), tunnel(Encap::Vxlan, "192.0.2.13", 500));
        p.wireguard.peers.insert(
            "wg-good".into(),
            WireGuardPeer {
                public_key: KEY.into(),
                endpoint: None,
                allowed_ips: vec![],
                persistent_keepalive: None,
            },
        );
        p.wireguard.peers.insert(
            "wg-bad".into(),
            WireGuardPeer {
                public_key: "not-a-key".into(),
                endpoint: None,
                allowed_ips: vec![],
                persistent_keepalive: None,
            },
        );
        let route = |nexthops| Route {
            nexthops,
            mtu: 1400,
            pin: None,
        };
        p.routes.insert(
            "10.2.0.0/16".parse().unwrap(),
            route(vec![
                nh("gw1", Encap::Vxlan, "192.0.2.11"),
                nh("gw2", Encap::Vxlan, "192.0.2.12"),
            ]),
        );
        p.routes.insert(
            "10.3.0.0/24".parse().unwrap(),
            route(vec![nh("tiny", Encap::Vxlan, "192.0.2.13")]),
        );
        p.routes.insert(
            "10.4.0.0/24".parse().unwrap(),
            route(vec![nh("wg-good", Encap::WireGuard, "198.51.100.4")]),
        );
        p.routes.insert(
            "10.5.0.0/24".parse().unwrap(),
            route(vec![nh("wg-bad", Encap::WireGuard, "198.51.100.5")]),
        );
        p.routes.insert(
            "10.6.0.0/24".parse().unwrap(),
            route(vec![nh("er", Encap::None, "172.16.0.6")]),
        );
        p
    }

    #[test]
    fn bad_peers_are_skipped_and_named_the_rest_renders() {
        let (state, problems) = render(&plan(), "unwg0", &BTreeSet::new());
        assert_eq!(state.tunnels.len(), 2);
        assert!(problems.contains(&RenderProblem::TunnelMtu {
            peer: "tiny".into(),
            mtu: 500
        }));
        assert!(problems.iter().any(|p| p.to_string().contains("wg-bad")));
        let prefixes: Vec<String> = state.routes.keys().map(|p| p.to_string()).collect();
        assert_eq!(prefixes, ["10.2.0.0/16", "10.4.0.0/24", "10.6.0.0/24"]);
        let ecmp = &state.routes[&"10.2.0.0/16".parse().unwrap()];
        assert_eq!(ecmp.nexthops.len(), 2);
        assert_eq!(ecmp.mtu, 1400);
        assert_eq!(
            state.routes[&"10.6.0.0/24".parse().unwrap()].nexthops,
            vec![KernelNextHop::Gateway("172.16.0.6".parse().unwrap())]
        );
    }

    #[test]
    fn unhealthy_gateway_leaves_ecmp_unless_it_is_the_last() {
        let down = BTreeSet::from(["gw1".to_string()]);
        let (state, _) = render(&plan(), "unwg0", &down);
        let r = &state.routes[&"10.2.0.0/16".parse().unwrap()];
        assert_eq!(
            r.nexthops,
            vec![KernelNextHop::Device(tunnel_name(
                state
                    .tunnels
                    .values()
                    .find(|t| t.remote.to_string() == "192.0.2.12")
                    .unwrap()
                    .kind,
                "gw2"
            ))]
        );
        let both = BTreeSet::from(["gw1".to_string(), "gw2".to_string()]);
        let (state, _) = render(&plan(), "unwg0", &both);
        assert_eq!(
            state.routes[&"10.2.0.0/16".parse().unwrap()].nexthops.len(),
            2
        );
    }

    #[test]
    fn vxlan_vni_is_symmetric_and_names_fit_ifnamsiz() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(link_vni(a, b), link_vni(b, a));
        assert_ne!(link_vni(a, b), link_vni(a, "192.0.2.3".parse().unwrap()));
        let name = tunnel_name(TunnelKind::Ipip, "some-very-long-node-name.example.com");
        assert!(name.len() <= 15 && is_owned_tunnel_name(&name), "{name}");
    }
}
