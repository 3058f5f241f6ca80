//! One run of a scenario: the turmoil world, the timeline, and the continuous checks.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use futures::FutureExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use unbounded_net::cluster::{Cluster, InMemoryCluster};
use unbounded_net::core::{NodeFacts, PlanSettings, Snapshot};
use unbounded_scenario::{Event, GatewayTarget, KubeObject, Scenario};

use crate::api::{WriteLedger, serve};
use crate::bugs::Bugs;
use crate::expect::{ExpectationResult, Observation, Verdict, longest_window};
use crate::faults::{Action, Scheduled};
use crate::forwarding::{PathTrace, trace};
use crate::invariants;
use crate::observe::{Observatory, Shared};
use crate::reach::Reach;
use crate::trace::{Trace, fmt_time, fnv1a};

pub const CONTROLLERS: [&str; 2] = ["controller-0", "controller-1"];
/// How long after a leader loss the crashed replica's pod is restarted (past the lease
/// duration, so the standby really takes over first).
const CONTROLLER_RESTART: Duration = Duration::from_secs(30);

/// How one run is set up.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub random_faults: bool,
    pub bugs: Bugs,
    /// turmoil tick.
    pub tick: Duration,
    /// How often expectations and connectivity are evaluated.
    pub check_every: Duration,
    /// Most node pairs traced per evaluation (all when the cluster is smaller).
    pub max_pairs: usize,
    /// Nodes that run an agent host (`None`: every node). The others are Nodes only, with
    /// their key published at registration (generated scale runs).
    pub agents: Option<BTreeSet<String>>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            seed: 1,
            random_faults: false,
            bugs: Bugs::default(),
            tick: Duration::from_millis(5),
            check_every: Duration::from_millis(100),
            max_pairs: 2_000,
            agents: None,
        }
    }
}

/// A point of the convergence timeline.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub at_ms: u64,
    pub delivered_pairs: usize,
    pub traced_pairs: usize,
    pub planned_nodes: usize,
}

/// An invariant violation, with what is needed to replay it.
#[derive(Clone, Debug, Serialize)]
pub struct Violation {
    pub seed: u64,
    pub at: Duration,
    pub message: String,
    pub trace_tail: Vec<String>,
}

/// The result of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub scenario: String,
    pub seed: u64,
    pub random_faults: bool,
    pub passed: bool,
    pub expectations: Vec<ExpectationResult>,
    pub violation: Option<Violation>,
    /// First time every traced pair was delivered.
    pub converged_at: Option<Duration>,
    /// Time from the last fault's heal to full connectivity again.
    pub reconverged_after_heal: Option<Duration>,
    pub ended_at: Duration,
    pub api_writes: u64,
    pub api_writes_by_kind: BTreeMap<String, u64>,
    pub nodes: usize,
    pub trace_hash: String,
    pub trace_lines: usize,
    pub samples: Vec<Sample>,
    #[serde(skip)]
    pub trace: Trace,
}

fn node_object(n: &unbounded_scenario::Node) -> Node {
    let mut addresses = vec![NodeAddress {
        type_: "InternalIP".into(),
        address: n.internal_ip.to_string(),
    }];
    if let Some(e) = n.external_ip {
        addresses.push(NodeAddress {
            type_: "ExternalIP".into(),
            address: e.to_string(),
        });
    }
    Node {
        metadata: ObjectMeta {
            name: Some(n.name.clone()),
            labels: Some(n.kube_labels()),
            ..Default::default()
        },
        spec: Some(Default::default()),
        status: Some(NodeStatus {
            addresses: Some(addresses),
            ..Default::default()
        }),
    }
}

/// Runs an async call of the in-memory store to completion (it never awaits real I/O).
fn now<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
    f.now_or_never()
}

