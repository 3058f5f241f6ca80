//! The netlink dataplane: per-peer tunnel devices and standard (multipath) kernel routes,
//! through the rtnetlink crate, so `ip route` and `ip link` show everything the agent did.
//!
//! The socket lives in the network namespace of the thread that called
//! [`NetlinkDataplane::connect`]; tests use that to program throwaway namespaces.

mod links;
mod routes;

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::Handle;

use super::dataplane::{ApplyReport, Dataplane, DataplaneError, OpFailure};
use super::kernel::{KernelOp, KernelState};

/// The rtnetlink-backed [`Dataplane`].
#[derive(Clone, Debug)]
pub struct NetlinkDataplane {
    handle: Handle,
    /// Interface name → index, refreshed by every read and every link change.
    ifindex: BTreeMap<String, u32>,
    /// Underlay address → the gateway the kernel routes it through (itself when on-link);
    /// looked up once, forgotten after a failed pass or a full read.
    resolved: BTreeMap<IpAddr, IpAddr>,
}

impl NetlinkDataplane {
    /// Opens a netlink socket in the calling thread's network namespace and spawns its
    /// connection task on the current tokio runtime.
    pub fn connect() -> Result<Self, DataplaneError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(DataplaneError::Connect)?;
        tokio::spawn(conn);
        Ok(NetlinkDataplane {
            handle,
            ifindex: BTreeMap::new(),
            resolved: BTreeMap::new(),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Enables IPv4 and IPv6 forwarding in this namespace (a router must forward).
    pub fn enable_forwarding() -> Result<(), DataplaneError> {
        for path in [
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/net/ipv6/conf/all/forwarding",
        ] {
            std::fs::write(path, "1").map_err(|source| DataplaneError::Sysctl {
                path: path.to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// Creates the pod bridge if missing and gives it the first address of each pod CIDR,
    /// which is the pods' gateway and this node's overlay health endpoint.
    pub async fn ensure_pod_bridge(
        &mut self,
        bridge: &str,
        pod_cidrs: &[ipnet::IpNet],
    ) -> Result<(), DataplaneError> {
        links::ensure_bridge(&self.handle, bridge, pod_cidrs)
            .await
            .map_err(|message| DataplaneError::Bridge {
                bridge: bridge.to_string(),
                message,
            })
    }

    async fn refresh_ifindex(
        &mut self,
    ) -> Result<Vec<rtnetlink::packet_route::link::LinkMessage>, DataplaneError> {
        let links: Vec<_> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| DataplaneError::Read {
                what: "links",
                message: e.to_string(),
            })?;
        self.ifindex = links
            .iter()
            .filter_map(|l| links::name_of(l).map(|n| (n, l.header.index)))
            .collect();
        Ok(links)
    }

    /// Deletes a link by name; absent is fine (for `--cleanup`).
    pub async fn delete_link_by_name(&mut self, name: &str) -> Result<(), String> {
        match links::index_of(&self.handle, name).await {
            Ok(i) => links::delete(&self.handle, i).await,
            Err(_) => Ok(()),
        }
    }

    /// Removes every tunnel device and route the agent owns (for `--cleanup`).
    pub async fn remove_all(&mut self) -> Result<ApplyReport, DataplaneError> {
        let current = self.read().await?;
        let ops = super::kernel::diff(&current, &KernelState::default());
        self.apply(&ops).await
    }
}

impl Dataplane for NetlinkDataplane {
    async fn resolve_gateways(&mut self, state: &mut KernelState) {
        use super::kernel::KernelNextHop;
        for route in state.routes.values_mut() {
            for hop in route.nexthops.iter_mut() {
                let KernelNextHop::Gateway(g) = hop else {
                    continue;
                };
                let target = match self.resolved.get(g) {
                    Some(t) => *t,
                    None => {
                        let t = routes::underlay_gateway(&self.handle, *g).await;
                        self.resolved.insert(*g, t);
                        t
                    }
                };
                *hop = KernelNextHop::Gateway(target);
            }
            route.nexthops.sort();
            route.nexthops.dedup();
        }
    }

    fn forget(&mut self) {
        self.resolved.clear();
    }

    async fn read(&mut self) -> Result<KernelState, DataplaneError> {
        self.resolved.clear();
        let links = self.refresh_ifindex().await?;
        let mut state = KernelState::default();
        for l in &links {
            if let Some(t) = links::tunnel_of(l) {
                state.tunnels.insert(t.name.clone(), t);
            }
        }
        let names: BTreeMap<u32, String> =
            self.ifindex.iter().map(|(n, i)| (*i, n.clone())).collect();
        state.routes = routes::read_owned(&self.handle, &names).await?;
        Ok(state)
    }

    async fn apply(&mut self, ops: &[KernelOp]) -> Result<ApplyReport, DataplaneError> {
        let mut report = ApplyReport::default();
        if ops
            .iter()
            .any(|op| matches!(op, KernelOp::ReplaceRoute { .. }))
            && self.ifindex.is_empty()
        {
            self.refresh_ifindex().await?;
            report.messages += 1;
        }
        for op in ops {
            let result = match op {
                KernelOp::AddTunnel(t) => {
                    let r = links::add_tunnel(&self.handle, t).await;
                    if r.is_ok() {
                        report.messages += 1;
                        // Learn the new index for the routes that follow.
                        match links::index_of(&self.handle, &t.name).await {
                            Ok(i) => {
                                self.ifindex.insert(t.name.clone(), i);
                                if t.kind.is_l2() {
                                    report.messages += 2;
                                    links::add_gateway_neighbours(&self.handle, i, t).await
                                } else {
                                    Ok(())
                                }
                            }
                            Err(e) => Err(e),
                        }
                    } else {
                        r
                    }
                }
                KernelOp::SetTunnelMtu { name, mtu } => match self.ifindex.get(name) {
                    Some(i) => links::set_mtu(&self.handle, *i, *mtu).await,
                    None => Err(format!("no interface {name}")),
                },
                KernelOp::DeleteTunnel(name) => match self.ifindex.remove(name) {
                    Some(i) => links::delete(&self.handle, i).await,
                    None => Err(format!("no interface {name}")),
                },
                KernelOp::ReplaceRoute { prefix, route } => {
                    routes::replace(&self.handle, &self.ifindex, *prefix, route).await
                }
                KernelOp::DeleteRoute(prefix) => routes::delete(&self.handle, *prefix).await,
            };
            report.messages += 1;
            match result {
                Ok(()) => report.applied += 1,
                Err(message) => report.failures.push(OpFailure {
                    op: op.clone(),
                    message,
                }),
            }
        }
        Ok(report)
    }
}
