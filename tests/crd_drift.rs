//! The committed CRDs are exactly what the types generate.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds/crds.yaml");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = unbounded_net::api::crds_yaml().expect("CRDs render as YAML");
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || committed.lines().count().min(generated.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "deploy/crds/crds.yaml has drifted from the API types (first difference at line \
             {line}); regenerate it with:\n    cargo run --bin crdgen > deploy/crds/crds.yaml"
        );
    }
}
