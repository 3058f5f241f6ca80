//! Topology checks: names, addresses, subnets and links that could not exist.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{Problems, check_name, check_unique, one_of};
use crate::topology::{LinkKind, Topology, first_host};
use crate::values::Cidr;

const MTU_RANGE: std::ops::RangeInclusive<u32> = 576..=9000;

pub fn check(topo: &Topology, problems: &mut Problems) {
    if let Some(site) = &topo.control_plane_site
        && topo.site(site).is_none()
    {
        problems.at(
            "topology.controlPlaneSite",
            format!(
                "unknown site `{site}`: use one of {}",
                one_of(topo.sites.iter().map(|s| s.name.as_str()))
            ),
        );
    }
    check_sites(topo, problems);
    check_nodes(topo, problems);
    check_links(topo, problems);
}

fn check_sites(topo: &Topology, problems: &mut Problems) {
    if topo.sites.is_empty() {
        problems.at("topology.sites", "a scenario needs at least one site");
    }
    let mut subnets: Vec<(Cidr, &str)> = Vec::new();
    for (i, site) in topo.sites.iter().enumerate() {
        let base = format!("topology.sites[{i}]");
        check_name(&site.name, "site", format!("{base}.name"), problems);
        if site.underlay.is_empty() {
            problems.at(
                format!("{base}.underlay"),
                format!(
                    "site `{}` has no underlay subnet: add one such as 10.1.0.0/24",
                    site.name
                ),
            );
        }
        if !MTU_RANGE.contains(&site.mtu) {
            problems.at(
                format!("{base}.mtu"),
                format!("mtu {} is out of range: use 576–9000", site.mtu),
            );
        }
        for (j, cidr) in site.underlay.iter().enumerate() {
            if let Some((other, owner)) = subnets.iter().find(|(c, _)| c.overlaps(cidr)) {
                problems.at(
                    format!("{base}.underlay[{j}]"),
                    format!(
                        "underlay {cidr} of site `{}` overlaps {other} of site `{owner}`: give every subnet its own range",
                        site.name
                    ),
                );
            }
            subnets.push((*cidr, &site.name));
        }
        if topo.sites.len() > 1 && !topo.links.iter().any(|l| l.joins(&site.name)) {
            problems.at(
                format!("{base}.name"),
                format!(
                    "site `{}` is on no link, so nothing can reach it: add it to an internet or private link in topology.links",
                    site.name
                ),
            );
        }
    }
    check_unique(
        topo.sites
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("topology.sites[{i}].name"), s.name.as_str())),
        "site",
        problems,
    );
}

fn check_nodes(topo: &Topology, problems: &mut Problems) {
    if topo.nodes.is_empty() {
        problems.at("topology.nodes", "a scenario needs at least one node");
    }
    let mut addresses: HashMap<IpAddr, &str> = HashMap::new();
    for (i, node) in topo.nodes.iter().enumerate() {
        let base = format!("topology.nodes[{i}]");
        check_name(&node.name, "node", format!("{base}.name"), problems);
        if node.name == "all" {
            problems.at(
                format!("{base}.name"),
                "`all` is reserved for \"every member\" in expectations: rename the node",
            );
        }
        for (path, ip) in [
            (format!("{base}.internalIP"), Some(node.internal_ip)),
            (format!("{base}.externalIP"), node.external_ip),
        ] {
            let Some(ip) = ip else { continue };
            if let Some(owner) = addresses.insert(ip, &node.name) {
                problems.at(
                    path,
                    format!("address {ip} is already used by node `{owner}`: give every node its own addresses"),
                );
            }
        }
        let Some(site) = topo.site(&node.site) else {
            problems.at(
                format!("{base}.site"),
                format!(
                    "unknown site `{}`: use one of {}",
                    node.site,
                    one_of(topo.sites.iter().map(|s| s.name.as_str()))
                ),
            );
            continue;
        };
        match site.underlay.iter().find(|c| c.contains(node.internal_ip)) {
            None => problems.at(
                format!("{base}.internalIP"),
                format!(
                    "internalIP {} is outside the underlay of site `{}` ({}): pick an address inside it",
                    node.internal_ip,
                    site.name,
                    subnets(&site.underlay)
                ),
            ),
            Some(subnet) => check_host_address(node.internal_ip, subnet, format!("{base}.internalIP"), problems),
        }
        if let Some(external) = node.external_ip {
            if let Some(owner) = topo
                .sites
                .iter()
                .find(|s| s.underlay.iter().any(|c| c.contains(external)))
            {
                problems.at(
                    format!("{base}.externalIP"),
                    format!(
                        "externalIP {external} lies inside the underlay of site `{}`: external IPs are public addresses outside every site (e.g. from 203.0.113.0/24)",
                        owner.name
                    ),
                );
            }
            if topo.internet_link_of(&site.name).is_none() {
                problems.at(
                    format!("{base}.externalIP"),
                    format!(
                        "node has an externalIP but site `{}` is on no internet link: add the site to an internet link or remove the externalIP",
                        site.name
                    ),
                );
            }
        } else if node.is_gateway() {
            let private = topo
                .links
                .iter()
                .any(|l| l.kind == LinkKind::Private && l.joins(&site.name));
            if !private && topo.internet_link_of(&site.name).is_some() {
                problems.at(
                    format!("{base}.role"),
                    format!(
                        "gateway `{}` has no externalIP, but site `{}` is reached only over the internet: give it an externalIP or make it a worker",
                        node.name, site.name
                    ),
                );
            }
        }
    }
    check_unique(
        topo.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("topology.nodes[{i}].name"), n.name.as_str())),
        "node",
        problems,
    );
}

