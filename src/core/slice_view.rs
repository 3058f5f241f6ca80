//! The node agent's view of other nodes: SiteNodeSlices (name, key, addresses, pod CIDRs per
//! Site) plus GatewayPool status (members), instead of every Node object.
//!
//! Slices carry no labels, yet pool membership is a label selector. A node the controller
//! lists in a pool's `status.nodes` is given that pool's selector labels, so the planner's
//! membership comes out exactly as the controller computed it; the site label is the slice's.
//! A slice entry that does not parse is recorded as a [`NodeProblem`] on that node, and a node
//! listed twice keeps its first entry (slices are read in name order).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::snapshot::{NodeFacts, NodeProblem, is_wireguard_key};
use crate::api::{GatewayPool, SITE_LABEL, SiteNodeSlice};

/// Node facts for every node listed in `slices`, labelled with the pools that list it.
pub fn node_facts_from_slices<'a>(
    slices: impl IntoIterator<Item = &'a SiteNodeSlice>,
    pools: impl IntoIterator<Item = &'a GatewayPool>,
) -> BTreeMap<String, NodeFacts> {
    let mut pool_labels: BTreeMap<&str, Vec<(&String, &String)>> = BTreeMap::new();
    for pool in pools {
        let Some(status) = pool.status.as_ref() else {
            continue;
        };
        for member in &status.nodes {
            pool_labels
                .entry(member.name.as_str())
                .or_default()
                .extend(pool.spec.node_selector.iter());
        }
    }
    let mut out: BTreeMap<String, NodeFacts> = BTreeMap::new();
    for slice in slices {
        let site = &slice.spec.site_name;
        for n in &slice.spec.nodes {
            if n.name.is_empty() || out.contains_key(&n.name) {
                continue;
            }
            let mut facts = NodeFacts {
                name: n.name.clone(),
                site_label: Some(site.clone()),
                ..Default::default()
            };
            facts.labels.insert(SITE_LABEL.to_string(), site.clone());
            for (k, v) in pool_labels.get(n.name.as_str()).into_iter().flatten() {
                facts.labels.insert((*k).clone(), (*v).clone());
            }
            for (list, values) in [
                (&mut facts.internal_ips, &n.internal_ips),
                (&mut facts.external_ips, &n.external_ips),
            ] {
                for v in values {
                    match v.parse::<IpAddr>() {
                        Ok(ip) => list.push(ip),
                        Err(_) => facts.problems.push(NodeProblem::MalformedAddress {
                            node: n.name.clone(),
                            value: v.clone(),
                        }),
                    }
                }
            }
            for c in &n.pod_cidrs {
                match c.parse::<IpNet>() {
                    Ok(net) => facts.pod_cidrs.push(net),
                    Err(_) => facts.problems.push(NodeProblem::MalformedPodCidr {
                        node: n.name.clone(),
                        value: c.clone(),
                    }),
                }
            }
            let key = &n.wire_guard_public_key;
            if is_wireguard_key(key) {
                facts.wg_public_key = Some(key.clone());
            } else if !key.is_empty() {
                facts.problems.push(NodeProblem::MalformedPublicKey {
                    node: n.name.clone(),
                });
            }
            // The CRD's schema bounds it; a slice written past validation still cannot crash us.
            match n.underlay_mtu {
                Some(m) if super::mtu::valid_underlay_mtu(m) => facts.underlay_mtu = Some(m),
                Some(m) => facts.problems.push(NodeProblem::MalformedUnderlayMtu {
                    node: n.name.clone(),
                    value: m.to_string(),
                }),
                None => {}
            }
            out.insert(n.name.clone(), facts);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{GatewayNodeStatus, GatewayPoolStatus, SiteNodeSliceSpec, SliceNode};

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn slice(site: &str, nodes: Vec<SliceNode>) -> SiteNodeSlice {
        SiteNodeSlice::new(
            &format!("{site}-0"),
            SiteNodeSliceSpec {
                site_name: site.into(),
                slice_index: 0,
                nodes,
            },
        )
    }

    fn entry(name: &str, ip: &str, cidr: &str, key: &str) -> SliceNode {
        SliceNode {
            name: name.into(),
            wire_guard_public_key: key.into(),
            internal_ips: vec![ip.into()],
            external_ips: vec![],
            pod_cidrs: vec![cidr.into()],
            underlay_mtu: None,
        }
    }

    #[test]
    fn pool_members_get_the_selector_labels_and_bad_entries_are_named() {
        let s = slice(
            "a",
            vec![
                entry("gw1", "10.0.0.1", "100.64.0.0/24", KEY),
                entry("w1", "10.0.0.2", "not-a-cidr", "garbage"),
                SliceNode {
                    underlay_mtu: Some(9000),
                    ..entry("w2", "10.0.0.3", "100.64.1.0/24", KEY)
                },
                SliceNode {
                    underlay_mtu: Some(70000),
                    ..entry("w3", "10.0.0.4", "100.64.2.0/24", KEY)
                },
            ],
        );
        let mut pool = GatewayPool::new("p", Default::default());
        pool.spec
            .node_selector
            .insert("gw".to_string(), "true".to_string());
        pool.status = Some(GatewayPoolStatus {
            nodes: vec![GatewayNodeStatus {
                name: "gw1".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let facts = node_facts_from_slices([&s], [&pool]);
        let gw = &facts["gw1"];
        assert_eq!(gw.labels.get("gw").map(String::as_str), Some("true"));
        assert_eq!(gw.site_label.as_deref(), Some("a"));
        assert_eq!(gw.wg_public_key.as_deref(), Some(KEY));
        assert_eq!(
            gw.pod_cidrs,
            vec!["100.64.0.0/24".parse::<IpNet>().unwrap()]
        );
        let w = &facts["w1"];
        assert!(!w.labels.contains_key("gw"));
        assert!(w.pod_cidrs.is_empty());
        assert_eq!(w.wg_public_key, None);
        assert_eq!(w.problems.len(), 2, "{:?}", w.problems);
        assert_eq!(w.internal_ips, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(gw.underlay_mtu, None, "absent: the cluster default applies");
        assert_eq!(facts["w2"].underlay_mtu, Some(9000));
        assert_eq!(facts["w3"].underlay_mtu, None);
        assert!(
            matches!(
                facts["w3"].problems.as_slice(),
                [NodeProblem::MalformedUnderlayMtu { value, .. }] if value == "70000"
            ),
            "{:?}",
            facts["w3"].problems
        );
    }
}
