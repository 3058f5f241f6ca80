//! Cross-object checks: every Site and GatewayPool a binding names is defined, and every
//! gateway pool selects at least one node of the topology.

use std::collections::HashSet;

use super::{Problems, check_unique, one_of};
use crate::Scenario;
use crate::objects::KubeObject;

pub fn check(scenario: &Scenario, problems: &mut Problems) {
    let sites: Vec<&str> = scenario
        .site_objects()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    let pools: Vec<&str> = scenario
        .gateway_pools()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    let site_set: HashSet<&str> = sites.iter().copied().collect();
    let pool_set: HashSet<&str> = pools.iter().copied().collect();

    // Names are unique per kind: Site `a` and GatewayPool `a` may coexist.
    let keys: Vec<String> = scenario
        .objects
        .iter()
        .map(|m| format!("{} {}", m.kind(), m.name()))
        .collect();
    check_unique(
        keys.iter()
            .enumerate()
            .map(|(i, key)| (format!("objects[{i}].metadata.name"), key.as_str())),
        "object",
        problems,
    );

    for (i, manifest) in scenario.objects.iter().enumerate() {
        let base = format!("objects[{i}].spec");
        let kind = manifest.kind();
        let name = manifest.name();
        let site_refs: &[String];
        let pool_refs: &[String];
        match &manifest.object {
            KubeObject::Site(_) => continue,
            KubeObject::GatewayPool(pool) => {
                if scenario
                    .nodes_matching(&pool.spec.node_selector)
                    .next()
                    .is_none()
                {
                    problems.at(
                        format!("{base}.nodeSelector"),
                        format!(
                            "GatewayPool `{name}` selects no node of topology.nodes: give its gateways `role: gateway` or labels matching the selector"
                        ),
                    );
                }
                continue;
            }
            KubeObject::SiteGatewayPoolAssignment(a) => {
                site_refs = &a.spec.sites;
                pool_refs = &a.spec.gateway_pools;
            }
            KubeObject::SitePeering(p) => {
                site_refs = &p.spec.sites;
                pool_refs = &[];
            }
            KubeObject::GatewayPoolPeering(p) => {
                site_refs = &[];
                pool_refs = &p.spec.gateway_pools;
            }
        }
        for (j, site) in site_refs.iter().enumerate() {
            if !site_set.contains(site.as_str()) {
                problems.at(
                    format!("{base}.sites[{j}]"),
                    format!(
                        "{kind} `{name}` names Site `{site}`, which no Site in `objects` defines: use one of {}",
                        one_of(sites.iter().copied())
                    ),
                );
            }
        }
        for (j, pool) in pool_refs.iter().enumerate() {
            if !pool_set.contains(pool.as_str()) {
                problems.at(
                    format!("{base}.gatewayPools[{j}]"),
                    format!(
                        "{kind} `{name}` names GatewayPool `{pool}`, which no GatewayPool in `objects` defines: use one of {}",
                        one_of(pools.iter().copied())
                    ),
                );
            }
        }
    }
}
