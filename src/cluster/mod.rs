//! The cluster seam: how shells read, watch and write cluster objects.
//!
//! Everything that talks to the Kubernetes API goes through [`Cluster`]. Its methods map one to
//! one onto `kube::Api` (`get`, `list`, `watch`, `create`, `replace`, `replace_status`,
//! `patch_metadata`, `delete`), so the kube-rs implementation is a thin adapter, while
//! [`InMemoryCluster`] stands in for the API server in unit tests, the simulator and the lab's
//! embedded mode. The in-memory store behaves like the API server where our logic depends on
//! it: a global resourceVersion counter, optimistic-concurrency conflicts, watch resume from a
//! resourceVersion (410 Gone once compacted), status kept apart from the main resource, and
//! `Node.spec.podCIDR(s)` immutable once set.
//!
//! Objects are addressed by an optional namespace (`None` for cluster-scoped kinds such as Node
//! and our CRDs; `Some(ns)` for Lease and Event) and a name.

mod error;
// Named kube_api inside this module so `kube::` below still means the kube crate.
#[path = "kube.rs"]
mod kube_api;
mod memory;
mod memory_rules;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;

use futures::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::ClusterError;
pub use kube_api::KubeCluster;
pub use memory::{InMemoryCluster, WriteCounts, WriteKind};

/// A Kubernetes object type the seam can carry: k8s `Node`, `Lease`, `Event` and our CRDs.
pub trait ClusterObject:
    kube::Resource<DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> ClusterObject for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// The result of a list: the items (sorted by namespace, then name) and the collection's
/// resourceVersion, from which a watch resumes without missing a change.
#[derive(Clone, Debug)]
pub struct ObjectList<K> {
    pub items: Vec<K>,
    pub resource_version: String,
}

/// One change seen by a watch. The object carries the resourceVersion of the change.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
}

impl<K> WatchEvent<K> {
    /// The object in the event, whatever happened to it.
    pub fn object(&self) -> &K {
        match self {
            WatchEvent::Added(k) | WatchEvent::Modified(k) | WatchEvent::Deleted(k) => k,
        }
    }
}

/// A stream of watch events; it ends only when dropped or when the server gives up
/// (an `Err` item, e.g. [`ClusterError::Gone`], after which the caller lists again).
pub type WatchStream<K> = BoxStream<'static, Result<WatchEvent<K>, ClusterError>>;

/// A JSON-merge patch of labels and annotations (`kube::Api::patch_metadata` with
/// `Patch::Merge`): `Some(v)` sets a key, `None` removes it; keys not named are untouched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataPatch {
    pub labels: BTreeMap<String, Option<String>>,
    pub annotations: BTreeMap<String, Option<String>>,
}

impl MetadataPatch {
    /// A patch setting one label.
    pub fn set_label(key: impl Into<String>, value: impl Into<String>) -> Self {
        let mut p = Self::default();
        p.labels.insert(key.into(), Some(value.into()));
        p
    }

    /// The merge-patch body, as sent to the API server.
    pub fn to_merge_patch(&self) -> serde_json::Value {
        let mut meta = serde_json::Map::new();
        if !self.labels.is_empty() {
            meta.insert("labels".into(), serde_json::json!(self.labels));
        }
        if !self.annotations.is_empty() {
            meta.insert("annotations".into(), serde_json::json!(self.annotations));
        }
        serde_json::json!({ "metadata": meta })
    }
}

/// Read, watch and write cluster objects. Every method maps onto the `kube::Api` method of the
/// same name; `ns` selects `Api::namespaced` (`Some`) or `Api::all` (`None`).
///
/// Futures are `Send` so shells can `tokio::spawn` them; implementations must not read the
/// wall clock or spawn OS threads, so that they run under turmoil.
pub trait Cluster: Clone + Send + Sync + 'static {
    /// The object, or [`ClusterError::NotFound`].
    fn get<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
    ) -> impl Future<Output = Result<K, ClusterError>> + Send;

    /// All objects of a kind (in one namespace when `ns` is set, else everywhere).
    fn list<K: ClusterObject>(
        &self,
        ns: Option<&str>,
    ) -> impl Future<Output = Result<ObjectList<K>, ClusterError>> + Send;

    /// Changes strictly after `resource_version` (as returned by [`Cluster::list`]); `""` or
    /// `"0"` means "from now". A version older than the server keeps yields
    /// [`ClusterError::Gone`].
    fn watch<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        resource_version: &str,
    ) -> impl Future<Output = Result<WatchStream<K>, ClusterError>> + Send;

    /// Creates the object; [`ClusterError::AlreadyExists`] if the name is taken.
    fn create<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        obj: &K,
    ) -> impl Future<Output = Result<K, ClusterError>> + Send;

    /// Replaces the object (status is left as stored). When `obj` carries a resourceVersion it
    /// must equal the stored one, else [`ClusterError::Conflict`]; without one the write is
    /// unconditional, as the API server allows.
    fn replace<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
        obj: &K,
    ) -> impl Future<Output = Result<K, ClusterError>> + Send;

    /// Replaces only the status of the object (the `/status` subresource); same concurrency
    /// rule as [`Cluster::replace`].
    fn replace_status<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
        obj: &K,
    ) -> impl Future<Output = Result<K, ClusterError>> + Send;

    /// Merges labels/annotations into the object's metadata (no concurrency precondition).
    fn patch_metadata<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
        patch: &MetadataPatch,
    ) -> impl Future<Output = Result<K, ClusterError>> + Send;

    /// Deletes the object; [`ClusterError::NotFound`] if it does not exist.
    fn delete<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
}
