//! The desired data plane of one node: what the node agent programs, and what the simulator,
//! the lab and the eBPF maps are checked against.
//!
//! Everything here is plain data with a deterministic order (`BTreeMap` keyed by node name or
//! prefix, sorted `Vec`s), so two plans of the same snapshot are byte-for-byte equal and
//! [`diff`](crate::core::diff()) between two plans is minimal. A node pair is joined by at most
//! one link, so per-peer maps are keyed by the peer's node name.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Default WireGuard listen port of every node.
pub const DEFAULT_WIREGUARD_PORT: u16 = 51820;
/// UDP port of a node's health responder (reached through the tunnel, on its overlay address).
pub const HEALTH_PROBE_PORT: u16 = 51821;
/// VNI used on GENEVE and VXLAN links. One cluster-wide VNI: the flow-based devices the eBPF
/// dataplane uses accept any VNI, and a link is identified by its remote underlay address.
pub const OVERLAY_VNI: u32 = 1;
/// Keepalive sent on WireGuard links where either side is behind NAT, so the NAT mapping
/// stays open (25 s is the interval `wg(8)` recommends).
pub const NAT_KEEPALIVE_SECONDS: u16 = 25;

/// Encapsulation of one resolved link (`Auto` never survives planning).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Encap {
    WireGuard,
    #[serde(rename = "GENEVE")]
    Geneve,
    #[serde(rename = "VXLAN")]
    Vxlan,
    #[serde(rename = "IPIP")]
    Ipip,
    /// Plain routing over the existing L3 path (externally peered sites).
    None,
}

impl fmt::Display for Encap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encap::WireGuard => "WireGuard",
            Encap::Geneve => "GENEVE",
            Encap::Vxlan => "VXLAN",
            Encap::Ipip => "IPIP",
            Encap::None => "none",
        })
    }
}

/// The complete desired data plane of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeDataplane {
    /// The node this plan is for.
    pub node: String,
    pub wireguard: WireGuardConfig,
    /// Non-WireGuard encapsulated links (GENEVE, VXLAN, IPIP), keyed by peer node name.
    pub tunnels: BTreeMap<String, TunnelPeer>,
    /// Remote prefixes (other nodes' pod CIDRs, pools' routed CIDRs) and how to reach them.
    /// The node's own pod CIDRs are not here: the CNI bridge owns them.
    pub routes: BTreeMap<IpNet, Route>,
    /// Health probes, keyed by peer node name (one per link whose scope enables probing).
    pub probes: BTreeMap<String, ProbeTarget>,
    pub masquerade: MasqueradeConfig,
    pub cni: CniConfig,
}

/// The node's WireGuard device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireGuardConfig {
    pub listen_port: u16,
    /// Keyed by peer node name.
    pub peers: BTreeMap<String, WireGuardPeer>,
}

impl Default for WireGuardConfig {
    fn default() -> Self {
        WireGuardConfig {
            listen_port: DEFAULT_WIREGUARD_PORT,
            peers: BTreeMap::new(),
        }
    }
}

/// One WireGuard peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireGuardPeer {
    /// Base64 public key the peer published.
    pub public_key: String,
    /// Where to send the handshake; `None` when the peer cannot be dialled (it is behind NAT
    /// with no published address) and will initiate itself.
    pub endpoint: Option<SocketAddr>,
    /// Sorted, deduplicated; every prefix routed through this peer (incl. the host route to
    /// its health endpoint) plus the peer's own pod CIDRs. Gateways that are candidates for
    /// the same prefix all list it here; [`crate::core::steering::wireguard_effective`] gives
    /// each such prefix to the one peer the route's [`Route::pin`] selects.
    pub allowed_ips: Vec<IpNet>,
    /// Seconds between keepalives; set when either side is behind NAT.
    pub persistent_keepalive: Option<u16>,
}

/// One GENEVE / VXLAN / IPIP link to a peer node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelPeer {
    /// `Geneve`, `Vxlan` or `Ipip`.
    pub encap: Encap,
    /// This node's underlay address on the link.
    pub local: IpAddr,
    /// The peer's underlay address.
    pub remote: IpAddr,
    /// `Some(OVERLAY_VNI)` for GENEVE/VXLAN, `None` for IPIP.
    pub vni: Option<u32>,
    /// Inner MTU of the link.
    pub mtu: u32,
}

/// How one remote prefix is reached. Several nexthops mean ECMP (sorted by peer name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub nexthops: Vec<NextHop>,
    /// Smallest inner MTU along the path (first link and any gateway-to-gateway links).
    pub mtu: u32,
    /// `Some(key)`: the traffic takes ONE of the nexthops, the healthy one every node picks
    /// for `key` (see [`crate::core::steering`]), instead of ECMP. Set on gateway routes whose
    /// path crosses WireGuard: a WireGuard peer accepts only sources in its allowed IPs, so
    /// both directions of a conversation must use the same gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

/// One way to forward a packet for a prefix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NextHop {
    /// The peer node the packet is handed to (a gateway, or the destination node itself).
    pub peer: String,
    pub encap: Encap,
    /// The peer's underlay address on this link (the tunnel remote, the WireGuard endpoint's
    /// address, or for `None` the plain gateway address of the route).
    pub underlay: IpAddr,
    /// VNI for GENEVE/VXLAN nexthops.
    pub vni: Option<u32>,
}

/// UDP health probing of one link peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeTarget {
    /// The peer's overlay health endpoint (first address of its first pod CIDR).
    pub address: SocketAddr,
    pub enabled: bool,
    pub transmit_interval: Duration,
    pub receive_interval: Duration,
    /// Missed receive intervals before the peer is pulled from ECMP.
    pub multiplier: u32,
}

/// Which pod traffic is SNATed: from `source_cidrs` to anything outside `cluster_pod_cidrs`
/// and `non_masquerade_cidrs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MasqueradeConfig {
    /// This node's pod CIDRs.
    pub source_cidrs: Vec<IpNet>,
    /// Every Site's pod pools (sorted): pod-to-pod traffic keeps its source address.
    pub cluster_pod_cidrs: Vec<IpNet>,
    /// The node's Site's `nonMasqueradeCIDRs` (sorted).
    pub non_masquerade_cidrs: Vec<IpNet>,
    /// Route prefixes whose path MTU is below the pod interface MTU (sorted): forwarded TCP
    /// SYNs towards them get their MSS lowered to fit the route's MTU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mss_clamp_cidrs: Vec<IpNet>,
}

/// The CNI configuration the agent writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniConfig {
    /// Write the conflist at all (the Site's `manageCniPlugin`, default true).
    pub manage: bool,
    /// host-local ranges, one per address family, IPv4 first.
    pub ranges: Vec<IpNet>,
    /// Pod interface MTU: the largest route MTU (narrower routes clamp TCP MSS, see
    /// [`MasqueradeConfig::mss_clamp_cidrs`]).
    pub mtu: u32,
}
