//! The physical world a scenario runs in: sites, their underlay, nodes and inter-site links.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use unbounded_net::api::GATEWAY_LABEL;

use crate::values::{Cidr, TimeSpan, ip_addr, opt_ip_addr};

/// Sites, nodes and links.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Topology {
    pub sites: Vec<PhysicalSite>,
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub links: Vec<Link>,
    /// Site whose network hosts the API server and the controller replicas (default: the
    /// first site). Partitions and cuts that separate a node from it cut the node off the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_site: Option<String>,
}

/// A physical location with its own underlay network behind one router.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PhysicalSite {
    pub name: String,
    /// The site's node subnets. The site router holds the first host address of each.
    pub underlay: Vec<Cidr>,
    /// MTU of the site's underlay (default 1500).
    #[serde(default = "default_mtu")]
    pub mtu: u32,
}

impl PhysicalSite {
    /// Address of the site router on each underlay subnet (the first host address).
    pub fn router_ips(&self) -> Vec<IpAddr> {
        self.underlay.iter().map(first_host).collect()
    }
}

/// First usable host address of a prefix (the network address itself for /31, /32, /127, /128).
pub(crate) fn first_host(cidr: &Cidr) -> IpAddr {
    let net = cidr.net();
    if net.prefix_len() + 1 >= net.max_prefix_len() {
        return net.network();
    }
    match net.network() {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) + 1).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) + 1).into()),
    }
}

pub(crate) fn default_mtu() -> u32 {
    1500
}

/// What a node does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    #[default]
    Worker,
    /// Carries cross-site traffic; gets the conventional gateway label.
    Gateway,
}

/// A machine that becomes a Kubernetes Node. Every node runs one test pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Node {
    pub name: String,
    /// Name of the [`PhysicalSite`] the machine sits in.
    pub site: String,
    #[serde(rename = "internalIP", deserialize_with = "ip_addr")]
    pub internal_ip: IpAddr,
    /// Public address; a node without one is behind its site's NAT.
    #[serde(
        rename = "externalIP",
        default,
        deserialize_with = "opt_ip_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_ip: Option<IpAddr>,
    #[serde(default)]
    pub role: Role,
    /// Extra Node labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// In the cluster from the start (default true); false waits for a `nodeJoin` event.
    #[serde(default = "yes")]
    pub present: bool,
}

fn yes() -> bool {
    true
}

impl Node {
    pub fn is_gateway(&self) -> bool {
        self.role == Role::Gateway
    }

    /// Labels of the Kubernetes Node: the extra labels, plus the gateway label for gateways
    /// unless the extra labels set that key themselves.
    pub fn kube_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        if self.is_gateway() {
            labels
                .entry(GATEWAY_LABEL.to_owned())
                .or_insert_with(|| "true".to_owned());
        }
        labels
    }

    /// The Kubernetes Node the runners create for this machine: name, labels
    /// ([`Node::kube_labels`]) and its InternalIP / ExternalIP addresses.
    pub fn kube_node(&self) -> k8s_openapi::api::core::v1::Node {
        use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let mut addresses = vec![NodeAddress {
            type_: "InternalIP".to_owned(),
            address: self.internal_ip.to_string(),
        }];
        if let Some(external) = self.external_ip {
            addresses.push(NodeAddress {
                type_: "ExternalIP".to_owned(),
                address: external.to_string(),
            });
        }
        k8s_openapi::api::core::v1::Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.kube_labels()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                addresses: Some(addresses),
                ..NodeStatus::default()
            }),
        }
    }

    /// True when every selector entry is among the node's Kubernetes labels.
    pub fn matches_selector(&self, selector: &BTreeMap<String, String>) -> bool {
        let labels = self.kube_labels();
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// How two or more sites are connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LinkKind {
    /// The public internet: each site reaches it through a NAT router; only external IPs are
    /// reachable from outside the site.
    Internet,
    /// A routed private interconnect (ExpressRoute, Direct Connect, VPN) between exactly two
    /// sites; it carries internal IPs and the sites' pod CIDRs.
    Private,
}

/// A connection between sites.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Link {
    pub name: String,
    pub kind: LinkKind,
    /// The connected sites: exactly two for `private`, two or more for `internet`.
    pub sites: Vec<String>,
    /// One-way delay added on this link (default none).
    #[serde(default)]
    pub latency: TimeSpan,
    /// Packet loss in percent, 0–100 (default 0).
    #[serde(default)]
    pub loss_percent: f64,
    /// MTU of the link; default: the smallest MTU of the sites it joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl Link {
    pub fn joins(&self, site: &str) -> bool {
        self.sites.iter().any(|s| s == site)
    }

    pub fn is_public(&self) -> bool {
        self.kind == LinkKind::Internet
    }
}

impl Topology {
    pub fn site(&self, name: &str) -> Option<&PhysicalSite> {
        self.sites.iter().find(|s| s.name == name)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// Nodes of a site, in file order.
    pub fn nodes_in<'a>(&'a self, site: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| n.site == site)
    }

    /// Gateway nodes of a site, in file order.
    pub fn gateways_in<'a>(&'a self, site: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes_in(site).filter(|n| n.is_gateway())
    }

    /// Every link joining both sites, private links first.
    pub fn links_between(&self, a: &str, b: &str) -> Vec<&Link> {
        let mut found: Vec<&Link> = self
            .links
            .iter()
            .filter(|l| a != b && l.joins(a) && l.joins(b))
            .collect();
        found.sort_by_key(|l| l.kind != LinkKind::Private);
        found
    }

    /// The link traffic between two sites takes on the underlay: the private link if there
    /// is one, else the shared internet link.
    pub fn link_between(&self, a: &str, b: &str) -> Option<&Link> {
        self.links_between(a, b).into_iter().next()
    }

    /// The internet link a site is attached to, if any (a site has at most one).
    pub fn internet_link_of(&self, site: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.is_public() && l.joins(site))
    }

    /// Effective MTU of a link: its own, or the smallest MTU of its sites.
    pub fn link_mtu(&self, link: &Link) -> u32 {
        link.mtu.unwrap_or_else(|| {
            link.sites
                .iter()
                .filter_map(|s| self.site(s))
                .map(|s| s.mtu)
                .min()
                .unwrap_or_else(default_mtu)
        })
    }

    /// Site hosting the API server and controllers: `controlPlaneSite`, else the first site.
    pub fn control_plane_site(&self) -> &str {
        self.control_plane_site
            .as_deref()
            .or_else(|| self.sites.first().map(|s| s.name.as_str()))
            .unwrap_or_default()
    }

    /// The site a node sits in.
    pub fn site_of(&self, node: &str) -> Option<&PhysicalSite> {
        self.node(node).and_then(|n| self.site(&n.site))
    }
}
