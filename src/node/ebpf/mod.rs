//! The eBPF dataplane: the same [`Dataplane`] seam as the netlink one, driven by the same
//! [`Reconciler`](super::Reconciler), but the per-peer tunnels and multipath routes become
//! entries in two LPM-trie maps read by a TC egress program on the `unbounded0` anchor.
//!
//! - Remote prefixes are kernel routes `dev unbounded0 proto 0x56`; the program on the
//!   anchor looks the destination up, picks a healthy nexthop by flow hash, sets the tunnel
//!   key and redirects to the node's one shared flow-based device per encapsulation
//!   (`vxlan0`, `geneve0`, `ipip0`) or to the WireGuard device.
//! - The anchor is a `dummy`; kernels without one (these build machines) get a veth pair
//!   whose peer `unbounded0p` stays unused, with ARP off on both ends.
//! - Tunnel "devices" of the plan are bookkeeping only: nothing per peer is created.
//! - A peer the probes mark unhealthy keeps its slot with the healthy flag cleared (one
//!   in-place value update per prefix, see [`entry::merge`]); only its flows move.
//! - Prefixes whose nexthops are all plain gateways (no encapsulation) are ordinary kernel
//!   routes via those gateways (same protocol number), not map entries.
//! - No healthy nexthop, or no map entry for a packet the kernel routed to the anchor: the
//!   packet is dropped and counted (`no_healthy`, `misses`); the anchor leads nowhere, so
//!   passing it on would drop it silently instead.
//!
//! The socket and the TC attachment live in the network namespace of the calling thread.

pub mod devices;
pub mod entry;
pub mod export;
pub mod loader;
pub mod maps;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use rtnetlink::Handle;
use unbounded_net_common::{NextHop, flags, proto};

use self::devices::OwnedRoute;
use self::maps::{Counters, RouteMaps};
use super::dataplane::{ApplyReport, Dataplane, DataplaneError, OpFailure};
use super::kernel::{KernelNextHop, KernelOp, KernelRoute, KernelState, TunnelDevice, TunnelKind};

/// The anchor device the program is attached to.
pub const ANCHOR: &str = "unbounded0";
/// Unused peer of the anchor when it has to be a veth pair.
pub const ANCHOR_PEER: &str = "unbounded0p";
/// Routing protocol of every route this dataplane owns (`ip route show proto 0x56`); distinct
/// from the netlink dataplane's so neither ever reads the other's routes.
pub const ANCHOR_ROUTE_PROTOCOL: u8 = 0x56;
/// Where maps and program are pinned by default.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/unbounded-net";

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("this kernel cannot run the eBPF dataplane: {0}; use --dataplane netlink")]
    Unsupported(String),
    #[error("BPF pin directory {path}: {message}")]
    PinDir { path: PathBuf, message: String },
    #[error("cannot load the TC program: {0}")]
    Load(String),
    #[error("map {what}: {message}")]
    Map { what: String, message: String },
    #[error("{0}")]
    Netlink(String),
}

/// Where the dataplane keeps its pins and which device is WireGuard.
#[derive(Clone, Debug)]
pub struct EbpfConfig {
    pub pin_dir: PathBuf,
    pub wireguard_device: String,
}

/// Which dataplane the agent drives (`--dataplane`).
#[derive(Clone, Debug)]
pub enum DataplaneChoice {
    /// Per-peer tunnel devices and kernel multipath routes.
    Netlink,
    /// The TC program and its maps.
    Ebpf(EbpfConfig),
}

/// The [`Dataplane`] backed by the TC program and its maps.
pub struct EbpfDataplane {
    handle: Handle,
    maps: RouteMaps,
    anchor: u32,
    wireguard_device: String,
    /// Per-peer tunnels of the plan, by the name `render` gives them (bookkeeping only).
    tunnels: BTreeMap<String, TunnelDevice>,
    /// Shared flow-based device per tunnel protocol.
    flow_devices: BTreeMap<u8, u32>,
    /// Owned kernel routes as last read or written.
    routes: BTreeMap<IpNet, OwnedRoute>,
}

impl std::fmt::Debug for EbpfDataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfDataplane")
            .field("anchor", &self.anchor)
            .field("tunnels", &self.tunnels.len())
            .field("routes", &self.routes.len())
            .finish()
    }
}

fn protocol_of(kind: TunnelKind) -> (u8, u32) {
    match kind {
        TunnelKind::Vxlan { vni } => (proto::VXLAN, vni),
        TunnelKind::Geneve { vni } => (proto::GENEVE, vni),
        TunnelKind::Ipip => (proto::IPIP, 0),
    }
}

