//! The queries the simulator and the lab use, checked against the shipped scenarios.

use std::net::IpAddr;

use unbounded_net::api::GATEWAY_LABEL;
use unbounded_scenario::{
    Encap, Event, Expectation, GatewayTarget, Kernel, KubeObject, LinkKind, Members, Scenario,
    TimeSpan,
};

fn load(name: &str) -> Scenario {
    let path = format!("{}/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

#[test]
fn expressroute_topology_queries() {
    let s = load("expressroute");
    assert_eq!(s.name, "expressroute");
    assert_eq!(s.kernel, Kernel::Host);
    let azure: Vec<&str> = s.nodes_in("site-azure").map(|n| n.name.as_str()).collect();
    assert_eq!(azure, ["azure-w1", "azure-gw1", "azure-gw2"]);
    let gateways: Vec<&str> = s
        .gateways_in("site-azure")
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(gateways, ["azure-gw1", "azure-gw2"]);

    let er = s
        .link_between("site-azure", "site-on-prem")
        .expect("private link");
    assert_eq!(
        (er.name.as_str(), er.kind),
        ("expressroute", LinkKind::Private)
    );
    // expressroute.yaml sets no delay (the headline lab run must work without netem).
    assert_eq!(er.latency, TimeSpan::from_millis(0));
    let inet = s
        .link_between("site-edge", "site-azure")
        .expect("internet link");
    assert_eq!(inet.kind, LinkKind::Internet);
    assert!(s.link_between("site-on-prem", "site-edge").is_none());
    assert!(s.link_between("site-azure", "site-azure").is_none());
    assert_eq!(s.topology.link_mtu(er), 1500);

    assert_eq!(
        s.site("site-azure").unwrap().router_ips(),
        [ip("10.20.0.1")]
    );
    let edge = s.node("edge-w1").unwrap();
    assert_eq!(edge.external_ip, None, "edge workers are behind NAT");
    let gw = s.node("azure-gw1").unwrap();
    assert_eq!(gw.external_ip, Some(ip("203.0.113.21")));
    assert_eq!(
        gw.kube_labels().get(GATEWAY_LABEL).map(String::as_str),
        Some("true")
    );
    assert!(s.node("azure-w1").unwrap().kube_labels().is_empty());

    let node = gw.kube_node();
    assert_eq!(node.metadata.name.as_deref(), Some("azure-gw1"));
    let addresses: Vec<(String, String)> = node
        .status
        .and_then(|s| s.addresses)
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect();
    assert_eq!(
        addresses,
        [
            ("InternalIP".to_owned(), "10.20.0.21".to_owned()),
            ("ExternalIP".to_owned(), "203.0.113.21".to_owned())
        ]
    );
}

#[test]
fn explicit_gateway_label_wins_over_the_role() {
    let text = std::fs::read_to_string(format!("{}/expressroute.yaml", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace(
            "externalIP: 203.0.113.22, role: gateway}",
            "externalIP: 203.0.113.22, role: gateway, labels: {unbounded-cloud.io/unbounded-net-gateway: \"false\"}}",
        );
    let s = Scenario::parse("expressroute.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let labels = s.node("azure-gw2").unwrap().kube_labels();
    assert_eq!(labels.get(GATEWAY_LABEL).map(String::as_str), Some("false"));
    let pool = s.gateway_pools().next().unwrap();
    let members: Vec<&str> = s
        .nodes_matching(&pool.spec.node_selector)
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(members, ["azure-gw1"]);
}

#[test]
fn expressroute_objects_are_typed() {
    let s = load("expressroute");
    let peering = s.site_peerings().next().expect("a SitePeering");
    assert_eq!(peering.spec.sites, ["site-on-prem", "site-azure"]);
    assert_eq!(peering.spec.mesh_nodes, Some(false));
    assert_eq!(s.site_objects().count(), 3);
    let pool = s.gateway_pools().next().expect("a GatewayPool");
    let members: Vec<&str> = s
        .nodes_matching(&pool.spec.node_selector)
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(members, ["azure-gw1", "azure-gw2"]);
    assert_eq!(s.pool_assignments().count(), 2);
    // The verbatim manifest keeps the user's text for applying.
    let manifest = s
        .objects
        .iter()
        .find(|m| matches!(m.object, KubeObject::SitePeering(_)))
        .unwrap();
    assert_eq!(manifest.value["spec"]["tunnelProtocol"], "None");
    assert_eq!(manifest.name(), "azure-expressroute-peering");
}

#[test]
fn expressroute_expectations() {
    let s = load("expressroute");
    let Some(Expectation::Path(path)) = s
        .expect
        .iter()
        .find(|e| e.flow() == Some("onprem-to-edge") && e.key() == "path")
    else {
        panic!("path expectation for onprem-to-edge");
    };
    assert_eq!(path.hops.len(), 2);
    assert_eq!(
        path.hops[0].to,
        Members::Named(vec!["azure-gw1".into(), "azure-gw2".into()])
    );
    assert_eq!(path.hops[1].encap, Encap::WireGuard);
    assert_eq!(s.expect[0].label(0), "full-mesh");
}

#[test]
fn gateway_failover_timeline() {
    let s = load("gateway-failover");
    let kill = s.event("kill-gw").expect("kill-gw event");
    assert_eq!(kill.at, TimeSpan::from_millis(20_000));
    assert_eq!(
        kill.event,
        Event::GatewayCrash(GatewayTarget::Carrying("stream".into()))
    );
    assert!(kill.event.is_fault());
    assert_eq!(s.flow("stream").and_then(|f| f.rate), Some(1000));
    let failover = s
        .expect
        .iter()
        .find_map(|e| match e {
            Expectation::Failover(f) => Some(f),
            _ => None,
        })
        .expect("failover expectation");
    assert_eq!(failover.within, TimeSpan::from_millis(1000));
    assert_eq!(s.last_event_at(), TimeSpan::from_millis(40_000));
}

#[test]
fn late_joiners_are_not_initial_nodes() {
    let s = load("nat-edge");
    assert_eq!(
        s.control_plane_site(),
        "site-core",
        "defaults to the first site"
    );
    assert!(s.initial_nodes().all(|n| n.name != "edge-w3"));
    assert_eq!(s.initial_nodes().count(), s.topology.nodes.len() - 1);
}

#[test]
fn vm_scenarios_need_the_vm_kernel() {
    for name in ["tunnel-matrix", "security-wins"] {
        assert_eq!(load(name).kernel, Kernel::Vm, "{name}");
    }
    assert!(!Kernel::Host.carries(Encap::Geneve));
    assert!(Kernel::Host.carries(Encap::WireGuard));
    assert!(Kernel::Vm.carries(Encap::Ipip));
}

#[test]
fn timeline_and_expectations_round_trip_through_yaml() {
    for name in [
        "gateway-failover",
        "mesh-peering",
        "nat-edge",
        "expressroute",
    ] {
        let s = load(name);
        let timeline = serde_yaml::to_string(&s.timeline).unwrap();
        let back: Vec<unbounded_scenario::TimedEvent> = serde_yaml::from_str(&timeline).unwrap();
        assert_eq!(back, s.timeline, "{name} timeline:\n{timeline}");
        let expect = serde_yaml::to_string(&s.expect).unwrap();
        let back: Vec<Expectation> = serde_yaml::from_str(&expect).unwrap();
        assert_eq!(back, s.expect, "{name} expectations:\n{expect}");
    }
}
