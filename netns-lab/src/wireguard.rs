//! Userspace WireGuard for one lab node: a `boringtun-cli` daemon inside the node's namespace,
//! configured over its UAPI socket with `wg`.
//!
//! The node agent library has no WireGuard seam yet, so the lab drives the device itself from
//! the plan's `WireGuardConfig`, respecting boringtun 0.7.1's quirks: one peer per request, and
//! a changed peer is removed and re-added in separate requests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use unbounded_net::core::{WireGuardConfig, WireGuardPeer};

use crate::cmd::{self, CmdError};

/// Where boringtun puts its UAPI sockets (shared by every namespace: names must be unique
/// machine-wide).
pub const UAPI_DIR: &str = "/var/run/wireguard";

#[derive(Debug, thiserror::Error)]
pub enum WireGuardError {
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error(
        "boringtun-cli for {dev} did not start: {detail} (install it: cargo install boringtun-cli --version 0.7.1 --locked)"
    )]
    Start { dev: String, detail: String },
    #[error("writing key {path}: {source}")]
    Key {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A node's key pair, generated on the node (`wg genkey`), private key mode 0600.
pub fn generate_key(dir: &Path, node: &str) -> Result<(PathBuf, String), WireGuardError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|source| WireGuardError::Key {
        path: dir.into(),
        source,
    })?;
    let private = cmd::stdout("wg", &["genkey"])?;
    let public = cmd::run_with_input("wg", &["pubkey"], Some(&private))?;
    let path = dir.join(format!("{node}.key"));
    std::fs::write(&path, private.trim())
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)))
        .map_err(|source| WireGuardError::Key {
            path: path.clone(),
            source,
        })?;
    Ok((
        path,
        String::from_utf8_lossy(&public.stdout).trim().to_string(),
    ))
}

/// `cfg` with every shared prefix kept only on its first healthy peer (by name).
///
/// A peer's own prefixes stay with it as more specific entries (`own`: peer → its pod CIDRs),
/// so traffic its own pods send through it passes WireGuard's source check even while a
/// shared pool prefix is on a sibling. Return traffic that another host's ECMP hashes onto
/// the sibling is still dropped by that check: ECMP over WireGuard peers of one device does
/// not work, which the lab reports as failed pairs (see the node agent issue).
pub fn effective(
    cfg: &WireGuardConfig,
    unhealthy: &BTreeSet<String>,
    own: &BTreeMap<String, Vec<ipnet::IpNet>>,
) -> WireGuardConfig {
    let mut owners: BTreeMap<ipnet::IpNet, Vec<&String>> = BTreeMap::new();
    for (name, p) in &cfg.peers {
        for a in &p.allowed_ips {
            owners.entry(*a).or_default().push(name);
        }
    }
    let mut out = cfg.clone();
    for (prefix, names) in owners.iter().filter(|(_, n)| n.len() > 1) {
        let keep = names
            .iter()
            .find(|n| !unhealthy.contains(n.as_str()))
            .unwrap_or(&names[0]);
        for n in names.iter().filter(|n| *n != keep) {
            let peer = out.peers.get_mut(n.as_str()).expect("listed");
            peer.allowed_ips.retain(|a| a != prefix);
        }
    }
    for (name, peer) in out.peers.iter_mut() {
        for c in own.get(name).into_iter().flatten() {
            let shared = owners.get(c).is_some_and(|o| o.len() > 1);
            let covered = peer.allowed_ips.iter().any(|a| a.contains(c));
            if !covered && !shared && !peer.allowed_ips.contains(c) {
                peer.allowed_ips.push(*c);
            }
        }
        peer.allowed_ips.sort();
    }
    out
}

/// One node's userspace WireGuard device.
pub struct WireGuardDevice {
    pub dev: String,
    netns: String,
    key_file: PathBuf,
    daemon: Option<Child>,
    applied: BTreeMap<String, WireGuardPeer>,
    listen_port: Option<u16>,
}

impl WireGuardDevice {
    pub fn new(dev: &str, netns: &str, key_file: &Path) -> Self {
        WireGuardDevice {
            dev: dev.into(),
            netns: netns.into(),
            key_file: key_file.into(),
            daemon: None,
            applied: BTreeMap::new(),
            listen_port: None,
        }
    }

    pub fn socket_path(&self) -> PathBuf {
        Path::new(UAPI_DIR).join(format!("{}.sock", self.dev))
    }