/// `10.1.0.0/24, 10.2.0.0/24` for a message.
fn subnets(cidrs: &[Cidr]) -> String {
    let all: Vec<String> = cidrs.iter().map(Cidr::to_string).collect();
    all.join(", ")
}

/// The network address, the broadcast address and the site router's address are taken.
fn check_host_address(ip: IpAddr, subnet: &Cidr, path: String, problems: &mut Problems) {
    let net = subnet.net();
    let router = first_host(subnet);
    let reason = if net.prefix_len() + 1 >= net.max_prefix_len() {
        None
    } else if ip == net.network() {
        Some("is the subnet's network address")
    } else if ip.is_ipv4() && ip == net.broadcast() {
        Some("is the subnet's broadcast address")
    } else if ip == router {
        Some("is taken by the site router (the first host address)")
    } else {
        None
    };
    if let Some(reason) = reason {
        problems.at(
            path,
            format!("internalIP {ip} {reason} in {subnet}: pick another address"),
        );
    }
}

fn check_links(topo: &Topology, problems: &mut Problems) {
    let mut internet_of: HashMap<&str, &str> = HashMap::new();
    let mut private_pairs: HashMap<(&str, &str), &str> = HashMap::new();
    for (i, link) in topo.links.iter().enumerate() {
        let base = format!("topology.links[{i}]");
        check_name(&link.name, "link", format!("{base}.name"), problems);
        for (j, site) in link.sites.iter().enumerate() {
            if topo.site(site).is_none() {
                problems.at(
                    format!("{base}.sites[{j}]"),
                    format!(
                        "unknown site `{site}`: use one of {}",
                        one_of(topo.sites.iter().map(|s| s.name.as_str()))
                    ),
                );
            } else if link.sites[..j].contains(site) {
                let message = if link.kind == LinkKind::Private {
                    format!(
                        "a private link cannot join site `{site}` to itself: name two different sites"
                    )
                } else {
                    format!("site `{site}` is listed twice on this link: list it once")
                };
                problems.at(format!("{base}.sites[{j}]"), message);
            }
        }
        match link.kind {
            LinkKind::Private if link.sites.len() != 2 => problems.at(
                format!("{base}.sites"),
                format!(
                    "a private link joins exactly two sites, not {}: use one private link per pair",
                    link.sites.len()
                ),
            ),
            LinkKind::Internet if link.sites.len() < 2 => problems.at(
                format!("{base}.sites"),
                "an internet link joins at least two sites: list every site attached to the internet",
            ),
            _ => {}
        }
        match link.kind {
            LinkKind::Internet => {
                for (j, site) in link.sites.iter().enumerate() {
                    if let Some(other) = internet_of.insert(site, &link.name) {
                        problems.at(
                            format!("{base}.sites[{j}]"),
                            format!("site `{site}` is already on internet link `{other}`: a site has one internet uplink"),
                        );
                    }
                }
            }
            LinkKind::Private if link.sites.len() == 2 => {
                let (a, b) = (link.sites[0].as_str(), link.sites[1].as_str());
                let pair = if a <= b { (a, b) } else { (b, a) };
                if let Some(other) = private_pairs.insert(pair, &link.name) {
                    problems.at(
                        format!("{base}.sites"),
                        format!("sites `{a}` and `{b}` are already joined by private link `{other}`: keep one"),
                    );
                }
            }
            LinkKind::Private => {}
        }
        if !(0.0..=100.0).contains(&link.loss_percent) {
            problems.at(
                format!("{base}.lossPercent"),
                format!(
                    "lossPercent {} is out of range: use 0–100",
                    link.loss_percent
                ),
            );
        }
        if let Some(mtu) = link.mtu
            && !MTU_RANGE.contains(&mtu)
        {
            problems.at(
                format!("{base}.mtu"),
                format!("mtu {mtu} is out of range: use 576–9000"),
            );
        }
    }
    check_unique(
        topo.links
            .iter()
            .enumerate()
            .map(|(i, l)| (format!("topology.links[{i}].name"), l.name.as_str())),
        "link",
        problems,
    );
}
