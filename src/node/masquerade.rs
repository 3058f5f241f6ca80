//! Masquerade of pod traffic leaving the cluster's pod networks, and TCP MSS clamping towards
//! routes narrower than the pod interface, through one nftables table that belongs to the
//! agent alone.
//!
//! MSS clamping: pods get the largest path MTU the node routes over, so a SYN to a narrower
//! route (say a 1340-byte WireGuard path from a 9000-byte site) would announce a segment size
//! the path cannot carry. A forward-hook rule rewrites the SYN's MSS to `rt mtu`, the MTU of
//! the route the packet takes (the planner's path MTU, installed as the route's `mtu`); the
//! kernel only ever lowers an MSS there. Only the planner's narrower prefixes are matched.
//!
//! Why nftables through the `nft` CLI: a table of our own never interleaves with
//! kube-proxy's or the distribution's rules, the whole table is replaced in one atomic
//! transaction (no window without rules, no flaps), and `--cleanup` is one `delete table`.
//! The CLI is the stable interface to nftables' netlink protocol; no Rust binding of it is
//! mature enough to own this.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::IpNet;

use crate::core::dataplane::MasqueradeConfig;

/// Family and name of the agent's table (`nft list table inet unbounded_net`).
pub const TABLE: &str = "inet unbounded_net";

#[derive(Debug, thiserror::Error)]
pub enum MasqueradeError {
    #[error("cannot run nft (is the nftables package installed?): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft refused the masquerade table: {stderr}")]
    Refused { stderr: String },
}

/// The complete nftables script for `cfg`: creates the table if missing, flushes it by
/// deleting, and recreates it, all in one transaction.
pub fn render_ruleset(cfg: &MasqueradeConfig) -> String {
    let mut s = format!("table {TABLE} {{}}\ndelete table {TABLE}\ntable {TABLE} {{\n");
    let mut rules = Vec::new();
    let mut clamps = Vec::new();
    for (fam, addr_type, v4) in [("ip", "ipv4_addr", true), ("ip6", "ipv6_addr", false)] {
        let pick = |nets: &[IpNet]| -> Vec<String> {
            nets.iter()
                .filter(|n| n.addr().is_ipv4() == v4)
                .map(|n| n.trunc().to_string())
                .collect()
        };
        let suffix = if v4 { "v4" } else { "v6" };
        let clamp = pick(&cfg.mss_clamp_cidrs);
        if !clamp.is_empty() {
            push_set(&mut s, &format!("clamp_{suffix}"), addr_type, &clamp);
            clamps.push(format!(
                "    {fam} daddr @clamp_{suffix} tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu"
            ));
        }
        let sources = pick(&cfg.source_cidrs);
        if sources.is_empty() {
            continue;
        }
        let mut keep = pick(&cfg.cluster_pod_cidrs);
        keep.extend(pick(&cfg.non_masquerade_cidrs));
        for (set, elems) in [("pods", &sources), ("keep", &keep)] {
            push_set(&mut s, &format!("{set}_{suffix}"), addr_type, elems);
        }
        rules.push(format!(
            "    {fam} saddr @pods_{suffix} {fam} daddr != @keep_{suffix} masquerade"
        ));
    }
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    for r in rules {
        s.push_str(&r);
        s.push('\n');
    }
    s.push_str("  }\n");
    if !clamps.is_empty() {
        // Mangle priority: before any filter rule of ours or others sees the SYN.
        s.push_str(
            "  chain forward {\n    type filter hook forward priority mangle; policy accept;\n",
        );
        for r in clamps {
            s.push_str(&r);
            s.push('\n');
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

fn push_set(s: &mut String, name: &str, addr_type: &str, elems: &[String]) {
    s.push_str(&format!(
        "  set {name} {{\n    type {addr_type}\n    flags interval\n    auto-merge\n"
    ));
    if !elems.is_empty() {
        s.push_str(&format!("    elements = {{ {} }}\n", elems.join(", ")));
    }
    s.push_str("  }\n");
}

/// Applies `cfg` (atomic replace of our table).
pub fn apply(cfg: &MasqueradeConfig) -> Result<(), MasqueradeError> {
    nft(&["-f", "-"], Some(&render_ruleset(cfg)))
}

/// Deletes our table; absent is fine.
pub fn remove() -> Result<(), MasqueradeError> {
    nft(
        &["-f", "-"],
        Some(&format!("table {TABLE} {{}}\ndelete table {TABLE}\n")),
    )
}

/// `nft list table` output, or `None` if the table does not exist.
pub fn list() -> Result<Option<String>, MasqueradeError> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", "unbounded_net"])
        .output()
        .map_err(MasqueradeError::Spawn)?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<(), MasqueradeError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(MasqueradeError::Spawn)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(MasqueradeError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(MasqueradeError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(MasqueradeError::Refused {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_masquerades_only_pod_sources_leaving_the_cluster() {
        let cfg = MasqueradeConfig {
            source_cidrs: vec!["10.0.1.0/24".parse().unwrap()],
            cluster_pod_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            non_masquerade_cidrs: vec!["172.16.0.0/12".parse().unwrap()],
            mss_clamp_cidrs: vec![],
        };
        let s = render_ruleset(&cfg);
        assert!(s.contains("elements = { 10.0.1.0/24 }"), "{s}");
        assert!(
            s.contains("elements = { 10.0.0.0/16, 172.16.0.0/12 }"),
            "{s}"
        );
        assert!(
            s.contains("ip saddr @pods_v4 ip daddr != @keep_v4 masquerade"),
            "{s}"
        );
        assert!(
            !s.contains("ip6 saddr"),
            "no IPv6 pod range, no IPv6 rule: {s}"
        );
        assert!(s.starts_with("table inet unbounded_net {}\ndelete table inet unbounded_net\n"));
        assert!(!s.contains("maxseg"), "no narrower route, no clamp: {s}");
    }

    #[test]
    fn narrower_routes_get_their_syns_clamped_per_family() {
        let cfg = MasqueradeConfig {
            source_cidrs: vec!["10.0.1.0/24".parse().unwrap()],
            cluster_pod_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            non_masquerade_cidrs: vec![],
            mss_clamp_cidrs: vec![
                "10.9.0.0/16".parse().unwrap(),
                "10.8.1.0/24".parse().unwrap(),
                "fd00:9::/64".parse().unwrap(),
            ],
        };
        let s = render_ruleset(&cfg);
        assert!(
            s.contains("  set clamp_v4 {\n    type ipv4_addr\n    flags interval\n    auto-merge\n    elements = { 10.9.0.0/16, 10.8.1.0/24 }\n  }"),
            "{s}"
        );
        assert!(s.contains("elements = { fd00:9::/64 }"), "{s}");
        assert!(
            s.contains("type filter hook forward priority mangle; policy accept;\n    ip daddr @clamp_v4 tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu\n    ip6 daddr @clamp_v6 tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu\n  }"),
            "{s}"
        );
        assert!(s.ends_with("  }\n}\n"), "{s}");
        // A v6 clamp does not need a v6 pod range (and no v6 masquerade rule appears).
        assert!(!s.contains("ip6 saddr"), "{s}");
    }
}
