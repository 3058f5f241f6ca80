//! The simulated API server host: any [`Cluster`] implementation (the in-memory store in the
//! simulator) served over turmoil TCP with the [`wire`](super::wire) protocol.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node};
use turmoil::net::{TcpListener, TcpStream};
use unbounded_net::api::{
    GatewayPool, GatewayPoolPeering, Site, SiteGatewayPoolAssignment, SiteNodeSlice, SitePeering,
};
use unbounded_net::cluster::{Cluster, ClusterError, ClusterObject, MetadataPatch, WatchEvent};

use super::wire::{EventType, Request, Response, WireError, read_frame, write_frame};

/// TCP port of the simulated API server.
pub const API_PORT: u16 = 6443;
/// How long a watch poll waits for a first change before answering with none.
pub const POLL_WINDOW: Duration = Duration::from_millis(1000);
/// Most events one poll returns.
const POLL_BATCH: usize = 1000;

/// Writes per (client host, kind), counted by the server for the benchmarks.
#[derive(Clone, Debug, Default)]
pub struct WriteLedger {
    pub by_client: BTreeMap<String, BTreeMap<String, u64>>,
    pub total: u64,
}

/// Serves `cluster` forever on [`API_PORT`].
pub async fn serve<C: Cluster>(cluster: C, ledger: Rc<RefCell<WriteLedger>>) -> turmoil::Result {
    let listener = TcpListener::bind(("0.0.0.0", API_PORT)).await?;
    loop {
        let (stream, peer) = listener.accept().await?;
        let cluster = cluster.clone();
        let ledger = ledger.clone();
        let client = turmoil::reverse_lookup(peer.ip()).unwrap_or_else(|| peer.ip().to_string());
        tokio::task::spawn_local(async move {
            // A broken connection is the client's problem (it times out and retries).
            let _ = serve_one(cluster, stream, client, ledger).await;
        });
    }
}

async fn serve_one<C: Cluster>(
    cluster: C,
    mut stream: TcpStream,
    client: String,
    ledger: Rc<RefCell<WriteLedger>>,
) -> Result<(), super::wire::FrameError> {
    let request: Request = read_frame(&mut stream).await?;
    if request.is_write() {
        let mut l = ledger.borrow_mut();
        l.total += 1;
        *l.by_client
            .entry(client)
            .or_default()
            .entry(request.kind().to_string())
            .or_default() += 1;
    }
    let response = dispatch(&cluster, request).await;
    write_frame(&mut stream, &response).await
}

/// Routes a request to the typed handler of its kind.
pub async fn dispatch<C: Cluster>(cluster: &C, request: Request) -> Response {
    match request.kind() {
        "Node" => handle::<C, Node>(cluster, request).await,
        "Lease" => handle::<C, Lease>(cluster, request).await,
        "Event" => handle::<C, Event>(cluster, request).await,
        "Site" => handle::<C, Site>(cluster, request).await,
        "GatewayPool" => handle::<C, GatewayPool>(cluster, request).await,
        "SiteGatewayPoolAssignment" => {
            handle::<C, SiteGatewayPoolAssignment>(cluster, request).await
        }
        "SitePeering" => handle::<C, SitePeering>(cluster, request).await,
        "GatewayPoolPeering" => handle::<C, GatewayPoolPeering>(cluster, request).await,
        "SiteNodeSlice" => handle::<C, SiteNodeSlice>(cluster, request).await,
        other => Response::Error(WireError::Api(format!("kind {other:?} is not served"))),
    }
}

fn to_value<K: ClusterObject>(obj: &K) -> Result<serde_json::Value, WireError> {
    serde_json::to_value(obj).map_err(|e| WireError::Serialization {
        kind: K::kind(&()).to_string(),
        name: String::new(),
        reason: e.to_string(),
    })
}

fn from_value<K: ClusterObject>(value: serde_json::Value) -> Result<K, WireError> {
    serde_json::from_value(value).map_err(|e| WireError::Serialization {
        kind: K::kind(&()).to_string(),
        name: String::new(),
        reason: e.to_string(),
    })
}

fn object<K: ClusterObject>(r: Result<K, ClusterError>) -> Response {
    match r.map_err(WireError::from).and_then(|o| to_value(&o)) {
        Ok(v) => Response::Object(v),
        Err(e) => Response::Error(e),
    }
}

async fn handle<C: Cluster, K: ClusterObject>(cluster: &C, request: Request) -> Response {
    match handle_inner::<C, K>(cluster, request).await {
        Ok(r) => r,
        Err(e) => Response::Error(e),
    }
}

async fn handle_inner<C: Cluster, K: ClusterObject>(
    cluster: &C,
    request: Request,
) -> Result<Response, WireError> {
    Ok(match request {
        Request::Get { ns, name, .. } => object(cluster.get::<K>(ns.as_deref(), &name).await),
        Request::List { ns, .. } => {
            let list = cluster.list::<K>(ns.as_deref()).await?;
            let items = list.items.iter().map(to_value).collect::<Result<_, _>>()?;
            Response::List {
                items,
                resource_version: list.resource_version,
            }
        }
        Request::Poll {
            ns,
            resource_version,
            ..
        } => poll::<C, K>(cluster, ns.as_deref(), resource_version).await?,
        Request::Create { ns, object: o, .. } => {
            let o: K = from_value(o)?;
            object(cluster.create(ns.as_deref(), &o).await)
        }
        Request::Replace {
            ns,
            name,
            object: o,
            ..
        } => {
            let o: K = from_value(o)?;
            object(cluster.replace(ns.as_deref(), &name, &o).await)
        }
        Request::ReplaceStatus {
            ns,
            name,
            object: o,
            ..
        } => {
            let o: K = from_value(o)?;
            object(cluster.replace_status(ns.as_deref(), &name, &o).await)
        }
        Request::PatchMetadata {
            ns,
            name,
            labels,
            annotations,
            ..
        } => {
            let patch = MetadataPatch {
                labels,
                annotations,
            };
            object(
                cluster
                    .patch_metadata::<K>(ns.as_deref(), &name, &patch)
                    .await,
            )
        }
        Request::Delete { ns, name, .. } => {
            cluster.delete::<K>(ns.as_deref(), &name).await?;
            Response::Done
        }
    })
}

/// Answers a watch poll: waits up to [`POLL_WINDOW`] for the first change after `rv`, then
/// takes whatever else is already there.
async fn poll<C: Cluster, K: ClusterObject>(
    cluster: &C,
    ns: Option<&str>,
    rv: String,
) -> Result<Response, WireError> {
    let mut stream = cluster.watch::<K>(ns, &rv).await?;
    let mut events = Vec::new();
    let mut last_rv = rv;
    let mut next = tokio::time::timeout(POLL_WINDOW, stream.next())
        .await
        .unwrap_or_default();
    while let Some(item) = next {
        let event = item?;
        let (ty, obj) = match event {
            WatchEvent::Added(o) => (EventType::Added, o),
            WatchEvent::Modified(o) => (EventType::Modified, o),
            WatchEvent::Deleted(o) => (EventType::Deleted, o),
        };
        if let Some(rv) = obj.meta().resource_version.clone() {
            last_rv = rv;
        }
        events.push((ty, to_value(&obj)?));
        if events.len() >= POLL_BATCH {
            break;
        }
        next = stream.next().now_or_never().flatten();
    }
    Ok(Response::Events {
        events,
        resource_version: last_rv,
    })
}
