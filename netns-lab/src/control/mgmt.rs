//! Kube mode's management network: the path from every node namespace (its agent process) and
//! from the host (the lab and the controller) to the API server, apart from the scenario's
//! underlay so that cutting a site link never cuts the lab's own control.
//!
//! A namespace `nl-LAB-mgmt` holds a bridge with the API server's address, one veth per node
//! namespace (`mgmt0` inside the node) and one to the host. Deleting that namespace removes
//! every one of these links, the host end included. Addresses come from [`MGMT_NET`], which no
//! scenario uses.

use std::net::Ipv4Addr;

use crate::cmd::{self, CmdError};
use crate::registry::{Registry, RegistryError};

/// The management range (RFC 1918, kept out of every scenario).
pub const MGMT_NET: &str = "172.31.254.0/24";
/// The API server's address on the management bridge.
pub const API_ADDR: Ipv4Addr = Ipv4Addr::new(172, 31, 254, 1);
const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(172, 31, 254, 254);
const NODE_BASE: u8 = 10;

#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(
        "the host already has an address in {MGMT_NET} ({0}): another kube-mode lab is up? remove it with `netns-lab down`"
    )]
    InUse(String),
    #[error("more than {0} nodes: the management network has no address left")]
    Full(usize),
}

/// The management network of one lab.
pub struct Mgmt {
    pub netns: String,
    host_if: String,
}

impl Mgmt {
    pub fn create(reg: &Registry) -> Result<Mgmt, MgmtError> {
        let used = cmd::stdout("ip", &["-4", "-o", "addr", "show", "to", MGMT_NET])?;
        if !used.trim().is_empty() {
            return Err(MgmtError::InUse(used.trim().to_string()));
        }
        let netns = reg.netns_name("mgmt");
        reg.add_netns(&netns)?;
        cmd::run("ip", &["netns", "add", &netns])?;
        // Host-side interface names are machine-wide: derive one from the lab name.
        let h = reg
            .lab()
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
            & 0xffff;
        let host_if = format!("nlm{h:04x}");
        cmd::run(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", "host0", "netns", &netns,
            ],
        )?;
        cmd::ip_batch(
            &netns,
            &[
                "link set lo up".into(),
                "link add br0 type bridge".into(),
                format!("addr add {API_ADDR}/24 dev br0"),
                "link set br0 up".into(),
                "link set host0 master br0 up".into(),
            ],
        )?;
        cmd::run(
            "ip",
            &["addr", "add", &format!("{HOST_ADDR}/24"), "dev", &host_if],
        )?;
        cmd::run("ip", &["link", "set", &host_if, "up"])?;
        Ok(Mgmt { netns, host_if })
    }

    /// Connects a node namespace (once); returns its management address.
    pub fn attach(&self, node_ns: &str, index: usize) -> Result<Ipv4Addr, MgmtError> {
        let host_octet = usize::from(NODE_BASE) + index;
        if host_octet >= usize::from(HOST_ADDR.octets()[3]) {
            return Err(MgmtError::Full(index));
        }
        let addr = Ipv4Addr::new(172, 31, 254, host_octet as u8);
        let port = format!("m{index}");
        let present = cmd::stdout("ip", &["-n", node_ns, "-o", "link", "show", "mgmt0"]);
        if present.is_ok_and(|s| !s.trim().is_empty()) {
            return Ok(addr);
        }
        cmd::ip_batch(
            &self.netns,
            &[
                format!("link add {port} type veth peer name mgmt0 netns {node_ns}"),
                format!("link set {port} master br0 up"),
            ],
        )?;
        cmd::ip_batch(
            node_ns,
            &[
                format!("addr add {addr}/24 dev mgmt0"),
                "link set mgmt0 up".into(),
            ],
        )?;
        Ok(addr)
    }

    pub fn host_interface(&self) -> &str {
        &self.host_if
    }
}
