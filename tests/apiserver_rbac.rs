//! Least privilege is enough: with deploy/ applied, the controller running as its service
//! account (impersonated) labels and allocates Nodes, writes slices and status, and holds its
//! Lease; and that account cannot do what it does not need.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/apiserver_controller.rs"]
mod apiserver_controller;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use unbounded_net::api::{SITE_LABEL, Site, SiteNodeSlice};

use apiserver::{ControlPlane, repo_root};
use apiserver_controller::{ControllerProcess, eventually};

const SA: &str = "system:serviceaccount:unbounded-net:unbounded-net-controller";
const SA_GROUPS: &[&str] = &[
    "system:serviceaccounts",
    "system:serviceaccounts:unbounded-net",
    "system:authenticated",
];

#[tokio::test]
async fn controller_works_with_its_own_rbac_and_no_more() {
    let cp = ControlPlane::start().await;
    let deploy = repo_root().join("deploy");
    let out = cp.kubectl(&["apply", "-k", deploy.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = cp.client().await;
    let site: Site = serde_json::from_value(json!({
        "apiVersion": "net.unbounded-cloud.io/v1alpha1", "kind": "Site",
        "metadata": {"name": "s"},
        "spec": {"nodeCidrs": ["10.4.0.0/16"], "podCidrAssignments": [{"cidrBlocks": ["100.90.0.0/16"]}]}
    }))
    .expect("site");
    Api::<Site>::all(admin.clone())
        .create(&PostParams::default(), &site)
        .await
        .expect("site");
    let nodes = Api::<Node>::all(admin.clone());
    for i in 0..3 {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": format!("n{i}")},
            "status": {"addresses": [{"type": "InternalIP", "address": format!("10.4.0.{}", i + 1)}]}
        }))
        .expect("node");
        nodes
            .create(&PostParams::default(), &n)
            .await
            .expect("node");
    }

    let _controller = ControllerProcess::start_with(&cp, "rbac", cp.kubeconfig_as(SA, SA_GROUPS));
    eventually(
        Duration::from_secs(60),
        "nodes labelled and allocated as the service account",
        || async {
            let list = nodes.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .all(|n| {
                    n.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SITE_LABEL))
                        .map(String::as_str)
                        == Some("s")
                        && n.spec
                            .as_ref()
                            .and_then(|s| s.pod_cidrs.as_ref())
                            .is_some_and(|c| c.len() == 1)
                })
                .then_some(())
        },
    )
    .await;
    let slices = Api::<SiteNodeSlice>::all(admin.clone());
    eventually(Duration::from_secs(30), "a slice with 3 nodes", || async {
        let l = slices.list(&ListParams::default()).await.ok()?;
        (l.items.iter().map(|s| s.spec.nodes.len()).sum::<usize>() == 3).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "Site status written", || async {
        let s = Api::<Site>::all(admin.clone()).get("s").await.ok()?;
        (s.status?.node_count == 3).then_some(())
    })
    .await;
    let lease = Api::<Lease>::namespaced(admin.clone(), "unbounded-net")
        .get("unbounded-net-controller")
        .await
        .expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("rbac")
    );

    // And no more than needed: no Secrets, no Node deletion, no foreign Leases.
    let sa = cp.client_as(SA, SA_GROUPS).await;
    let err = Api::<Secret>::namespaced(sa.clone(), "default")
        .list(&ListParams::default())
        .await;
    assert!(err.is_err_and(|e| e.to_string().contains("forbidden")));
    let err = Api::<Node>::all(sa.clone())
        .delete("n0", &Default::default())
        .await;
    assert!(err.is_err_and(|e| e.to_string().contains("forbidden")));
    let other: Lease = serde_json::from_value(
        json!({"metadata": {"name": "other", "namespace": "unbounded-net"}}),
    )
    .expect("lease");
    let created = Api::<Lease>::namespaced(sa.clone(), "unbounded-net")
        .create(&PostParams::default(), &other)
        .await;
    assert!(created.is_ok(), "create cannot be limited by name in RBAC");
    let err = Api::<Lease>::namespaced(sa, "unbounded-net")
        .get("other")
        .await;
    assert!(err.is_err_and(|e| e.to_string().contains("forbidden")));
}
