//! The difference between two desired data planes of one node, as the operations a driver
//! executes and a human-readable change list.
//!
//! Cost is linear in the size of the two plans with a merge walk over their sorted maps; the
//! number of operations is proportional to what changed, never to the size of the plan.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::dataplane::{
    CniConfig, MasqueradeConfig, NodeDataplane, ProbeTarget, Route, TunnelPeer, WireGuardPeer,
};

/// One change to a node's data plane.
///
/// Changed WireGuard peers, tunnels and probes are expressed as a removal followed by an
/// addition: boringtun (the userspace WireGuard used where the kernel lacks it) cannot change
/// an existing peer, and per-peer tunnel devices cannot change their endpoints in place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "op")]
pub enum DataplaneOp {
    SetWireGuardPort { port: u16 },
    SetCni { cni: CniConfig },
    SetMasquerade { masquerade: MasqueradeConfig },
    AddWireGuardPeer { peer: String, config: WireGuardPeer },
    RemoveWireGuardPeer { peer: String, public_key: String },
    AddTunnel { peer: String, tunnel: TunnelPeer },
    RemoveTunnel { peer: String, tunnel: TunnelPeer },
    AddRoute { prefix: IpNet, route: Route },
    ReplaceRoute { prefix: IpNet, route: Route },
    RemoveRoute { prefix: IpNet },
    AddProbe { peer: String, probe: ProbeTarget },
    RemoveProbe { peer: String },
}

/// Which entries of a keyed map were added, removed or changed.
struct MapDiff<'a, K, V> {
    added: Vec<(&'a K, &'a V)>,
    removed: Vec<(&'a K, &'a V)>,
    /// `(key, old, new)`.
    changed: Vec<(&'a K, &'a V, &'a V)>,
}

fn diff_maps<'a, K: Ord, V: PartialEq>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
) -> MapDiff<'a, K, V> {
    let mut out = MapDiff {
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    };
    let mut o = old.iter().peekable();
    let mut n = new.iter().peekable();
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => break,
            (Some(_), None) => out.removed.extend(o.by_ref()),
            (None, Some(_)) => out.added.extend(n.by_ref()),
            (Some((ok, ov)), Some((nk, nv))) => match ok.cmp(nk) {
                std::cmp::Ordering::Less => {
                    out.removed.push((ok, ov));
                    o.next();
                }
                std::cmp::Ordering::Greater => {
                    out.added.push((nk, nv));
                    n.next();
                }
                std::cmp::Ordering::Equal => {
                    if ov != nv {
                        out.changed.push((ok, ov, nv));
                    }
                    o.next();
                    n.next();
                }
            },
        }
    }
    out
}

/// The operations that turn `old` into `new`, in a safe order: settings; peers and tunnels
/// (new and changed) before the routes that use them; route additions and replacements; route
/// removals; then peers and tunnels no longer used; probes last.
///
/// Identical plans give an empty list.
pub fn diff(old: &NodeDataplane, new: &NodeDataplane) -> Vec<DataplaneOp> {
    let mut ops = Vec::new();
    if old.wireguard.listen_port != new.wireguard.listen_port {
        ops.push(DataplaneOp::SetWireGuardPort {
            port: new.wireguard.listen_port,
        });
    }
    if old.cni != new.cni {
        ops.push(DataplaneOp::SetCni {
            cni: new.cni.clone(),
        });
    }
    if old.masquerade != new.masquerade {
        ops.push(DataplaneOp::SetMasquerade {
            masquerade: new.masquerade.clone(),
        });
    }

    let wg = diff_maps(&old.wireguard.peers, &new.wireguard.peers);
    for (peer, old_cfg, new_cfg) in &wg.changed {
        ops.push(DataplaneOp::RemoveWireGuardPeer {
            peer: (*peer).clone(),
            public_key: old_cfg.public_key.clone(),
        });
        ops.push(DataplaneOp::AddWireGuardPeer {
            peer: (*peer).clone(),
            config: (*new_cfg).clone(),
        });
    }
    for (peer, cfg) in &wg.added {
        ops.push(DataplaneOp::AddWireGuardPeer {
            peer: (*peer).clone(),
            config: (*cfg).clone(),
        });
    }
    let tunnels = diff_maps(&old.tunnels, &new.tunnels);
    for (peer, old_t, new_t) in &tunnels.changed {
        ops.push(DataplaneOp::RemoveTunnel {
            peer: (*peer).clone(),
            tunnel: (*old_t).clone(),
        });
        ops.push(DataplaneOp::AddTunnel {
            peer: (*peer).clone(),
            tunnel: (*new_t).clone(),
        });
    }
    for (peer, t) in &tunnels.added {
        ops.push(DataplaneOp::AddTunnel {
            peer: (*peer).clone(),
            tunnel: (*t).clone(),
        });
    }

    let routes = diff_maps(&old.routes, &new.routes);
    for (prefix, route) in &routes.added {
        ops.push(DataplaneOp::AddRoute {
            prefix: **prefix,
            route: (*route).clone(),
        });
    }
    for (prefix, _, route) in &routes.changed {
        ops.push(DataplaneOp::ReplaceRoute {
            prefix: **prefix,
            route: (*route).clone(),
        });
    }
    for (prefix, _) in &routes.removed {
        ops.push(DataplaneOp::RemoveRoute { prefix: **prefix });
    }

    for (peer, cfg) in &wg.removed {
        ops.push(DataplaneOp::RemoveWireGuardPeer {
            peer: (*peer).clone(),
            public_key: cfg.public_key.clone(),
        });
    }
    for (peer, t) in &tunnels.removed {
        ops.push(DataplaneOp::RemoveTunnel {
            peer: (*peer).clone(),
            tunnel: (*t).clone(),
        });
    }

    let probes = diff_maps(&old.probes, &new.probes);
    for (peer, _) in &probes.removed {
        ops.push(DataplaneOp::RemoveProbe {
            peer: (*peer).clone(),
        });
    }
    for (peer, _, probe) in &probes.changed {
        ops.push(DataplaneOp::RemoveProbe {
            peer: (*peer).clone(),
        });
        ops.push(DataplaneOp::AddProbe {
            peer: (*peer).clone(),
            probe: (*probe).clone(),
        });
    }
    for (peer, probe) in &probes.added {
        ops.push(DataplaneOp::AddProbe {
            peer: (*peer).clone(),
            probe: (*probe).clone(),
        });
    }
    ops
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "via ")?;
        for (i, hop) in self.nexthops.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{} ({} {})", hop.peer, hop.encap, hop.underlay)?;
        }
        if let Some(key) = &self.pin {
            write!(f, " one gateway for {key:?}")?;
        }
        write!(f, " mtu {}", self.mtu)
    }
}

