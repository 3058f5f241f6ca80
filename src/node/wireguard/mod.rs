//! WireGuard through `wireguard-control`: kernel WireGuard where the kernel has it, the
//! userspace implementation (boringtun over TUN, started by the agent) where it does not,
//! chosen automatically and reported.
//!
//! boringtun quirks respected here: a changed peer is removed and re-added in two separate
//! requests (modifying one in place hangs the daemon); one peer per request (endpoint and
//! keepalive leak between peers of one request); its UAPI socket directory is shared by all
//! namespaces, so interface names must be unique machine-wide; its readback has no private
//! key, so the device identity is checked through `own_public_key` instead.

pub mod keys;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::{Handle, LinkUnspec, LinkWireguard};
use tracing::{info, warn};
use wireguard_control::{Backend, Device, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder};

use crate::core::dataplane::WireGuardPeer;
use keys::PrivateKey;

/// Where userspace implementations put their UAPI sockets.
pub const UAPI_DIR: &str = "/var/run/wireguard";
/// The userspace implementation the agent starts.
pub const USERSPACE_BINARY: &str = "boringtun-cli";

#[derive(Debug, thiserror::Error)]
pub enum WireGuardError {
    #[error("interface name {0:?} is not a valid WireGuard interface name")]
    Name(String),
    #[error("cannot create WireGuard device {name}: {message}")]
    Create { name: String, message: String },
    #[error(
        "kernel has no WireGuard and {USERSPACE_BINARY} could not be started for {name}: {source} (install it with scripts/setup.sh)"
    )]
    Userspace {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{USERSPACE_BINARY} did not open its socket for {name} within {0:?}",
        Duration::from_secs(5)
    )]
    UserspaceTimeout { name: String },
    #[error("WireGuard device {name}: {op} failed: {source}")]
    Uapi {
        name: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A peer the agent refused to configure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("WireGuard peer {peer}: public key {key:?} is not a 32-byte base64 key; peer skipped")]
pub struct BadPeerKey {
    pub peer: String,
    pub key: String,
}

/// The node's WireGuard device.
#[derive(Debug)]
pub struct WireGuardDevice {
    pub name: String,
    pub backend: Backend,
    /// PID of the boringtun daemon if this agent started it (left running on agent exit so
    /// the data plane survives restarts; `--cleanup` stops it).
    pub started_daemon: Option<u32>,
    iface: InterfaceName,
}

/// A peer as the device reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedPeer {
    pub public_key: String,
    pub endpoint: Option<SocketAddr>,
    /// Sorted.
    pub allowed_ips: Vec<IpNet>,
}

/// What one peer sync did.
#[derive(Debug, Default)]
pub struct PeerSyncReport {
    pub identity_set: bool,
    pub added: Vec<String>,
    pub removed: usize,
    pub skipped: Vec<BadPeerKey>,
    /// UAPI / genetlink requests sent.
    pub requests: usize,
}

fn socket_path(name: &str) -> std::path::PathBuf {
    Path::new(UAPI_DIR).join(format!("{name}.sock"))
}

fn userspace_alive(name: &str) -> bool {
    UnixStream::connect(socket_path(name)).is_ok()
}

async fn link_kind(h: &Handle, name: &str) -> Option<Option<String>> {
    use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo};
    let mut s = h.link().get().match_name(name.to_string()).execute();
    let l = s.try_next().await.ok().flatten()?;
    Some(l.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(i) => i.iter().find_map(|x| match x {
            LinkInfo::Kind(k) => Some(k.to_string()),
            _ => None,
        }),
        _ => None,
    }))
}

async fn set_up(h: &Handle, name: &str) -> Result<(), String> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    let l = s
        .try_next()
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no interface {name}"))?;
    h.link()
        .set(LinkUnspec::new_with_index(l.header.index).up().build())
        .execute()
        .await
        .map_err(|e| e.to_string())
}

