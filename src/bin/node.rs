//! unbounded-net-node: per-node data plane agent (not yet built).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("unbounded-net-node: the agent is not built yet (see the Node agent issue)")
}
