//! The cluster seam over a real API server, through `kube::Api`.
//!
//! A thin adapter: each [`Cluster`] method is the `kube::Api` method of the same name, with
//! API status codes mapped onto [`ClusterError`]. Watches re-connect by themselves when the
//! server closes them (it does every few minutes), resuming from the last resourceVersion.

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::{ApiResource, DynamicObject, WatchEvent as KubeWatchEvent};

use super::{
    Cluster, ClusterError, ClusterObject, MetadataPatch, ObjectList, WatchEvent, WatchStream,
};

/// [`Cluster`] backed by a `kube::Client`.
#[derive(Clone)]
pub struct KubeCluster {
    client: kube::Client,
    /// Field manager recorded in managedFields for our writes.
    field_manager: String,
}

impl KubeCluster {
    pub fn new(client: kube::Client, field_manager: impl Into<String>) -> Self {
        Self {
            client,
            field_manager: field_manager.into(),
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// `kube::Api` needs the scope at compile time, which a generic `K` does not carry; the
    /// dynamic API over `K`'s erased resource works for both scopes, and objects are
    /// converted through JSON (the wire format anyway).
    fn api<K: ClusterObject>(&self, ns: Option<&str>) -> Api<DynamicObject> {
        let resource = ApiResource::erase::<K>(&());
        match ns {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    fn post_params(&self) -> PostParams {
        PostParams {
            dry_run: false,
            field_manager: Some(self.field_manager.clone()),
        }
    }
}

/// Maps a kube-rs error for object `name` of kind `K` onto the seam's error.
fn map_err<K: ClusterObject>(name: &str, err: kube::Error) -> ClusterError {
    let kind = K::kind(&()).to_string();
    let name = name.to_string();
    match err {
        kube::Error::Api(status) => match (status.code, status.reason.as_str()) {
            (404, _) => ClusterError::NotFound { kind, name },
            (409, "AlreadyExists") => ClusterError::AlreadyExists { kind, name },
            (409, _) => ClusterError::Conflict {
                kind,
                name,
                // The API server does not say which version it holds; its message does.
                expected: String::new(),
                actual: status.message,
            },
            (422, _) | (400, "BadRequest") => ClusterError::Invalid {
                kind,
                name,
                reason: status.message,
            },
            (410, _) => ClusterError::Gone {
                resource_version: status.message,
            },
            (500..=504, _) | (429, _) => ClusterError::Unavailable(status.message),
            _ => ClusterError::Api(format!(
                "{} ({}): {}",
                status.code, status.reason, status.message
            )),
        },
        kube::Error::SerdeError(e) => ClusterError::Serialization {
            kind,
            name,
            reason: e.to_string(),
        },
        kube::Error::HyperError(e) => ClusterError::Unavailable(e.to_string()),
        kube::Error::Service(e) => ClusterError::Unavailable(e.to_string()),
        other => ClusterError::Api(other.to_string()),
    }
}

/// `K` as the dynamic object the API calls take.
fn to_dynamic<K: ClusterObject>(obj: &K) -> Result<DynamicObject, ClusterError> {
    serde_json::to_value(obj)
        .and_then(serde_json::from_value)
        .map_err(|e| serde_error::<K>(obj.meta().name.as_deref().unwrap_or(""), e))
}

/// A dynamic object from the API server as `K`.
fn from_dynamic<K: ClusterObject>(obj: DynamicObject) -> Result<K, ClusterError> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    serde_json::to_value(obj)
        .and_then(serde_json::from_value)
        .map_err(|e| serde_error::<K>(&name, e))
}

fn serde_error<K: ClusterObject>(name: &str, e: serde_json::Error) -> ClusterError {
    ClusterError::Serialization {
        kind: K::kind(&()).to_string(),
        name: name.to_string(),
        reason: e.to_string(),
    }
}

/// One watch connection's worth of events, mapped, with the resourceVersion to resume from.
enum Step<K> {
    Event(WatchEvent<K>, String),
    Bookmark(String),
    Closed,
    Failed(ClusterError),
}

impl Cluster for KubeCluster {
    async fn get<K: ClusterObject>(&self, ns: Option<&str>, name: &str) -> Result<K, ClusterError> {
        let obj = self
            .api::<K>(ns)
            .get(name)
            .await
            .map_err(|e| map_err::<K>(name, e))?;
        from_dynamic(obj)
    }

    async fn list<K: ClusterObject>(
        &self,
        ns: Option<&str>,
    ) -> Result<ObjectList<K>, ClusterError> {
        let list = self
            .api::<K>(ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| map_err::<K>("", e))?;
        let mut items = list
            .items
            .into_iter()
            .map(from_dynamic::<K>)
            .collect::<Result<Vec<K>, _>>()?;
        items.sort_by(|a, b| {
            (a.meta().namespace.as_deref(), a.meta().name.as_deref())
                .cmp(&(b.meta().namespace.as_deref(), b.meta().name.as_deref()))
        });
        Ok(ObjectList {
            items,
            resource_version: list.metadata.resource_version.unwrap_or_default(),
        })
    }

    async fn watch<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        resource_version: &str,
    ) -> Result<WatchStream<K>, ClusterError> {
        let api = self.api::<K>(ns);
        // The API server replays every object as ADDED when a watch starts at "" or "0";
        // the seam promises "from now", so start at the collection's current version.
        let start = if resource_version.is_empty() || resource_version == "0" {
            api.list_metadata(&ListParams::default().limit(1))
                .await
                .map_err(|e| map_err::<K>("", e))?
                .metadata
                .resource_version
                .unwrap_or_default()
        } else {
            resource_version.to_string()
        };
        let params = WatchParams::default();
        let first = api
            .watch(&params, &start)
            .await
            .map_err(|e| map_err::<K>("", e))?
            .boxed();
        // State: api, params, resume version, live connection (None: reconnect), finished.
        let stream = futures::stream::unfold(
            (api, params, start, Some(first), false),
            |(api, params, mut rv, mut conn, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let stream = match conn.as_mut() {
                        Some(s) => s,
                        None => match api.watch(&params, &rv).await {
                            Ok(s) => conn.insert(s.boxed()),
                            Err(e) => {
                                let err = map_err::<K>("", e);
                                return Some((Err(err), (api, params, rv, None, true)));
                            }
                        },
                    };
                    let step = match stream.try_next().await {
                        Ok(Some(KubeWatchEvent::Added(o))) => step(o, WatchEvent::Added),
                        Ok(Some(KubeWatchEvent::Modified(o))) => step(o, WatchEvent::Modified),
                        Ok(Some(KubeWatchEvent::Deleted(o))) => step(o, WatchEvent::Deleted),
                        Ok(Some(KubeWatchEvent::Bookmark(b))) => {
                            Step::Bookmark(b.metadata.resource_version)
                        }
                        Ok(Some(KubeWatchEvent::Error(status))) => {
                            Step::Failed(map_err::<K>("", kube::Error::Api(status)))
                        }
                        // The server closes watches after a timeout: reconnect from `rv`.
                        Ok(None) => Step::Closed,
                        Err(e) => Step::Failed(map_err::<K>("", e)),
                    };
                    match step {
                        Step::Event(ev, v) => {
                            if !v.is_empty() {
                                rv = v;
                            }
                            return Some((Ok(ev), (api, params, rv, conn, false)));
                        }
                        Step::Bookmark(v) => rv = v,
                        Step::Closed => conn = None,
                        Step::Failed(err) => {
                            return Some((Err(err), (api, params, rv, None, true)));
                        }
                    }
                }
            },
        );
        Ok(stream.boxed())
    }

    async fn create<K: ClusterObject>(&self, ns: Option<&str>, obj: &K) -> Result<K, ClusterError> {
        let name = obj.meta().name.clone().unwrap_or_default();
        let created = self
            .api::<K>(ns)
            .create(&self.post_params(), &to_dynamic(obj)?)
            .await
            .map_err(|e| map_err::<K>(&name, e))?;
        from_dynamic(created)
    }

    async fn replace<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
        obj: &K,
    ) -> Result<K, ClusterError> {
        let replaced = self
            .api::<K>(ns)
            .replace(name, &self.post_params(), &to_dynamic(obj)?)
            .await
            .map_err(|e| map_err::<K>(name, e))?;
        from_dynamic(replaced)
    }

