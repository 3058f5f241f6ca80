//! Builds a [`LabTopology`] out of namespaces, veths, bridges, routes, NAT and netem.
//!
//! Nothing is created in the host namespace: every veth is created with both ends placed in
//! lab namespaces, so link names only need to be unique inside a namespace, and deleting the
//! lab's namespaces removes every link. `ip -batch` runs all commands for one namespace in a
//! single process.

use std::fmt::Write as _;
use std::time::Instant;

use crate::cmd::{self, CmdError};
use crate::progress::Progress;
use crate::registry::{Registry, RegistryError};
use crate::topology::model::{LabTopology, Netem};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("interrupted")]
    Interrupted,
}

/// Creates every namespace, link, address, route, NAT rule and netem qdisc of the topology.
pub fn build(
    reg: &Registry,
    topo: &LabTopology,
    progress: &mut Progress,
) -> Result<(), BuildError> {
    let ns = |short: &str| reg.netns_name(short);

    progress.step("namespaces");
    let mut lines = Vec::new();
    for short in topo.namespaces() {
        let full = ns(&short);
        reg.add_netns(&full)?;
        lines.push(format!("netns add {full}"));
    }
    cmd::run_with_input("ip", &["-batch", "-"], Some(&(lines.join("\n") + "\n")))?;
    for short in topo.namespaces() {
        let full = ns(&short);
        // Forwarding everywhere (routers, gateways, nodes routing pod traffic); rp_filter off
        // because tunnels and ECMP make asymmetric paths normal here.
        cmd::in_netns(
            &full,
            "sysctl",
            &[
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.ping_group_range=0 2147483647",
            ],
        )?;
        cmd::ip_batch(&full, &["link set lo up".into()])?;
        progress.check_interrupt()?;
    }

    progress.step("site underlays");
    for site in &topo.sites {
        let rns = ns(&site.netns);
        let mut b = vec![
            format!("link add br0 mtu {} type bridge", site.mtu),
            format!(
                "addr add {}/{} dev br0",
                site.router_ip,
                site.underlay.prefix_len()
            ),
            "link set br0 up".into(),
        ];
        for node in topo.nodes.iter().filter(|n| n.site == site.name) {
            b.push(format!(
                "link add {} mtu {} type veth peer name eth0 mtu {} netns {}",
                node.bridge_port,
                site.mtu,
                site.mtu,
                ns(&node.netns)
            ));
            b.push(format!("link set {} master br0 up", node.bridge_port));
        }
        cmd::ip_batch(&rns, &b)?;
        for node in topo.nodes.iter().filter(|n| n.site == site.name) {
            cmd::ip_batch(
                &ns(&node.netns),
                &[
                    format!(
                        "addr add {}/{} dev eth0",
                        node.internal_ip,
                        site.underlay.prefix_len()
                    ),
                    "link set eth0 up".into(),
                    format!("route add default via {}", site.router_ip),
                ],
            )?;
        }
        progress.check_interrupt()?;
    }

    if let Some(inet) = &topo.internet {
        progress.step("internet");
        let ins = ns(&inet.netns);
        let mut b = vec![
            format!("link add br0 mtu {} type bridge", inet.mtu),
            format!(
                "addr add {}/{} dev br0",
                inet.router_ip,
                inet.segment.prefix_len()
            ),
            "link set br0 up".into(),
        ];
        let mut routes = Vec::new();
        let mut router_batches = Vec::new();
        for site in &topo.sites {
            let Some(wan_ip) = site.wan_ip else { continue };
            let port = topo.internet_port(&site.name);
            b.push(format!(
                "link add {port} mtu {} type veth peer name wan mtu {} netns {}",
                inet.mtu,
                inet.mtu,
                ns(&site.netns)
            ));
            b.push(format!("link set {port} master br0 up"));
            let mut r = vec![
                format!("addr add {wan_ip}/{} dev wan", inet.segment.prefix_len()),
                "link set wan up".into(),
                format!("route add default via {}", inet.router_ip),
            ];
            for node in topo.nodes.iter().filter(|n| n.site == site.name) {
                if let Some(ext) = node.external_ip {
                    // The router answers for the node's public address (1:1 NAT below).
                    r.push(format!("addr add {ext}/32 dev wan"));
                    routes.push(format!("route replace {ext}/32 via {wan_ip}"));
                }
            }
            router_batches.push((ns(&site.netns), r));
        }
        cmd::ip_batch(&ins, &b)?;
        for (rns, r) in &router_batches {
            cmd::ip_batch(rns, r)?;
        }
        cmd::ip_batch(&ins, &routes)?;
        for site in &topo.sites {
            cmd::nft(&ns(&site.netns), &site_nat_ruleset(topo, &site.name))?;
            if site.wan_ip.is_some() {
                apply_netem(&ns(&site.netns), "wan", &site.wan_netem)?;
                // A crossing passes the sender's `wan` and the receiver's internet port: the
                // link's loss is applied once, on the sending side, or it would count twice.
                let inbound = Netem {
                    loss_percent: None,
                    ..site.wan_netem.clone()
                };
                apply_netem(&ins, &topo.internet_port(&site.name), &inbound)?;
            }
        }
        progress.check_interrupt()?;
    }

    if !topo.private_links.is_empty() {
        progress.step("private interconnects");
    }
    for link in &topo.private_links {
        let (sa, sb) = (
            topo.site(&link.a).expect("validated"),
            topo.site(&link.b).expect("validated"),
        );
        let (na, nb) = (ns(&sa.netns), ns(&sb.netns));
        cmd::ip_batch(
            &na,
            &[format!(
                "link add {} mtu {} type veth peer name {} mtu {} netns {nb}",
                link.ifname, link.mtu, link.ifname, link.mtu
            )],
        )?;
        for (here, there, my_ip, peer_ip, far) in [
            (&na, &sb, link.a_ip, link.b_ip, sb),
            (&nb, &sa, link.b_ip, link.a_ip, sa),
        ] {
            let _ = there;
            let mut r = vec![
                format!("addr add {my_ip}/{} dev {}", link.prefix_len, link.ifname),
                format!("link set {} up", link.ifname),
                format!("route replace {} via {peer_ip}", far.underlay),
            ];
            // What a customer's BGP over the interconnect announces: the far site's pod pools.
            for pool in &far.pod_pools {
                r.push(format!("route replace {pool} via {peer_ip}"));
            }
            cmd::ip_batch(here, &r)?;
            apply_netem(here, &link.ifname, &link.netem)?;
        }
        progress.check_interrupt()?;
    }
    for site in topo.sites.iter().filter(|s| !s.appliance_routes.is_empty()) {
        let lines = site
            .appliance_routes
            .iter()
            .map(|(prefix, via)| {
                let hops: Vec<String> = via.iter().map(|v| format!("nexthop via {v}")).collect();
                format!("route replace {prefix} {}", hops.join(" "))
            })
            .collect::<Vec<_>>();
        cmd::ip_batch(&ns(&site.netns), &lines)?;
    }
    Ok(())
}