/// Starts boringtun for `name` in the calling thread's network namespace and returns its
/// PID. It is not killed when the agent exits: the data plane outlives agent restarts.
pub fn start_userspace(name: &str) -> Result<u32, WireGuardError> {
    std::fs::create_dir_all(UAPI_DIR).map_err(|source| WireGuardError::Userspace {
        name: name.to_string(),
        source,
    })?;
    let child = Command::new(USERSPACE_BINARY)
        .args(["--foreground", "--disable-drop-privileges", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| WireGuardError::Userspace {
            name: name.to_string(),
            source,
        })?;
    Ok(child.id())
}

/// Waits until the userspace daemon for `name` answers on its UAPI socket.
pub async fn wait_for_socket(name: &str) -> Result<(), WireGuardError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !userspace_alive(name) {
        if Instant::now() > deadline {
            return Err(WireGuardError::UserspaceTimeout {
                name: name.to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

impl WireGuardDevice {
    /// Adopts or creates the device `name` in the namespace of `handle` (and of the calling
    /// thread, where boringtun is started). `force_userspace` skips the kernel attempt.
    pub async fn ensure(
        handle: &Handle,
        name: &str,
        force_userspace: bool,
    ) -> Result<WireGuardDevice, WireGuardError> {
        let iface: InterfaceName = name
            .parse()
            .map_err(|_| WireGuardError::Name(name.to_string()))?;
        let mut dev = WireGuardDevice {
            name: name.to_string(),
            backend: Backend::Kernel,
            started_daemon: None,
            iface,
        };
        match link_kind(handle, name).await {
            Some(Some(kind)) if kind.eq_ignore_ascii_case("wireguard") => {
                info!(
                    device = name,
                    backend = "kernel",
                    "adopted WireGuard device"
                );
                return Ok(dev);
            }
            Some(_) if userspace_alive(name) => {
                dev.backend = Backend::Userspace;
                set_up(handle, name)
                    .await
                    .map_err(|message| WireGuardError::Create {
                        name: name.to_string(),
                        message,
                    })?;
                info!(
                    device = name,
                    backend = "userspace",
                    "adopted WireGuard device"
                );
                return Ok(dev);
            }
            _ => {}
        }
        if !force_userspace {
            match handle
                .link()
                .add(LinkWireguard::new(name).up().build())
                .execute()
                .await
            {
                Ok(()) => {
                    info!(
                        device = name,
                        backend = "kernel",
                        "created WireGuard device"
                    );
                    return Ok(dev);
                }
                Err(e) => {
                    info!(device = name, error = %e, "kernel WireGuard unavailable; using userspace");
                }
            }
        }
        dev.backend = Backend::Userspace;
        dev.started_daemon = Some(start_userspace(name)?);
        wait_for_socket(name).await?;
        set_up(handle, name)
            .await
            .map_err(|message| WireGuardError::Create {
                name: name.to_string(),
                message,
            })?;
        info!(device = name, backend = "userspace", pid = ?dev.started_daemon, "started boringtun");
        Ok(dev)
    }

    fn uapi(&self, op: &'static str) -> impl Fn(std::io::Error) -> WireGuardError + '_ {
        move |source| WireGuardError::Uapi {
            name: self.name.clone(),
            op,
            source,
        }
    }

    /// The public key the device runs with now, if any.
    fn current_public_key(&self, dev: &Device) -> Option<Key> {
        match self.backend {
            Backend::Kernel => dev.public_key.clone(),
            _ => own_public_key(&self.name),
        }
    }

    /// Makes the device's key, port and peers match; unchanged peers are not touched.
    pub fn configure(
        &self,
        key: &PrivateKey,
        listen_port: u16,
        peers: &BTreeMap<String, WireGuardPeer>,
    ) -> Result<PeerSyncReport, WireGuardError> {
        let mut report = PeerSyncReport::default();
        let dev = Device::get(&self.iface, self.backend).map_err(self.uapi("read"))?;
        report.requests += 1;
        if self.current_public_key(&dev) != Some(key.key().get_public())
            || dev.listen_port != Some(listen_port)
        {
            DeviceUpdate::new()
                .set_private_key(key.key().clone())
                .set_listen_port(listen_port)
                .apply(&self.iface, self.backend)
                .map_err(self.uapi("set key and port"))?;
            report.identity_set = true;
            report.requests += 1;
        }
        let mut desired: BTreeMap<[u8; 32], (&str, &WireGuardPeer)> = BTreeMap::new();
        for (name, p) in peers {
            match Key::from_base64(&p.public_key) {
                Ok(k) => {
                    desired.insert(k.0, (name, p));
                }
                Err(_) => {
                    let bad = BadPeerKey {
                        peer: name.clone(),
                        key: p.public_key.clone(),
                    };
                    warn!(problem = %bad, "skipped WireGuard peer");
                    report.skipped.push(bad);
                }
            }
        }
        let current: BTreeMap<[u8; 32], _> = dev
            .peers
            .iter()
            .map(|p| (p.config.public_key.0, &p.config))
            .collect();
        for (k, cfg) in &current {
            // Kernel WireGuard updates a peer in place (its session survives a change of
            // allowed IPs, e.g. a failover); boringtun must remove it first, in a separate
            // request from the re-add.
            let keep = desired
                .get(k)
                .is_some_and(|(_, want)| self.backend == Backend::Kernel || same_peer(cfg, want));
            if !keep {
                DeviceUpdate::new()
                    .remove_peer_by_key(&cfg.public_key)
                    .apply(&self.iface, self.backend)
                    .map_err(self.uapi("remove peer"))?;
                report.removed += 1;
                report.requests += 1;
            }
        }
        for (k, (name, want)) in &desired {
            if current.get(k).is_some_and(|cfg| same_peer(cfg, want)) {
                continue;
            }
            let mut b = PeerConfigBuilder::new(&Key(*k)).replace_allowed_ips();
            if let Some(ep) = want.endpoint {
                b = b.set_endpoint(ep);
            }
            if let Some(ka) = want.persistent_keepalive {
                b = b.set_persistent_keepalive_interval(ka);
            }
            for ip in &want.allowed_ips {
                b = b.add_allowed_ip(ip.addr(), ip.prefix_len());
            }
            // One peer per request (boringtun).
            DeviceUpdate::new()
                .add_peer(b)
                .apply(&self.iface, self.backend)
                .map_err(self.uapi("add peer"))?;
            report.added.push(name.to_string());
            report.requests += 1;
        }
        Ok(report)
    }

    /// Peers as the device reports them.
    pub fn peers(&self) -> Result<Vec<ObservedPeer>, WireGuardError> {
        let dev = Device::get(&self.iface, self.backend).map_err(self.uapi("read"))?;
        Ok(dev
            .peers
            .iter()
            .map(|p| ObservedPeer {
                public_key: p.config.public_key.to_base64(),
                endpoint: p.config.endpoint,
                allowed_ips: allowed(&p.config.allowed_ips),
            })
            .collect())
    }
}

fn allowed(ips: &[wireguard_control::AllowedIp]) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = ips
        .iter()
        .filter_map(|a| IpNet::new(a.address, a.cidr).ok())
        .collect();
    v.sort();
    v
}

fn same_peer(have: &wireguard_control::PeerConfig, want: &WireGuardPeer) -> bool {
    let mut want_ips = want.allowed_ips.clone();
    want_ips.sort();
    want_ips.dedup();
    let keepalive = have.persistent_keepalive_interval.filter(|k| *k != 0);
    // A peer without a configured endpoint reports the one it roamed from: not a change.
    let endpoint_ok = want.endpoint.is_none() || have.endpoint == want.endpoint;
    endpoint_ok && keepalive == want.persistent_keepalive && allowed(&have.allowed_ips) == want_ips
}

/// `own_public_key` from a userspace implementation's UAPI `get` (wireguard-control does
/// not parse it, and boringtun does not return the private key).
fn own_public_key(name: &str) -> Option<Key> {
    let mut sock = UnixStream::connect(socket_path(name)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    sock.write_all(b"get=1\n\n").ok()?;
    for line in BufReader::new(sock).lines() {
        let line = line.ok()?;
        if line.is_empty() {
            break;
        }
        if let Some(hex) = line.strip_prefix("own_public_key=") {
            return Key::from_hex(hex).ok();
        }
    }
    None
}