impl fmt::Display for DataplaneOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataplaneOp::SetWireGuardPort { port } => {
                write!(f, "~ wireguard listen port {port}")
            }
            DataplaneOp::SetCni { cni } => write!(
                f,
                "~ cni manage={} ranges [{}] mtu {}",
                cni.manage,
                join(&cni.ranges),
                cni.mtu
            ),
            DataplaneOp::SetMasquerade { masquerade } => write!(
                f,
                "~ masquerade from [{}] except to [{}] and [{}]; clamp MSS to [{}]",
                join(&masquerade.source_cidrs),
                join(&masquerade.cluster_pod_cidrs),
                join(&masquerade.non_masquerade_cidrs),
                join(&masquerade.mss_clamp_cidrs)
            ),
            DataplaneOp::AddWireGuardPeer { peer, config } => {
                write!(f, "+ wireguard peer {peer} key {}", config.public_key)?;
                match config.endpoint {
                    Some(ep) => write!(f, " endpoint {ep}")?,
                    None => write!(f, " (no endpoint: peer dials in)")?,
                }
                write!(f, " allowed [{}]", join(&config.allowed_ips))?;
                if let Some(k) = config.persistent_keepalive {
                    write!(f, " keepalive {k}s")?;
                }
                Ok(())
            }
            DataplaneOp::RemoveWireGuardPeer { peer, public_key } => {
                write!(f, "- wireguard peer {peer} key {public_key}")
            }
            DataplaneOp::AddTunnel { peer, tunnel } => write!(
                f,
                "+ {} tunnel to {peer} {} -> {} mtu {}",
                tunnel.encap, tunnel.local, tunnel.remote, tunnel.mtu
            ),
            DataplaneOp::RemoveTunnel { peer, tunnel } => write!(
                f,
                "- {} tunnel to {peer} {} -> {}",
                tunnel.encap, tunnel.local, tunnel.remote
            ),
            DataplaneOp::AddRoute { prefix, route } => write!(f, "+ route {prefix} {route}"),
            DataplaneOp::ReplaceRoute { prefix, route } => write!(f, "~ route {prefix} {route}"),
            DataplaneOp::RemoveRoute { prefix } => write!(f, "- route {prefix}"),
            DataplaneOp::AddProbe { peer, probe } => {
                write!(f, "+ probe {peer} at {}", probe.address)?;
                if probe.enabled {
                    write!(
                        f,
                        " every {:?}, down after {} x {:?}",
                        probe.transmit_interval, probe.multiplier, probe.receive_interval
                    )
                } else {
                    write!(f, " (disabled)")
                }
            }
            DataplaneOp::RemoveProbe { peer } => write!(f, "- probe {peer}"),
        }
    }
}

/// The change list as text, one operation per line.
pub fn describe(ops: &[DataplaneOp]) -> String {
    ops.iter().map(|op| format!("{op}\n")).collect()
}
