//! This node's underlay MTU, detected from its own routing: the MTU of the interface its
//! default route leaves by (lowered by the route's own `mtu`, if it has one). Tunnels to every
//! peer leave by that interface unless a more specific route says otherwise, and sites differ
//! (a jumbo-frame datacenter, a 1400-byte VPN edge), so one cluster-wide figure would be wrong
//! somewhere. The agent publishes the result on its Node
//! ([`UNDERLAY_MTU_ANNOTATION`](crate::api::UNDERLAY_MTU_ANNOTATION)); `--underlay-mtu`
//! overrides it for hosts where the default route is not the underlay.
//!
//! [`underlay_mtu`] is the pure choice over a routing-table snapshot; [`detect`] reads that
//! snapshot over rtnetlink.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteProtocol,
};
use rtnetlink::{Handle, RouteMessageBuilder};
use tracing::{info, warn};

use super::kernel::ROUTE_PROTOCOL;
use crate::core::mtu::{DEFAULT_UNDERLAY_MTU, valid_underlay_mtu};

const MAIN_TABLE: u32 = 254;

/// What detection needs of one route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteFact {
    pub prefix: IpNet,
    /// Outgoing interfaces (several for a multipath route).
    pub oifs: Vec<u32>,
    /// The route's `mtu` metric; 0 when it has none.
    pub mtu: u32,
    /// The route's priority (`metric` in `ip route`); lower wins among equal prefixes.
    pub priority: u32,
}

/// The MTU packets to `dest` leave with: the longest-prefix route's interface MTU (the
/// smallest over a multipath route's interfaces), lowered by the route's `mtu`.
pub fn mtu_towards(
    routes: &[RouteFact],
    link_mtus: &BTreeMap<u32, u32>,
    dest: IpAddr,
) -> Option<u32> {
    let route = routes
        .iter()
        .filter(|r| r.prefix.contains(&dest))
        .max_by_key(|r| (r.prefix.prefix_len(), std::cmp::Reverse(r.priority)))?;
    let link = route.oifs.iter().filter_map(|i| link_mtus.get(i)).min()?;
    Some(match route.mtu {
        0 => *link,
        m => m.min(*link),
    })
}

/// The underlay MTU: the smallest MTU towards the targets that have a route (by default the
/// unspecified addresses, which only a default route matches). `None` when none has one.
pub fn underlay_mtu(
    routes: &[RouteFact],
    link_mtus: &BTreeMap<u32, u32>,
    targets: &[IpAddr],
) -> Option<u32> {
    targets
        .iter()
        .filter_map(|t| mtu_towards(routes, link_mtus, *t))
        .min()
}

/// Where detection looks: the default route of each family.
pub const DEFAULT_TARGETS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
];

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("cannot read {what} from the kernel: {message}")]
    Read { what: &'static str, message: String },
}

fn addr_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

/// A dumped route as a [`RouteFact`]; `None` for other tables and for the agent's own routes
/// (a pool's `0.0.0.0/0` egress route through a tunnel is not the underlay).
fn route_fact(m: &RouteMessage) -> Option<RouteFact> {
    if m.header.protocol == RouteProtocol::from(ROUTE_PROTOCOL) {
        return None;
    }
    let mut table = u32::from(m.header.table);
    let (mut dst, mut oifs, mut mtu, mut priority) = (None, Vec::new(), 0, 0);
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = addr_of(d),
            RouteAttribute::Oif(i) => oifs.push(*i),
            RouteAttribute::Priority(p) => priority = *p,
            RouteAttribute::MultiPath(hops) => oifs.extend(hops.iter().map(|h| h.interface_index)),
            RouteAttribute::Metrics(ms) => {
                for metric in ms {
                    if let RouteMetric::Mtu(v) = metric {
                        mtu = *v;
                    }
                }
            }
            _ => {}
        }
    }
    if table != MAIN_TABLE {
        return None;
    }
    let dst = dst.unwrap_or(match m.header.address_family {
        rtnetlink::packet_route::AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    let prefix = IpNet::new(dst, m.header.destination_prefix_length).ok()?;
    Some(RouteFact {
        prefix,
        oifs,
        mtu,
        priority,
    })
}

/// Reads the main routing table and the links' MTUs, and picks the underlay MTU towards
/// `targets`. `Ok(None)`: no route to any of them.
pub async fn detect(h: &Handle, targets: &[IpAddr]) -> Result<Option<u32>, DetectError> {
    let read = |what| {
        move |e: rtnetlink::Error| DetectError::Read {
            what,
            message: e.to_string(),
        }
    };
    let links: Vec<_> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(read("links"))?;
    let link_mtus: BTreeMap<u32, u32> = links
        .iter()
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some((l.header.index, *m)),
                _ => None,
            })
        })
        .collect();
    let mut routes = Vec::new();
    for req in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let msgs: Vec<RouteMessage> = h
            .route()
            .get(req)
            .execute()
            .try_collect()
            .await
            .map_err(read("routes"))?;
        routes.extend(msgs.iter().filter_map(route_fact));
    }
    Ok(underlay_mtu(&routes, &link_mtus, targets))
}

