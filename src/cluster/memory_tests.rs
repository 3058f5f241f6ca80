//! Behaviour of the in-memory API server that shells rely on.

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeSpec};
use kube::api::ObjectMeta;
use rstest::rstest;

use super::*;
use crate::api::{Site, SiteSpec, SiteStatus};
use crate::cluster::WatchEvent;

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn site(name: &str) -> Site {
    Site::new(
        name,
        SiteSpec {
            node_cidrs: vec!["10.0.0.0/8".into()],
            ..Default::default()
        },
    )
}

fn rv<K: kube::Resource>(k: &K) -> String {
    k.meta().resource_version.clone().unwrap()
}

#[tokio::test]
async fn create_get_list_and_versions() {
    let c = InMemoryCluster::default();
    let a = c.create(None, &node("a")).await.unwrap();
    let b = c.create(None, &node("b")).await.unwrap();
    assert!(rv(&b).parse::<u64>().unwrap() > rv(&a).parse::<u64>().unwrap());
    assert_eq!(c.get::<Node>(None, "a").await.unwrap(), a);
    let list = c.list::<Node>(None).await.unwrap();
    assert_eq!(list.items.len(), 2);
    assert_eq!(list.resource_version, rv(&b));
    // Other kinds are separate.
    assert!(c.list::<Site>(None).await.unwrap().items.is_empty());
    assert!(matches!(
        c.create(None, &node("a")).await,
        Err(ClusterError::AlreadyExists { .. })
    ));
    assert!(matches!(
        c.get::<Node>(None, "zz").await,
        Err(ClusterError::NotFound { .. })
    ));
    assert!(matches!(
        c.create(None, &node("")).await,
        Err(ClusterError::Invalid { .. })
    ));
}

#[tokio::test]
async fn optimistic_concurrency() {
    let c = InMemoryCluster::default();
    let first = c.create(None, &site("s")).await.unwrap();
    let mut mine = first.clone();
    mine.spec.node_cidrs.push("10.1.0.0/16".into());
    let updated = c.replace(None, "s", &mine).await.unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    // A write based on the first read now conflicts.
    let mut stale = first.clone();
    stale.spec.node_cidrs.clear();
    let err = c.replace(None, "s", &stale).await.unwrap_err();
    assert!(matches!(err, ClusterError::Conflict { .. }), "{err}");
    assert!(err.is_retryable());
    // Without a resourceVersion the write is unconditional.
    stale.metadata.resource_version = None;
    assert!(c.replace(None, "s", &stale).await.is_ok());
}

#[tokio::test]
async fn status_and_spec_are_written_separately() {
    let c = InMemoryCluster::default();
    let mut s = c.create(None, &site("s")).await.unwrap();
    s.status = Some(SiteStatus {
        node_count: 7,
        ..Default::default()
    });
    s.spec.node_cidrs = vec!["192.168.0.0/16".into()];
    let after = c.replace_status(None, "s", &s).await.unwrap();
    assert_eq!(after.status.as_ref().unwrap().node_count, 7);
    assert_eq!(after.spec.node_cidrs, vec!["10.0.0.0/8".to_string()]);
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status writes keep the generation"
    );
    let mut again = after.clone();
    again.status = None;
    again.spec.node_cidrs = vec!["172.16.0.0/12".into()];
    let after = c.replace(None, "s", &again).await.unwrap();
    assert_eq!(
        after.status.unwrap().node_count,
        7,
        "replace keeps the status"
    );
    assert_eq!(after.spec.node_cidrs, vec!["172.16.0.0/12".to_string()]);
}

#[tokio::test]
async fn noop_write_keeps_the_version() {
    let c = InMemoryCluster::default();
    let s = c.create(None, &site("s")).await.unwrap();
    let same = c.replace(None, "s", &s).await.unwrap();
    assert_eq!(rv(&same), rv(&s));
    assert_eq!(
        c.writes_of::<Site>().replace,
        1,
        "still counted as a request"
    );
}

