//! Unit tests of the validator's own logic; the corpus under tests/data exercises the rules.

use serde_json::json;

use super::{FieldError, known_kinds, validate_manifest};
use crate::api::validation::value::{go_number, lookup};

fn peering(spec: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "net.unbounded-cloud.io/v1alpha1",
        "kind": "SitePeering",
        "metadata": {"name": "p"},
        "spec": spec,
    })
}

fn rendered(errors: &[FieldError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn display_joins_path_and_message() {
    let e = FieldError::new("spec.tunnelMTU", "Invalid value: 1");
    assert_eq!(e.to_string(), "spec.tunnelMTU: Invalid value: 1");
    assert_eq!(FieldError::new("", "whole").to_string(), "whole");
}

#[test]
fn every_crd_kind_is_known() {
    assert_eq!(
        known_kinds(),
        [
            "Site",
            "GatewayPool",
            "SiteGatewayPoolAssignment",
            "SitePeering",
            "GatewayPoolPeering",
            "SiteNodeSlice"
        ]
    );
}

#[test]
fn unknown_kind_names_the_known_ones() {
    let mut obj = peering(json!({"sites": ["a", "b"]}));
    obj["kind"] = json!("Sight");
    let errors = rendered(&validate_manifest(&obj));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "kind: no matches for kind \"Sight\" in version \"net.unbounded-cloud.io/v1alpha1\""
        ),
        "{errors:?}"
    );
    assert!(errors[0].contains("SitePeering"), "{errors:?}");
}

#[test]
fn structural_range_is_worded_like_the_api_server() {
    let errors = rendered(&validate_manifest(&peering(
        json!({"sites": ["a", "b"], "tunnelMTU": 10000}),
    )));
    assert_eq!(
        errors,
        [
            "spec.tunnelMTU: Invalid value: 10000: spec.tunnelMTU in body should be less than or equal to 9000"
        ]
    );
}

#[test]
fn blocking_error_skips_cel() {
    // A wrong type blocks CEL: the bad interval is then not reported, the skip notice is.
    let errors = rendered(&validate_manifest(&peering(json!({
        "sites": "a",
        "healthCheckSettings": {"transmitInterval": "soon"}
    }))));
    assert!(errors[0].contains("must be of type array"), "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("some validation rules were not checked"))
    );
    assert!(
        !errors.iter().any(|e| e.contains("must be a duration")),
        "{errors:?}"
    );
}

#[test]
fn non_blocking_error_still_runs_cel() {
    let errors = rendered(&validate_manifest(&peering(json!({
        "sites": ["a"],
        "healthCheckSettings": {"transmitInterval": "soon"}
    }))));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("should have at least 2 items")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e
            == "spec.healthCheckSettings.transmitInterval: Invalid value: \"soon\": transmitInterval must be a duration such as 100ms, 1s or 1m30s"),
        "{errors:?}"
    );
}

#[test]
fn unknown_fields_alone_are_reported() {
    let errors = rendered(&validate_manifest(&peering(
        json!({"sites": ["a"], "mesh": true}),
    )));
    assert_eq!(errors, ["spec.mesh: unknown field \"spec.mesh\""]);
}

#[test]
fn nulls_are_pruned_or_allowed() {
    assert!(
        validate_manifest(&peering(json!({"sites": ["a", "b"], "tunnelMTU": null}))).is_empty()
    );
    let errors = rendered(&validate_manifest(&peering(json!({"sites": null}))));
    assert!(
        errors.contains(&"spec.sites: Required value".to_owned()),
        "{errors:?}"
    );
}

#[test]
fn non_object_manifest_is_an_error_not_a_panic() {
    let errors = validate_manifest(&json!(["a"]));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("must be a mapping"));
}

#[test]
fn numbers_render_like_go() {
    assert_eq!(go_number(&serde_json::Number::from(10000)), "10000");
    assert_eq!(
        go_number(&serde_json::Number::from_f64(1.5).unwrap()),
        "1.5"
    );
    assert_eq!(go_number(&serde_json::Number::from_f64(2.0).unwrap()), "2");
}

#[test]
fn lookup_follows_fields_and_indexes() {
    let v = json!({"spec": {"a": [{"b": 1}, {"b": 2}]}});
    assert_eq!(lookup(&v, "spec.a[1].b"), Some(&json!(2)));
    assert_eq!(lookup(&v, "spec.a[2].b"), None);
}
