//! The simulated node agent: the production planner, probe state machine and reconciler, with
//! turmoil's network and virtual time as its only I/O.
//!
//! One pass: publish the WireGuard key and the underlay MTU (the agent's one Node write); keep caches of the
//! SiteNodeSlices and the five user CRDs — other nodes are known from the slices and
//! GatewayPool status, as in production, never from Node objects; when they change, plan the
//! node with `core::plan_node`; probe every link peer over turmoil UDP with
//! `node::probe::ProbeTable`; reconcile the recording dataplane with the unhealthy peers
//! pulled from ECMP.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use turmoil::net::UdpSocket;
use unbounded_net::api::{
    GatewayPool, GatewayPoolPeering, Site, SiteGatewayPoolAssignment, SiteNodeSlice, SitePeering,
    UNDERLAY_MTU_ANNOTATION, WG_PUBKEY_ANNOTATION,
};
use unbounded_net::cluster::{Cluster, MetadataPatch};
use unbounded_net::core::dataplane::HEALTH_PROBE_PORT;
use unbounded_net::core::{
    NodeDataplane, PlanIndex, PlanSettings, Snapshot, node_facts_from_slices, plan_node,
};
use unbounded_net::node::probe::{ProbeKind, ProbePacket, ProbeTable};
use unbounded_net::node::{Reconciler, RecordingDataplane};

use crate::api::SimCluster;
use crate::informer::{self, Cache};
use crate::observe::Shared;

/// How often the agent's loop wakes (probe timers are checked at this granularity).
pub const AGENT_TICK: Duration = Duration::from_millis(50);
/// Least time between two plans in clusters of more than 500 nodes.
const REPLAN_DEBOUNCE: Duration = Duration::from_secs(1);
/// Name of the WireGuard device in rendered kernel state.
const WIREGUARD_DEVICE: &str = "wg-unbounded";

/// A stable, well-formed WireGuard public key for a node (the private key lives on the
/// machine's disk, so it survives agent restarts; derived from the name, not the OS RNG).
pub fn wireguard_key(node: &str) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = [0u8; 32];
    let mut h = crate::trace::fnv1a(node.as_bytes());
    for b in bytes.iter_mut() {
        h = crate::rng::splitmix(h);
        *b = h as u8;
    }
    let mut out = String::with_capacity(44);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out.push('=');
    out
}

/// The user-facing objects an agent plans from.
struct Caches {
    slices: Rc<Cache<SiteNodeSlice>>,
    sites: Rc<Cache<Site>>,
    pools: Rc<Cache<GatewayPool>>,
    assignments: Rc<Cache<SiteGatewayPoolAssignment>>,
    site_peerings: Rc<Cache<SitePeering>>,
    pool_peerings: Rc<Cache<GatewayPoolPeering>>,
}

impl Caches {
    fn start(cluster: &SimCluster, generation: &Rc<Cell<u64>>) -> Self {
        let c = Caches {
            slices: Rc::default(),
            sites: Rc::default(),
            pools: Rc::default(),
            assignments: Rc::default(),
            site_peerings: Rc::default(),
            pool_peerings: Rc::default(),
        };
        informer::spawn(cluster.clone(), c.slices.clone(), generation.clone());
        informer::spawn(cluster.clone(), c.sites.clone(), generation.clone());
        informer::spawn(cluster.clone(), c.pools.clone(), generation.clone());
        informer::spawn(cluster.clone(), c.assignments.clone(), generation.clone());
        informer::spawn(cluster.clone(), c.site_peerings.clone(), generation.clone());
        informer::spawn(cluster.clone(), c.pool_peerings.clone(), generation.clone());
        c
    }

    fn synced(&self) -> bool {
        self.slices.synced.get()
            && self.sites.synced.get()
            && self.pools.synced.get()
            && self.assignments.synced.get()
            && self.site_peerings.synced.get()
            && self.pool_peerings.synced.get()
    }

    fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            nodes: node_facts_from_slices(
                self.slices.objects.borrow().values(),
                self.pools.objects.borrow().values(),
            ),
            ..Snapshot::default()
        };
        for (name, o) in self.sites.objects.borrow().iter() {
            snap.sites.insert(name.clone(), o.spec.clone());
        }
        for (name, o) in self.pools.objects.borrow().iter() {
            snap.gateway_pools.insert(name.clone(), o.spec.clone());
        }
        for (name, o) in self.assignments.objects.borrow().iter() {
            snap.assignments.insert(name.clone(), o.spec.clone());
        }
        for (name, o) in self.site_peerings.objects.borrow().iter() {
            snap.site_peerings.insert(name.clone(), o.spec.clone());
        }
        for (name, o) in self.pool_peerings.objects.borrow().iter() {
            snap.pool_peerings.insert(name.clone(), o.spec.clone());
        }
        snap
    }

    /// Nodes listed in the slices.
    fn node_count(&self) -> usize {
        self.slices
            .objects
            .borrow()
            .values()
            .map(|s| s.spec.nodes.len())
            .sum()
    }
}

