//! Derives the physical lab from a scenario's topology and its Site objects.
//!
//! The scenario names node and underlay addresses; the lab still needs addresses for the
//! internet segment and the interconnect point-to-point links. It takes them from
//! documentation / shared ranges that nothing in the scenario uses.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use unbounded_net::api::Site;
use unbounded_scenario::{LinkKind, Topology};

use super::model::{InternetNet, LabTopology, Netem, NodeNet, PrivateLinkNet, SiteNet};

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("node {node}: {what} {addr} is IPv6; the lab builds IPv4 underlays only for now")]
    Ipv6 {
        node: String,
        what: &'static str,
        addr: IpAddr,
    },
    #[error("site {site}: underlay {cidr} is IPv6; the lab builds IPv4 underlays only for now")]
    Ipv6Underlay { site: String, cidr: IpNet },
    #[error("node {node}: internal IP {ip} is in none of site {site}'s underlay subnets")]
    NotOnUnderlay {
        node: String,
        ip: Ipv4Addr,
        site: String,
    },
    #[error("node {node}: site {site} is not in topology.sites")]
    UnknownSite { node: String, site: String },
    #[error("every candidate range for lab-internal addresses overlaps the scenario's addresses")]
    NoFreeRange,
    #[error("site {0} is on more than one internet link; the lab has one internet")]
    TwoInternets(String),
}

/// Ranges the lab may use for its own links, in order of preference.
const LAB_RANGES: [&str; 4] = [
    "198.51.100.0/24",
    "192.0.2.0/24",
    "203.0.113.0/24",
    "100.64.0.0/24",
];

fn v4(node: &str, what: &'static str, addr: IpAddr) -> Result<Ipv4Addr, TopologyError> {
    match addr {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(TopologyError::Ipv6 {
            node: node.into(),
            what,
            addr,
        }),
    }
}

fn nth(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + n)
}

/// The pod pools of the Site objects that claim this physical site's nodes.
fn pools_of(topo: &Topology, site: &str, sites: &[Site]) -> Vec<IpNet> {
    let ips: Vec<IpAddr> = topo.nodes_in(site).map(|n| n.internal_ip).collect();
    let mut pools = Vec::new();
    for obj in sites {
        let claims = obj
            .spec
            .node_cidrs
            .iter()
            .filter_map(|c| c.parse::<IpNet>().ok())
            .any(|c| ips.iter().any(|ip| c.contains(ip)));
        if !claims {
            continue;
        }
        for a in &obj.spec.pod_cidr_assignments {
            pools.extend(a.cidr_blocks.iter().filter_map(|c| c.parse::<IpNet>().ok()));
        }
    }
    pools.sort();
    pools.dedup();
    pools
}

