//! The CNI conflist the agent writes for the standard plugins: bridge `cbr0` with host-local
//! IPAM (one range per address family), portmap and loopback.
//!
//! Written atomically (temporary file in the same directory, then rename) so the container
//! runtime never reads half a file, only when the content changes, and never over a file that
//! another CNI wrote unless the operator passes `--force-cni`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::core::dataplane::CniConfig;

/// `name` of our network; a file at our path with another name belongs to someone else.
pub const NETWORK_NAME: &str = "unbounded-net";
/// File name of our conflist (sorts early so container runtimes pick it).
pub const CONFLIST_FILE: &str = "10-unbounded-net.conflist";
/// Bridge the pods attach to.
pub const BRIDGE: &str = "cbr0";

/// What [`write_conflist`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CniOutcome {
    /// `manageCniPlugin: false`: nothing written, nothing touched.
    NotManaged,
    /// The node has no pod CIDR yet.
    NoPodCidr,
    Unchanged(PathBuf),
    Written(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error(
        "{path} belongs to another CNI ({found}); refusing to overwrite it (pass --force-cni to take it over)"
    )]
    Foreign { path: PathBuf, found: String },
    #[error("cannot write CNI config {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The conflist JSON for `cni`.
pub fn render_conflist(cni: &CniConfig) -> String {
    let ranges: Vec<_> = cni
        .ranges
        .iter()
        .map(|r| json!([{ "subnet": r.to_string() }]))
        .collect();
    let mut routes = Vec::new();
    if cni.ranges.iter().any(|r| r.addr().is_ipv4()) {
        routes.push(json!({ "dst": "0.0.0.0/0" }));
    }
    if cni.ranges.iter().any(|r| r.addr().is_ipv6()) {
        routes.push(json!({ "dst": "::/0" }));
    }
    let doc = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "isDefaultGateway": false,
                // Masquerade is the agent's own nftables table, not the bridge plugin's.
                "ipMasq": false,
                "hairpinMode": true,
                "mtu": cni.mtu,
                "ipam": { "type": "host-local", "ranges": ranges, "routes": routes },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
            { "type": "loopback" },
        ],
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// Writes the conflist into `dir` if managed and changed.
pub fn write_conflist(dir: &Path, cni: &CniConfig, force: bool) -> Result<CniOutcome, CniError> {
    if !cni.manage {
        return Ok(CniOutcome::NotManaged);
    }
    if cni.ranges.is_empty() {
        return Ok(CniOutcome::NoPodCidr);
    }
    let path = dir.join(CONFLIST_FILE);
    let io = |source| CniError::Io {
        path: path.clone(),
        source,
    };
    let content = render_conflist(cni);
    match fs::read_to_string(&path) {
        Ok(existing) if existing == content => return Ok(CniOutcome::Unchanged(path)),
        Ok(existing) => {
            let name = serde_json::from_str::<serde_json::Value>(&existing)
                .ok()
                .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(String::from));
            if name.as_deref() != Some(NETWORK_NAME) && !force {
                return Err(CniError::Foreign {
                    path,
                    found: name.map_or("unparseable content".into(), |n| format!("network {n:?}")),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".{CONFLIST_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(CniOutcome::Written(path))
}

/// Removes our conflist (for `--cleanup`); a foreign file at the path is left alone.
pub fn remove_conflist(dir: &Path) -> Result<bool, CniError> {
    let path = dir.join(CONFLIST_FILE);
    match fs::read_to_string(&path) {
        Ok(s) if s.contains(&format!("\"name\": \"{NETWORK_NAME}\"")) => {
            fs::remove_file(&path).map_err(|source| CniError::Io { path, source })?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("unet-cni-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn cni() -> CniConfig {
        CniConfig {
            manage: true,
            ranges: vec![
                "10.0.1.0/24".parse().unwrap(),
                "fd00:1::/64".parse().unwrap(),
            ],
            mtu: 1390,
        }
    }

    #[test]
    fn conflist_has_one_range_per_family_and_the_mtu() {
        let v: serde_json::Value = serde_json::from_str(&render_conflist(&cni())).unwrap();
        let bridge = &v["plugins"][0];
        assert_eq!(bridge["bridge"], BRIDGE);
        assert_eq!(bridge["mtu"], 1390);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.0.1.0/24");
        assert_eq!(bridge["ipam"]["ranges"][1][0]["subnet"], "fd00:1::/64");
        let types: Vec<_> = v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(types, ["bridge", "portmap", "loopback"]);
    }

    #[test]
    fn writes_once_then_unchanged_and_unmanaged_writes_nothing() {
        let dir = TempDir::new("write");
        let out = write_conflist(&dir.0, &cni(), false).unwrap();
        assert!(matches!(out, CniOutcome::Written(_)));
        assert!(matches!(
            write_conflist(&dir.0, &cni(), false).unwrap(),
            CniOutcome::Unchanged(_)
        ));
        let mut off = cni();
        off.manage = false;
        fs::remove_file(dir.0.join(CONFLIST_FILE)).unwrap();
        assert_eq!(
            write_conflist(&dir.0, &off, false).unwrap(),
            CniOutcome::NotManaged
        );
        assert!(!dir.0.join(CONFLIST_FILE).exists());
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 0);
    }

    #[test]
    fn foreign_config_is_refused_unless_forced() {
        let dir = TempDir::new("foreign");
        fs::create_dir_all(&dir.0).unwrap();
        let foreign = r#"{"cniVersion":"1.0.0","name":"calico","plugins":[]}"#;
        fs::write(dir.0.join(CONFLIST_FILE), foreign).unwrap();
        let err = write_conflist(&dir.0, &cni(), false).unwrap_err();
        assert!(err.to_string().contains("--force-cni"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.0.join(CONFLIST_FILE)).unwrap(),
            foreign
        );
        assert!(matches!(
            write_conflist(&dir.0, &cni(), true).unwrap(),
            CniOutcome::Written(_)
        ));
        assert!(remove_conflist(&dir.0).unwrap());
        assert!(!dir.0.join(CONFLIST_FILE).exists());
    }
}
