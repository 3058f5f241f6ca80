//! The physical lab as it will be built: every namespace, address and link resolved.
//!
//! It is derived from a scenario's topology (see `from_scenario`), and is plain data so that
//! the builder, the checks and `shell` agree on names without recomputing them.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

/// Delay and loss applied with `tc qdisc netem` (or an nftables random drop for loss) at the
/// ends of a link (one-way figures); see `build` for which end applies what.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Netem {
    pub delay: Option<Duration>,
    /// Percent, 0–100.
    pub loss_percent: Option<f64>,
}

impl Netem {
    pub fn is_noop(&self) -> bool {
        self.delay.is_none() && self.loss_percent.is_none_or(|l| l == 0.0)
    }

    /// `tc qdisc replace dev DEV root netem …` arguments after `netem`.
    pub fn tc_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(d) = self.delay {
            a.push("delay".into());
            a.push(format!("{}us", d.as_micros()));
        }
        if let Some(l) = self.loss_percent.filter(|l| *l > 0.0) {
            a.push("loss".into());
            a.push(format!("{l}%"));
        }
        a
    }
}

/// One site: a router namespace holding the underlay bridge.
#[derive(Clone, Debug, Serialize)]
pub struct SiteNet {
    pub name: String,
    /// Short namespace suffix (`r-<site>`).
    pub netns: String,
    pub underlay: Ipv4Net,
    /// The router's address on the underlay (the nodes' default gateway).
    pub router_ip: Ipv4Addr,
    pub mtu: u32,
    /// The router's address on the internet segment, if the site has an internet uplink.
    pub wan_ip: Option<Ipv4Addr>,
    /// netem on the internet uplink.
    pub wan_netem: Netem,
    /// The site's pod CIDR pools, routed over private interconnects as a customer's BGP would.
    pub pod_pools: Vec<IpNet>,
    /// Routes for pod pools of sites outside this site's private-interconnect domain, toward
    /// gateway appliances (as a customer's user-defined routes do): prefix → nexthops (ECMP).
    pub appliance_routes: Vec<(IpNet, Vec<Ipv4Addr>)>,
}

/// One node: a namespace with `eth0` on its site's underlay bridge.
#[derive(Clone, Debug, Serialize)]
pub struct NodeNet {
    pub name: String,
    pub netns: String,
    pub site: String,
    pub internal_ip: Ipv4Addr,
    /// Public address, 1:1 NATed by the site router (as a cloud public IP is).
    pub external_ip: Option<Ipv4Addr>,
    pub gateway: bool,
    /// The router-side veth name on the site bridge.
    pub bridge_port: String,
}

/// The public internet: one router namespace with a bridge every site uplink joins.
#[derive(Clone, Debug, Serialize)]
pub struct InternetNet {
    pub netns: String,
    pub segment: Ipv4Net,
    pub router_ip: Ipv4Addr,
    pub mtu: u32,
}

/// A private interconnect (ExpressRoute, Direct Connect): a routed veth between two site
/// routers, carrying both sites' underlay and pod prefixes.
#[derive(Clone, Debug, Serialize)]
pub struct PrivateLinkNet {
    pub name: String,
    pub a: String,
    pub b: String,
    /// Interface name on both routers.
    pub ifname: String,
    pub a_ip: Ipv4Addr,
    pub b_ip: Ipv4Addr,
    pub prefix_len: u8,
    pub mtu: u32,
    pub netem: Netem,
}

/// The whole lab.
#[derive(Clone, Debug, Serialize)]
pub struct LabTopology {
    pub sites: Vec<SiteNet>,
    pub nodes: Vec<NodeNet>,
    pub internet: Option<InternetNet>,
    pub private_links: Vec<PrivateLinkNet>,
}

impl LabTopology {
    pub fn site(&self, name: &str) -> Option<&SiteNet> {
        self.sites.iter().find(|s| s.name == name)
    }

    pub fn node(&self, name: &str) -> Option<&NodeNet> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every namespace suffix, routers before nodes (creation order).
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self.internet.iter().map(|i| i.netns.clone()).collect();
        v.extend(self.sites.iter().map(|s| s.netns.clone()));
        v.extend(self.nodes.iter().map(|n| n.netns.clone()));
        v
    }

    /// The site uplink veth name inside the internet namespace.
    pub fn internet_port(&self, site: &str) -> String {
        let idx = self.sites.iter().position(|s| s.name == site).unwrap_or(0);
        format!("s{idx}")
    }
}
