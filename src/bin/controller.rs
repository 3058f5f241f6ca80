//! unbounded-net-controller: leader-elected control plane (not yet wired to the API server).

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "unbounded-net-controller: the kube-rs shell is not built yet (see the Controller issue)"
    )
}