fn with_cidrs(mut n: Node, cidrs: &[&str]) -> Node {
    n.spec = Some(NodeSpec {
        pod_cidrs: Some(cidrs.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    });
    n
}

#[rstest]
#[case::set_once(&[], &["100.64.0.0/24"], true)]
#[case::same_again(&["100.64.0.0/24"], &["100.64.0.0/24"], true)]
#[case::change(&["100.64.0.0/24"], &["100.64.1.0/24"], false)]
#[case::add_family_later(&["100.64.0.0/24"], &["100.64.0.0/24", "fd00::/64"], false)]
#[case::three(&[], &["100.64.0.0/24", "fd00::/64", "fd01::/64"], false)]
#[tokio::test]
async fn node_pod_cidrs_are_immutable_once_set(
    #[case] before: &[&str],
    #[case] after: &[&str],
    #[case] ok: bool,
) {
    let c = InMemoryCluster::default();
    c.create(None, &with_cidrs(node("n"), before))
        .await
        .unwrap();
    let current: Node = c.get(None, "n").await.unwrap();
    let res = c.replace(None, "n", &with_cidrs(current, after)).await;
    assert_eq!(res.is_ok(), ok, "{res:?}");
    if let Err(e) = res {
        assert!(matches!(e, ClusterError::Invalid { .. }));
        assert!(e.to_string().contains("podCIDR"), "{e}");
    } else {
        let stored: Node = c.get(None, "n").await.unwrap();
        let spec = stored.spec.unwrap();
        assert_eq!(
            spec.pod_cidr.as_deref(),
            Some(after[0]),
            "podCIDR follows podCIDRs[0]"
        );
    }
}

#[tokio::test]
async fn patch_metadata_sets_and_removes() {
    let c = InMemoryCluster::default();
    c.create(None, &node("n")).await.unwrap();
    let n: Node = c
        .patch_metadata(None, "n", &MetadataPatch::set_label("site", "east"))
        .await
        .unwrap();
    assert_eq!(n.metadata.labels.unwrap()["site"], "east");
    let mut remove = MetadataPatch::default();
    remove.labels.insert("site".into(), None);
    remove.annotations.insert("k".into(), Some("v".into()));
    let n: Node = c.patch_metadata(None, "n", &remove).await.unwrap();
    assert!(n.metadata.labels.unwrap_or_default().is_empty());
    assert_eq!(n.metadata.annotations.unwrap()["k"], "v");
    assert_eq!(
        remove.to_merge_patch(),
        serde_json::json!({"metadata": {"labels": {"site": null}, "annotations": {"k": "v"}}})
    );
}

#[tokio::test]
async fn namespaces_are_separate() {
    let c = InMemoryCluster::default();
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("leader".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec::default()),
    };
    c.create(Some("a"), &lease).await.unwrap();
    c.create(Some("b"), &lease).await.unwrap();
    assert_eq!(c.list::<Lease>(None).await.unwrap().items.len(), 2);
    assert_eq!(c.list::<Lease>(Some("a")).await.unwrap().items.len(), 1);
    c.delete::<Lease>(Some("a"), "leader").await.unwrap();
    assert!(c.get::<Lease>(Some("b"), "leader").await.is_ok());
    assert!(matches!(
        c.delete::<Lease>(Some("a"), "leader").await,
        Err(ClusterError::NotFound { .. })
    ));
}

#[tokio::test]
async fn watch_resumes_from_a_version_and_filters_by_kind() {
    let c = InMemoryCluster::default();
    c.create(None, &node("a")).await.unwrap();
    let from = c.list::<Node>(None).await.unwrap().resource_version;
    c.create(None, &site("s")).await.unwrap();
    c.create(None, &node("b")).await.unwrap();
    c.patch_metadata::<Node>(None, "a", &MetadataPatch::set_label("x", "y"))
        .await
        .unwrap();
    c.delete::<Node>(None, "b").await.unwrap();
    let mut w = c.watch::<Node>(None, &from).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let ev = w.next().await.unwrap().unwrap();
        let name = ev.object().metadata.name.clone().unwrap();
        seen.push(match ev {
            WatchEvent::Added(_) => format!("+{name}"),
            WatchEvent::Modified(_) => format!("~{name}"),
            WatchEvent::Deleted(_) => format!("-{name}"),
        });
    }
    assert_eq!(seen, vec!["+b", "~a", "-b"]);
    // Live: a write after the watch started is delivered.
    let c2 = c.clone();
    tokio::spawn(async move { c2.create(None, &node("c")).await.unwrap() });
    let ev = w.next().await.unwrap().unwrap();
    assert_eq!(ev, WatchEvent::Added(c.get(None, "c").await.unwrap()));
}

#[tokio::test]
async fn compacted_history_is_gone() {
    let c = InMemoryCluster::with_history(2);
    for i in 0..5 {
        c.create(None, &node(&format!("n{i}"))).await.unwrap();
    }
    let err = c.watch::<Node>(None, "1").await.err().unwrap();
    assert!(matches!(err, ClusterError::Gone { .. }), "{err}");
    assert!(c.watch::<Node>(None, "4").await.is_ok());
    assert!(matches!(
        c.watch::<Node>(None, "abc").await.err().unwrap(),
        ClusterError::Api(_)
    ));
}

#[tokio::test]
async fn writes_are_counted_per_kind() {
    let c = InMemoryCluster::default();
    c.create(None, &node("a")).await.unwrap();
    c.patch_metadata::<Node>(None, "a", &MetadataPatch::set_label("k", "v"))
        .await
        .unwrap();
    c.create(None, &site("s")).await.unwrap();
    let _ = c.create(None, &site("s")).await; // rejected, still a request
    let counts = c.write_counts();
    assert_eq!(counts["Node"].total(), 2);
    assert_eq!(counts["Site"].create, 2);
    c.reset_write_counts();
    assert_eq!(c.writes_of::<Node>().total(), 0);
}

#[tokio::test]
async fn unavailable_fails_every_call() {
    let c = InMemoryCluster::default();
    c.create(None, &node("a")).await.unwrap();
    c.set_unavailable(Some("partition"));
    assert!(matches!(
        c.get::<Node>(None, "a").await,
        Err(ClusterError::Unavailable(_))
    ));
    assert!(matches!(
        c.create(None, &node("b")).await,
        Err(ClusterError::Unavailable(_))
    ));
    c.set_unavailable(None);
    assert!(c.get::<Node>(None, "a").await.is_ok());
}
