//! The controller binary against a real kube-apiserver + etcd: site labels, disjoint pod
//! CIDRs, SiteNodeSlices, gateway pool status, exhausted pools, leader failover.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/apiserver_controller.rs"]
mod apiserver_controller;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use unbounded_net::api::{GatewayPool, SITE_LABEL, Site, SiteNodeSlice};

use apiserver::ControlPlane;
use apiserver_controller::{ControllerProcess, LEASE_SECONDS, eventually};

const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

pub fn site(name: &str, node_cidr: &str, pool: &str, block: u8) -> Site {
    serde_json::from_value(json!({
        "apiVersion": "net.unbounded-cloud.io/v1alpha1", "kind": "Site",
        "metadata": {"name": name},
        "spec": {
            "nodeCidrs": [node_cidr],
            "podCidrAssignments": [{"cidrBlocks": [pool], "nodeBlockSizes": {"ipv4": block}}]
        }
    }))
    .expect("site")
}

pub fn node(name: &str, ip: &str, labels: serde_json::Value, key: Option<&str>) -> Node {
    let annotations = match key {
        Some(k) => json!({"net.unbounded-cloud.io/wg-pubkey": k}),
        None => json!({}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
    }))
    .expect("node")
}

async fn create_nodes(api: &Api<Node>, nodes: &[Node]) {
    for n in nodes {
        api.create(&PostParams::default(), n)
            .await
            .expect("create node");
    }
}

/// Every node's pod CIDRs, once all `expected` nodes have them.
async fn wait_allocated(
    api: &Api<Node>,
    expected: usize,
) -> BTreeMap<String, (Option<String>, Vec<IpNet>)> {
    eventually(
        Duration::from_secs(60),
        "pod CIDRs on every node",
        || async {
            let nodes = api.list(&ListParams::default()).await.ok()?;
            let map: BTreeMap<String, (Option<String>, Vec<IpNet>)> = nodes
                .items
                .iter()
                .map(|n| {
                    let cidrs = n
                        .spec
                        .as_ref()
                        .and_then(|s| s.pod_cidrs.clone())
                        .unwrap_or_default()
                        .iter()
                        .map(|c| c.parse().expect("API holds valid CIDRs"))
                        .collect();
                    let label = n
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SITE_LABEL).cloned());
                    (n.metadata.name.clone().unwrap_or_default(), (label, cidrs))
                })
                .collect();
            let done = map.values().filter(|(_, c)| !c.is_empty()).count();
            (done >= expected).then_some(map)
        },
    )
    .await
}

fn assert_disjoint(all: &BTreeMap<String, (Option<String>, Vec<IpNet>)>) {
    let blocks: Vec<(&String, &IpNet)> = all
        .iter()
        .flat_map(|(n, (_, c))| c.iter().map(move |c| (n, c)))
        .collect();
    for (i, (na, a)) in blocks.iter().enumerate() {
        for (nb, b) in &blocks[i + 1..] {
            assert!(
                !(a.contains(*b) || b.contains(*a)),
                "{na} {a} overlaps {nb} {b}"
            );
        }
    }
}

