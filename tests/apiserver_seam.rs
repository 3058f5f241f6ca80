//! The kube-rs `Cluster` seam against the real API server honours the contract the in-memory
//! seam (and so the simulator) relies on: typed errors, optimistic concurrency, status kept
//! apart, podCIDR immutability, watches that resume from a list and start "from now".

#[path = "support/apiserver.rs"]
mod apiserver;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use serde_json::json;
use unbounded_net::api::{Site, SiteStatus};
use unbounded_net::cluster::{Cluster, ClusterError, KubeCluster, MetadataPatch, WatchEvent};

use apiserver::ControlPlane;

fn node(name: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name}})).expect("node")
}

#[tokio::test]
async fn kube_seam_matches_the_seam_contract() {
    let cp = ControlPlane::start().await;
    let c = KubeCluster::new(cp.client().await, "seam-test");

    let n = c.create(None, &node("a")).await.expect("create");
    assert!(matches!(
        c.create(None, &node("a")).await,
        Err(ClusterError::AlreadyExists { .. })
    ));
    assert!(matches!(
        c.get::<Node>(None, "missing").await,
        Err(ClusterError::NotFound { .. })
    ));

    // Optimistic concurrency: a write based on an old resourceVersion is a Conflict.
    let mut first = n.clone();
    first.spec.get_or_insert_default().pod_cidr = Some("10.244.0.0/24".into());
    first.spec.get_or_insert_default().pod_cidrs = Some(vec!["10.244.0.0/24".into()]);
    let stored = c.replace(None, "a", &first).await.expect("set podCIDRs");
    let mut stale = n.clone();
    stale.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    assert!(matches!(
        c.replace(None, "a", &stale).await,
        Err(ClusterError::Conflict { .. })
    ));
    // podCIDRs are immutable once set.
    let mut changed = stored.clone();
    changed.spec.get_or_insert_default().pod_cidr = Some("10.244.1.0/24".into());
    changed.spec.get_or_insert_default().pod_cidrs = Some(vec!["10.244.1.0/24".into()]);
    let err = c.replace(None, "a", &changed).await.expect_err("immutable");
    assert!(matches!(err, ClusterError::Invalid { .. }), "{err:?}");

    // Metadata patches need no resourceVersion.
    let patched: Node = c
        .patch_metadata(None, "a", &MetadataPatch::set_label("k", "v"))
        .await
        .expect("patch");
    assert_eq!(
        patched
            .metadata
            .labels
            .unwrap_or_default()
            .get("k")
            .map(String::as_str),
        Some("v")
    );

    // Status is its own subresource.
    let site: Site = serde_json::from_value(json!({
        "apiVersion": "net.unbounded-cloud.io/v1alpha1", "kind": "Site",
        "metadata": {"name": "s"}, "spec": {"nodeCidrs": ["10.0.0.0/8"]}
    }))
    .expect("site");
    let mut s = c.create(None, &site).await.expect("site");
    s.status = Some(SiteStatus {
        node_count: 7,
        ..Default::default()
    });
    let after_main = c.replace(None, "s", &s).await.expect("replace main");
    assert!(
        after_main.status.is_none_or(|st| st.node_count == 0),
        "main resource wrote status"
    );
    let mut s2: Site = c.get(None, "s").await.expect("get");
    s2.status = Some(SiteStatus {
        node_count: 7,
        ..Default::default()
    });
    let with_status = c.replace_status(None, "s", &s2).await.expect("status");
    assert_eq!(with_status.status.map(|s| s.node_count), Some(7));

    // Watches: from a list's version they see what follows, in order; from "" they start now.
    let list = c.list::<Node>(None).await.expect("list");
    let mut from_list = c
        .watch::<Node>(None, &list.resource_version)
        .await
        .expect("watch");
    let mut from_now = c.watch::<Node>(None, "").await.expect("watch now");
    c.create(None, &node("b")).await.expect("create b");
    c.delete::<Node>(None, "b").await.expect("delete b");
    for stream in [&mut from_list, &mut from_now] {
        let ev = next(stream).await;
        assert!(
            matches!(&ev, WatchEvent::Added(n) if n.metadata.name.as_deref() == Some("b")),
            "{ev:?}"
        );
        let ev = next(stream).await;
        assert!(
            matches!(&ev, WatchEvent::Deleted(n) if n.metadata.name.as_deref() == Some("b")),
            "{ev:?}"
        );
    }
    assert!(matches!(
        c.delete::<Node>(None, "b").await,
        Err(ClusterError::NotFound { .. })
    ));
}

async fn next(s: &mut unbounded_net::cluster::WatchStream<Node>) -> WatchEvent<Node> {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("watch event within 10 s")
        .expect("stream open")
        .expect("no error")
}
