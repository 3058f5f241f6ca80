//! What of the kind suite (kind/, .github/workflows/kind.yml) can be checked without Docker:
//! every YAML file parses, the cluster config keeps kube-controller-manager away from pod
//! CIDRs, the topology template renders the way kind/run.sh renders it and — with an example
//! kind subnet — passes a server-side dry-run against a real kube-apiserver with our CRDs
//! installed, as does the test workload; and the scripts pass `bash -n` and shellcheck.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/apiserver_controller.rs"]
mod apiserver_controller;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde::Deserialize as _;
use serde_json::json;

use apiserver::{ControlPlane, repo_root};

/// Same as `report_skip` in tests/support/netns.rs (that module drags in the netns harness).
fn report_skip(why: &str) {
    println!("SKIPPED {why}");
    if let Some(path) = std::env::var_os("UNBOUNDED_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "SKIPPED {why}");
        }
    }
}

fn files_under(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(files_under(&path, suffixes));
        } else if suffixes.iter().any(|s| path.to_string_lossy().ends_with(s)) {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn yaml_docs(text: &str, origin: &Path) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", origin.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// kind/run.sh's rendering: each placeholder becomes a flow-list body of /32 node CIDRs.
fn render_topology(site_a: &[&str], site_b: &[&str]) -> String {
    let template = fs::read_to_string(repo_root().join("kind/manifests/topology.yaml.in"))
        .expect("read kind/manifests/topology.yaml.in");
    let cidrs = |ips: &[&str]| {
        ips.iter()
            .map(|ip| format!("{ip}/32"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    template
        .replace("@SITE_A_NODE_CIDRS@", &cidrs(site_a))
        .replace("@SITE_B_NODE_CIDRS@", &cidrs(site_b))
}

/// `@NAME@` tokens (uppercase and underscores), as kind/run.sh's leftover check sees them.
fn placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices('@') {
        let rest = &text[i + 1..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].starts_with('@') {
            found.push(format!("@{name}@"));
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_kind_suite_yaml_file_parses() {
    let root = repo_root();
    let mut files = files_under(&root.join("kind"), &[".yaml", ".yml"]);
    files.extend(files_under(&root.join(".github"), &[".yaml", ".yml"]));
    assert!(
        files.len() >= 3,
        "expected kind/cluster.yaml, kind/manifests/netcheck.yaml and the workflow, found {files:?}"
    );
    for path in &files {
        let text = fs::read_to_string(path).expect("read YAML");
        assert!(
            !yaml_docs(&text, path).is_empty(),
            "{} is empty",
            path.display()
        );
    }
    let rendered = render_topology(&["172.18.0.2", "172.18.0.3"], &["172.18.0.4", "172.18.0.5"]);
    assert_eq!(placeholders(&rendered), Vec::<String>::new(), "{rendered}");
    assert_eq!(
        placeholders(&fs::read_to_string(root.join("kind/manifests/topology.yaml.in")).unwrap()),
        ["@SITE_A_NODE_CIDRS@", "@SITE_B_NODE_CIDRS@"],
        "kind/run.sh fills exactly these"
    );
    let docs = yaml_docs(&rendered, Path::new("kind/manifests/topology.yaml.in"));
    assert_eq!(
        docs.len(),
        7,
        "two Sites, two pools, two assignments, one peering"
    );
}

#[test]
fn cluster_config_leaves_pod_cidrs_to_the_controller() {
    let path = repo_root().join("kind/cluster.yaml");
    let text = fs::read_to_string(&path).expect("read kind/cluster.yaml");
    let [cluster] = yaml_docs(&text, &path).try_into().expect("one document");
    assert_eq!(cluster["apiVersion"], "kind.x-k8s.io/v1alpha4");
    assert_eq!(cluster["networking"]["disableDefaultCNI"], true);
    let patches = cluster["kubeadmConfigPatches"]
        .as_sequence()
        .expect("kubeadmConfigPatches");
    let kcm_off = patches.iter().any(|p| {
        let patch: serde_yaml::Value =
            serde_yaml::from_str(p.as_str().expect("a patch is a string")).expect("patch YAML");
        patch["kind"] == "ClusterConfiguration"
            && patch["controllerManager"]["extraArgs"]["allocate-node-cidrs"] == "false"
    });
    assert!(kcm_off, "no patch sets allocate-node-cidrs: \"false\"");
    // kube-proxy treats podSubnet as the cluster CIDR: it must hold every Site's pod blocks.
    let pod_subnet: Ipv4Net = cluster["networking"]["podSubnet"]
        .as_str()
        .expect("podSubnet")
        .parse()
        .expect("podSubnet is an IPv4 CIDR");
    let topology = render_topology(&["172.18.0.2"], &["172.18.0.3"]);
    let mut blocks = 0;
    for doc in yaml_docs(&topology, Path::new("topology")) {
        if doc["kind"] != "Site" {
            continue;
        }
        for assignment in doc["spec"]["podCidrAssignments"].as_sequence().unwrap() {
            for block in assignment["cidrBlocks"].as_sequence().unwrap() {
                let block: Ipv4Net = block.as_str().unwrap().parse().expect("IPv4 block");
                assert!(
                    pod_subnet.contains(&block),
                    "{block} is outside {pod_subnet}"
                );
                blocks += 1;
            }
        }
    }
    assert_eq!(blocks, 2);
    let roles: Vec<_> = cluster["nodes"]
        .as_sequence()
        .expect("nodes")
        .iter()
        .map(|n| n["role"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| *r == "worker").count(),
        3,
        "{roles:?}"
    );
}

#[test]
fn kind_scripts_pass_bash_n_and_shellcheck() {
    let scripts = files_under(&repo_root().join("kind"), &[".sh"]);
    assert!(!scripts.is_empty(), "no scripts under kind/");
    for script in &scripts {
        let out = Command::new("bash")
            .arg("-n")
            .arg(script)
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "bash -n {}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let Ok(out) = Command::new("shellcheck")
        .arg("-x")
        .args(&scripts)
        .current_dir(repo_root().join("kind"))
        .output()
    else {
        report_skip(
            "kind_scripts_pass_bash_n_and_shellcheck: shellcheck not installed (apt-get install shellcheck); only bash -n ran",
        );
        return;
    };
    assert!(
        out.status.success(),
        "shellcheck:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dry_run(cp: &ControlPlane, file: &Path) -> String {
    let out = cp.kubectl(&[
        "apply",
        "--dry-run=server",
        "-f",
        file.to_str().expect("utf-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "dry-run of {} failed: {}\n{stdout}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn topology_and_workload_pass_server_side_dry_run() {
    let cp = ControlPlane::start().await;
    // The docker network `kind` is usually 172.18.0.0/16, nodes from .2 upwards.
    let topology = cp.dir().join("topology.yaml");
    fs::write(
        &topology,
        render_topology(&["172.18.0.2", "172.18.0.3"], &["172.18.0.4", "172.18.0.5"]),
    )
    .expect("write rendered topology");
    let out = dry_run(&cp, &topology);
    for object in [
        "site.net.unbounded-cloud.io/kind-site-a",
        "site.net.unbounded-cloud.io/kind-site-b",
        "gatewaypool.net.unbounded-cloud.io/kind-gw-a",
        "gatewaypool.net.unbounded-cloud.io/kind-gw-b",
        "sitegatewaypoolassignment.net.unbounded-cloud.io/kind-site-a-via-gw-a",
        "sitegatewaypoolassignment.net.unbounded-cloud.io/kind-site-b-via-gw-b",
        "gatewaypoolpeering.net.unbounded-cloud.io/kind-gw-a-gw-b",
    ] {
        assert!(
            out.contains(&format!("{object} created (server dry run)")),
            "{object} missing from the dry-run output:\n{out}"
        );
    }

    // A namespaced object cannot be dry-run into a namespace that does not exist yet.
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "unbounded-net-check"}}))
            .expect("namespace");
    Api::<Namespace>::all(cp.client().await)
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let out = dry_run(&cp, &repo_root().join("kind/manifests/netcheck.yaml"));
    assert!(
        out.contains("daemonset.apps/netcheck created (server dry run)"),
        "{out}"
    );

    // The check is not vacuous: a node CIDR with host bits is refused by the same server.
    let bad = cp.dir().join("bad-topology.yaml");
    fs::write(
        &bad,
        render_topology(&["172.18.0.2"], &["172.18.0.4"]).replace("172.18.0.4/32", "172.18.0.4/16"),
    )
    .expect("write bad topology");
    let refused = cp.kubectl(&["apply", "--dry-run=server", "-f", bad.to_str().unwrap()]);
    assert!(
        !refused.status.success(),
        "a host-bits nodeCidr was accepted: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
}

/// Runs `script` in bash with kind/lib/{common,cluster}.sh sourced, the built kubectl (not
/// the distribution's) on PATH against `cp`, and a stand-in `docker` that only answers
/// `docker network inspect kind` with `subnets` (one per line, as docker prints them).
fn run_cluster_sh(cp: &ControlPlane, subnets: &str, script: &str) -> (bool, String) {
    let bin = cp.dir().join("kind-bin");
    fs::create_dir_all(&bin).expect("bin dir");
    let kubectl = bin.join("kubectl");
    let _ = fs::remove_file(&kubectl);
    std::os::unix::fs::symlink(cp.kubectl_path(), &kubectl).expect("link kubectl");
    let docker = bin.join("docker");
    fs::write(
        &docker,
        "#!/bin/sh\n[ \"$1 $2 $3\" = \"network inspect kind\" ] || { echo \"stand-in docker: $*\" >&2; exit 1; }\nprintf '%b\\n' \"$FAKE_KIND_SUBNETS\"\n",
    )
    .expect("write stand-in docker");
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&docker, fs::Permissions::from_mode(0o755)).expect("chmod docker");
    let kind_dir = repo_root().join("kind");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\nsource \"$KIND_DIR/lib/common.sh\"\nsource \"$KIND_DIR/lib/cluster.sh\"\n{script}"
        ))
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
        .env("KUBECONFIG", &cp.kubeconfig)
        .env("KIND_DIR", &kind_dir)
        .env("ARTIFACTS", cp.dir())
        .env("FAKE_KIND_SUBNETS", subnets)
        .output()
        .expect("run bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// kind/lib/cluster.sh's control-plane half against a real API server and the real controller:
/// four Nodes named and addressed as kind makes them (addresses deliberately not in name
/// order), `apply_topology` run twice (idempotent), then `wait_for_control_plane` must see
/// every node in its Site with a pod CIDR from that Site's block and each pool holding
/// exactly its gateway — what run.sh waits for before it probes the data plane.
#[tokio::test]
async fn cluster_sh_topology_drives_the_real_controller() {
    use apiserver_controller::ControllerProcess;
    use k8s_openapi::api::core::v1::Node;

    let cp = ControlPlane::start().await;
    let nodes = Api::<Node>::all(cp.client().await);
    for (name, ip) in [
        ("unbounded-net-control-plane", "172.18.0.3"),
        ("unbounded-net-worker", "172.18.0.5"),
        ("unbounded-net-worker2", "172.18.0.2"),
        ("unbounded-net-worker3", "172.18.0.4"),
    ] {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name}
            ]}
        }))
        .expect("node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
    }

    // A node outside the kind network is a clear error, before anything is applied.
    let (ok, out) = run_cluster_sh(&cp, "10.89.0.0/16", "apply_topology");
    assert!(
        !ok,
        "apply_topology accepted nodes outside the network:\n{out}"
    );
    assert!(
        out.contains("is outside the kind network 10.89.0.0/16"),
        "{out}"
    );
    let sites = cp.kubectl(&["get", "sites,gatewaypools", "-o", "name"]);
    assert!(
        sites.status.success() && sites.stdout.is_empty(),
        "apply_topology applied objects after failing: {}",
        String::from_utf8_lossy(&sites.stdout)
    );

    let subnets = "fc00:f853:ccd:e793::/64\\n172.18.0.0/16";
    let (ok, out) = run_cluster_sh(&cp, subnets, "apply_topology\necho \"GW=$GW_A,$GW_B\"");
    assert!(ok, "apply_topology failed:\n{out}");
    assert!(
        out.contains("GW=unbounded-net-worker,unbounded-net-worker2"),
        "{out}"
    );
    let sites = cp.kubectl(&[
        "get",
        "sites",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.nodeCidrs}{\"\\n\"}{end}",
    ]);
    let sites = String::from_utf8_lossy(&sites.stdout).to_string();
    assert!(
        sites.contains(r#"kind-site-a=["172.18.0.3/32","172.18.0.5/32"]"#)
            && sites.contains(r#"kind-site-b=["172.18.0.2/32","172.18.0.4/32"]"#),
        "{sites}"
    );

    // The agents would publish their WireGuard keys; a gateway without one is no member.
    for gw in ["unbounded-net-worker", "unbounded-net-worker2"] {
        let out = cp.kubectl(&[
            "annotate",
            "node",
            gw,
            "net.unbounded-cloud.io/wg-pubkey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ]);
        assert!(out.status.success(), "annotate {gw}");
    }
    let _controller = ControllerProcess::start(&cp, "kind-suite-test");
    let script = r#"apply_topology
wait_for_control_plane
# The controller already leads (it allocated); checks.sh must find it as the failover check does.
NS_SYSTEM=unbounded-net
source "$KIND_DIR/lib/checks.sh"
echo "HOLDER=$(lease_holder)""#;
    let (ok, out) = run_cluster_sh(&cp, subnets, script);
    assert!(
        ok,
        "the controller did not do what run.sh waits for:\n{out}"
    );
    assert!(out.contains("HOLDER=kind-suite-test"), "{out}");
}

/// kind/scenario-twin.yaml (run by the simulator and the netns lab here) must carry exactly
/// the objects kind/run.sh applies, rendered with the twin's node addresses: a change to one
/// without the other fails here.
#[test]
fn scenario_twin_carries_the_kind_topology() {
    let path = repo_root().join("kind/scenario-twin.yaml");
    let text = fs::read_to_string(&path).expect("read kind/scenario-twin.yaml");
    let [twin] = yaml_docs(&text, &path).try_into().expect("one document");
    let twin_objects = twin["objects"].as_sequence().expect("objects").clone();
    let rendered = render_topology(&["172.18.1.2", "172.18.1.3"], &["172.18.2.2", "172.18.2.3"]);
    let kind_objects = yaml_docs(&rendered, Path::new("kind/manifests/topology.yaml.in"));
    assert_eq!(
        twin_objects, kind_objects,
        "kind/scenario-twin.yaml objects differ from kind/manifests/topology.yaml.in"
    );
    // Same roles: the second node of Site A and the first of Site B are the gateways.
    let gateways: Vec<&str> = twin["topology"]["nodes"]
        .as_sequence()
        .expect("nodes")
        .iter()
        .filter(|n| n["role"] == "gateway")
        .map(|n| n["internalIP"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(gateways, ["172.18.1.3", "172.18.2.2"]);
}
