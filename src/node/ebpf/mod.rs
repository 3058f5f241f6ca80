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
//!   routes via those gateways (same protocol number), not map entries. A gateway mixed with
//!   tunnels is a map slot like the others: the program sends its flows out of the
//!   gateway's link (`bpf_redirect_neigh`), device and neighbour resolved here the way
//!   `ip route get` does.
//! - Gateway and WireGuard slots, like tunnel slots, stay in place (unhealthy) when the
//!   Reconciler leaves them out; they are reclaimed when the slots run out.
//! - No healthy nexthop, or no map entry for a packet the kernel routed to the anchor: the
//!   packet is dropped and counted (`no_healthy`, `misses`); the anchor leads nowhere, so
//!   passing it on would drop it silently instead.
//!
//! The socket and the TC attachment live in the network namespace of the calling thread.

mod batch;
pub mod devices;
pub mod entry;
pub mod export;
pub mod loader;
pub mod maps;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use rtnetlink::Handle;
use unbounded_net_common::{NextHop, RouteEntry, flags, proto};

use self::batch::{RouteWrite, RouteWriter};
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
    /// (protocol, peer id) of every tunnel in `tunnels`: whose slots stay when unhealthy.
    live_peers: BTreeSet<(u8, u32)>,
    /// The maps' contents as last read or written, so a write needs no lookup first.
    entries: BTreeMap<IpNet, RouteEntry>,
    /// Batched route writes (see [`batch`]).
    writer: RouteWriter,
    /// Index of the WireGuard device, looked up once per read.
    wireguard_index: Option<u32>,
    /// Shared flow-based device per tunnel protocol.
    flow_devices: BTreeMap<u8, u32>,
    /// Owned kernel routes as last read or written.
    routes: BTreeMap<IpNet, OwnedRoute>,
    /// Underlay gateway → (neighbour the kernel hands its packets to, device); looked up
    /// once, forgotten after a failed pass or a full read.
    gateways: BTreeMap<IpAddr, (IpAddr, u32)>,
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
        let writer = RouteWriter::open().map_err(EbpfError::Netlink)?;
        Ok(EbpfDataplane {
            handle,
            maps,
            anchor,
            wireguard_device: cfg.wireguard_device.clone(),
            tunnels: BTreeMap::new(),
            live_peers: BTreeSet::new(),
            entries: BTreeMap::new(),
            writer,
            wireguard_index: None,
            flow_devices: BTreeMap::new(),
            routes: BTreeMap::new(),
            gateways: BTreeMap::new(),
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

    fn add_tunnel(&mut self, t: TunnelDevice) {
        if let Some(id) = entry::peer_id_of(&t.name) {
            self.live_peers.insert((protocol_of(t.kind).0, id));
        }
        self.tunnels.insert(t.name.clone(), t);
    }

    fn remove_tunnel(&mut self, name: &str) {
        if let Some(t) = self.tunnels.remove(name)
            && let Some(id) = entry::peer_id_of(name)
        {
            self.live_peers.remove(&(protocol_of(t.kind).0, id));
        }
    }

    /// How the kernel reaches gateway `g`: (neighbour, device), cached.
    async fn gateway_route(&mut self, g: IpAddr) -> Result<(IpAddr, u32), String> {
        if let Some(r) = self.gateways.get(&g) {
            return Ok(*r);
        }
        let r = devices::route_to(&self.handle, g).await?;
        // So the first flows the program sends there need not wait for ARP/ND.
        if let Err(e) = devices::resolve_neighbour(&self.handle, r.1, r.0).await {
            tracing::warn!(gateway = %g, error = %e, "cannot start neighbour resolution");
        }
        self.gateways.insert(g, r);
        Ok(r)
    }

    /// The slot a kernel nexthop becomes.
    async fn slot(&mut self, prefix: IpNet, nh: &KernelNextHop) -> Result<NextHop, String> {
        let mut slot = NextHop::EMPTY;
        slot.flags = flags::HEALTHY;
        match nh {
            KernelNextHop::Gateway(g) => {
                let (via, oif) = self.gateway_route(*g).await?;
                if oif == self.anchor {
                    // The gateway lies in a remote prefix: the program would loop.
                    return Err(format!(
                        "route {prefix}: gateway {g} is itself routed to {ANCHOR}"
                    ));
                }
                slot.protocol = proto::GATEWAY;
                slot.ifindex = oif;
                entry::set_underlay(&mut slot, via);
            }
            KernelNextHop::Device(d) if *d == self.wireguard_device => {
                slot.protocol = proto::WIREGUARD;
                slot.ifindex = match self.wireguard_index {
                    Some(i) => i,
                    None => {
                        let i = devices::index_of(&self.handle, d)
                            .await
                            .ok_or_else(|| format!("route {prefix}: no WireGuard device {d}"))?;
                        self.wireguard_index = Some(i);
                        i
                    }
                };
            }
            KernelNextHop::Device(d) => {
                let (kind, remote) =
                    self.tunnels
                        .get(d)
                        .map(|t| (t.kind, t.remote))
                        .ok_or_else(|| {
                            entry::EntryError::UnknownDevice {
                                prefix,
                                device: d.clone(),
                            }
                            .to_string()
                        })?;
                let (protocol, vni) = protocol_of(kind);
                slot.protocol = protocol;
                slot.vni = vni;
                slot.peer_id = entry::peer_id_of(d).unwrap_or(0);
                slot.ifindex = self.flow_device(protocol).await?;
                entry::set_underlay(&mut slot, remote);
            }
        }
        Ok(slot)
    }

    /// Writes the map value of `prefix` now and queues its kernel route in `batch`.
    async fn replace_route(
        &mut self,
        op: usize,
        prefix: IpNet,
        route: &KernelRoute,
        batch: &mut RouteBatch,
    ) -> Result<(), String> {
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
            let msg = devices::route_message(self.anchor, prefix, &owned)?;
            // The entry goes only once the route no longer leads to the anchor.
            batch.push(op, RouteWrite::Replace(prefix, msg), Some(owned), true);
            return Ok(());
        }
        let mut active = Vec::with_capacity(route.nexthops.len());
        for nh in &route.nexthops {
            active.push(self.slot(prefix, nh).await?);
        }
        let live = &self.live_peers;
        let keep = |old: &NextHop| {
            matches!(old.protocol, proto::WIREGUARD | proto::GATEWAY)
                || live.contains(&(old.protocol, old.peer_id))
        };
        let value = entry::merge(prefix, self.entries.get(&prefix), &active, route.mtu, keep)
            .map_err(|e| e.to_string())?;
        // Map first, then the route: a packet never reaches the anchor without an entry.
        self.maps
            .insert(prefix, &value)
            .map_err(|e| e.to_string())?;
        self.entries.insert(prefix, value);
        let want = OwnedRoute::Anchor { mtu: route.mtu };
        if self.routes.get(&prefix) != Some(&want) {
            let msg = devices::route_message(self.anchor, prefix, &want)?;
            batch.push(op, RouteWrite::Replace(prefix, msg), Some(want), false);
        }
        Ok(())
    }

    /// Queues the deletion of `prefix`'s route; its entry goes once the route is gone (no
    /// packet looks it up after that).
    fn delete_route(
        &mut self,
        op: usize,
        prefix: IpNet,
        batch: &mut RouteBatch,
    ) -> Result<(), String> {
        let msg = devices::delete_message(prefix)?;
        batch.push(op, RouteWrite::Delete(prefix, msg), None, true);
        Ok(())
    }

    /// Writes the queued routes in one go, then settles the bookkeeping and map removals
    /// of those the kernel took; returns the failures by op index.
    fn flush(&mut self, batch: RouteBatch) -> BTreeMap<usize, String> {
        let mut failed = self.writer.write(&batch.writes);
        for (i, after) in batch.after.into_iter().enumerate() {
            if failed.contains_key(&i) {
                continue;
            }
            let prefix = batch.writes[i].prefix();
            match after.route {
                Some(r) => self.routes.insert(prefix, r),
                None => self.routes.remove(&prefix),
            };
            if after.unmap {
                self.entries.remove(&prefix);
                if let Err(e) = self.maps.remove(prefix) {
                    failed.insert(i, e.to_string());
                }
            }
        }
        failed
            .into_iter()
            .map(|(i, message)| (batch.ops[i], message))
            .collect()
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

/// Route writes an apply collects for one [`RouteWriter::write`], with what to do once
/// each one succeeded.
#[derive(Default)]
struct RouteBatch {
    writes: Vec<RouteWrite>,
    /// The op each write belongs to.
    ops: Vec<usize>,
    after: Vec<AfterWrite>,
}

struct AfterWrite {
    /// The owned route now in the kernel (`None`: deleted).
    route: Option<OwnedRoute>,
    /// Remove the prefix's map entry (its route no longer leads to the anchor).
    unmap: bool,
}

impl RouteBatch {
    fn push(&mut self, op: usize, write: RouteWrite, route: Option<OwnedRoute>, unmap: bool) {
        self.writes.push(write);
        self.ops.push(op);
        self.after.push(AfterWrite { route, unmap });
    }
}

fn read_error(message: impl ToString) -> DataplaneError {
    DataplaneError::Read {
        what: "eBPF route maps",
        message: message.to_string(),
    }
}

impl Dataplane for EbpfDataplane {
    /// Gateways off the connected subnets become the neighbour the kernel uses for them (as
    /// in the netlink dataplane), so kernel routes and map slots name an on-link address.
    async fn resolve_gateways(&mut self, state: &mut KernelState) {
        for route in state.routes.values_mut() {
            for hop in route.nexthops.iter_mut() {
                let KernelNextHop::Gateway(g) = hop else {
                    continue;
                };
                // Unreachable: left as it is, and the route write reports it.
                if let Ok((via, _)) = self.gateway_route(*g).await {
                    *hop = KernelNextHop::Gateway(via);
                }
            }
            route.nexthops.sort();
            route.nexthops.dedup();
        }
    }

    fn forget(&mut self) {
        self.gateways.clear();
        self.wireguard_index = None;
    }

    async fn read(&mut self) -> Result<KernelState, DataplaneError> {
        self.forget();
        let routes = devices::read_routes(&self.handle, self.anchor)
            .await
            .map_err(read_error)?;
        let mut entries = self.maps.entries().map_err(read_error)?;
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
        let orphans: Vec<IpNet> = entries
            .keys()
            .filter(|p| !matches!(routes.get(p), Some(OwnedRoute::Anchor { .. })))
            .copied()
            .collect();
        for prefix in orphans {
            self.maps.remove(prefix).map_err(read_error)?;
            entries.remove(&prefix);
        }
        self.entries = entries;
        self.routes = routes;
        Ok(state)
    }

    async fn apply(&mut self, ops: &[KernelOp]) -> Result<ApplyReport, DataplaneError> {
        let mut batch = RouteBatch::default();
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let result = match op {
                KernelOp::AddTunnel(t) => {
                    let (protocol, _) = protocol_of(t.kind);
                    match self.flow_device(protocol).await {
                        Ok(_) => {
                            self.add_tunnel(t.clone());
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
                    self.remove_tunnel(name);
                    Ok(())
                }
                KernelOp::ReplaceRoute { prefix, route } => {
                    self.replace_route(i, *prefix, route, &mut batch).await
                }
                KernelOp::DeleteRoute(prefix) => self.delete_route(i, *prefix, &mut batch),
            };
            results.push(result);
        }
        for (i, message) in self.flush(batch) {
            results[i] = Err(message);
        }
        let mut report = ApplyReport {
            messages: ops.len(),
            ..Default::default()
        };
        for (op, result) in ops.iter().zip(results) {
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
