//! Owned routes over rtnetlink: every route carries [`ROUTE_PROTOCOL`] in the main table.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteNextHop, RouteNextHopFlags,
    RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::node::dataplane::DataplaneError;
use crate::node::kernel::{
    KernelNextHop, KernelRoute, ROUTE_PROTOCOL, TUNNEL_GATEWAY_V4, TUNNEL_GATEWAY_V6,
};
use crate::node::render::is_l2_tunnel_name;

const MAIN_TABLE: u32 = 254;

fn protocol() -> RouteProtocol {
    RouteProtocol::from(ROUTE_PROTOCOL)
}

fn addr_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn nexthop_of(
    oif: Option<u32>,
    gateway: Option<IpAddr>,
    names: &BTreeMap<u32, String>,
) -> Option<KernelNextHop> {
    let tunnel_gateway =
        |g: IpAddr| g == IpAddr::V4(TUNNEL_GATEWAY_V4) || g == IpAddr::V6(TUNNEL_GATEWAY_V6);
    match (gateway, oif) {
        (Some(g), Some(i)) if tunnel_gateway(g) => {
            names.get(&i).map(|n| KernelNextHop::Device(n.clone()))
        }
        (Some(g), _) => Some(KernelNextHop::Gateway(g)),
        (None, Some(i)) => names.get(&i).map(|n| KernelNextHop::Device(n.clone())),
        (None, None) => None,
    }
}

/// Parses one dumped route; `None` if it is not ours or not understood.
fn parse(m: &RouteMessage, names: &BTreeMap<u32, String>) -> Option<(IpNet, KernelRoute)> {
    if m.header.protocol != protocol() || table_of(m) != MAIN_TABLE {
        return None;
    }
    let mut dst = None;
    let mut oif = None;
    let mut gateway = None;
    let mut mtu = 0;
    let mut nexthops = Vec::new();
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = addr_of(d),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(g) => gateway = addr_of(g),
            RouteAttribute::Metrics(ms) => {
                for metric in ms {
                    if let RouteMetric::Mtu(v) = metric {
                        mtu = *v;
                    }
                }
            }
            RouteAttribute::MultiPath(hops) => {
                for h in hops {
                    let gw = h.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => addr_of(g),
                        _ => None,
                    });
                    nexthops.extend(nexthop_of(Some(h.interface_index), gw, names));
                }
            }
            _ => {}
        }
    }
    let len = m.header.destination_prefix_length;
    let dst = dst.unwrap_or(match m.header.address_family {
        rtnetlink::packet_route::AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    let prefix = IpNet::new(dst, len).ok()?;
    if nexthops.is_empty() {
        nexthops.extend(nexthop_of(oif, gateway, names));
    }
    nexthops.sort();
    nexthops.dedup();
    Some((prefix, KernelRoute { nexthops, mtu }))
}

pub(super) async fn read_owned(
    h: &Handle,
    names: &BTreeMap<u32, String>,
) -> Result<BTreeMap<IpNet, KernelRoute>, DataplaneError> {
    let mut out = BTreeMap::new();
    let dumps = [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ];
    for req in dumps {
        let msgs: Vec<RouteMessage> =
            h.route()
                .get(req)
                .execute()
                .try_collect()
                .await
                .map_err(|e| DataplaneError::Read {
                    what: "routes",
                    message: e.to_string(),
                })?;
        out.extend(msgs.iter().filter_map(|m| parse(m, names)));
    }
    Ok(out)
}

fn base(prefix: IpNet) -> Result<RouteMessageBuilder<IpAddr>, String> {
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(prefix.addr(), prefix.prefix_len())
        .map(|b| b.protocol(protocol()).table_id(MAIN_TABLE))
        .map_err(|e| format!("route {prefix}: {e}"))
}

pub(super) async fn replace(
    h: &Handle,
    ifindex: &BTreeMap<String, u32>,
    prefix: IpNet,
    route: &KernelRoute,
) -> Result<(), String> {
    let index = |d: &str| {
        ifindex
            .get(d)
            .copied()
            .ok_or_else(|| format!("route {prefix}: no interface {d}"))
    };
    let tunnel_gateway = if prefix.addr().is_ipv4() {
        IpAddr::V4(TUNNEL_GATEWAY_V4)
    } else {
        IpAddr::V6(TUNNEL_GATEWAY_V6)
    };
    // L2 tunnels are reached through the well-known gateway (onlink for IPv4: it is on no
    // subnet); L3 devices (IPIP, WireGuard) directly.
    let needs_gateway = |n: &KernelNextHop| match n {
        KernelNextHop::Gateway(_) => true,
        KernelNextHop::Device(d) => is_l2_tunnel_name(d),
    };
    let scope = if route.nexthops.iter().any(needs_gateway) {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    let mut b = base(prefix)?.scope(scope);
    let via_err = |g: IpAddr| move |e| format!("route {prefix} via {g}: {e}");
    match route.nexthops.as_slice() {
        [] => return Err(format!("route {prefix}: no nexthop")),
        [KernelNextHop::Device(d)] if is_l2_tunnel_name(d) => {
            b = b
                .output_interface(index(d)?)
                .gateway(tunnel_gateway)
                .map_err(via_err(tunnel_gateway))?;
            if prefix.addr().is_ipv4() {
                b = b.onlink();
            }
        }
        [KernelNextHop::Device(d)] => b = b.output_interface(index(d)?),
        [KernelNextHop::Gateway(g)] => b = b.gateway(*g).map_err(via_err(*g))?,
        many => {
            let mut hops = Vec::with_capacity(many.len());
            for nh in many {
                let mut hop = RouteNextHop::default();
                match nh {
                    KernelNextHop::Device(d) => {
                        hop.interface_index = index(d)?;
                        if is_l2_tunnel_name(d) {
                            hop.attributes
                                .push(RouteAttribute::Gateway(tunnel_gateway.into()));
                            if prefix.addr().is_ipv4() {
                                hop.flags |= RouteNextHopFlags::Onlink;
                            }
                        }
                    }
                    KernelNextHop::Gateway(g) => {
                        hop.attributes.push(RouteAttribute::Gateway((*g).into()))
                    }
                }
                hops.push(hop);
            }
            b = b.multipath(hops);
        }
    }
    let mut msg = b.build();
    if route.mtu > 0 {
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(route.mtu)]));
    }
    h.route()
        .add(msg)
        .replace()
        .execute()
        .await
        .map_err(|e| format!("replace route {prefix}: {e}"))
}

/// The gateway the kernel uses to reach `addr` (`ip route get addr`): `addr` itself when it
/// is on a connected subnet, or when the lookup fails (the route is then refused and reported).
pub(super) async fn underlay_gateway(h: &Handle, addr: IpAddr) -> IpAddr {
    let len = if addr.is_ipv4() { 32 } else { 128 };
    let Ok(b) = RouteMessageBuilder::<IpAddr>::new().destination_prefix(addr, len) else {
        return addr;
    };
    let mut replies = h.route().get(b.build()).execute();
    match replies.try_next().await {
        Ok(Some(m)) => m
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Gateway(g) => addr_of(g),
                _ => None,
            })
            .unwrap_or(addr),
        _ => addr,
    }
}

pub(super) async fn delete(h: &Handle, prefix: IpNet) -> Result<(), String> {
    // The protocol in the request makes the kernel match only our route.
    let msg = base(prefix)?.build();
    h.route()
        .del(msg)
        .execute()
        .await
        .map_err(|e| format!("delete route {prefix}: {e}"))
}
