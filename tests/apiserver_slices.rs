//! SiteNodeSlices on a real API server: at most 500 nodes per slice, and a node joining or
//! leaving rewrites exactly one slice (resourceVersions of the others do not move).

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/apiserver_controller.rs"]
mod apiserver_controller;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use unbounded_net::api::{Site, SiteNodeSlice};

use apiserver::ControlPlane;
use apiserver_controller::{ControllerProcess, eventually};

fn node(i: usize) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": format!("n-{i:04}")},
        "status": {"addresses": [{"type": "InternalIP", "address": format!("10.3.{}.{}", i / 250, i % 250 + 1)}]}
    }))
    .expect("node")
}

/// slice name → (resourceVersion, node names), once the slices list exactly `want` nodes
/// that all have pod CIDRs.
async fn slices_listing(
    api: &Api<SiteNodeSlice>,
    want: &[String],
) -> BTreeMap<String, (String, Vec<String>)> {
    let mut want = want.to_vec();
    want.sort();
    eventually(
        Duration::from_secs(90),
        "slices listing the expected nodes",
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let mut names: Vec<String> = Vec::new();
            let mut out = BTreeMap::new();
            for s in list.items {
                assert!(
                    s.spec.nodes.len() <= 500,
                    "slice with {} nodes",
                    s.spec.nodes.len()
                );
                if s.spec.nodes.iter().any(|n| n.pod_cidrs.is_empty()) {
                    return None;
                }
                let nodes: Vec<String> = s.spec.nodes.iter().map(|n| n.name.clone()).collect();
                names.extend(nodes.clone());
                let name = s.metadata.name.clone().unwrap_or_default();
                out.insert(
                    name,
                    (
                        s.metadata.resource_version.clone().unwrap_or_default(),
                        nodes,
                    ),
                );
            }
            names.sort();
            (names == want).then_some(out)
        },
    )
    .await
}

fn changed(
    before: &BTreeMap<String, (String, Vec<String>)>,
    after: &BTreeMap<String, (String, Vec<String>)>,
) -> Vec<String> {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k).map(|v| &v.0) != after.get(*k).map(|v| &v.0))
        .cloned()
        .collect()
}

#[tokio::test]
async fn one_slice_rewritten_per_node_join_or_leave() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let site: Site = serde_json::from_value(json!({
        "apiVersion": "net.unbounded-cloud.io/v1alpha1", "kind": "Site",
        "metadata": {"name": "big"},
        "spec": {"nodeCidrs": ["10.3.0.0/16"], "podCidrAssignments": [{"cidrBlocks": ["100.80.0.0/12"]}]}
    }))
    .expect("site");
    Api::<Site>::all(client.clone())
        .create(&PostParams::default(), &site)
        .await
        .expect("create site");
    let _controller = ControllerProcess::start(&cp, "solo");
    let nodes = Api::<Node>::all(client.clone());
    stream::iter(0..501)
        .for_each_concurrent(16, |i| {
            let nodes = nodes.clone();
            async move {
                nodes
                    .create(&PostParams::default(), &node(i))
                    .await
                    .expect("create node");
            }
        })
        .await;
    let slices = Api::<SiteNodeSlice>::all(client.clone());
    let mut members: Vec<String> = (0..501).map(|i| format!("n-{i:04}")).collect();
    let first = slices_listing(&slices, &members).await;
    assert_eq!(
        first.len(),
        2,
        "501 nodes make two slices: {:?}",
        first.keys()
    );

    // Join: the newcomer goes to the slice with room; the full one is not rewritten.
    nodes
        .create(&PostParams::default(), &node(501))
        .await
        .expect("join");
    members.push("n-0501".into());
    let second = slices_listing(&slices, &members).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second_settled = slices_listing(&slices, &members).await;
    assert_eq!(
        changed(&second, &second_settled),
        Vec::<String>::new(),
        "slices kept changing"
    );
    assert_eq!(changed(&first, &second), vec!["big-1".to_string()]);

    // Leave: only the departed node's slice changes.
    nodes
        .delete("n-0007", &DeleteParams::default())
        .await
        .expect("leave");
    members.retain(|n| n != "n-0007");
    let third = slices_listing(&slices, &members).await;
    assert_eq!(changed(&second, &third), vec!["big-0".to_string()]);
}