    fn wg(&self, args: &[&str]) -> Result<(), CmdError> {
        let mut full = vec!["netns", "exec", &self.netns, "wg"];
        full.extend_from_slice(args);
        cmd::run("ip", &full).map(|_| ())
    }

    /// Where the peers last applied are recorded: boringtun's readback omits public keys, so
    /// a restarted agent adopts the running daemon from this record instead of re-adding
    /// peers (which would reset their sessions, or crash boringtun 0.7.1 on a changed peer).
    fn record_path(&self) -> PathBuf {
        self.key_file.with_extension("peers.json")
    }

    fn save_record(&self) {
        if let Ok(body) = serde_json::to_vec(&(&self.listen_port, &self.applied)) {
            let _ = std::fs::write(self.record_path(), body);
        }
    }

    /// Starts the daemon if it is not running; a live daemon (its UAPI socket accepts a
    /// connection) is adopted with the peers recorded for it.
    pub fn ensure_running(&mut self, log: &Path, mtu: u32) -> Result<(), WireGuardError> {
        if std::os::unix::net::UnixStream::connect(self.socket_path()).is_ok() {
            if self.listen_port.is_none()
                && let Ok(bytes) = std::fs::read(self.record_path())
                && let Ok((port, peers)) = serde_json::from_slice(&bytes)
            {
                self.listen_port = port;
                self.applied = peers;
            }
            return Ok(());
        }
        // A socket left by a killed daemon.
        let _ = std::fs::remove_file(self.socket_path());
        let _ = std::fs::remove_file(self.record_path());
        self.applied.clear();
        self.listen_port = None;
        let logf = log.display().to_string();
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.netns,
            "boringtun-cli",
            "-f",
            "--disable-drop-privileges",
        ])
        .args(["-t", "1", "-l", &logf, &self.dev])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        crate::signals::unblock_for_children(&mut c);
        let child = c.spawn().map_err(|e| WireGuardError::Start {
            dev: self.dev.clone(),
            detail: e.to_string(),
        })?;
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.socket_path().exists() {
            if Instant::now() > deadline {
                return Err(WireGuardError::Start {
                    dev: self.dev.clone(),
                    detail: format!("no UAPI socket {} after 5 s", self.socket_path().display()),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        cmd::ip_batch(
            &self.netns,
            &[format!("link set {} mtu {mtu} up", self.dev)],
        )?;
        Ok(())
    }

    /// Brings the device's peers in line with `cfg`, with prefixes that several peers carry
    /// (ECMP over gateways) given to one healthy peer: WireGuard routes by allowed IPs, so on
    /// one device a prefix belongs to exactly one peer, and failover moves it.
    pub fn sync(
        &mut self,
        cfg: &WireGuardConfig,
        unhealthy: &BTreeSet<String>,
        own: &BTreeMap<String, Vec<ipnet::IpNet>>,
    ) -> Result<(), WireGuardError> {
        let cfg = &effective(cfg, unhealthy, own);
        if self.listen_port != Some(cfg.listen_port) {
            let port = cfg.listen_port.to_string();
            let key = self.key_file.display().to_string();
            self.wg(&["set", &self.dev, "listen-port", &port, "private-key", &key])?;
            self.listen_port = Some(cfg.listen_port);
        }
        let stale: Vec<String> = self
            .applied
            .iter()
            .filter(|(name, p)| cfg.peers.get(*name) != Some(*p))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            let old = self.applied.remove(&name).expect("listed");
            self.wg(&["set", &self.dev, "peer", &old.public_key, "remove"])?;
            self.save_record();
        }
        for (name, p) in &cfg.peers {
            if self.applied.contains_key(name) {
                continue;
            }
            let allowed = p
                .allowed_ips
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let mut args = vec![
                "set".to_string(),
                self.dev.clone(),
                "peer".into(),
                p.public_key.clone(),
            ];
            args.extend(["allowed-ips".into(), allowed]);
            if let Some(ep) = p.endpoint {
                args.extend(["endpoint".into(), ep.to_string()]);
            }
            if let Some(k) = p.persistent_keepalive {
                args.extend(["persistent-keepalive".into(), k.to_string()]);
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            self.wg(&refs)?;
            self.applied.insert(name.clone(), p.clone());
        }
        self.save_record();
        Ok(())
    }
}
