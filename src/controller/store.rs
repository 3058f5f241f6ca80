//! The controller's view of the cluster: one reflector (list, then watch) per kind keeps a
//! map of objects current, and wakes the reconcile loop on every change.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::api::{
    GatewayPool, GatewayPoolPeering, Site, SiteGatewayPoolAssignment, SiteNodeSlice, SitePeering,
};
use crate::cluster::{Cluster, ClusterObject, WatchEvent};
use crate::core::{NodeFacts, Snapshot};

/// Number of kinds the controller reflects (readiness waits for all of them).
pub const KINDS: usize = 7;

/// Every object the controller reads, by name (all cluster-scoped).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub nodes: BTreeMap<String, Node>,
    pub sites: BTreeMap<String, Site>,
    pub pools: BTreeMap<String, GatewayPool>,
    pub assignments: BTreeMap<String, SiteGatewayPoolAssignment>,
    pub site_peerings: BTreeMap<String, SitePeering>,
    pub pool_peerings: BTreeMap<String, GatewayPoolPeering>,
    pub slices: BTreeMap<String, SiteNodeSlice>,
}

impl Observed {
    /// The node agent's planner input: node facts from the SiteNodeSlices and GatewayPool
    /// status (`nodes` is not read), specs as in [`Observed::snapshot`].
    pub fn agent_snapshot(&self) -> Snapshot {
        self.snapshot_with(crate::core::node_facts_from_slices(
            self.slices.values(),
            self.pools.values(),
        ))
    }

    /// The planner's input: specs and node facts, keyed by name.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_with(
            self.nodes
                .iter()
                .map(|(n, node)| (n.clone(), NodeFacts::from_node(node)))
                .collect(),
        )
    }

    fn snapshot_with(&self, nodes: BTreeMap<String, NodeFacts>) -> Snapshot {
        fn specs<K, S: Clone>(m: &BTreeMap<String, K>, f: fn(&K) -> &S) -> BTreeMap<String, S> {
            m.iter().map(|(n, o)| (n.clone(), f(o).clone())).collect()
        }
        Snapshot {
            nodes,
            sites: specs(&self.sites, |o| &o.spec),
            gateway_pools: specs(&self.pools, |o| &o.spec),
            assignments: specs(&self.assignments, |o| &o.spec),
            site_peerings: specs(&self.site_peerings, |o| &o.spec),
            pool_peerings: specs(&self.pool_peerings, |o| &o.spec),
        }
    }
}

/// Selects the map of one kind inside [`Observed`].
pub type Slot<K> = fn(&mut Observed) -> &mut BTreeMap<String, K>;

/// Shared state of the reflectors and the reconcile loop.
#[derive(Default)]
pub struct Store {
    observed: Mutex<Observed>,
    changed: Notify,
    synced: AtomicUsize,
}

impl Store {
    /// Runs `f` on the observed objects under the lock (keep it short: no awaits inside).
    pub fn with<R>(&self, f: impl FnOnce(&mut Observed) -> R) -> R {
        let mut guard = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Records an object the controller itself just wrote, so the next pass sees it even
    /// before the watch delivers it (no block is ever allocated twice from a stale view).
    pub fn record<K: ClusterObject>(&self, slot: Slot<K>, obj: K) {
        let Some(name) = obj.meta().name.clone() else {
            return;
        };
        self.with(|o| {
            let map = slot(o);
            let newer = map.get(&name).is_none_or(|old| {
                rv_number(&old.meta().resource_version) <= rv_number(&obj.meta().resource_version)
            });
            if newer {
                map.insert(name, obj);
            }
        });
    }

    pub fn forget<K: ClusterObject>(&self, slot: Slot<K>, name: &str) {
        self.with(|o| slot(o).remove(name));
    }

    /// How many reflectors have listed their kind at least once.
    pub fn synced_kinds(&self) -> usize {
        self.synced.load(Ordering::SeqCst)
    }

    /// True once every kind has been listed at least once.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst) >= KINDS
    }

    /// Resolves at the next change notification.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    pub fn notify(&self) {
        self.changed.notify_one();
    }
}

/// resourceVersions are opaque, but the API server (and the in-memory seam) issue increasing
/// integers; when they are not numbers, the newest write simply wins.
fn rv_number(rv: &Option<String>) -> u64 {
    rv.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Spawns a [`reflect`] task into `tasks` for every kind the planner reads: the five user
/// CRDs and the SiteNodeSlices, plus Nodes when `nodes` (the controller; the node agent reads
/// other nodes from the slices). Returns how many kinds that is ([`Store::synced_kinds`]).
pub fn spawn_reflectors<C: Cluster>(
    cluster: &C,
    store: &std::sync::Arc<Store>,
    nodes: bool,
    tasks: &mut tokio::task::JoinSet<()>,
) -> usize {
    if nodes {
        tasks.spawn(reflect(
            cluster.clone(),
            store.clone(),
            |o: &mut Observed| &mut o.nodes,
        ));
    }
    tasks.spawn(reflect(
        cluster.clone(),
        store.clone(),
        |o: &mut Observed| &mut o.sites,
    ));
    tasks.spawn(reflect(
        cluster.clone(),
        store.clone(),
        |o: &mut Observed| &mut o.pools,
    ));
    tasks.spawn(reflect(
        cluster.clone(),
        store.clone(),
        |o: &mut Observed| &mut o.assignments,
    ));
    tasks.spawn(reflect(
        cluster.clone(),
        store.clone(),
        |o: &mut Observed| &mut o.site_peerings,
    ));
    tasks.spawn(reflect(
        cluster.clone(),
        store.clone(),
        |o: &mut Observed| &mut o.pool_peerings,
    ));
    tasks.spawn(reflect(
        cluster.clone(),
        store.clone(),
        |o: &mut Observed| &mut o.slices,
    ));
    KINDS - usize::from(!nodes)
}

/// Lists then watches kind `K` forever, keeping `slot` in `store` current. Errors (including
/// a compacted resourceVersion) lead to a fresh list after a short pause; never a panic.
pub async fn reflect<C: Cluster, K: ClusterObject>(
    cluster: C,
    store: std::sync::Arc<Store>,
    slot: Slot<K>,
) {
    let kind = K::kind(&()).to_string();
    let mut first = true;
    loop {
        let list = match cluster.list::<K>(None).await {
            Ok(l) => l,
            Err(e) => {
                warn!(kind, error = %e, "list failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        store.with(|o| {
            let map = slot(o);
            map.clear();
            for obj in list.items {
                if let Some(name) = obj.meta().name.clone() {
                    map.insert(name, obj);
                }
            }
        });
        if first {
            store.synced.fetch_add(1, Ordering::SeqCst);
            first = false;
        }
        store.notify();
        let mut stream = match cluster.watch::<K>(None, &list.resource_version).await {
            Ok(s) => s,
            Err(e) => {
                warn!(kind, error = %e, "watch failed; listing again");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        while let Some(item) = stream.next().await {
            match item {
                Ok(WatchEvent::Added(obj)) | Ok(WatchEvent::Modified(obj)) => {
                    store.record(slot, obj);
                }
                Ok(WatchEvent::Deleted(obj)) => {
                    if let Some(name) = obj.meta().name.as_deref() {
                        store.forget(slot, name);
                    }
                }
                Err(e) => {
                    debug!(kind, error = %e, "watch ended; listing again");
                    break;
                }
            }
            store.notify();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
