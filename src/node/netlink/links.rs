//! Tunnel and bridge devices over rtnetlink.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::link::{
    InfoData, InfoGeneve, InfoIpTunnel, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::{Handle, LinkBridge, LinkGeneve, LinkIpIp, LinkUnspec, LinkVxlan};

use crate::node::kernel::{
    GENEVE_PORT, TUNNEL_GATEWAY_V4, TUNNEL_GATEWAY_V6, TunnelDevice, TunnelKind, VXLAN_PORT,
    tunnel_mac,
};
use crate::node::render::is_owned_tunnel_name;

pub(super) fn name_of(l: &LinkMessage) -> Option<String> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// The owned tunnel this link is, if it is one (by name prefix and kind).
pub(super) fn tunnel_of(l: &LinkMessage) -> Option<TunnelDevice> {
    let name = name_of(l).filter(|n| is_owned_tunnel_name(n))?;
    let mtu = l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })?;
    let data = l.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(d) => Some(d),
            _ => None,
        }),
        _ => None,
    })?;
    let unspecified = IpAddr::from([0u8, 0, 0, 0]);
    let (mut local, mut remote) = (unspecified, unspecified);
    let kind = match data {
        InfoData::Vxlan(attrs) => {
            let mut vni = 0;
            for a in attrs {
                match a {
                    InfoVxlan::Id(v) => vni = *v,
                    InfoVxlan::Group(ip) => remote = IpAddr::V4(*ip),
                    InfoVxlan::Group6(ip) => remote = IpAddr::V6(*ip),
                    InfoVxlan::Local(ip) => local = IpAddr::V4(*ip),
                    InfoVxlan::Local6(ip) => local = IpAddr::V6(*ip),
                    _ => {}
                }
            }
            TunnelKind::Vxlan { vni }
        }
        InfoData::Geneve(attrs) => {
            let mut vni = 0;
            for a in attrs {
                match a {
                    InfoGeneve::Id(v) => vni = *v,
                    InfoGeneve::Remote(ip) => remote = IpAddr::V4(*ip),
                    InfoGeneve::Remote6(ip) => remote = IpAddr::V6(*ip),
                    InfoGeneve::Local(ip) => local = IpAddr::V4(*ip),
                    InfoGeneve::Local6(ip) => local = IpAddr::V6(*ip),
                    _ => {}
                }
            }
            TunnelKind::Geneve { vni }
        }
        InfoData::IpTunnel(attrs) => {
            for a in attrs {
                match a {
                    InfoIpTunnel::Local(ip) => local = *ip,
                    InfoIpTunnel::Remote(ip) => remote = *ip,
                    _ => {}
                }
            }
            TunnelKind::Ipip
        }
        _ => return None,
    };
    Some(TunnelDevice {
        name,
        kind,
        local,
        remote,
        mtu,
    })
}

fn err(what: &str, e: rtnetlink::Error) -> String {
    format!("{what}: {e}")
}

pub(super) async fn add_tunnel(h: &Handle, t: &TunnelDevice) -> Result<(), String> {
    let mac = tunnel_mac(t.local).to_vec();
    let msg = match (t.kind, t.local, t.remote) {
        (TunnelKind::Vxlan { vni }, IpAddr::V4(l), IpAddr::V4(r)) => LinkVxlan::new(&t.name, vni)
            .local(l)
            .remote(r)
            .port(VXLAN_PORT)
            .learning(false)
            .mtu(t.mtu)
            .address(mac.clone())
            .up()
            .build(),
        (TunnelKind::Vxlan { vni }, IpAddr::V6(l), IpAddr::V6(r)) => LinkVxlan::new(&t.name, vni)
            .local6(l)
            .remote6(r)
            .port(VXLAN_PORT)
            .learning(false)
            .mtu(t.mtu)
            .address(mac.clone())
            .up()
            .build(),
        (TunnelKind::Geneve { vni }, _, IpAddr::V4(r)) => LinkGeneve::new(&t.name, vni)
            .remote(r)
            .port(GENEVE_PORT)
            .mtu(t.mtu)
            .address(mac.clone())
            .up()
            .build(),
        (TunnelKind::Geneve { vni }, _, IpAddr::V6(r)) => LinkGeneve::new(&t.name, vni)
            .remote6(r)
            .port(GENEVE_PORT)
            .mtu(t.mtu)
            .address(mac.clone())
            .up()
            .build(),
        (TunnelKind::Ipip, IpAddr::V4(l), IpAddr::V4(r)) => LinkIpIp::new(&t.name)
            .local(l)
            .remote(r)
            .ttl(64)
            .mtu(t.mtu)
            .up()
            .build(),
        _ => {
            return Err(format!(
                "{}: unsupported address family combination {} -> {}",
                t.name, t.local, t.remote
            ));
        }
    };
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(|e| err(&format!("add {}", t.name), e))
}

/// Points the well-known tunnel gateways at the peer's tunnel MAC on an L2 tunnel device.
/// Two requests; replaces whatever entry is there.
pub(super) async fn add_gateway_neighbours(
    h: &Handle,
    index: u32,
    t: &TunnelDevice,
) -> Result<(), String> {
    let mac = tunnel_mac(t.remote);
    for gw in [IpAddr::V4(TUNNEL_GATEWAY_V4), IpAddr::V6(TUNNEL_GATEWAY_V6)] {
        h.neighbours()
            .add(index, gw)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| err(&format!("neighbour {gw} on {}", t.name), e))?;
    }
    Ok(())
}

pub(super) async fn index_of(h: &Handle, name: &str) -> Result<u32, String> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(l.header.index),
        Ok(None) => Err(format!("interface {name} vanished after creation")),
        Err(e) => Err(err(&format!("look up {name}"), e)),
    }
}

pub(super) async fn set_mtu(h: &Handle, index: u32, mtu: u32) -> Result<(), String> {
    h.link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
        .execute()
        .await
        .map_err(|e| err(&format!("set mtu {mtu} on ifindex {index}"), e))
}

pub(super) async fn delete(h: &Handle, index: u32) -> Result<(), String> {
    h.link()
        .del(index)
        .execute()
        .await
        .map_err(|e| err(&format!("delete ifindex {index}"), e))
}

fn is_exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -17)
}

pub(super) async fn ensure_bridge(h: &Handle, name: &str, cidrs: &[IpNet]) -> Result<(), String> {
    let index = match index_of(h, name).await {
        Ok(i) => i,
        Err(_) => {
            match h
                .link()
                .add(LinkBridge::new(name).up().build())
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if is_exists(&e) => {}
                Err(e) => return Err(err(&format!("add bridge {name}"), e)),
            }
            index_of(h, name).await?
        }
    };
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| err(&format!("set {name} up"), e))?;
    for cidr in cidrs {
        // The pods' gateway and health endpoint: the network address + 1, both families
        // (what `core::node_plan::health_address` and host-local's default gateway use).
        let Some(gateway) = crate::core::node_plan::health_address(std::slice::from_ref(cidr))
        else {
            continue;
        };
        match h
            .address()
            .add(index, gateway, cidr.prefix_len())
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if is_exists(&e) => {}
            Err(e) => {
                return Err(err(
                    &format!("add {gateway}/{} to {name}", cidr.prefix_len()),
                    e,
                ));
            }
        }
    }
    Ok(())
}
