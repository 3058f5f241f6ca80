//! Kernel objects around the program: the `unbounded0` anchor, the shared flow-based tunnel
//! devices (one per encapsulation per node, never per peer) and the routes that hand remote
//! prefixes to the anchor, all over rtnetlink.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::neighbour::NeighbourFlags;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteNextHop, RouteProtocol,
    RouteScope,
};
use rtnetlink::{Handle, LinkDummy, LinkGeneve, LinkIpIp, LinkUnspec, LinkVeth, LinkVxlan};
use unbounded_net_common::{TUNNEL_DEVICE_MAC, proto};

use super::{ANCHOR, ANCHOR_PEER, ANCHOR_ROUTE_PROTOCOL};
use crate::node::kernel::{GENEVE_PORT, VXLAN_PORT};

const MAIN_TABLE: u32 = 254;

const EEXIST: i32 = 17;
const ESRCH: i32 = 3;

fn is_exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -EEXIST)
}

pub async fn index_of(h: &Handle, name: &str) -> Option<u32> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    links
        .try_next()
        .await
        .ok()
        .flatten()
        .map(|l| l.header.index)
}

async fn set_up(h: &Handle, index: u32, arp: bool) -> Result<(), String> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().arp(arp).build())
        .execute()
        .await
        .map_err(|e| format!("set ifindex {index} up: {e}"))
}

/// Creates the anchor if missing and returns its index: a `dummy` where the kernel has it,
/// otherwise a veth pair whose peer stays unused (with ARP off, so the kernel never waits
/// for a neighbour on it). Either way the device only exists to run the TC program.
pub async fn ensure_anchor(h: &Handle) -> Result<u32, String> {
    if let Some(i) = index_of(h, ANCHOR).await {
        set_up(h, i, false).await?;
        return Ok(i);
    }
    let dummy = h.link().add(LinkDummy::new(ANCHOR).build()).execute().await;
    if let Err(e) = dummy {
        tracing::info!(error = %e, "no dummy device in this kernel; the anchor is a veth pair");
        match h
            .link()
            .add(LinkVeth::new(ANCHOR, ANCHOR_PEER).build())
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if is_exists(&e) => {}
            Err(e) => return Err(format!("create anchor {ANCHOR}: {e}")),
        }
        if let Some(p) = index_of(h, ANCHOR_PEER).await {
            set_up(h, p, false).await?;
        }
    }
    let i = index_of(h, ANCHOR)
        .await
        .ok_or_else(|| format!("anchor {ANCHOR} vanished after creation"))?;
    set_up(h, i, false).await?;
    Ok(i)
}

/// Name of the shared device of one tunnel protocol.
pub fn flow_device_name(protocol: u8) -> Option<&'static str> {
    match protocol {
        proto::VXLAN => Some("vxlan0"),
        proto::GENEVE => Some("geneve0"),
        proto::IPIP => Some("ipip0"),
        _ => None,
    }
}

/// Creates the shared flow-based (`external`) device of `protocol` if missing. These take
/// their remote and VNI from the tunnel key the program sets, and accept any VNI inbound.
pub async fn ensure_flow_device(h: &Handle, protocol: u8) -> Result<u32, String> {
    let name = flow_device_name(protocol).ok_or("not a tunnel protocol")?;
    if let Some(i) = index_of(h, name).await {
        return Ok(i);
    }
    let mac = TUNNEL_DEVICE_MAC.to_vec();
    let msg = match protocol {
        proto::VXLAN => LinkVxlan::new(name, 0)
            .port(VXLAN_PORT)
            .learning(false)
            .collect_metadata(true)
            .address(mac)
            .up()
            .build(),
        proto::GENEVE => LinkGeneve::new(name, 0)
            .port(GENEVE_PORT)
            .collect_metadata()
            .address(mac)
            .up()
            .build(),
        _ => LinkIpIp::new(name).collect_metadata(true).up().build(),
    };
    match h.link().add(msg).execute().await {
        Ok(()) => {}
        Err(e) if is_exists(&e) => {}
        Err(e) => return Err(format!("create shared {name} (flow-based): {e}")),
    }
    let i = index_of(h, name)
        .await
        .ok_or_else(|| format!("{name} vanished after creation"))?;
    // Decapsulated packets arrive from sources routed through the anchor, which strict
    // reverse-path filtering rejects (ENVIRONMENT.md: the receiver needs rp_filter 0).
    let path = format!("/proc/sys/net/ipv4/conf/{name}/rp_filter");
    std::fs::write(&path, "0").map_err(|e| format!("write {path}: {e}"))?;
    let all = "/proc/sys/net/ipv4/conf/all/rp_filter";
    if std::fs::read_to_string(all).is_ok_and(|v| v.trim() == "1") {
        // `all` overrides per-device 0 with the maximum; loose mode still checks a route back.
        std::fs::write(all, "2").map_err(|e| format!("write {all}: {e}"))?;
    }
    Ok(i)
}

fn addr_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

/// A route the eBPF dataplane owns in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedRoute {
    /// `prefix dev unbounded0`: the program forwards it.
    Anchor { mtu: u32 },
    /// Plain routing via underlay gateways (nexthops without encapsulation).
    Gateways { gateways: Vec<IpAddr>, mtu: u32 },
}