struct Run<'a> {
    scenario: &'a Scenario,
    cfg: RunConfig,
    sim: turmoil::Sim<'static>,
    cluster: InMemoryCluster,
    obs: Shared,
    ledger: Rc<RefCell<WriteLedger>>,
    reach: Reach,
    trace: Trace,
    schedule: Vec<Scheduled>,
    fired: BTreeMap<String, Duration>,
    crashed_by: BTreeMap<String, String>,
    down_hosts: BTreeSet<String>,
    present: BTreeSet<String>,
    first_cidrs: BTreeMap<String, Vec<IpNet>>,
    last_rv: u64,
    expectations: Vec<ExpectationResult>,
    samples: Vec<Sample>,
    converged_at: Option<Duration>,
    last_heal: Duration,
    reconverged: Option<Duration>,
    joins: usize,
    registered: BTreeSet<String>,
    next_api_check: Duration,
}

impl Run<'_> {
    fn start_node(&mut self, name: &str) {
        let Some(n) = self.scenario.node(name) else {
            return;
        };
        let mut obj = node_object(n);
        if let Some(agents) = &self.cfg.agents
            && !agents.contains(name)
        {
            // A Node without an agent host: its key is published with the Node.
            obj.metadata.annotations = Some(BTreeMap::from([(
                unbounded_net::api::WG_PUBKEY_ANNOTATION.to_string(),
                crate::agent::wireguard_key(name),
            )]));
            let _ = now(self.cluster.create::<Node>(None, &obj));
            return;
        }
        let _ = now(self.cluster.create::<Node>(None, &obj));
        self.present.insert(name.to_string());
        self.obs.borrow_mut().node_mut(name).up = true;
        let obs = self.obs.clone();
        let node = name.to_string();
        if self.registered.contains(name) {
            self.down_hosts.remove(name);
            self.sim.bounce(name);
        } else {
            self.registered.insert(name.to_string());
            // The agent reads its underlay MTU from its own NIC: the site's MTU here.
            let settings = PlanSettings {
                underlay_mtu: self.scenario.site(&n.site).map(|s| s.mtu).unwrap_or(1500),
                ..PlanSettings::default()
            };
            self.sim.host(name, move || {
                crate::agent::run(node.clone(), obs.clone(), settings)
            });
            self.wire_host(name);
        }
        self.joins += 1;
    }

    fn crash_machine(&mut self, name: &str) {
        self.sim.crash(name);
        self.down_hosts.insert(name.to_string());
        let mut o = self.obs.borrow_mut();
        let v = o.node_mut(name);
        v.up = false;
        v.kernel = Default::default();
        v.applied = None;
        v.pulled.clear();
        v.declared_down.clear();
    }

    fn restart_machine(&mut self, name: &str) {
        self.down_hosts.remove(name);
        if !CONTROLLERS.contains(&name) {
            self.obs.borrow_mut().node_mut(name).up = true;
        }
        self.sim.bounce(name);
    }

    /// Partitions or repairs every host pair whose reachability changed.
    fn apply_reach(&mut self, hosts_before: &Reach) {
        let hosts: Vec<String> = self
            .reach
            .site_of
            .keys()
            .filter(|h| self.registered.contains(*h))
            .cloned()
            .collect();
        let sites: Vec<String> = self
            .scenario
            .topology
            .sites
            .iter()
            .map(|s| s.name.clone())
            .collect();
        if self.reach.is_whole(&sites) && hosts_before.is_whole(&sites) {
            return;
        }
        for (i, a) in hosts.iter().enumerate() {
            for b in &hosts[i + 1..] {
                let was = hosts_before.hosts_connected(a, b);
                let is = self.reach.hosts_connected(a, b);
                if was && !is {
                    self.sim.partition(a.as_str(), b.as_str());
                } else if !was && is {
                    self.sim.repair(a.as_str(), b.as_str());
                }
            }
        }
    }

    /// Latency and loss of the scenario's links, and the current partitions, between `host`
    /// and every other registered host.
    fn wire_host(&mut self, host: &str) {
        let Some(site) = self.reach.site_of.get(host).cloned() else {
            return;
        };
        let others: Vec<(String, String)> = self
            .reach
            .site_of
            .iter()
            .filter(|(h, _)| self.registered.contains(*h) && h.as_str() != host)
            .map(|(h, s)| (h.clone(), s.clone()))
            .collect();
        // Pairwise settings are quadratic in hosts; large runs keep the global latency.
        let pairwise = self.reach.site_of.len() <= 400;
        for (other, osite) in &others {
            if pairwise
                && *osite != site
                && let Some(link) = self
                    .scenario
                    .topology
                    .links
                    .iter()
                    .find(|l| l.joins(&site) && l.joins(osite))
            {
                self.sim.set_link_latency(
                    host,
                    other.as_str(),
                    link.latency.as_std().max(Duration::from_millis(1)),
                );
                if link.loss_percent > 0.0 {
                    self.sim
                        .set_link_fail_rate(host, other.as_str(), link.loss_percent / 100.0);
                }
            }
            if !self.reach.hosts_connected(host, other) {
                self.sim.partition(host, other.as_str());
            }
        }
    }

    fn fire(&mut self, s: &Scheduled) {
        let at = self.sim.elapsed();
        self.trace
            .record(at, format!("event {}: {}", s.label, s.action));
        self.fired.insert(s.label.clone(), at);
        let before = self.reach.clone();
        match &s.action {
            Action::Scenario(ev) => match ev {
                Event::NodeJoin(n) => self.start_node(n),
                Event::NodeLeave(n) => {
                    let _ = now(self.cluster.delete::<Node>(None, n));
                    self.present.remove(n);
                    self.crash_machine(n);
                }
                Event::GatewayCrash(t) => {
                    if let Some(gw) = self.resolve_gateway(t) {
                        self.trace.record(at, format!("  crashing gateway {gw}"));
                        self.crashed_by.insert(s.label.clone(), gw.clone());
                        self.crash_machine(&gw);
                    }
                }
                Event::GatewayRestart(t) => {
                    if let Some(gw) = self.resolve_gateway(t) {
                        self.restart_machine(&gw);
                    }
                }
                Event::AgentRestart(n) => self.sim.bounce(n.as_str()),
                Event::LinkCut(l) => {
                    self.reach.cut.insert(l.clone());
                }
                Event::LinkHeal(l) => {
                    self.reach.cut.remove(l);
                }
                Event::Partition(groups) => {
                    self.reach
                        .partitions
                        .insert(s.label.clone(), groups.clone());
                }
                Event::PartitionHeal(name) => {
                    self.reach.partitions.remove(name);
                }
                Event::ControllerLeaderLoss => self.leader_loss(at),
            },
            Action::Crash(n) => self.crash_machine(n),
            Action::Restart(n) => self.restart_machine(n),
            Action::Bounce(n) => self.sim.bounce(n.as_str()),
            Action::CutSites(label, a, b) => {
                self.reach
                    .partitions
                    .insert(label.clone(), vec![vec![a.clone()], vec![b.clone()]]);
            }
            Action::HealSites(label) => {
                self.reach.partitions.remove(label);
            }
            Action::Loss(a, b, p) => self.set_site_loss(a, b, *p),
            Action::LeaderLoss => self.leader_loss(at),
        }
        self.apply_reach(&before);
        if s.action.is_heal() {
            self.last_heal = self.last_heal.max(at);
            self.reconverged = None;
        }
    }

    fn set_site_loss(&mut self, a: &str, b: &str, p: f64) {
        let hosts: Vec<(String, String)> = self
            .reach
            .site_of
            .iter()
            .filter(|(h, _)| self.registered.contains(*h))
            .map(|(h, s)| (h.clone(), s.clone()))
            .collect();
        for (x, sx) in &hosts {
            for (y, sy) in &hosts {
                if x < y && ((sx == a && sy == b) || (sx == b && sy == a)) {
                    self.sim.set_link_fail_rate(x.as_str(), y.as_str(), p);
                }
            }
        }
    }

    fn leader_loss(&mut self, at: Duration) {
        let leader = {
            let down = &self.down_hosts;
            let o = self.obs.borrow();
            o.leaders(at).into_iter().find(|n| !down.contains(n))
        };
        if let Some(l) = leader {
            self.trace.record(at, format!("  crashing leader {l}"));
            self.sim.crash(l.as_str());
            self.down_hosts.insert(l.clone());
            {
                let mut o = self.obs.borrow_mut();
                o.acting_leader.remove(&l);
                o.leader_gauges.remove(&l);
            }
            self.schedule.push(Scheduled {
                at: at + CONTROLLER_RESTART,
                label: format!("restart-{l}"),
                action: Action::Restart(l),
            });
            self.schedule.sort_by_key(|s| s.at);
        }
    }

    fn resolve_gateway(&self, t: &GatewayTarget) -> Option<String> {
        match t {
            GatewayTarget::Node(n) => Some(n.clone()),
            GatewayTarget::CrashedBy(ev) => self.crashed_by.get(ev).cloned(),
            GatewayTarget::Carrying(flow) => {
                let traced = self.trace_flow(flow)?;
                let dst = &self.scenario.flow(flow)?.to;
                let is_gw =
                    |n: &str| n != dst && self.scenario.node(n).is_some_and(|x| x.is_gateway());
                // Prefer a gateway chosen out of an ECMP set, so a failover is really exercised.
                traced
                    .hops
                    .iter()
                    .find(|h| is_gw(&h.to) && h.choices > 1)
                    .or_else(|| traced.hops.iter().find(|h| is_gw(&h.to)))
                    .map(|h| h.to.clone())
            }
        }
    }

    fn pod_ip(&self, node: &str) -> Option<IpAddr> {
        let v = self.first_cidrs.get(node)?;
        let net = v.first()?;
        Some(match net.network() {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 2).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 2).into()),
        })
    }

    fn owner_fn(&self) -> impl Fn(IpAddr) -> Option<String> + '_ {
        move |ip| {
            self.first_cidrs
                .iter()
                .find(|(n, cidrs)| {
                    self.present.contains(*n) && cidrs.iter().any(|c| c.contains(&ip))
                })
                .map(|(n, _)| n.clone())
        }
    }

    fn trace_flow(&self, flow: &str) -> Option<PathTrace> {
        let f = self.scenario.flow(flow)?;
        let dst = self.pod_ip(&f.to)?;
        let o = self.obs.borrow();
        let owner = self.owner_fn();
        Some(trace(
            &o.nodes,
            &owner,
            &self.reach,
            &f.from,
            dst,
            fnv1a(flow.as_bytes()),
        ))
    }

    /// Checks the API-side invariants when the store changed.
    fn check_api(&mut self) -> Result<(), String> {
        let rv = self.cluster.resource_version();
        if rv == self.last_rv {
            return Ok(());
        }
        // Large runs check the API side at each evaluation instead of after every step
        // (listing thousands of Nodes per 5 ms step would dominate the run).
        if self.first_cidrs.len() > 500 && self.sim.elapsed() < self.next_api_check {
            return Ok(());
        }
        self.next_api_check = self.sim.elapsed() + self.cfg.check_every;
        self.last_rv = rv;
        let Some(Ok(nodes)) = now(self.cluster.list::<Node>(None)) else {
            return Ok(());
        };
        let Some(Ok(sites)) = now(self.cluster.list::<unbounded_net::api::Site>(None)) else {
            return Ok(());
        };
        let mut snap = Snapshot::default();
        for s in sites.items {
            snap.sites
                .insert(s.metadata.name.clone().unwrap_or_default(), s.spec);
        }
        for n in &nodes.items {
            let f = NodeFacts::from_node(n);
            snap.nodes.insert(f.name.clone(), f);
        }
        invariants::check_api(&snap, &mut self.first_cidrs)
    }

    fn evaluate(&mut self, at: Duration) -> Result<(), String> {
        let present: Vec<String> = self.present.iter().cloned().collect();
        let mut pairs = BTreeMap::new();
        let total = present.len() * present.len().saturating_sub(1);
        let stride = (total / self.cfg.max_pairs.max(1)).max(1);
        let mut k = 0usize;
        let mut plaintext = Vec::new();
        {
            let o = self.obs.borrow();
            let owner = self.owner_fn();
            for s in &present {
                for d in &present {
                    if s == d {
                        continue;
                    }
                    k += 1;
                    if !k.is_multiple_of(stride) {
                        continue;
                    }
                    let t = match self.pod_ip(d) {
                        Some(ip) => trace(
                            &o.nodes,
                            &owner,
                            &self.reach,
                            s,
                            ip,
                            fnv1a(format!("{s}>{d}").as_bytes()),
                        ),
                        None => PathTrace {
                            hops: vec![],
                            outcome: crate::forwarding::Outcome::Dropped {
                                at: d.clone(),
                                reason: "no pod CIDR yet".into(),
                            },
                        },
                    };
                    for h in &t.hops {
                        if let Some(link) = self.public_link(&h.from, &h.to, h.underlay)
                            && h.encap != unbounded_net::core::Encap::WireGuard
                        {
                            plaintext.push((link, format!("{} -{}-> {}", h.from, h.encap, h.to)));
                        }
                    }
                    pairs.insert((s.clone(), d.clone()), t);
                }
            }
        }
        let delivered = pairs.values().filter(|t| t.delivered()).count();
        let planned = self
            .obs
            .borrow()
            .nodes
            .values()
            .filter(|v| v.up && v.applied.is_some())
            .count();
        self.samples.push(Sample {
            at_ms: at.as_millis() as u64,
            delivered_pairs: delivered,
            traced_pairs: pairs.len(),
            planned_nodes: planned,
        });
        let full = !pairs.is_empty() && delivered == pairs.len();
        if full && self.converged_at.is_none() {
            self.converged_at = Some(at);
            self.trace.record(
                at,
                format!("converged: {delivered}/{} pairs delivered", pairs.len()),
            );
        }
        if full && self.reconverged.is_none() && self.last_heal > Duration::ZERO {
            self.reconverged = Some(at.saturating_sub(self.last_heal));
        }
        let mut flows = BTreeMap::new();
        for f in &self.scenario.flows {
            if let Some(t) = self.trace_flow(&f.name) {
                flows.insert(f.name.clone(), t);
            }
        }
        let site_of = self.reach.site_of.clone();
        let obs = Observation {
            now: at,
            fired: &self.fired,
            flows: &flows,
            pairs: &pairs,
            site_of: &site_of,
            plaintext: &plaintext,
        };
        for (r, e) in self.expectations.iter_mut().zip(&self.scenario.expect) {
            let before = r.verdict.clone();
            r.update(e, &obs);
            if r.verdict != before && r.verdict != Verdict::Pending {
                self.trace.record(
                    at,
                    format!("expectation {}: {:?} {}", r.label, r.verdict, r.detail),
                );
            }
        }
        // Full connectivity within the deadline after the last fault healed.
        let deadline = self.last_heal + self.heal_deadline();
        if self.last_heal > Duration::ZERO && at > deadline && self.reconverged.is_none() && !full {
            let bad = pairs
                .iter()
                .find(|(_, t)| !t.delivered())
                .map(|((s, _), t)| t.describe(s))
                .unwrap_or_default();
            return Err(format!(
                "no full connectivity {} after the last fault healed at {}: {bad}",
                fmt_time(self.heal_deadline()),
                fmt_time(self.last_heal)
            ));
        }
        Ok(())
    }

    fn heal_deadline(&self) -> Duration {
        longest_window(self.scenario).max(Duration::from_secs(30))
    }

    /// The internet link a hop crosses, if it crosses one: different sites and the packet
    /// travels to the peer's external IP, or no private link joins the two sites.
    fn public_link(&self, from: &str, to: &str, underlay: IpAddr) -> Option<String> {
        let sa = self.reach.site_of.get(from)?;
        let sb = self.reach.site_of.get(to)?;
        if sa == sb {
            return None;
        }
        let to_node = self.scenario.node(to)?;
        let private = self
            .scenario
            .topology
            .links
            .iter()
            .find(|l| !l.is_public() && l.joins(sa) && l.joins(sb));
        if private.is_some() && to_node.external_ip != Some(underlay) {
            return None;
        }
        self.scenario
            .topology
            .links
            .iter()
            .find(|l| l.is_public() && l.joins(sa) && l.joins(sb))
            .map(|l| l.name.clone())
    }
}

