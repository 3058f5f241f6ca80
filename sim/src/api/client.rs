//! [`SimCluster`]: the cluster seam as the simulated shells see it — every call crosses
//! turmoil's network to the API server host, so latency, loss, partitions and crashes apply.

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;
use turmoil::net::TcpStream;
use unbounded_net::cluster::{
    Cluster, ClusterError, ClusterObject, MetadataPatch, ObjectList, WatchEvent, WatchStream,
};

use super::server::{API_PORT, POLL_WINDOW};
use super::wire::{EventType, Request, Response, read_frame, write_frame};

/// A client of the simulated API server.
#[derive(Clone, Debug)]
pub struct SimCluster {
    /// Host name of the API server in the turmoil world.
    server: String,
    /// A call that has not completed by then is abandoned (reported as `Unavailable`).
    timeout: Duration,
}

/// Pause between watch polls after the server could not be reached.
const WATCH_RETRY: Duration = Duration::from_millis(500);

impl SimCluster {
    pub fn new(server: impl Into<String>) -> Self {
        SimCluster {
            server: server.into(),
            timeout: Duration::from_secs(2),
        }
    }

    async fn call(&self, request: &Request, timeout: Duration) -> Result<Response, ClusterError> {
        let server = self.server.clone();
        let attempt = async move {
            let mut stream = TcpStream::connect((server.as_str(), API_PORT)).await?;
            write_frame(&mut stream, request).await?;
            read_frame::<_, Response>(&mut stream).await
        };
        match tokio::time::timeout(timeout, attempt).await {
            Err(_) => Err(ClusterError::Unavailable(format!(
                "{} {} timed out after {timeout:?}",
                request.kind(),
                self.server
            ))),
            Ok(Err(e)) => Err(ClusterError::Unavailable(e.to_string())),
            Ok(Ok(Response::Error(e))) => Err(e.into()),
            Ok(Ok(r)) => Ok(r),
        }
    }

    async fn call_object<K: ClusterObject>(&self, request: Request) -> Result<K, ClusterError> {
        match self.call(&request, self.timeout).await? {
            Response::Object(v) => decode(v),
            other => Err(unexpected(&other)),
        }
    }
}

fn kind<K: ClusterObject>() -> String {
    K::kind(&()).to_string()
}

fn decode<K: ClusterObject>(v: serde_json::Value) -> Result<K, ClusterError> {
    serde_json::from_value(v).map_err(|e| ClusterError::Serialization {
        kind: kind::<K>(),
        name: String::new(),
        reason: e.to_string(),
    })
}

fn encode<K: ClusterObject>(obj: &K) -> Result<serde_json::Value, ClusterError> {
    serde_json::to_value(obj).map_err(|e| ClusterError::Serialization {
        kind: kind::<K>(),
        name: obj.meta().name.clone().unwrap_or_default(),
        reason: e.to_string(),
    })
}

fn unexpected(r: &Response) -> ClusterError {
    ClusterError::Api(format!("unexpected response {r:?}"))
}

fn ns(ns: Option<&str>) -> Option<String> {
    ns.map(str::to_string)
}

/// State of one watch stream: where to resume and what has arrived but not been taken.
struct WatchState {
    client: SimCluster,
    kind: String,
    ns: Option<String>,
    resource_version: String,
    buffer: VecDeque<Result<(EventType, serde_json::Value), ClusterError>>,
    ended: bool,
}

impl Cluster for SimCluster {
    async fn get<K: ClusterObject>(&self, n: Option<&str>, name: &str) -> Result<K, ClusterError> {
        self.call_object(Request::Get {
            kind: kind::<K>(),
            ns: ns(n),
            name: name.into(),
        })
        .await
    }

    async fn list<K: ClusterObject>(&self, n: Option<&str>) -> Result<ObjectList<K>, ClusterError> {
        let request = Request::List {
            kind: kind::<K>(),
            ns: ns(n),
        };
        match self.call(&request, self.timeout).await? {
            Response::List {
                items,
                resource_version,
            } => Ok(ObjectList {
                items: items.into_iter().map(decode).collect::<Result<_, _>>()?,
                resource_version,
            }),
            other => Err(unexpected(&other)),
        }
    }

    async fn watch<K: ClusterObject>(
        &self,
        n: Option<&str>,
        resource_version: &str,
    ) -> Result<WatchStream<K>, ClusterError> {
        let state = WatchState {
            client: self.clone(),
            kind: kind::<K>(),
            ns: ns(n),
            resource_version: resource_version.to_string(),
            buffer: VecDeque::new(),
            ended: false,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(item) = st.buffer.pop_front() {
                    let item = item.and_then(|(ty, v)| {
                        let obj: K = decode(v)?;
                        Ok(match ty {
                            EventType::Added => WatchEvent::Added(obj),
                            EventType::Modified => WatchEvent::Modified(obj),
                            EventType::Deleted => WatchEvent::Deleted(obj),
                        })
                    });
                    return Some((item, st));
                }
                if st.ended {
                    return None;
                }
                let request = Request::Poll {
                    kind: st.kind.clone(),
                    ns: st.ns.clone(),
                    resource_version: st.resource_version.clone(),
                };
                match st
                    .client
                    .call(&request, POLL_WINDOW + st.client.timeout)
                    .await
                {
                    Ok(Response::Events {
                        events,
                        resource_version,
                    }) => {
                        st.resource_version = resource_version;
                        st.buffer.extend(events.into_iter().map(Ok));
                    }
                    // The server is unreachable: keep the last state (fail static) and retry.
                    Err(ClusterError::Unavailable(_)) => tokio::time::sleep(WATCH_RETRY).await,
                    Err(e) => {
                        st.buffer.push_back(Err(e));
                        st.ended = true;
                    }
                    Ok(other) => {
                        st.buffer.push_back(Err(unexpected(&other)));
                        st.ended = true;
                    }
                }
            }
        });
        Ok(stream.boxed())
    }

    async fn create<K: ClusterObject>(&self, n: Option<&str>, obj: &K) -> Result<K, ClusterError> {
        let object = encode(obj)?;
        self.call_object(Request::Create {
            kind: kind::<K>(),
            ns: ns(n),
            object,
        })
        .await
    }

    async fn replace<K: ClusterObject>(
        &self,
        n: Option<&str>,
        name: &str,
        obj: &K,
    ) -> Result<K, ClusterError> {
        let object = encode(obj)?;
        self.call_object(Request::Replace {
            kind: kind::<K>(),
            ns: ns(n),
            name: name.into(),
            object,
        })
        .await
    }

    async fn replace_status<K: ClusterObject>(
        &self,
        n: Option<&str>,
        name: &str,
        obj: &K,
    ) -> Result<K, ClusterError> {
        let object = encode(obj)?;
        let request = Request::ReplaceStatus {
            kind: kind::<K>(),
            ns: ns(n),
            name: name.into(),
            object,
        };
        self.call_object(request).await
    }

    async fn patch_metadata<K: ClusterObject>(
        &self,
        n: Option<&str>,
        name: &str,
        patch: &MetadataPatch,
    ) -> Result<K, ClusterError> {
        self.call_object(Request::PatchMetadata {
            kind: kind::<K>(),
            ns: ns(n),
            name: name.into(),
            labels: patch.labels.clone(),
            annotations: patch.annotations.clone(),
        })
        .await
    }

    async fn delete<K: ClusterObject>(
        &self,
        n: Option<&str>,
        name: &str,
    ) -> Result<(), ClusterError> {
        let request = Request::Delete {
            kind: kind::<K>(),
            ns: ns(n),
            name: name.into(),
        };
        match self.call(&request, self.timeout).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}