impl EbpfDataplane {
    /// Checks the kernel, creates the anchor, loads and attaches the program (re-using
    /// pinned maps). Must run inside a tokio runtime, in the target network namespace.
    pub async fn connect(cfg: &EbpfConfig) -> Result<Self, EbpfError> {
        loader::check_support()?;
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| EbpfError::Netlink(format!("cannot open a netlink socket: {e}")))?;
        tokio::spawn(conn);
        let anchor = devices::ensure_anchor(&handle)
            .await
            .map_err(EbpfError::Netlink)?;
        let maps = loader::load_and_attach(ANCHOR, &cfg.pin_dir)?;
        Ok(EbpfDataplane {
            handle,
            maps,
            anchor,
            wireguard_device: cfg.wireguard_device.clone(),
            tunnels: BTreeMap::new(),
            flow_devices: BTreeMap::new(),
            routes: BTreeMap::new(),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The program's packet counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, EbpfError> {
        self.maps.counters()
    }

    /// Direct access to the maps (tests and benchmarks poke entries through it).
    pub fn maps_mut(&mut self) -> &mut RouteMaps {
        &mut self.maps
    }

    async fn flow_device(&mut self, protocol: u8) -> Result<u32, String> {
        if let Some(i) = self.flow_devices.get(&protocol) {
            return Ok(*i);
        }
        let i = devices::ensure_flow_device(&self.handle, protocol).await?;
        self.flow_devices.insert(protocol, i);
        Ok(i)
    }

    /// The slot a kernel nexthop becomes.
    async fn slot(&mut self, prefix: IpNet, nh: &KernelNextHop) -> Result<NextHop, String> {
        let mut slot = NextHop::EMPTY;
        slot.flags = flags::HEALTHY;
        match nh {
            KernelNextHop::Gateway(g) => {
                slot.protocol = proto::GATEWAY;
                entry::set_underlay(&mut slot, *g);
            }
            KernelNextHop::Device(d) if *d == self.wireguard_device => {
                slot.protocol = proto::WIREGUARD;
                slot.ifindex = devices::index_of(&self.handle, d)
                    .await
                    .ok_or_else(|| format!("route {prefix}: no WireGuard device {d}"))?;
            }
            KernelNextHop::Device(d) => {
                let t = self.tunnels.get(d).cloned().ok_or_else(|| {
                    entry::EntryError::UnknownDevice {
                        prefix,
                        device: d.clone(),
                    }
                    .to_string()
                })?;
                let (protocol, vni) = protocol_of(t.kind);
                slot.protocol = protocol;
                slot.vni = vni;
                slot.peer_id = entry::peer_id_of(d).unwrap_or(0);
                slot.ifindex = self.flow_device(protocol).await?;
                entry::set_underlay(&mut slot, t.remote);
            }
        }
        Ok(slot)
    }

    async fn replace_route(&mut self, prefix: IpNet, route: &KernelRoute) -> Result<(), String> {
        let gateways: Vec<_> = route
            .nexthops
            .iter()
            .filter_map(|n| match n {
                KernelNextHop::Gateway(g) => Some(*g),
                KernelNextHop::Device(_) => None,
            })
            .collect();
        if gateways.len() == route.nexthops.len() {
            let owned = OwnedRoute::Gateways {
                gateways,
                mtu: route.mtu,
            };
            devices::replace_route(&self.handle, self.anchor, prefix, &owned).await?;
            self.routes.insert(prefix, owned);
            return self.maps.remove(prefix).map_err(|e| e.to_string());
        }
        let mut active = Vec::with_capacity(route.nexthops.len());
        for nh in &route.nexthops {
            active.push(self.slot(prefix, nh).await?);
        }
        let previous = self.maps.get(prefix).map_err(|e| e.to_string())?;
        let (tunnels, wg) = (&self.tunnels, proto::WIREGUARD);
        let keep = |old: &NextHop| {
            old.protocol == wg
                || tunnels.iter().any(|(name, t)| {
                    protocol_of(t.kind).0 == old.protocol
                        && entry::peer_id_of(name) == Some(old.peer_id)
                })
        };
        let value = entry::merge(prefix, previous.as_ref(), &active, route.mtu, keep)
            .map_err(|e| e.to_string())?;
        // Map first, then the route: a packet never reaches the anchor without an entry.
        self.maps
            .insert(prefix, &value)
            .map_err(|e| e.to_string())?;
        let want = OwnedRoute::Anchor { mtu: route.mtu };
        if self.routes.get(&prefix) != Some(&want) {
            devices::replace_route(&self.handle, self.anchor, prefix, &want).await?;
            self.routes.insert(prefix, want);
        }
        Ok(())
    }

    async fn delete_route(&mut self, prefix: IpNet) -> Result<(), String> {
        // Route first: once it is gone no packet looks the entry up.
        devices::delete_route(&self.handle, prefix).await?;
        self.routes.remove(&prefix);
        self.maps.remove(prefix).map_err(|e| e.to_string())
    }

    /// Removes every owned route, the program, its pins and the devices; carries on past
    /// failures and returns them.
    pub async fn remove_all(&mut self, pin_dir: &Path) -> Vec<String> {
        remove_owned(&self.handle, pin_dir).await
    }
}

/// `--cleanup` of the eBPF dataplane, without loading anything: owned routes, the filter,
/// the pins, the anchor and the shared tunnel devices. Absent pieces are fine.
pub async fn cleanup(pin_dir: &Path) -> Vec<String> {
    match rtnetlink::new_connection() {
        Ok((conn, handle, _)) => {
            tokio::spawn(conn);
            remove_owned(&handle, pin_dir).await
        }
        Err(e) => vec![format!("cannot open a netlink socket: {e}")],
    }
}

async fn remove_owned(handle: &Handle, pin_dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    let anchor = devices::index_of(handle, ANCHOR).await.unwrap_or(0);
    match devices::read_routes(handle, anchor).await {
        Ok(routes) => {
            for prefix in routes.keys() {
                if let Err(e) = devices::delete_route(handle, *prefix).await {
                    errors.push(e);
                }
            }
        }
        Err(e) => errors.push(e),
    }
    let attached = (anchor != 0).then_some(ANCHOR);
    errors.extend(loader::detach_and_unpin(attached, pin_dir));
    // Deleting the anchor also deletes its veth peer.
    for name in [ANCHOR, "vxlan0", "geneve0", "ipip0"] {
        if let Some(i) = devices::index_of(handle, name).await
            && let Err(e) = handle.link().del(i).execute().await
        {
            errors.push(format!("delete {name}: {e}"));
        }
    }
    errors
}

fn read_error(message: impl ToString) -> DataplaneError {
    DataplaneError::Read {
        what: "eBPF route maps",
        message: message.to_string(),
    }
}

impl Dataplane for EbpfDataplane {
    async fn read(&mut self) -> Result<KernelState, DataplaneError> {
        let routes = devices::read_routes(&self.handle, self.anchor)
            .await
            .map_err(read_error)?;
        let entries = self.maps.entries().map_err(read_error)?;
        let mut state = KernelState {
            tunnels: self.tunnels.clone(),
            ..Default::default()
        };
        for (prefix, owned) in &routes {
            match owned {
                // A prefix routed to the anchor without an entry is left out, so the
                // Reconciler writes it again.
                OwnedRoute::Anchor { .. } => {
                    if let Some(e) = entries.get(prefix) {
                        state
                            .routes
                            .insert(*prefix, entry::to_kernel_route(e, &self.wireguard_device));
                    }
                }
                OwnedRoute::Gateways { gateways, mtu } => {
                    state.routes.insert(
                        *prefix,
                        KernelRoute {
                            nexthops: gateways
                                .iter()
                                .map(|g| KernelNextHop::Gateway(*g))
                                .collect(),
                            mtu: *mtu,
                        },
                    );
                }
            }
        }
        // Entries without an anchor route are unreachable (a crash between the map write
        // and the route, or a prefix dropped while the agent was down): remove them.
        for prefix in entries.keys() {
            if !matches!(routes.get(prefix), Some(OwnedRoute::Anchor { .. })) {
                self.maps.remove(*prefix).map_err(read_error)?;
            }
        }
        self.routes = routes;
        Ok(state)
    }

