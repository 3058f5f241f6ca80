//! What the lab does through the API, the same in both control-plane modes (generic over the
//! [`Cluster`] seam): apply the scenario's objects and the Node objects the topology implies,
//! delete a Node, read pod CIDRs, and tell whether the controller finished its share of a
//! bring-up.

use std::collections::BTreeMap;

use ipnet::IpNet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use unbounded_net::api::{
    GatewayPool, GatewayPoolPeering, SITE_LABEL, Site, SiteGatewayPoolAssignment, SiteNodeSlice,
    SitePeering, WG_PUBKEY_ANNOTATION,
};
use unbounded_net::cluster::{Cluster, ClusterError, ClusterObject};
use unbounded_scenario::{KubeObject, Scenario};

async fn create<C: Cluster, K: ClusterObject>(c: &C, obj: &K) -> Result<(), ClusterError> {
    match c.create::<K>(None, obj).await {
        Ok(_) | Err(ClusterError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the scenario's Sites, pools, assignments and peerings.
pub async fn apply_objects<C: Cluster>(c: &C, scenario: &Scenario) -> Result<(), ClusterError> {
    for m in &scenario.objects {
        match &m.object {
            KubeObject::Site(o) => create::<C, Site>(c, o).await?,
            KubeObject::GatewayPool(o) => create::<C, GatewayPool>(c, o).await?,
            KubeObject::SiteGatewayPoolAssignment(o) => {
                create::<C, SiteGatewayPoolAssignment>(c, o).await?
            }
            KubeObject::SitePeering(o) => create::<C, SitePeering>(c, o).await?,
            KubeObject::GatewayPoolPeering(o) => create::<C, GatewayPoolPeering>(c, o).await?,
        }
    }
    Ok(())
}

/// Registers a machine as a Node (what the kubelet does): name, labels, addresses.
pub async fn add_node<C: Cluster>(
    c: &C,
    node: &unbounded_scenario::Node,
) -> Result<(), ClusterError> {
    let obj = node.kube_node();
    create::<C, Node>(c, &obj).await?;
    // The API server keeps a Node's status on create; the write below makes sure of it on
    // any server (status is a subresource), unconditionally (no resourceVersion).
    c.replace_status::<Node>(None, &node.name, &obj).await?;
    Ok(())
}

pub async fn delete_node<C: Cluster>(c: &C, node: &str) -> Result<(), ClusterError> {
    c.delete::<Node>(None, node).await
}

/// Every Node's pod CIDRs as the controller allocated them.
pub async fn pod_cidrs<C: Cluster>(c: &C) -> Result<BTreeMap<String, Vec<IpNet>>, ClusterError> {
    Ok(c.list::<Node>(None)
        .await?
        .items
        .into_iter()
        .filter_map(|n| {
            let name = n.metadata.name?;
            let cidrs = n
                .spec
                .and_then(|s| s.pod_cidrs)
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect();
            Some((name, cidrs))
        })
        .collect())
}

/// The holder of the controller's Lease.
pub async fn lease_holder<C: Cluster>(
    c: &C,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, ClusterError> {
    match c.get::<Lease>(Some(namespace), name).await {
        Ok(l) => Ok(l.spec.and_then(|s| s.holder_identity)),
        Err(ClusterError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What is still missing for the `present` nodes to be planned by their agents: site label,
/// pod CIDRs and published key on the Node, and a SiteNodeSlice entry carrying the key.
/// Empty when the controller and the agents' key publication are done.
pub async fn missing<C: Cluster>(c: &C, present: &[String]) -> Result<Vec<String>, ClusterError> {
    let nodes: BTreeMap<String, Node> = c
        .list::<Node>(None)
        .await?
        .items
        .into_iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, n)))
        .collect();
    let mut sliced: BTreeMap<String, String> = BTreeMap::new();
    for s in c.list::<SiteNodeSlice>(None).await?.items {
        for n in s.spec.nodes {
            sliced.insert(n.name, n.wire_guard_public_key);
        }
    }
    let mut out = Vec::new();
    for name in present {
        let Some(n) = nodes.get(name) else {
            out.push(format!("{name}: no Node object"));
            continue;
        };
        let labels = n.metadata.labels.clone().unwrap_or_default();
        if !labels.contains_key(SITE_LABEL) {
            out.push(format!("{name}: no site label"));
        }
        let has_cidrs = n
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidrs.as_ref())
            .is_some_and(|c| !c.is_empty());
        if !has_cidrs {
            out.push(format!("{name}: no pod CIDRs"));
        }
        let key = n
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(WG_PUBKEY_ANNOTATION));
        match (key, sliced.get(name)) {
            (None, _) => out.push(format!("{name}: WireGuard key not published")),
            (Some(k), Some(s)) if k == s => {}
            _ => out.push(format!("{name}: not (yet) in a SiteNodeSlice with its key")),
        }
    }
    Ok(out)
}

/// A fingerprint of everything an agent plans from (object versions): the cluster is settled
/// when it stops changing.
pub async fn fingerprint<C: Cluster>(c: &C) -> Result<String, ClusterError> {
    fn versions<K: kube::Resource>(items: Vec<K>) -> String {
        items
            .iter()
            .map(|o| {
                format!(
                    "{}@{};",
                    o.meta().name.clone().unwrap_or_default(),
                    o.meta().resource_version.clone().unwrap_or_default()
                )
            })
            .collect()
    }
    Ok([
        versions(c.list::<Node>(None).await?.items),
        versions(c.list::<SiteNodeSlice>(None).await?.items),
        versions(c.list::<GatewayPool>(None).await?.items),
        versions(c.list::<Site>(None).await?.items),
    ]
    .join("|"))
}
