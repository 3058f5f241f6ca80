//! An in-memory API server: the [`Cluster`] used by unit tests, the simulator and the lab.
//!
//! Objects are stored as JSON under (kind, namespace, name), so any [`ClusterObject`] type
//! works without registration. One global resourceVersion counter orders every change, as
//! etcd does; watchers read a bounded change history and get [`ClusterError::Gone`] when they
//! fall behind it. No wall clock, no OS threads: it runs under turmoil.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use serde_json::Value;

use super::memory_rules::{check_update, normalize};
use super::{Cluster, ClusterError, ClusterObject, MetadataPatch, ObjectList, WatchStream};

/// Changes kept for watch resume before older ones are compacted away.
const DEFAULT_HISTORY: usize = 100_000;

/// The write operations counted per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteKind {
    Create,
    Replace,
    ReplaceStatus,
    PatchMetadata,
    Delete,
}

/// Write requests received for one kind (including rejected and no-op ones: they are API
/// calls all the same).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteCounts {
    pub create: u64,
    pub replace: u64,
    pub replace_status: u64,
    pub patch_metadata: u64,
    pub delete: u64,
}

impl WriteCounts {
    pub fn total(&self) -> u64 {
        self.create + self.replace + self.replace_status + self.patch_metadata + self.delete
    }

