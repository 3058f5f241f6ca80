//! Test pods: namespaces attached to a node by the real CNI plugins, driven with the conflist
//! the node agent wrote — the way a container runtime does it (the plugin chain, each plugin
//! receiving the previous result).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// Where Debian's containernetworking-plugins live.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("conflist {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("conflist {path} is not a CNI conflist: {why}")]
    BadConflist { path: PathBuf, why: String },
    #[error("CNI plugin {plugin} {command} for pod {pod}: {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        pod: String,
        message: String,
    },
    #[error(
        "CNI plugin {plugin} is missing from {CNI_BIN_DIR}: apt-get install -y --no-install-recommends containernetworking-plugins"
    )]
    MissingPlugin { plugin: String },
    #[error("CNI result for pod {pod} carries no IPv4 address: {result}")]
    NoAddress { pod: String, result: String },
}

/// A pod attached to a node.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Pod {
    pub name: String,
    pub node: String,
    /// Full namespace name.
    pub netns: String,
    pub ip: Ipv4Addr,
}

/// Reads a conflist and points host-local's state at a per-node directory: on a real node
/// `/var/lib/cni` is the node's own disk, here every node shares one filesystem.
pub fn load_conflist(path: &Path, ipam_data_dir: &Path) -> Result<Value, PodError> {
    let text = std::fs::read_to_string(path).map_err(|source| PodError::Read {
        path: path.into(),
        source,
    })?;
    let mut conf: Value = serde_json::from_str(&text).map_err(|e| PodError::BadConflist {
        path: path.into(),
        why: e.to_string(),
    })?;
    let plugins = conf
        .get_mut("plugins")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| PodError::BadConflist {
            path: path.into(),
            why: "no `plugins` list".into(),
        })?;
    for p in plugins {
        if let Some(ipam) = p.get_mut("ipam").and_then(Value::as_object_mut)
            && ipam.get("type").and_then(Value::as_str) == Some("host-local")
        {
            ipam.insert("dataDir".into(), json!(ipam_data_dir));
        }
    }
    Ok(conf)
}

fn exec_plugin(
    node_netns: &str,
    pod: &str,
    pod_netns: &str,
    command: &'static str,
    plugin_conf: &Value,
) -> Result<Value, PodError> {
    let plugin = plugin_conf["type"].as_str().unwrap_or_default().to_string();
    let bin = Path::new(CNI_BIN_DIR).join(&plugin);
    if !bin.is_file() {
        return Err(PodError::MissingPlugin { plugin });
    }
    let err = |message: String| PodError::Plugin {
        plugin: plugin.clone(),
        command,
        pod: pod.into(),
        message,
    };
    let mut plugin_cmd = Command::new("ip");
    crate::signals::unblock_for_children(&mut plugin_cmd);
    let mut child = plugin_cmd
        .args(["netns", "exec", node_netns])
        .arg(&bin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", pod)
        .env("CNI_NETNS", format!("/var/run/netns/{pod_netns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_BIN_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(plugin_conf.to_string().as_bytes())
        .map_err(|e| err(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(format!(
            "{} {}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if out.stdout.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out.stdout).map_err(|e| err(format!("unparsable result: {e}")))
}

fn plugin_configs(conflist: &Value) -> Vec<Value> {
    let name = conflist["name"].clone();
    let version = conflist["cniVersion"].clone();
    conflist["plugins"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let mut p = p.clone();
                    p["name"] = name.clone();
                    p["cniVersion"] = version.clone();
                    p
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the conflist's ADD chain for a pod whose namespace already exists.
pub fn attach(
    conflist: &Value,
    node: &str,
    node_netns: &str,
    pod: &str,
    pod_netns: &str,
) -> Result<Pod, PodError> {
    let mut prev = Value::Null;
    for mut conf in plugin_configs(conflist) {
        if !prev.is_null() {
            conf["prevResult"] = prev.clone();
        }
        let res = exec_plugin(node_netns, pod, pod_netns, "ADD", &conf)?;
        if !res.is_null() {
            prev = res;
        }
    }
    let ip = prev["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["address"].as_str())
        .filter_map(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok())
        .next()
        .ok_or_else(|| PodError::NoAddress {
            pod: pod.into(),
            result: prev.to_string(),
        })?;
    Ok(Pod {
        name: pod.into(),
        node: node.into(),
        netns: pod_netns.into(),
        ip,
    })
}

/// Runs the DEL chain in reverse (errors collected; the namespace is deleted anyway).
pub fn detach(conflist: &Value, node_netns: &str, pod: &str, pod_netns: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for conf in plugin_configs(conflist).iter().rev() {
        if let Err(e) = exec_plugin(node_netns, pod, pod_netns, "DEL", conf) {
            errors.push(e.to_string());
        }
    }
    errors
}
