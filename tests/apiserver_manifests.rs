//! deploy/ against a real API server: every manifest passes a server-side dry-run, and the
//! ValidatingAdmissionPolicy really confines the node agent to its own Node's
//! `net.unbounded-cloud.io/*` annotations.

#[path = "support/apiserver.rs"]
mod apiserver;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use apiserver::{ControlPlane, repo_root};

fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "kubectl failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn create_namespace(cp: &ControlPlane) {
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "unbounded-net"}})).expect("namespace");
    Api::<Namespace>::all(cp.client().await)
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

#[tokio::test]
async fn every_manifest_passes_server_side_dry_run() {
    let cp = ControlPlane::start().await;
    // Namespaced objects cannot be dry-run into a namespace that does not exist.
    create_namespace(&cp).await;
    let deploy = repo_root().join("deploy");
    let out = ok(&cp.kubectl(&[
        "apply",
        "--dry-run=server",
        "-k",
        deploy.to_str().expect("utf-8 path"),
    ]));
    for kind in [
        "customresourcedefinition.apiextensions.k8s.io/sites.net.unbounded-cloud.io",
        "configmap/unbounded-net-config",
        "clusterrole.rbac.authorization.k8s.io/unbounded-net-controller",
        "role.rbac.authorization.k8s.io/unbounded-net-controller-leader",
        "deployment.apps/unbounded-net-controller",
        "daemonset.apps/unbounded-net-node",
        "validatingadmissionpolicy.admissionregistration.k8s.io/unbounded-net-node-agent",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/unbounded-net-node-agent",
    ] {
        assert!(
            out.contains(kind),
            "{kind} missing from dry-run output:\n{out}"
        );
    }
    assert!(out.contains("(server dry run)"), "{out}");
    // Nothing was persisted.
    let get = cp.kubectl(&[
        "get",
        "-n",
        "unbounded-net",
        "deployment/unbounded-net-controller",
    ]);
    assert!(!get.status.success(), "dry-run created the Deployment");
}

fn node(name: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {"example.com/owner": "ops"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}
    }))
    .expect("node")
}

/// A pod-bound token of the agent's service account, as the DaemonSet pod on `node` gets.
async fn agent_token(cp: &ControlPlane, node: &str) -> String {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("agent-{node}"), "namespace": "unbounded-net"},
        "spec": {
            "nodeName": node,
            "serviceAccountName": "unbounded-net-node",
            "containers": [{"name": "node", "image": "example.invalid/agent"}]
        }
    }))
    .expect("pod");
    Api::<Pod>::namespaced(cp.client().await, "unbounded-net")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create agent pod");
    let out = ok(&cp.kubectl(&[
        "create",
        "token",
        "-n",
        "unbounded-net",
        "unbounded-net-node",
        "--bound-object-kind=Pod",
        &format!("--bound-object-name=agent-{node}"),
    ]));
    out.trim().to_string()
}

async fn try_patch(api: &Api<Node>, name: &str, patch: serde_json::Value) -> Result<(), String> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn node_agent_may_only_annotate_its_own_node() {
    let cp = ControlPlane::start().await;
    let deploy = repo_root().join("deploy");
    ok(&cp.kubectl(&["apply", "-k", deploy.to_str().expect("utf-8 path")]));
    let admin = Api::<Node>::all(cp.client().await);
    for n in ["node-a", "node-b"] {
        admin
            .create(&PostParams::default(), &node(n))
            .await
            .expect("create node");
    }
    let token = agent_token(&cp, "node-a").await;
    let agent = Api::<Node>::all(cp.client_with_token(&token).await);
    let key = "net.unbounded-cloud.io/wg-pubkey";
    let own =
        json!({"metadata": {"annotations": {key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}});

    // The policy becomes effective a moment after it is created: wait until the first
    // forbidden write is denied, then everything else must be exact.
    let deadline = Instant::now() + Duration::from_secs(30);
    let denied = loop {
        match try_patch(&agent, "node-b", own.clone()).await {
            Err(e) => break e,
            Ok(()) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Ok(()) => panic!("the agent of node-a could still annotate node-b after 30 s"),
        }
    };
    assert!(denied.contains("may only modify its own Node"), "{denied}");

    try_patch(&agent, "node-a", own.clone())
        .await
        .expect("the agent annotates its own node");
    let got = admin.get("node-a").await.expect("get node-a");
    assert_eq!(
        got.metadata
            .annotations
            .unwrap_or_default()
            .get(key)
            .map(String::as_str),
        Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    );

    let cases = [
        (
            json!({"metadata": {"annotations": {"example.com/owner": "agent"}}}),
            "only change net.unbounded-cloud.io/* annotations",
        ),
        (
            json!({"metadata": {"annotations": {"example.com/owner": null}}}),
            "only change net.unbounded-cloud.io/* annotations",
        ),
        (
            json!({"metadata": {"labels": {"net.unbounded-cloud.io/site": "x"}}}),
            "may not change Node labels",
        ),
        (
            json!({"spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}}),
            "may not change the Node spec",
        ),
    ];
    for (patch, expect) in cases {
        let err = try_patch(&agent, "node-a", patch.clone())
            .await
            .expect_err(&format!("patch {patch} must be denied"));
        assert!(err.contains(expect), "patch {patch}: {err}");
    }
    // The admin (and so the controller) is not affected by the policy.
    try_patch(
        &admin,
        "node-b",
        json!({"metadata": {"labels": {"x": "y"}}}),
    )
    .await
    .expect("admin patches labels");
}