/// Runs one scenario with one seed.
pub fn run(scenario: &Scenario, cfg: RunConfig) -> RunResult {
    let mut schedule = crate::faults::timeline(scenario);
    if cfg.random_faults {
        schedule.extend(crate::faults::random(scenario, cfg.seed));
    }
    schedule.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.label.cmp(&b.label)));
    let last_event = schedule
        .iter()
        .map(|s| s.at)
        .max()
        .unwrap_or(Duration::ZERO);
    let window = longest_window(scenario).max(Duration::from_secs(30));
    let end = last_event + window + Duration::from_secs(1);

    let sim = turmoil::Builder::new()
        .simulation_duration(end + Duration::from_secs(60))
        .tick_duration(cfg.tick)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(2))
        .rng_seed(cfg.seed)
        .tcp_capacity(1 << 20)
        .udp_capacity(1 << 16)
        .build();
    let cluster = InMemoryCluster::default();
    let obs = Observatory::shared();
    obs.borrow_mut().bugs = cfg.bugs;
    let ledger = Rc::new(RefCell::new(WriteLedger::default()));
    let mut reach = Reach::new(scenario);
    let home = crate::reach::CONTROL_PLANE_SITE.to_string();
    reach.site_of.insert("api".into(), home.clone());
    for c in CONTROLLERS {
        reach.site_of.insert(c.into(), home.clone());
    }
    let mut r = Run {
        scenario,
        expectations: scenario
            .expect
            .iter()
            .enumerate()
            .map(|(i, e)| ExpectationResult::new(e, i))
            .collect(),
        cfg: cfg.clone(),
        sim,
        cluster,
        obs,
        ledger,
        reach,
        trace: Trace::default(),
        schedule,
        fired: BTreeMap::new(),
        crashed_by: BTreeMap::new(),
        down_hosts: BTreeSet::new(),
        present: BTreeSet::new(),
        first_cidrs: BTreeMap::new(),
        last_rv: 0,
        samples: Vec::new(),
        converged_at: None,
        last_heal: Duration::ZERO,
        reconverged: None,
        joins: 0,
        registered: BTreeSet::new(),
        next_api_check: Duration::ZERO,
    };
    // The user's objects, as `kubectl apply` would create them.
    for m in &scenario.objects {
        let res = match &m.object {
            KubeObject::Site(o) => now(r.cluster.create(None, o)).map(|x| x.map(|_| ())),
            KubeObject::GatewayPool(o) => now(r.cluster.create(None, o)).map(|x| x.map(|_| ())),
            KubeObject::SiteGatewayPoolAssignment(o) => {
                now(r.cluster.create(None, o)).map(|x| x.map(|_| ()))
            }
            KubeObject::SitePeering(o) => now(r.cluster.create(None, o)).map(|x| x.map(|_| ())),
            KubeObject::GatewayPoolPeering(o) => {
                now(r.cluster.create(None, o)).map(|x| x.map(|_| ()))
            }
        };
        if !matches!(res, Some(Ok(()))) {
            r.trace.record(
                Duration::ZERO,
                format!("could not apply {} {}: {res:?}", m.kind(), m.name()),
            );
        }
    }
    let (c, l) = (r.cluster.clone(), r.ledger.clone());
    r.sim.host("api", move || serve(c.clone(), l.clone()));
    r.registered.insert("api".into());
    r.wire_host("api");
    for name in CONTROLLERS {
        let obs = r.obs.clone();
        // The production controller; the sim's own controller shell only carries the injected
        // allocator bug.
        if cfg.bugs.allocator_reuses_blocks {
            r.sim.host(name, move || {
                crate::controller::run(name.to_string(), obs.clone())
            });
        } else {
            r.sim.host(name, move || {
                crate::controller_host::run(name.to_string(), obs.clone())
            });
        }
        r.registered.insert(name.into());
        r.wire_host(name);
    }
    let initial: Vec<String> = scenario.initial_nodes().map(|n| n.name.clone()).collect();
    for n in &initial {
        r.start_node(n);
    }

    let mut violation = None;
    let mut last_leaders: Vec<String> = Vec::new();
    let mut next_check = Duration::ZERO;
    loop {
        let at = r.sim.elapsed();
        while r.schedule.first().is_some_and(|s| s.at <= at) {
            let s = r.schedule.remove(0);
            r.fire(&s);
        }
        if let Err(e) = r.sim.step() {
            violation = Some(format!("a host failed: {e}"));
        }
        let at = r.sim.elapsed();
        for line in std::mem::take(&mut r.obs.borrow_mut().log) {
            r.trace.record(at, line);
        }
        let leaders: Vec<String> = {
            let down = &r.down_hosts;
            r.obs
                .borrow()
                .leaders(at)
                .into_iter()
                .filter(|n| !down.contains(n))
                .collect()
        };
        if leaders != last_leaders {
            r.trace.record(at, format!("acting leader: {leaders:?}"));
            last_leaders = leaders;
        }
        let mut check = || -> Result<(), String> {
            r.check_api()?;
            {
                let o = r.obs.borrow();
                let down = &r.down_hosts;
                invariants::check_leaders(&o, at, &|n| !down.contains(n))?;
                invariants::check_stale_routes(&o, at)?;
            }
            if at >= next_check {
                next_check = at + r.cfg.check_every;
                r.evaluate(at)?;
            }
            Ok(())
        };
        if violation.is_none()
            && let Err(e) = check()
        {
            violation = Some(e);
        }
        if violation.is_some() || at >= end {
            break;
        }
    }
    let at = r.sim.elapsed();
    let violation = violation.map(|message| {
        r.trace.record(at, format!("INVARIANT VIOLATED: {message}"));
        Violation {
            seed: cfg.seed,
            at,
            message,
            trace_tail: r.trace.tail(40).into_iter().map(String::from).collect(),
        }
    });
    for e in &mut r.expectations {
        e.finish();
    }
    let expectations_ok = r.expectations.iter().all(|e| e.verdict == Verdict::Pass);
    // Under random faults the verdict is the invariants' (the scenario's own expectations
    // assume only its own timeline); they are still reported.
    let passed = violation.is_none() && (cfg.random_faults || expectations_ok);
    let counts = r.cluster.write_counts();
    let api_writes_by_kind: BTreeMap<String, u64> =
        counts.iter().map(|(k, c)| (k.clone(), c.total())).collect();
    RunResult {
        scenario: scenario.name.clone(),
        seed: cfg.seed,
        random_faults: cfg.random_faults,
        passed,
        expectations: r.expectations,
        violation,
        converged_at: r.converged_at,
        reconverged_after_heal: r.reconverged,
        ended_at: at,
        api_writes: api_writes_by_kind.values().sum(),
        api_writes_by_kind,
        nodes: r.present.len(),
        trace_hash: format!("{:016x}", r.trace.hash()),
        trace_lines: r.trace.len(),
        samples: r.samples,
        trace: r.trace,
    }
}