/// Every route with [`ANCHOR_ROUTE_PROTOCOL`] in the main table.
pub async fn read_routes(h: &Handle, anchor: u32) -> Result<BTreeMap<IpNet, OwnedRoute>, String> {
    let mut out = BTreeMap::new();
    let dumps = [
        rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build(),
        rtnetlink::RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ];
    for req in dumps {
        let msgs: Vec<RouteMessage> = h
            .route()
            .get(req)
            .execute()
            .try_collect()
            .await
            .map_err(|e| format!("read routes: {e}"))?;
        out.extend(msgs.iter().filter_map(|m| parse(m, anchor)));
    }
    Ok(out)
}

fn parse(m: &RouteMessage, anchor: u32) -> Option<(IpNet, OwnedRoute)> {
    if m.header.protocol != RouteProtocol::from(ANCHOR_ROUTE_PROTOCOL) {
        return None;
    }
    let (mut dst, mut oif, mut mtu, mut gateways) = (None, None, 0, Vec::new());
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = addr_of(d),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(g) => gateways.extend(addr_of(g)),
            RouteAttribute::Metrics(ms) => {
                for metric in ms {
                    if let RouteMetric::Mtu(v) = metric {
                        mtu = *v;
                    }
                }
            }
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    gateways.extend(hop.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => addr_of(g),
                        _ => None,
                    }));
                }
            }
            _ => {}
        }
    }
    let prefix = IpNet::new(dst?, m.header.destination_prefix_length).ok()?;
    if gateways.is_empty() && oif == Some(anchor) {
        return Some((prefix, OwnedRoute::Anchor { mtu }));
    }
    gateways.sort();
    gateways.dedup();
    Some((prefix, OwnedRoute::Gateways { gateways, mtu }))
}

/// How the kernel reaches `addr` (`ip route get addr`): the neighbour to hand packets to
/// (`addr` itself when it is on a connected subnet) and the device they leave by.
pub async fn route_to(h: &Handle, addr: IpAddr) -> Result<(IpAddr, u32), String> {
    let len = if addr.is_ipv4() { 32 } else { 128 };
    let req = rtnetlink::RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(addr, len)
        .map_err(|e| format!("route to {addr}: {e}"))?
        .build();
    let reply = h
        .route()
        .get(req)
        .execute()
        .try_next()
        .await
        .map_err(|e| format!("no route to gateway {addr}: {e}"))?
        .ok_or_else(|| format!("no route to gateway {addr}"))?;
    let (mut via, mut oif) = (addr, None);
    for a in &reply.attributes {
        match a {
            RouteAttribute::Gateway(g) => via = addr_of(g).unwrap_or(addr),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    let oif = oif.ok_or_else(|| format!("route to gateway {addr} names no device"))?;
    Ok((via, oif))
}

/// Starts resolving the neighbour `addr` on `ifindex` if it is not yet
/// (`ip neigh replace ADDR dev DEV use`). Packets the program hands to an unresolved
/// neighbour with `bpf_redirect_neigh` were seen lost (one of the first 200 flows, kernel
/// 6.18) where a kernel route would have queued them.
pub async fn resolve_neighbour(h: &Handle, ifindex: u32, addr: IpAddr) -> Result<(), String> {
    h.neighbours()
        .add(ifindex, addr)
        .flags(NeighbourFlags::Use)
        .replace()
        .execute()
        .await
        .map_err(|e| format!("resolve neighbour {addr} on ifindex {ifindex}: {e}"))
}

/// The `ip route replace` request of one owned route.
pub fn route_message(
    anchor: u32,
    prefix: IpNet,
    route: &OwnedRoute,
) -> Result<RouteMessage, String> {
    let mut b = rtnetlink::RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(prefix.addr(), prefix.prefix_len())
        .map_err(|e| format!("route {prefix}: {e}"))?
        .protocol(RouteProtocol::from(ANCHOR_ROUTE_PROTOCOL))
        .table_id(MAIN_TABLE);
    let mtu = match route {
        OwnedRoute::Anchor { mtu } => {
            b = b.scope(RouteScope::Link).output_interface(anchor);
            *mtu
        }
        OwnedRoute::Gateways { gateways, mtu } => {
            match gateways.as_slice() {
                [] => return Err(format!("route {prefix}: no gateway")),
                [g] => {
                    b = b
                        .gateway(*g)
                        .map_err(|e| format!("route {prefix} via {g}: {e}"))?
                }
                many => {
                    let hops = many
                        .iter()
                        .map(|g| {
                            let mut hop = RouteNextHop::default();
                            hop.attributes.push(RouteAttribute::Gateway((*g).into()));
                            hop
                        })
                        .collect();
                    b = b.multipath(hops);
                }
            }
            *mtu
        }
    };
    let mut msg = b.build();
    if mtu > 0 {
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    Ok(msg)
}

/// The `ip route del` request of one owned route (the protocol makes the kernel match only
/// ours).
pub fn delete_message(prefix: IpNet) -> Result<RouteMessage, String> {
    Ok(rtnetlink::RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(prefix.addr(), prefix.prefix_len())
        .map_err(|e| format!("route {prefix}: {e}"))?
        .protocol(RouteProtocol::from(ANCHOR_ROUTE_PROTOCOL))
        .table_id(MAIN_TABLE)
        .build())
}

/// Deletes one owned route; absent is fine.
pub async fn delete_route(h: &Handle, prefix: IpNet) -> Result<(), String> {
    match h.route().del(delete_message(prefix)?).execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -ESRCH => Ok(()),
        Err(e) => Err(format!("delete route {prefix}: {e}")),
    }
}