/// Builds the lab plan. Namespace names are short suffixes; the registry prefixes them.
pub fn lab_topology(topo: &Topology, site_objects: &[Site]) -> Result<LabTopology, TopologyError> {
    // Everything the scenario addresses, so the lab's own ranges avoid it.
    let mut used: Vec<IpNet> = Vec::new();
    for s in &topo.sites {
        used.extend(s.underlay.iter().map(|c| c.net()));
        used.extend(pools_of(topo, &s.name, site_objects));
    }
    for n in &topo.nodes {
        used.push(IpNet::from(n.internal_ip));
        used.extend(n.external_ip.map(IpNet::from));
    }
    let mut free = LAB_RANGES
        .iter()
        .map(|r| r.parse::<Ipv4Net>().expect("valid"))
        .filter(|r| {
            !used.iter().any(|u| {
                u.contains(&IpAddr::V4(r.network())) || IpNet::V4(*r).contains(&u.network())
            })
        });
    let internet_range = free.next().ok_or(TopologyError::NoFreeRange)?;
    let p2p_range = free.next().ok_or(TopologyError::NoFreeRange)?;

    let mut sites = Vec::new();
    for (idx, s) in topo.sites.iter().enumerate() {
        let underlay = match s.underlay.first().map(|c| c.net()) {
            Some(IpNet::V4(n)) => n,
            Some(other) => {
                return Err(TopologyError::Ipv6Underlay {
                    site: s.name.clone(),
                    cidr: other,
                });
            }
            None => unreachable!("the scenario parser requires an underlay"),
        };
        let inet_links: Vec<_> = topo
            .links
            .iter()
            .filter(|l| l.is_public() && l.joins(&s.name))
            .collect();
        if inet_links.len() > 1 {
            return Err(TopologyError::TwoInternets(s.name.clone()));
        }
        let wan_netem = inet_links
            .first()
            .map(|l| Netem {
                delay: Some(l.latency.as_std()).filter(|d| !d.is_zero()),
                loss_percent: Some(l.loss_percent).filter(|l| *l > 0.0),
            })
            .unwrap_or_default();
        sites.push(SiteNet {
            name: s.name.clone(),
            netns: format!("r-{}", s.name),
            underlay,
            router_ip: nth(underlay, 1),
            mtu: s.mtu,
            wan_ip: (!inet_links.is_empty()).then(|| nth(internet_range, 10 + idx as u32)),
            wan_netem,
            pod_pools: pools_of(topo, &s.name, site_objects),
            appliance_routes: Vec::new(),
        });
    }

    let mut nodes = Vec::new();
    for (idx, n) in topo.nodes.iter().enumerate() {
        let site =
            sites
                .iter()
                .find(|s| s.name == n.site)
                .ok_or_else(|| TopologyError::UnknownSite {
                    node: n.name.clone(),
                    site: n.site.clone(),
                })?;
        let internal_ip = v4(&n.name, "internal IP", n.internal_ip)?;
        if !site.underlay.contains(&internal_ip) {
            return Err(TopologyError::NotOnUnderlay {
                node: n.name.clone(),
                ip: internal_ip,
                site: site.name.clone(),
            });
        }
        let external_ip = n
            .external_ip
            .map(|e| v4(&n.name, "external IP", e))
            .transpose()?;
        nodes.push(NodeNet {
            name: n.name.clone(),
            netns: format!("n-{}", n.name),
            site: n.site.clone(),
            internal_ip,
            external_ip,
            gateway: n.is_gateway(),
            bridge_port: format!("n{idx}"),
        });
    }

    let has_internet = sites.iter().any(|s| s.wan_ip.is_some());
    let internet = has_internet.then(|| InternetNet {
        netns: "inet".into(),
        segment: internet_range,
        router_ip: nth(internet_range, 1),
        mtu: topo
            .links
            .iter()
            .filter(|l| l.is_public())
            .map(|l| topo.link_mtu(l))
            .max()
            .unwrap_or(1500),
    });

    let mut private_links = Vec::new();
    for (j, l) in topo
        .links
        .iter()
        .filter(|l| l.kind == LinkKind::Private)
        .enumerate()
    {
        let base = u32::from(p2p_range.network()) + 4 * j as u32;
        private_links.push(PrivateLinkNet {
            name: l.name.clone(),
            a: l.sites[0].clone(),
            b: l.sites[1].clone(),
            ifname: format!("pl{j}"),
            a_ip: Ipv4Addr::from(base + 1),
            b_ip: Ipv4Addr::from(base + 2),
            prefix_len: 30,
            mtu: topo.link_mtu(l),
            netem: Netem {
                delay: Some(l.latency.as_std()).filter(|d| !d.is_zero()),
                loss_percent: Some(l.loss_percent).filter(|l| *l > 0.0),
            },
        });
    }
    add_appliance_routes(&mut sites, &nodes, &private_links);
    Ok(LabTopology {
        sites,
        nodes,
        internet,
        private_links,
    })
}

/// The customer's routes for pods of sites outside a private-interconnect domain: a router
/// whose site has gateways sends them to those gateways (ECMP); a router without gateways
/// sends them over an interconnect toward a site that has some.
fn add_appliance_routes(sites: &mut [SiteNet], nodes: &[NodeNet], links: &[PrivateLinkNet]) {
    let linked = |a: &str| -> Vec<(String, Ipv4Addr)> {
        links
            .iter()
            .filter_map(|l| {
                if l.a == a {
                    Some((l.b.clone(), l.b_ip))
                } else if l.b == a {
                    Some((l.a.clone(), l.a_ip))
                } else {
                    None
                }
            })
            .collect()
    };
    // Each site's private domain: sites reachable over interconnects (transitively).
    let domain = |start: &str| -> Vec<String> {
        let mut seen = vec![start.to_string()];
        let mut i = 0;
        while i < seen.len() {
            for (n, _) in linked(&seen[i]) {
                if !seen.contains(&n) {
                    seen.push(n);
                }
            }
            i += 1;
        }
        seen
    };
    let gateways = |site: &str| -> Vec<Ipv4Addr> {
        nodes
            .iter()
            .filter(|n| n.site == site && n.gateway)
            .map(|n| n.internal_ip)
            .collect()
    };
    let all: Vec<(String, Vec<IpNet>)> = sites
        .iter()
        .map(|s| (s.name.clone(), s.pod_pools.clone()))
        .collect();
    for site in sites.iter_mut() {
        let dom = domain(&site.name);
        if dom.len() < 2 {
            continue;
        }
        // One next hop, the site's first gateway: a cloud route table points a prefix at one
        // appliance, and ECMP here would hash flows onto a gateway that the far side's
        // WireGuard does not accept them from (one device, one peer per prefix).
        let own: Vec<Ipv4Addr> = gateways(&site.name).into_iter().take(1).collect();
        let via = if !own.is_empty() {
            own
        } else {
            // The first interconnect neighbour whose site has gateways.
            linked(&site.name)
                .into_iter()
                .find(|(n, _)| !gateways(n).is_empty())
                .map(|(_, ip)| vec![ip])
                .unwrap_or_default()
        };
        if via.is_empty() {
            continue;
        }
        for (other, pools) in &all {
            if dom.contains(other) {
                continue;
            }
            for p in pools {
                site.appliance_routes.push((*p, via.clone()));
            }
        }
    }
}
