//! A minimal CNI runtime for tests: runs a conflist's plugin chain (ADD in order, DEL in
//! reverse) the way container runtimes do, feeding each plugin the previous result. Plugins
//! run in the node's namespace; the pod's namespace is passed as `CNI_NETNS`.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this support module"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub const CNI_BIN: &str = "/usr/lib/cni";

/// Why the Debian plugins cannot be used, if they cannot.
pub fn plugins_missing() -> Option<String> {
    ["bridge", "host-local", "portmap", "loopback"]
        .iter()
        .find(|p| !Path::new(CNI_BIN).join(p).exists())
        .map(|p| format!("{CNI_BIN}/{p} is missing (apt-get install containernetworking-plugins)"))
}

/// One attachment of a pod to the network; DEL runs on drop, even when the test fails.
pub struct Attachment {
    node_ns: String,
    pod_netns: PathBuf,
    conflist: Value,
    data_dir: PathBuf,
    container: String,
    pub result: Value,
}

fn invoke(
    node_ns: &str,
    command: &str,
    container: &str,
    netns: &Path,
    conf: &Value,
) -> Result<Value, String> {
    let plugin = conf["type"].as_str().ok_or("plugin without type")?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", node_ns])
        .arg(Path::new(CNI_BIN).join(plugin))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_BIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {plugin}: {e}"))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{plugin} {command} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if out.stdout.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{plugin} output: {e}"))
}

/// The network config handed to one plugin of the chain. host-local's state goes to
/// `data_dir` so the test never touches the machine's `/var/lib/cni`.
fn plugin_conf(list: &Value, plugin: &Value, prev: &Value, data_dir: &Path) -> Value {
    let mut conf = plugin.clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    if conf.get("ipam").is_some() {
        conf["ipam"]["dataDir"] = Value::String(data_dir.display().to_string());
    }
    if !prev.is_null() {
        conf["prevResult"] = prev.clone();
    }
    conf
}

/// Runs ADD of the whole chain in `conflist_path` for a pod in `pod_ns`.
pub fn add(
    node_ns: &str,
    pod_ns: &str,
    conflist_path: &Path,
    data_dir: &Path,
) -> Result<Attachment, String> {
    let text = std::fs::read_to_string(conflist_path).map_err(|e| e.to_string())?;
    let list: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let container = format!("test-{pod_ns}");
    let pod_netns = PathBuf::from(format!("/run/netns/{pod_ns}"));
    let mut att = Attachment {
        node_ns: node_ns.to_string(),
        pod_netns: pod_netns.clone(),
        conflist: list.clone(),
        data_dir: data_dir.to_path_buf(),
        container: container.clone(),
        result: Value::Null,
    };
    for plugin in list["plugins"]
        .as_array()
        .ok_or("conflist without plugins")?
    {
        let conf = plugin_conf(&list, plugin, &att.result, data_dir);
        let out = invoke(node_ns, "ADD", &container, &pod_netns, &conf)?;
        if !out.is_null() {
            att.result = out;
        }
    }
    Ok(att)
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Some(plugins) = self.conflist["plugins"].as_array() {
            for plugin in plugins.iter().rev() {
                let conf = plugin_conf(&self.conflist, plugin, &self.result, &self.data_dir);
                let _ = invoke(
                    &self.node_ns,
                    "DEL",
                    &self.container,
                    &self.pod_netns,
                    &conf,
                );
            }
        }
    }
}
