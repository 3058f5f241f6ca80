//! A list-then-watch cache of one kind, as the shells' informers keep in production: list,
//! then apply watch events from the list's resourceVersion; list again when the watch is gone.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::StreamExt;
use unbounded_net::cluster::{Cluster, ClusterObject, WatchEvent};

/// Objects of one kind by name, and a counter bumped on every change.
#[derive(Debug)]
pub struct Cache<K> {
    pub objects: RefCell<BTreeMap<String, K>>,
    /// True once the first list has arrived.
    pub synced: Cell<bool>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            objects: RefCell::new(BTreeMap::new()),
            synced: Cell::new(false),
        }
    }
}

/// Pause before listing again after a failure.
const RELIST_BACKOFF: Duration = Duration::from_millis(500);

/// Starts a task on the current host keeping `cache` in step with the server; every change
/// bumps `generation`. The task dies with the host.
pub fn spawn<C, K>(cluster: C, cache: Rc<Cache<K>>, generation: Rc<Cell<u64>>)
where
    C: Cluster,
    K: ClusterObject,
{
    tokio::task::spawn_local(async move {
        loop {
            let list = match cluster.list::<K>(None).await {
                Ok(l) => l,
                Err(_) => {
                    tokio::time::sleep(RELIST_BACKOFF).await;
                    continue;
                }
            };
            {
                let mut objects = cache.objects.borrow_mut();
                let fresh: BTreeMap<String, K> = list
                    .items
                    .into_iter()
                    .map(|o| (o.meta().name.clone().unwrap_or_default(), o))
                    .collect();
                objects.clear();
                objects.extend(fresh);
            }
            cache.synced.set(true);
            generation.set(generation.get() + 1);
            let Ok(mut stream) = cluster.watch::<K>(None, &list.resource_version).await else {
                tokio::time::sleep(RELIST_BACKOFF).await;
                continue;
            };
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { break };
                let mut objects = cache.objects.borrow_mut();
                match event {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        objects.insert(o.meta().name.clone().unwrap_or_default(), o);
                    }
                    WatchEvent::Deleted(o) => {
                        objects.remove(o.meta().name.as_deref().unwrap_or_default());
                    }
                }
                generation.set(generation.get() + 1);
            }
        }
    });
}