/// The MTU this agent plans and publishes: the operator's override when given, else what
/// [`detect`] finds towards the default routes, else [`DEFAULT_UNDERLAY_MTU`] (with a warning).
pub async fn resolve(h: &Handle, override_mtu: Option<u32>) -> u32 {
    if let Some(mtu) = override_mtu {
        if valid_underlay_mtu(mtu) {
            info!(underlay_mtu = mtu, source = "override", "underlay MTU");
            return mtu;
        }
        warn!(
            underlay_mtu = mtu,
            "underlay MTU override out of 576..=65535; detecting instead"
        );
    }
    match detect(h, &DEFAULT_TARGETS).await {
        Ok(Some(mtu)) if valid_underlay_mtu(mtu) => {
            info!(underlay_mtu = mtu, source = "default route", "underlay MTU");
            mtu
        }
        Ok(found) => {
            warn!(
                found = ?found,
                assumed = DEFAULT_UNDERLAY_MTU,
                "no usable default route to detect the underlay MTU from; set --underlay-mtu"
            );
            DEFAULT_UNDERLAY_MTU
        }
        Err(e) => {
            warn!(error = %e, assumed = DEFAULT_UNDERLAY_MTU, "underlay MTU detection failed");
            DEFAULT_UNDERLAY_MTU
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, oifs: &[u32], mtu: u32, priority: u32) -> RouteFact {
        RouteFact {
            prefix: prefix.parse().unwrap(),
            oifs: oifs.to_vec(),
            mtu,
            priority,
        }
    }

    fn links() -> BTreeMap<u32, u32> {
        BTreeMap::from([(1, 65536), (2, 9000), (3, 1400), (4, 1500)])
    }

    #[test]
    fn the_default_routes_interface_decides() {
        let routes = [
            route("10.0.0.0/24", &[2], 0, 0),
            route("0.0.0.0/0", &[2], 0, 100),
            route("0.0.0.0/0", &[3], 0, 50),
        ];
        assert_eq!(
            underlay_mtu(&routes, &links(), &DEFAULT_TARGETS),
            Some(1400),
            "the lower-metric default route wins"
        );
    }

    #[test]
    fn a_route_mtu_lowers_the_interfaces() {
        let routes = [route("0.0.0.0/0", &[2], 8000, 0)];
        assert_eq!(
            underlay_mtu(&routes, &links(), &DEFAULT_TARGETS),
            Some(8000)
        );
    }

    #[test]
    fn families_and_multipath_take_the_smallest() {
        let routes = [route("0.0.0.0/0", &[2, 4], 0, 0), route("::/0", &[3], 0, 0)];
        assert_eq!(
            underlay_mtu(&routes, &links(), &DEFAULT_TARGETS),
            Some(1400)
        );
        assert_eq!(
            underlay_mtu(&routes, &links(), &DEFAULT_TARGETS[..1]),
            Some(1500)
        );
    }

    #[test]
    fn peers_resolve_by_longest_prefix() {
        let routes = [
            route("0.0.0.0/0", &[4], 0, 0),
            route("192.168.7.0/24", &[2], 0, 0),
        ];
        let peer: IpAddr = "192.168.7.20".parse().unwrap();
        assert_eq!(mtu_towards(&routes, &links(), peer), Some(9000));
    }

    #[test]
    fn no_default_route_or_unknown_interface_is_none() {
        let routes = [route("10.0.0.0/8", &[2], 0, 0), route("::/0", &[42], 0, 0)];
        assert_eq!(underlay_mtu(&routes, &links(), &DEFAULT_TARGETS), None);
    }
}