/// The site router's NAT: 1:1 for nodes with a public address, masquerade for everything
/// else leaving through the internet uplink, and hairpin NAT for nodes reaching a sibling's
/// public address.
pub fn site_nat_ruleset(topo: &LabTopology, site: &str) -> String {
    let s = topo.site(site).expect("site exists");
    let mut pre = String::new();
    let mut post = String::new();
    for node in topo.nodes.iter().filter(|n| n.site == site) {
        if let Some(ext) = node.external_ip {
            let _ = writeln!(pre, "    ip daddr {ext} dnat to {}", node.internal_ip);
            let _ = writeln!(
                post,
                "    oifname \"wan\" ip saddr {} snat to {ext}",
                node.internal_ip
            );
        }
    }
    let _ = writeln!(post, "    oifname \"wan\" masquerade");
    let _ = writeln!(
        post,
        "    oifname \"br0\" ct status dnat ip saddr {} masquerade",
        s.underlay
    );
    format!(
        "table ip netns_lab {{\n  chain pre {{\n    type nat hook prerouting priority -100;\n{pre}  }}\n  chain post {{\n    type nat hook postrouting priority 100;\n{post}  }}\n}}\n"
    )
}

/// Delay with netem; loss with netem, or with an nftables random drop where the kernel has
/// no netem (the lab refuses delay without netem before building, see `lab`).
fn apply_netem(netns: &str, dev: &str, netem: &Netem) -> Result<(), CmdError> {
    if netem.is_noop() {
        return Ok(());
    }
    if !netem_available() {
        let Some(loss) = netem.loss_percent.filter(|l| *l > 0.0) else {
            return Ok(());
        };
        let per_10k = (loss * 100.0).round() as u32;
        return cmd::nft(
            netns,
            &format!(
                "table ip netns_lab_loss_{dev} {{\n  chain out {{\n    type filter hook postrouting priority 0;\n    oifname \"{dev}\" numgen random mod 10000 < {per_10k} drop\n  }}\n}}\n"
            ),
        );
    }
    let mut args = vec!["qdisc", "replace", "dev", dev, "root", "netem"];
    let extra = netem.tc_args();
    args.extend(extra.iter().map(String::as_str));
    cmd::in_netns(netns, "tc", &args).map(|_| ())
}

/// Wall-clock seconds since `start`, for the progress display.
pub fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Whether this kernel has `sch_netem` (probed once, in a scratch namespace).
pub fn netem_available() -> bool {
    static HAVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAVE.get_or_init(|| {
        let ns = format!("nlab-netem-probe-{}", std::process::id());
        if cmd::run("ip", &["netns", "add", &ns]).is_err() {
            return false;
        }
        let ok = cmd::ip_batch(&ns, &["link add p0 type veth peer name p1".into()])
            .and_then(|()| {
                cmd::in_netns(
                    &ns,
                    "tc",
                    &["qdisc", "add", "dev", "p0", "root", "netem", "delay", "1ms"],
                )
                .map(|_| ())
            })
            .is_ok();
        let _ = cmd::run("ip", &["netns", "del", &ns]);
        ok
    })
}
