fn main() -> anyhow::Result<()> {
    anyhow::bail!("sim: the simulator is not built yet (see the simulator issue)")
}
