//! Kernel-level desired state of the netlink dataplane and its diff.
//!
//! The agent renders the planner's [`NodeDataplane`](crate::core::NodeDataplane) into the
//! kernel objects it owns ([`KernelState`]: per-peer tunnel devices and routes tagged with
//! [`ROUTE_PROTOCOL`]), reads the same shape back from the kernel, and applies only the
//! difference. Diffing against what the kernel holds (not against the previous plan) is what
//! lets a restarted agent adopt existing state without touching it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Routing protocol number on every route the agent owns (`ip route show proto 85`); the
/// agent never reads, changes or deletes routes with any other protocol.
pub const ROUTE_PROTOCOL: u8 = 0x55;
/// UDP port of per-peer VXLAN devices (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// UDP port of per-peer GENEVE devices (IANA).
pub const GENEVE_PORT: u16 = 6081;
/// Gateway address every IPv4 route through an L2 tunnel (VXLAN, GENEVE) uses, `onlink`,
/// with a permanent neighbour entry on each tunnel device pointing at the peer's tunnel MAC.
/// The per-device neighbour tables make one well-known address enough, and no ARP or NDP
/// ever crosses a tunnel.
pub const TUNNEL_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 85, 1);
/// IPv6 counterpart of [`TUNNEL_GATEWAY_V4`] (link-local, so no `onlink` is needed).
pub const TUNNEL_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0x55, 1);

/// MAC address of this node's L2 tunnel devices, derived from its underlay address so the
/// peer can compute it too. The ends of a link must differ: the VXLAN driver drops frames
/// whose source MAC is its own (loop protection).
pub fn tunnel_mac(underlay: IpAddr) -> [u8; 6] {
    let b = match underlay {
        IpAddr::V4(v) => v.octets(),
        IpAddr::V6(v) => {
            let o = v.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    [0x02, 0x55, b[0], b[1], b[2], b[3]]
}

/// Encapsulation of one per-peer tunnel device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TunnelKind {
    Vxlan { vni: u32 },
    Geneve { vni: u32 },
    Ipip,
}

impl TunnelKind {
    /// Short tag used in interface names.
    /// Whether the device carries Ethernet frames (and so needs the neighbour entries).
    pub fn is_l2(&self) -> bool {
        !matches!(self, TunnelKind::Ipip)
    }

    pub fn tag(&self) -> &'static str {
        match self {
            TunnelKind::Vxlan { .. } => "vx",
            TunnelKind::Geneve { .. } => "gn",
            TunnelKind::Ipip => "ip",
        }
    }
}

/// One per-peer tunnel device the agent owns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TunnelDevice {
    pub name: String,
    pub kind: TunnelKind,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub mtu: u32,
}

/// How one nexthop of an owned route leaves the node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelNextHop {
    /// Out of a point-to-point device (tunnel or WireGuard), no gateway.
    Device(String),
    /// Via a gateway on the underlay (`None` encapsulation).
    Gateway(IpAddr),
}

impl fmt::Display for KernelNextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelNextHop::Device(d) => write!(f, "dev {d}"),
            KernelNextHop::Gateway(g) => write!(f, "via {g}"),
        }
    }
}

/// One owned route. Several nexthops form an ECMP route; they are kept sorted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelRoute {
    pub nexthops: Vec<KernelNextHop>,
    /// Route MTU metric (`mtu` in `ip route`); 0 means none.
    pub mtu: u32,
}

/// Everything the netlink dataplane owns on a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelState {
    /// Keyed by interface name.
    pub tunnels: BTreeMap<String, TunnelDevice>,
    pub routes: BTreeMap<IpNet, KernelRoute>,
}

/// One change to kernel state; one or two netlink requests each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelOp {
    AddTunnel(TunnelDevice),
    SetTunnelMtu {
        name: String,
        mtu: u32,
    },
    DeleteTunnel(String),
    /// Add or replace (`ip route replace`).
    ReplaceRoute {
        prefix: IpNet,
        route: KernelRoute,
    },
    DeleteRoute(IpNet),
}

impl fmt::Display for KernelOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelOp::AddTunnel(t) => write!(
                f,
                "add tunnel {} {:?} {} -> {} mtu {}",
                t.name, t.kind, t.local, t.remote, t.mtu
            ),
            KernelOp::SetTunnelMtu { name, mtu } => write!(f, "set tunnel {name} mtu {mtu}"),
            KernelOp::DeleteTunnel(n) => write!(f, "delete tunnel {n}"),
            KernelOp::ReplaceRoute { prefix, route } => {
                write!(f, "replace route {prefix}")?;
                for nh in &route.nexthops {
                    write!(f, " [{nh}]")?;
                }
                write!(f, " mtu {}", route.mtu)
            }
            KernelOp::DeleteRoute(p) => write!(f, "delete route {p}"),
        }
    }
}