/// Publishes the key and underlay MTU annotations until the API server takes them.
async fn publish_key(cluster: &SimCluster, node: &str, underlay_mtu: u32) {
    let mut patch = MetadataPatch::default();
    patch
        .annotations
        .insert(WG_PUBKEY_ANNOTATION.to_string(), Some(wireguard_key(node)));
    patch.annotations.insert(
        UNDERLAY_MTU_ANNOTATION.to_string(),
        Some(underlay_mtu.to_string()),
    );
    while cluster
        .patch_metadata::<Node>(None, node, &patch)
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Probe targets with each peer's overlay address replaced by the peer's turmoil host address:
/// the simulated "tunnel" delivers a probe to the peer machine, over whatever the partitions
/// between the two machines allow.
fn sim_targets(plan: &NodeDataplane) -> BTreeMap<String, unbounded_net::core::ProbeTarget> {
    plan.probes
        .iter()
        .map(|(peer, t)| {
            let mut t = t.clone();
            t.address = SocketAddr::new(turmoil::lookup(peer.as_str()), HEALTH_PROBE_PORT);
            (peer.clone(), t)
        })
        .collect()
}

/// The agent host's software. Returns only on a fatal error. `underlay_mtu` is what the
/// production agent would detect on the machine's NIC.
pub async fn run(
    node: String,
    obs: Shared,
    settings: PlanSettings,
    underlay_mtu: u32,
) -> turmoil::Result {
    let cluster = SimCluster::new("api");
    let socket = UdpSocket::bind(("0.0.0.0", HEALTH_PROBE_PORT)).await?;
    // Adopt whatever the kernel holds (an agent restart keeps the machine's state).
    let kernel = obs.borrow_mut().node_mut(&node).kernel.clone();
    let mut reconciler = Reconciler::new(
        RecordingDataplane {
            state: kernel,
            log: Vec::new(),
        },
        WIREGUARD_DEVICE,
    );
    obs.borrow_mut().note(&node, "agent started");
    publish_key(&cluster, &node, underlay_mtu).await;

    let generation = Rc::new(Cell::new(0u64));
    let caches = Caches::start(&cluster, &generation);
    let mut planned_generation = u64::MAX;
    let mut planned_at = Duration::ZERO;
    let mut plan: Option<NodeDataplane> = None;
    let mut table = ProbeTable::default();
    // Plans are numbered so a pass compares a number, not a whole plan, with what is applied.
    let mut plan_version = 0u64;
    let mut applied: Option<(u64, BTreeSet<String>)> = None;
    let mut seq = 0u64;
    let mut buf = [0u8; 256];
    loop {
        let now = turmoil::elapsed();
        // Large clusters change constantly while nodes join: re-plan at most once a second.
        let debounce = if caches.node_count() > 500 {
            REPLAN_DEBOUNCE
        } else {
            Duration::ZERO
        };
        if caches.synced() && generation.get() != planned_generation && now >= planned_at + debounce
        {
            planned_generation = generation.get();
            planned_at = now;
            let mut snap = caches.snapshot();
            snap.set_own_underlay_mtu(&node, underlay_mtu);
            let index = PlanIndex::new(&snap, settings);
            match plan_node(&index, &node) {
                Ok(p) => {
                    if !p.problems.is_empty() {
                        let mut o = obs.borrow_mut();
                        for problem in &p.problems {
                            o.note(&node, format!("plan problem: {problem}"));
                        }
                    }
                    table.sync(&sim_targets(&p.dataplane), now);
                    if plan.as_ref() != Some(&p.dataplane) {
                        plan_version += 1;
                        obs.borrow_mut().node_mut(&node).detect_window = p
                            .dataplane
                            .probes
                            .iter()
                            .map(|(peer, t)| {
                                (peer.clone(), t.receive_interval * t.multiplier.max(1))
                            })
                            .collect();
                    }
                    plan = Some(p.dataplane);
                }
                // The node is not (yet) plannable, e.g. before the controller labels it.
                Err(_) => plan = None,
            }
        }

        // Answer requests and feed replies.
        while let Ok((n, from)) = socket.try_recv_from(&mut buf) {
            let Ok(packet) = ProbePacket::decode(&buf[..n]) else {
                continue;
            };
            match packet.kind {
                ProbeKind::Request => {
                    let _ = socket.try_send_to(&packet.reply().encode(), from);
                }
                _ => {
                    let _ = table.on_reply(now, from, &packet);
                }
            }
        }
        let tick = table.on_tick(now);
        for out in tick.send {
            seq += 1;
            let _ = socket.try_send_to(&out.packet.encode(), out.to);
            let _ = seq;
        }
        if !tick.changed.is_empty() {
            let mut o = obs.borrow_mut();
            for (peer, up) in &tick.changed {
                o.note(
                    &node,
                    format!("peer {peer} {}", if *up { "up" } else { "down" }),
                );
            }
        }

        if let Some(p) = &plan {
            let ignore_health = obs.borrow().bugs.ecmp_ignores_health;
            let unhealthy = if ignore_health {
                BTreeSet::new()
            } else {
                table.unhealthy()
            };
            let changed = applied
                .as_ref()
                .is_none_or(|(av, au)| *av != plan_version || *au != unhealthy);
            if changed {
                let report = reconciler.reconcile(p, &unhealthy).await;
                let mut o = obs.borrow_mut();
                let view = o.node_mut(&node);
                view.kernel = reconciler.dataplane().state.clone();
                if let Ok(r) = &report
                    && !r.ops.is_empty()
                {
                    view.applies += 1;
                }
                view.applied = Some(p.clone());
                view.pulled = unhealthy.clone();
                applied = Some((plan_version, unhealthy));
            }
        }
        record_health(&obs, &node, &table, now);
        tokio::time::sleep(AGENT_TICK).await;
    }
}

/// Publishes the prober's verdicts to the checker.
fn record_health(obs: &Shared, node: &str, table: &ProbeTable, now: Duration) {
    let unhealthy = table.unhealthy();
    let mut o = obs.borrow_mut();
    let view = o.node_mut(node);
    view.declared_down
        .retain(|peer, _| unhealthy.contains(peer));
    for peer in unhealthy {
        view.declared_down.entry(peer).or_insert(now);
    }
}