#[tokio::test]
async fn nodes_get_sites_pod_cidrs_slices_and_pools_get_members() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let sites = Api::<Site>::all(client.clone());
    for s in [
        site("site-a", "10.1.0.0/16", "100.64.0.0/16", 24),
        site("site-b", "10.2.0.0/16", "100.65.0.0/16", 26),
    ] {
        sites
            .create(&PostParams::default(), &s)
            .await
            .expect("create site");
    }
    let pools = Api::<GatewayPool>::all(client.clone());
    let pool: GatewayPool = serde_json::from_value(json!({
        "apiVersion": "net.unbounded-cloud.io/v1alpha1", "kind": "GatewayPool",
        "metadata": {"name": "gw"},
        "spec": {"type": "Internal", "nodeSelector": {"unbounded-cloud.io/unbounded-net-gateway": "true"}}
    }))
    .expect("pool");
    pools
        .create(&PostParams::default(), &pool)
        .await
        .expect("create pool");

    let _controller = ControllerProcess::start(&cp, "solo");
    let nodes = Api::<Node>::all(client.clone());
    let mut batch = Vec::new();
    for i in 0..6 {
        batch.push(node(
            &format!("a-{i}"),
            &format!("10.1.0.{}", i + 10),
            json!({}),
            None,
        ));
        batch.push(node(
            &format!("b-{i}"),
            &format!("10.2.0.{}", i + 10),
            json!({}),
            None,
        ));
    }
    let gw = json!({"unbounded-cloud.io/unbounded-net-gateway": "true"});
    batch.push(node("gw-1", "10.1.0.200", gw.clone(), Some(KEY)));
    batch.push(node("gw-2", "10.2.0.200", gw.clone(), Some(KEY)));
    // A gateway-labelled node without a key is not a member yet.
    batch.push(node("gw-nokey", "10.2.0.201", gw, None));
    batch.push(node("stray", "192.168.7.7", json!({}), None));
    create_nodes(&nodes, &batch).await;

    let all = wait_allocated(&nodes, 15).await;
    for (name, (label, cidrs)) in &all {
        let (want_site, pool): (Option<&str>, Option<IpNet>) = match name.chars().next() {
            _ if name == "stray" => (None, None),
            _ if name == "gw-1" || name.starts_with("a-") => {
                (Some("site-a"), "100.64.0.0/16".parse().ok())
            }
            _ => (Some("site-b"), "100.65.0.0/16".parse().ok()),
        };
        assert_eq!(label.as_deref(), want_site, "site label of {name}");
        match pool {
            None => assert!(cidrs.is_empty(), "{name} is in no Site but got {cidrs:?}"),
            Some(pool) => {
                assert_eq!(cidrs.len(), 1, "{name}: {cidrs:?}");
                assert!(
                    pool.contains(&cidrs[0]),
                    "{name}: {} outside {pool}",
                    cidrs[0]
                );
                let want_len = if want_site == Some("site-a") { 24 } else { 26 };
                assert_eq!(cidrs[0].prefix_len(), want_len, "{name}");
            }
        }
    }
    assert_disjoint(&all);

    // SiteNodeSlices: one per Site here, listing exactly its nodes with their CIDRs.
    let slices = Api::<SiteNodeSlice>::all(client.clone());
    let by_site = eventually(
        Duration::from_secs(30),
        "slices listing every node",
        || async {
            let list = slices.list(&ListParams::default()).await.ok()?;
            let mut by_site: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
            for s in &list.items {
                assert!(s.spec.nodes.len() <= 500);
                for n in &s.spec.nodes {
                    by_site
                        .entry(s.spec.site_name.clone())
                        .or_default()
                        .push((n.name.clone(), n.pod_cidrs.clone()));
                }
            }
            let complete = by_site
                .get("site-a")
                .is_some_and(|v| v.len() == 7 && v.iter().all(|(_, c)| c.len() == 1))
                && by_site
                    .get("site-b")
                    .is_some_and(|v| v.len() == 8 && v.iter().all(|(_, c)| c.len() == 1));
            complete.then_some(by_site)
        },
    )
    .await;
    for (site, entries) in &by_site {
        for (n, cidrs) in entries {
            assert_eq!(all[n].0.as_deref(), Some(site.as_str()));
            assert_eq!(cidrs[0], all[n].1[0].to_string(), "slice entry of {n}");
        }
    }

    // Gateway pool status lists the members that published a key.
    let members = eventually(Duration::from_secs(30), "gateway pool members", || async {
        let p = pools.get("gw").await.ok()?;
        let st = p.status?;
        let names: Vec<String> = st.nodes.iter().map(|n| n.name.clone()).collect();
        (names.len() == 2).then_some(st)
    })
    .await;
    let names: Vec<&str> = members.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, vec!["gw-1", "gw-2"]);
    assert_eq!(members.nodes[0].site_name, "site-a");
    assert_eq!(members.nodes[0].wire_guard_public_key, KEY);
    assert!(
        members
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    // Site status counts nodes and carries conditions.
    let a = sites.get("site-a").await.expect("site-a");
    let st = a.status.expect("site-a status");
    assert_eq!(st.node_count, 7);
    assert_eq!(st.slice_count, 1);
}

#[tokio::test]
async fn exhausted_pool_sets_condition_and_event_and_controller_keeps_going() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    let sites = Api::<Site>::all(client.clone());
    // A /23 cut into /24s: room for exactly two nodes.
    sites
        .create(
            &PostParams::default(),
            &site("tiny", "10.9.0.0/16", "100.99.0.0/23", 24),
        )
        .await
        .expect("create tiny");
    sites
        .create(
            &PostParams::default(),
            &site("roomy", "10.8.0.0/16", "100.98.0.0/16", 24),
        )
        .await
        .expect("create roomy");
    let mut controller = ControllerProcess::start(&cp, "solo");
    let nodes = Api::<Node>::all(client.clone());
    let batch: Vec<Node> = (0..3)
        .map(|i| {
            node(
                &format!("t-{i}"),
                &format!("10.9.0.{}", i + 1),
                json!({}),
                None,
            )
        })
        .collect();
    create_nodes(&nodes, &batch).await;
    let all = wait_allocated(&nodes, 2).await;
    assert_disjoint(&all);

    let cond = eventually(
        Duration::from_secs(30),
        "PoolExhausted=True on Site tiny",
        || async {
            let s = sites.get("tiny").await.ok()?;
            s.status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "PoolExhausted" && c.status == "True")
        },
    )
    .await;
    assert!(
        cond.message.contains("t-"),
        "names the waiting node: {}",
        cond.message
    );
    let events = Api::<Event>::namespaced(client.clone(), "default");
    let ev = eventually(Duration::from_secs(30), "a PoolExhausted Event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("PoolExhausted"))
    })
    .await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));

    // Still alive, healthy, and still allocating elsewhere.
    assert!(controller.is_running(), "controller thread ended");
    let (status, _) = controller.get("/healthz").expect("healthz answers");
    assert!(status.contains("200"), "{status}");
    create_nodes(&nodes, &[node("r-0", "10.8.0.1", json!({}), None)]).await;
    let all = wait_allocated(&nodes, 3).await;
    assert_eq!(all["r-0"].0.as_deref(), Some("roomy"));
    assert!(
        all.values().filter(|(_, c)| c.is_empty()).count() == 1,
        "exactly the third tiny node waits"
    );
    let failures = controller.metric("unbounded_net_controller_allocation_failures_total");
    assert!(
        failures.unwrap_or(0.0) >= 1.0,
        "allocation_failures_total = {failures:?}; /metrics:\n{:?}",
        controller.get("/metrics")
    );
}

