//! Watch streams of the in-memory API server: a cursor over the shared change history,
//! woken by the store's change notifier.

use std::collections::VecDeque;

use serde_json::Value;

use super::{ChangeType, InMemoryCluster, decode};
use crate::cluster::{ClusterError, ClusterObject, WatchEvent};

pub(super) struct WatchState {
    pub(super) cluster: InMemoryCluster,
    pub(super) rx: tokio::sync::watch::Receiver<u64>,
    pub(super) cursor: u64,
    pub(super) kind: String,
    pub(super) ns: Option<String>,
    pub(super) pending: VecDeque<(ChangeType, Value)>,
    pub(super) done: bool,
}

impl WatchState {
    /// Moves matching changes after the cursor into `pending`; Err when they were compacted.
    fn fill(&mut self) -> Result<(), ClusterError> {
        let store = self.cluster.lock();
        if self.cursor < store.compacted_through {
            return Err(ClusterError::Gone {
                resource_version: self.cursor.to_string(),
            });
        }
        let start = store.history.partition_point(|c| c.rv <= self.cursor);
        for c in store.history.range(start..) {
            if c.key.kind == self.kind && self.ns.as_ref().is_none_or(|ns| &c.key.ns == ns) {
                self.pending.push_back((c.change, c.object.clone()));
            }
        }
        self.cursor = store.rv;
        Ok(())
    }
}

pub(super) async fn next_event<K: ClusterObject>(
    mut st: WatchState,
) -> Option<(Result<WatchEvent<K>, ClusterError>, WatchState)> {
    loop {
        if st.done {
            return None;
        }
        if let Some((change, v)) = st.pending.pop_front() {
            let item = decode::<K>(&v).map(|obj| match change {
                ChangeType::Added => WatchEvent::Added(obj),
                ChangeType::Modified => WatchEvent::Modified(obj),
                ChangeType::Deleted => WatchEvent::Deleted(obj),
            });
            return Some((item, st));
        }
        // Mark the current value seen before reading, so a write racing with `fill` still
        // wakes us.
        st.rx.borrow_and_update();
        if let Err(e) = st.fill() {
            st.done = true;
            return Some((Err(e), st));
        }
        if st.pending.is_empty() && st.rx.changed().await.is_err() {
            return None;
        }
    }
}