    async fn replace_status<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
        obj: &K,
    ) -> Result<K, ClusterError> {
        let replaced = self
            .api::<K>(ns)
            .replace_status(name, &self.post_params(), &to_dynamic(obj)?)
            .await
            .map_err(|e| map_err::<K>(name, e))?;
        from_dynamic(replaced)
    }

    async fn patch_metadata<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
        patch: &MetadataPatch,
    ) -> Result<K, ClusterError> {
        let params = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        let patched = self
            .api::<K>(ns)
            .patch(name, &params, &Patch::Merge(patch.to_merge_patch()))
            .await
            .map_err(|e| map_err::<K>(name, e))?;
        from_dynamic(patched)
    }

    async fn delete<K: ClusterObject>(
        &self,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(), ClusterError> {
        self.api::<K>(ns)
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ())
            .map_err(|e| map_err::<K>(name, e))
    }
}

/// A watch event's object as `K`, with the resourceVersion to resume from.
fn step<K: ClusterObject>(obj: DynamicObject, wrap: fn(K) -> WatchEvent<K>) -> Step<K> {
    let rv = obj.metadata.resource_version.clone().unwrap_or_default();
    match from_dynamic::<K>(obj) {
        Ok(k) => Step::Event(wrap(k), rv),
        Err(e) => Step::Failed(e),
    }
}