    fn bump(&mut self, w: WriteKind) {
        match w {
            WriteKind::Create => self.create += 1,
            WriteKind::Replace => self.replace += 1,
            WriteKind::ReplaceStatus => self.replace_status += 1,
            WriteKind::PatchMetadata => self.patch_metadata += 1,
            WriteKind::Delete => self.delete += 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjKey {
    kind: String,
    ns: String,
    name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChangeType {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug)]
struct Change {
    rv: u64,
    change: ChangeType,
    key: ObjKey,
    object: Value,
}

/// A write's result and the change it made, if any (no-op writes make none).
type Outcome<T> = Result<(T, Option<(ChangeType, ObjKey, Value)>), ClusterError>;

#[derive(Debug)]
struct Store {
    rv: u64,
    objects: BTreeMap<ObjKey, Value>,
    history: VecDeque<Change>,
    history_limit: usize,
    /// Highest resourceVersion dropped from history: watches must resume at or after it.
    compacted_through: u64,
    writes: BTreeMap<String, WriteCounts>,
    unavailable: Option<String>,
}

/// The in-memory API server. Clones share one store.
#[derive(Clone, Debug)]
pub struct InMemoryCluster {
    store: Arc<Mutex<Store>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for InMemoryCluster {
    fn default() -> Self {
        Self::with_history(DEFAULT_HISTORY)
    }
}

fn kind_key<K: ClusterObject>() -> String {
    format!("{}/{}", K::api_version(&()), K::kind(&()))
}

fn key<K: ClusterObject>(ns: Option<&str>, name: &str) -> ObjKey {
    ObjKey {
        kind: kind_key::<K>(),
        ns: ns.unwrap_or_default().to_string(),
        name: name.to_string(),
    }
}

fn decode<K: ClusterObject>(v: &Value) -> Result<K, ClusterError> {
    serde_json::from_value(v.clone()).map_err(|e| ClusterError::Serialization {
        kind: K::kind(&()).to_string(),
        name: v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        reason: e.to_string(),
    })
}

fn encode<K: ClusterObject>(obj: &K, name: &str) -> Result<Value, ClusterError> {
    serde_json::to_value(obj).map_err(|e| ClusterError::Serialization {
        kind: K::kind(&()).to_string(),
        name: name.to_string(),
        reason: e.to_string(),
    })
}

fn not_found<K: ClusterObject>(name: &str) -> ClusterError {
    ClusterError::NotFound {
        kind: K::kind(&()).to_string(),
        name: name.to_string(),
    }
}

fn stored_rv(v: &Value) -> &str {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
}

impl InMemoryCluster {
    /// A cluster that keeps `history` changes for watch resume.
    pub fn with_history(history: usize) -> Self {
        let (tx, _) = tokio::sync::watch::channel(0);
        InMemoryCluster {
            store: Arc::new(Mutex::new(Store {
                rv: 0,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_limit: history.max(1),
                compacted_through: 0,
                writes: BTreeMap::new(),
                unavailable: None,
            })),
            changed: Arc::new(tx),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-written (every write
        // builds the new value first), so a poisoned lock is still consistent.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fault injection: while set, every call fails with [`ClusterError::Unavailable`].
    pub fn set_unavailable(&self, reason: Option<&str>) {
        self.lock().unavailable = reason.map(str::to_string);
    }

    /// Write requests received so far, by kind (e.g. `"Node"`, `"SiteNodeSlice"`).
    pub fn write_counts(&self) -> BTreeMap<String, WriteCounts> {
        self.lock().writes.clone()
    }

    /// Write requests received for one kind.
    pub fn writes_of<K: ClusterObject>(&self) -> WriteCounts {
        self.lock()
            .writes
            .get(K::kind(&()).as_ref())
            .copied()
            .unwrap_or_default()
    }

    /// Forgets the write counters (e.g. after seeding a scenario).
    pub fn reset_write_counts(&self) {
        self.lock().writes.clear();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Runs one write under the lock: counts it, checks availability, records the change.
    fn write<K: ClusterObject, T>(
        &self,
        w: WriteKind,
        f: impl FnOnce(&mut Store) -> Outcome<T>,
    ) -> Result<T, ClusterError> {
        let mut store = self.lock();
        store
            .writes
            .entry(K::kind(&()).to_string())
            .or_default()
            .bump(w);
        if let Some(reason) = &store.unavailable {
            return Err(ClusterError::Unavailable(reason.clone()));
        }
        let (out, change) = f(&mut store)?;
        if let Some((change, key, object)) = change {
            let rv = store.rv;
            store.history.push_back(Change {
                rv,
                change,
                key,
                object,
            });
            while store.history.len() > store.history_limit {
                if let Some(old) = store.history.pop_front() {
                    store.compacted_through = old.rv;
                }
            }
            drop(store);
            self.changed.send_replace(rv);
        }
        Ok(out)
    }

    fn read(&self) -> Result<MutexGuard<'_, Store>, ClusterError> {
        let store = self.lock();
        match &store.unavailable {
            Some(reason) => Err(ClusterError::Unavailable(reason.clone())),
            None => Ok(store),
        }
    }

    /// Shared by replace and replace_status: `merge` builds the new stored value from the old
    /// one and the caller's object.
    fn update<K: ClusterObject>(
        &self,
        w: WriteKind,
        ns: Option<&str>,
        name: &str,
        obj: &K,
        merge: fn(&Value, Value) -> Value,
    ) -> Result<K, ClusterError> {
        let k = key::<K>(ns, name);
        let input = encode(obj, name)?;
        self.write::<K, K>(w, |store| {
            let old = store.objects.get(&k).ok_or_else(|| not_found::<K>(name))?;
            let expected = obj.meta().resource_version.clone().unwrap_or_default();
            if !expected.is_empty() && expected != stored_rv(old) {
                return Err(ClusterError::Conflict {
                    kind: K::kind(&()).to_string(),
                    name: name.to_string(),
                    expected,
                    actual: stored_rv(old).to_string(),
                });
            }
            let mut new = merge(old, input);
            normalize(&k.kind, &mut new);
            check_update(&k.kind, old, &new).map_err(|reason| ClusterError::Invalid {
                kind: K::kind(&()).to_string(),
                name: name.to_string(),
                reason,
            })?;
            // Server-owned metadata survives whatever the client sent.
            for field in ["uid", "creationTimestamp", "namespace", "name"] {
                match old["metadata"].get(field) {
                    Some(v) => new["metadata"][field] = v.clone(),
                    None => {
                        if let Some(m) = new["metadata"].as_object_mut() {
                            m.remove(field);
                        }
                    }
                }
            }
            let mut generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            if old.get("spec") != new.get("spec") {
                generation += 1;
            }
            new["metadata"]["generation"] = generation.into();
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            if &new == old {
                // The API server does not bump the version of a no-op write.
                return Ok((decode(old)?, None));
            }
            store.rv += 1;
            new["metadata"]["resourceVersion"] = store.rv.to_string().into();
            let out = decode(&new)?;
            store.objects.insert(k.clone(), new.clone());
            Ok((out, Some((ChangeType::Modified, k, new))))
        })
    }
}

fn keep_status(old: &Value, mut input: Value) -> Value {
    match (old.get("status"), input.as_object_mut()) {
        (Some(s), Some(m)) => {
            m.insert("status".into(), s.clone());
        }
        (None, Some(m)) => {
            m.remove("status");
        }
        _ => {}
    }
    input
}

fn take_status(old: &Value, input: Value) -> Value {
    let mut new = old.clone();
    match (input.get("status"), new.as_object_mut()) {
        (Some(s), Some(m)) => {
            m.insert("status".into(), s.clone());
        }
        (None, Some(m)) => {
            m.remove("status");
        }
        _ => {}
    }
    new
}

fn apply_patch(map: &mut Value, patch: &BTreeMap<String, Option<String>>) {
    if patch.is_empty() {
        return;
    }
    if !map.is_object() {
        *map = Value::Object(Default::default());
    }
    if let Some(m) = map.as_object_mut() {
        for (k, v) in patch {
            match v {
                Some(v) => m.insert(k.clone(), v.clone().into()),
                None => m.remove(k),
            };
        }
    }
}

impl Cluster for InMemoryCluster {
    async fn get<K: ClusterObject>(&self, ns: Option<&str>, name: &str) -> Result<K, ClusterError> {
        let store = self.read()?;
        let v = store
            .objects
            .get(&key::<K>(ns, name))
            .ok_or_else(|| not_found::<K>(name))?;
        decode(v)
    }

    async fn list<K: ClusterObject>(
        &self,
        ns: Option<&str>,
    ) -> Result<ObjectList<K>, ClusterError> {
        let store = self.read()?;
        let kind = kind_key::<K>();
        let items = store
            .objects
            .iter()
            .filter(|(k, _)| k.kind == kind && ns.is_none_or(|ns| k.ns == ns))
            .map(|(_, v)| decode(v))
            .collect::<Result<Vec<K>, _>>()?;
        Ok(ObjectList {
            items,
            resource_version: store.rv.to_string(),
        })
    }

    async fn watch<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        resource_version: &str,
    ) -> Result<WatchStream<K>, ClusterError> {
        let start = {
            let store = self.read()?;
            match resource_version {
                "" | "0" => store.rv,
                v => {
                    let rv: u64 = v.parse().map_err(|_| {
                        ClusterError::Api(format!("resourceVersion {v:?} is not a number"))
                    })?;
                    if rv < store.compacted_through {
                        return Err(ClusterError::Gone {
                            resource_version: v.to_string(),
                        });
                    }
                    rv
                }
            }
        };
        let state = watch::WatchState {
            cluster: self.clone(),
            rx: self.changed.subscribe(),
            cursor: start,
            kind: kind_key::<K>(),
            ns: ns.map(str::to_string),
            pending: VecDeque::new(),
            done: false,
        };
        Ok(futures::stream::unfold(state, watch::next_event::<K>).boxed())
    }

    async fn create<K: ClusterObject>(&self, ns: Option<&str>, obj: &K) -> Result<K, ClusterError> {
        let name = obj.meta().name.clone().unwrap_or_default();
        let k = key::<K>(ns, &name);
        let mut v = encode(obj, &name)?;
        self.write::<K, K>(WriteKind::Create, |store| {
            if name.is_empty() {
                return Err(ClusterError::Invalid {
                    kind: K::kind(&()).to_string(),
                    name,
                    reason: "metadata.name is required".into(),
                });
            }
            if store.objects.contains_key(&k) {
                return Err(ClusterError::AlreadyExists {
                    kind: K::kind(&()).to_string(),
                    name,
                });
            }
            store.rv += 1;
            normalize(&k.kind, &mut v);
            let meta = &mut v["metadata"];
            match ns {
                Some(ns) => meta["namespace"] = ns.into(),
                None => {
                    if let Some(m) = meta.as_object_mut() {
                        m.remove("namespace");
                    }
                }
            }
            meta["resourceVersion"] = store.rv.to_string().into();
            meta["uid"] = format!("uid-{}", store.rv).into();
            meta["generation"] = 1.into();
            let out = decode(&v)?;
            store.objects.insert(k.clone(), v.clone());
            Ok((out, Some((ChangeType::Added, k, v))))
        })
    }

    async fn replace<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
        obj: &K,
    ) -> Result<K, ClusterError> {
        self.update(WriteKind::Replace, ns, name, obj, keep_status)
    }

    async fn replace_status<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
        obj: &K,
    ) -> Result<K, ClusterError> {
        self.update(WriteKind::ReplaceStatus, ns, name, obj, take_status)
    }

    async fn patch_metadata<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
        patch: &MetadataPatch,
    ) -> Result<K, ClusterError> {
        let k = key::<K>(ns, name);
        self.write::<K, K>(WriteKind::PatchMetadata, |store| {
            let old = store.objects.get(&k).ok_or_else(|| not_found::<K>(name))?;
            let mut new = old.clone();
            apply_patch(&mut new["metadata"]["labels"], &patch.labels);
            apply_patch(&mut new["metadata"]["annotations"], &patch.annotations);
            if &new == old {
                return Ok((decode(old)?, None));
            }
            store.rv += 1;
            new["metadata"]["resourceVersion"] = store.rv.to_string().into();
            let out = decode(&new)?;
            store.objects.insert(k.clone(), new.clone());
            Ok((out, Some((ChangeType::Modified, k, new))))
        })
    }

    async fn delete<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(), ClusterError> {
        let k = key::<K>(ns, name);
        self.write::<K, ()>(WriteKind::Delete, |store| {
            let mut old = store
                .objects
                .remove(&k)
                .ok_or_else(|| not_found::<K>(name))?;
            store.rv += 1;
            old["metadata"]["resourceVersion"] = store.rv.to_string().into();
            Ok(((), Some((ChangeType::Deleted, k, old))))
        })
    }
}

#[path = "memory_watch.rs"]
mod watch;

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
