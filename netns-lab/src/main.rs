fn main() -> anyhow::Result<()> {
    anyhow::bail!("netns-lab: the lab is not built yet (see the netns-lab issue)")
}