#[tokio::test]
async fn standby_takes_over_and_finishes_allocations_without_overlap() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    Api::<Site>::all(client.clone())
        .create(
            &PostParams::default(),
            &site("s", "10.5.0.0/16", "100.70.0.0/16", 24),
        )
        .await
        .expect("create site");
    let mut one = ControllerProcess::start(&cp, "replica-1");
    let mut two = ControllerProcess::start(&cp, "replica-2");
    let leases = Api::<Lease>::namespaced(client.clone(), "unbounded-net");
    let holder = || async {
        let l = leases.get("unbounded-net-controller").await.ok()?;
        l.spec?.holder_identity
    };
    let first = eventually(Duration::from_secs(30), "a leader", holder).await;

    let nodes = Api::<Node>::all(client.clone());
    let batch: Vec<Node> = (0..20)
        .map(|i| {
            node(
                &format!("n-{i:02}"),
                &format!("10.5.0.{}", i + 1),
                json!({}),
                None,
            )
        })
        .collect();
    create_nodes(&nodes, &batch).await;
    wait_allocated(&nodes, 20).await;

    // Kill the leader, then add nodes while nobody leads.
    let (leader, standby) = if first == one.identity {
        (&mut one, &mut two)
    } else {
        (&mut two, &mut one)
    };
    leader.kill();
    let killed_at = Instant::now();
    let batch: Vec<Node> = (20..40)
        .map(|i| {
            node(
                &format!("n-{i:02}"),
                &format!("10.5.0.{}", i + 1),
                json!({}),
                None,
            )
        })
        .collect();
    create_nodes(&nodes, &batch).await;
    let standby_id = standby.identity.clone();
    eventually(
        Duration::from_secs(LEASE_SECONDS * 4),
        "the standby to lead",
        || async { (holder().await? == standby_id).then_some(()) },
    )
    .await;
    let took = killed_at.elapsed();
    let all = wait_allocated(&nodes, 40).await;
    println!(
        "standby led {took:?} after the kill; all 40 nodes allocated {:?} after it",
        killed_at.elapsed()
    );
    // Within the lease duration plus one renew interval and scheduling slack.
    assert!(
        took <= Duration::from_secs(LEASE_SECONDS + 3),
        "takeover took {took:?}"
    );
    assert_disjoint(&all);
    assert!(standby.is_running(), "standby died");
}

#[tokio::test]
async fn unknown_references_are_a_condition_and_an_event() {
    let cp = ControlPlane::start().await;
    let client = cp.client().await;
    Api::<Site>::all(client.clone())
        .create(
            &PostParams::default(),
            &site("known", "10.6.0.0/16", "100.71.0.0/16", 24),
        )
        .await
        .expect("create site");
    let peering: unbounded_net::api::SitePeering = serde_json::from_value(json!({
        "apiVersion": "net.unbounded-cloud.io/v1alpha1", "kind": "SitePeering",
        "metadata": {"name": "p"},
        "spec": {"sites": ["known", "nowhere"]}
    }))
    .expect("peering");
    let peerings = Api::<unbounded_net::api::SitePeering>::all(client.clone());
    peerings
        .create(&PostParams::default(), &peering)
        .await
        .expect("create peering");
    let _controller = ControllerProcess::start(&cp, "solo");
    let cond = eventually(
        Duration::from_secs(30),
        "Ready=False on the peering",
        || async {
            let p = peerings.get("p").await.ok()?;
            p.status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")
        },
    )
    .await;
    assert_eq!(cond.reason, "UnknownReference");
    assert!(cond.message.contains("nowhere"), "{}", cond.message);
    let events = Api::<Event>::namespaced(client.clone(), "default");
    eventually(
        Duration::from_secs(30),
        "an UnknownReference Event",
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("UnknownReference")
                    && e.involved_object.name.as_deref() == Some("p")
            })
        },
    )
    .await;
}
