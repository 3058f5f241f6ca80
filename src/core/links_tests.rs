//! Link-level rules: governing scope, security wins, MTU per family, settings from the
//! governing scope.

use rstest::rstest;

use super::dataplane::Encap;
use super::links::plan_link;
use super::node_plan::plan_node;
use super::plan_index::{PlanIndex, PlanSettings};
use super::plan_problem::PlanProblem;
use super::plan_tests::{add, two_sites};
use super::synthetic::node;
use crate::api::TunnelProtocol;

/// Security wins: the worker → gateway link in one site is governed by the assignment, but
/// the Site applies too; an explicit WireGuard on either makes it WireGuard.
#[rstest]
#[case(None, None, Encap::Geneve)]
#[case(Some(TunnelProtocol::WireGuard), None, Encap::WireGuard)]
#[case(
    Some(TunnelProtocol::Geneve),
    Some(TunnelProtocol::WireGuard),
    Encap::WireGuard
)]
#[case(
    Some(TunnelProtocol::WireGuard),
    Some(TunnelProtocol::None),
    Encap::WireGuard
)]
#[case(Some(TunnelProtocol::None), Some(TunnelProtocol::Vxlan), Encap::Vxlan)]
#[case(Some(TunnelProtocol::Vxlan), None, Encap::Vxlan)]
#[case(Some(TunnelProtocol::Vxlan), Some(TunnelProtocol::Auto), Encap::Vxlan)]
#[case(Some(TunnelProtocol::Auto), Some(TunnelProtocol::Ipip), Encap::Ipip)]
fn security_wins(
    #[case] site_proto: Option<TunnelProtocol>,
    #[case] sgpa_proto: Option<TunnelProtocol>,
    #[case] want: Encap,
) {
    let mut snap = two_sites();
    snap.sites.get_mut("a").unwrap().tunnel_protocol = site_proto;
    snap.assignments.get_mut("a-gw").unwrap().tunnel_protocol = sgpa_proto;
    let index = PlanIndex::new(&snap, PlanSettings::default());
    let link = plan_link(&index, "a-w1", "a-g1").unwrap().unwrap();
    assert_eq!(
        link.governing.to_string(),
        "SiteGatewayPoolAssignment/a-gw (pool gw-a)"
    );
    assert_eq!(link.encap, want);
    let back = plan_link(&index, "a-g1", "a-w1").unwrap().unwrap();
    assert_eq!((back.encap, back.mtu), (link.encap, link.mtu));
}

#[rstest]
#[case::same_site("a-w1", "a-w2", "Site/a")]
#[case::worker_gateway("a-w1", "a-g1", "SiteGatewayPoolAssignment/a-gw (pool gw-a)")]
#[case::same_pool("a-g1", "a-g2", "GatewayPool/gw-a")]
#[case::pool_peering("a-g1", "b-g1", "GatewayPoolPeering/a-b (gw-a <-> gw-b)")]
fn governing_scope(#[case] a: &str, #[case] b: &str, #[case] want: &str) {
    let mut snap = two_sites();
    add(
        &mut snap,
        node("a-w2", "a", "10.1.0.11", None, "100.64.4.0/24"),
    );
    let index = PlanIndex::new(&snap, PlanSettings::default());
    let link = plan_link(&index, a, b).unwrap().unwrap();
    assert_eq!(link.governing.to_string(), want);
}

#[test]
fn nodes_in_unrelated_sites_need_no_link() {
    let snap = two_sites();
    let index = PlanIndex::new(&snap, PlanSettings::default());
    assert_eq!(plan_link(&index, "a-w1", "b-w1"), Ok(None));
}

#[rstest]
#[case::v4("203.0.113.1", "198.51.100.1", 1440)]
#[case::v6("2001:db8::1", "2001:db8:1::1", 1420)]
fn wireguard_mtu_follows_underlay_family(#[case] ea: &str, #[case] eb: &str, #[case] want: u32) {
    let mut snap = two_sites();
    snap.nodes.get_mut("a-g1").unwrap().external_ips = vec![ea.parse().unwrap()];
    snap.nodes.get_mut("b-g1").unwrap().external_ips = vec![eb.parse().unwrap()];
    let index = PlanIndex::new(&snap, PlanSettings::default());
    let link = plan_link(&index, "a-g1", "b-g1").unwrap().unwrap();
    assert_eq!(link.encap, Encap::WireGuard);
    assert_eq!(link.mtu, want);
}

#[test]
fn tunnel_mtu_and_health_come_from_the_governing_scope() {
    let mut snap = two_sites();
    let gpp = snap.pool_peerings.get_mut("a-b").unwrap();
    gpp.tunnel_mtu = Some(1300);
    gpp.health_check_settings =
        Some(serde_yaml::from_str("transmitInterval: 250ms\ndetectMultiplier: 5").unwrap());
    snap.sites.get_mut("a").unwrap().tunnel_mtu = Some(100); // out of range: reported, ignored
    let index = PlanIndex::new(&snap, PlanSettings::default());
    assert!(
        index
            .problems()
            .contains(&PlanProblem::TunnelMtuOutOfRange {
                object: "Site/a".into(),
                value: 100
            })
    );
    let link = plan_link(&index, "a-g1", "b-g1").unwrap().unwrap();
    assert_eq!(link.mtu, 1300);
    assert_eq!(link.health.transmit_interval.as_millis(), 250);
    assert_eq!(link.health.receive_interval.as_secs(), 1);
    assert_eq!(link.health.multiplier, 5);
    let plan = plan_node(&index, "a-g1").unwrap().dataplane;
    assert_eq!(plan.probes["b-g1"].multiplier, 5);
}