    async fn apply(&mut self, ops: &[KernelOp]) -> Result<ApplyReport, DataplaneError> {
        let mut report = ApplyReport::default();
        for op in ops {
            let result = match op {
                KernelOp::AddTunnel(t) => {
                    let (protocol, _) = protocol_of(t.kind);
                    match self.flow_device(protocol).await {
                        Ok(_) => {
                            self.tunnels.insert(t.name.clone(), t.clone());
                            Ok(())
                        }
                        Err(e) => Err(format!("peer tunnel {}: {e}", t.name)),
                    }
                }
                KernelOp::SetTunnelMtu { name, mtu } => {
                    // The route MTU on the anchor route governs packet size here.
                    if let Some(t) = self.tunnels.get_mut(name) {
                        t.mtu = *mtu;
                    }
                    Ok(())
                }
                KernelOp::DeleteTunnel(name) => {
                    self.tunnels.remove(name);
                    Ok(())
                }
                KernelOp::ReplaceRoute { prefix, route } => {
                    self.replace_route(*prefix, route).await
                }
                KernelOp::DeleteRoute(prefix) => self.delete_route(*prefix).await,
            };
            report.messages += 1;
            match result {
                Ok(()) => report.applied += 1,
                Err(message) => report.failures.push(OpFailure {
                    op: op.clone(),
                    message,
                }),
            }
        }
        Ok(report)
    }
}