/// The operations that turn `current` into `desired`, in a safe order: new devices first,
/// then routes, then removals. A device whose identity changed (remote, local, encapsulation)
/// is deleted and re-created, and every route through it is re-issued (deleting a device
/// drops its routes).
pub fn diff(current: &KernelState, desired: &KernelState) -> Vec<KernelOp> {
    let mut ops = Vec::new();
    let mut recreated = Vec::new();
    for (name, want) in &desired.tunnels {
        match current.tunnels.get(name) {
            None => ops.push(KernelOp::AddTunnel(want.clone())),
            Some(have)
                if have.kind != want.kind
                    || have.local != want.local
                    || have.remote != want.remote =>
            {
                ops.push(KernelOp::DeleteTunnel(name.clone()));
                ops.push(KernelOp::AddTunnel(want.clone()));
                recreated.push(name.clone());
            }
            Some(have) if have.mtu != want.mtu => ops.push(KernelOp::SetTunnelMtu {
                name: name.clone(),
                mtu: want.mtu,
            }),
            Some(_) => {}
        }
    }
    for (prefix, want) in &desired.routes {
        let through_recreated = want
            .nexthops
            .iter()
            .any(|nh| matches!(nh, KernelNextHop::Device(d) if recreated.contains(d)));
        if current.routes.get(prefix) != Some(want) || through_recreated {
            ops.push(KernelOp::ReplaceRoute {
                prefix: *prefix,
                route: want.clone(),
            });
        }
    }
    for prefix in current.routes.keys() {
        if !desired.routes.contains_key(prefix) {
            ops.push(KernelOp::DeleteRoute(*prefix));
        }
    }
    for name in current.tunnels.keys() {
        if !desired.tunnels.contains_key(name) {
            ops.push(KernelOp::DeleteTunnel(name.clone()));
        }
    }
    ops
}

/// Applies ops to an in-memory state (what the kernel will hold after a successful apply).
pub fn apply_to(state: &mut KernelState, ops: &[KernelOp]) {
    for op in ops {
        match op {
            KernelOp::AddTunnel(t) => {
                state.tunnels.insert(t.name.clone(), t.clone());
            }
            KernelOp::SetTunnelMtu { name, mtu } => {
                if let Some(t) = state.tunnels.get_mut(name) {
                    t.mtu = *mtu;
                }
            }
            KernelOp::DeleteTunnel(name) => {
                state.tunnels.remove(name);
                // The kernel drops routes through a deleted device.
                state.routes.retain(|_, r| {
                    !r.nexthops
                        .iter()
                        .any(|nh| matches!(nh, KernelNextHop::Device(d) if d == name))
                });
            }
            KernelOp::ReplaceRoute { prefix, route } => {
                state.routes.insert(*prefix, route.clone());
            }
            KernelOp::DeleteRoute(p) => {
                state.routes.remove(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(name: &str, remote: &str) -> TunnelDevice {
        TunnelDevice {
            name: name.into(),
            kind: TunnelKind::Vxlan { vni: 7 },
            local: "192.0.2.1".parse().unwrap(),
            remote: remote.parse().unwrap(),
            mtu: 1450,
        }
    }

    fn route(devs: &[&str]) -> KernelRoute {
        KernelRoute {
            nexthops: devs
                .iter()
                .map(|d| KernelNextHop::Device(d.to_string()))
                .collect(),
            mtu: 1450,
        }
    }

    fn state(n_routes: usize) -> KernelState {
        let mut s = KernelState::default();
        s.tunnels
            .insert("unvxa".into(), tunnel("unvxa", "192.0.2.2"));
        s.tunnels
            .insert("unvxb".into(), tunnel("unvxb", "192.0.2.3"));
        for i in 0..n_routes {
            let p: IpNet = format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap();
            s.routes.insert(p, route(&["unvxa", "unvxb"]));
        }
        s
    }

    #[test]
    fn equal_states_need_no_ops() {
        assert!(diff(&state(100), &state(100)).is_empty());
    }

    #[test]
    fn one_prefix_change_is_one_op() {
        let current = state(1000);
        let mut desired = current.clone();
        let p: IpNet = "10.0.5.0/24".parse().unwrap();
        desired.routes.insert(p, route(&["unvxa"]));
        let ops = diff(&current, &desired);
        assert_eq!(ops.len(), 1, "{ops:?}");
        let mut after = current.clone();
        apply_to(&mut after, &ops);
        assert_eq!(after, desired);
    }

    #[test]
    fn changed_remote_recreates_device_and_reissues_its_routes() {
        let current = state(3);
        let mut desired = current.clone();
        desired
            .tunnels
            .insert("unvxa".into(), tunnel("unvxa", "192.0.2.99"));
        let ops = diff(&current, &desired);
        assert_eq!(ops[0], KernelOp::DeleteTunnel("unvxa".into()));
        assert!(matches!(ops[1], KernelOp::AddTunnel(_)));
        assert_eq!(ops.len(), 2 + 3, "{ops:?}");
        let mut after = current.clone();
        apply_to(&mut after, &ops);
        assert_eq!(after, desired);
    }

    #[test]
    fn removals_come_after_additions() {
        let current = state(2);
        let mut desired = KernelState::default();
        desired
            .tunnels
            .insert("unvxc".into(), tunnel("unvxc", "192.0.2.4"));
        let ops = diff(&current, &desired);
        assert!(matches!(ops[0], KernelOp::AddTunnel(_)));
        assert!(matches!(ops.last(), Some(KernelOp::DeleteTunnel(_))));
        let mut after = current.clone();
        apply_to(&mut after, &ops);
        assert_eq!(after, desired);
    }
}
