//! Prints every CRD as a multi-document YAML stream, the bytes committed under deploy/crds/.
//!
//! `cargo run --bin crdgen > deploy/crds/crds.yaml`

fn main() -> anyhow::Result<()> {
    print!("{}", unbounded_net::api::crds_yaml()?);
    Ok(())
}
