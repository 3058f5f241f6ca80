//! API-server rules the in-memory store enforces because our logic depends on them.

use serde_json::Value;

const NODE: &str = "v1/Node";

/// Keeps `Node.spec.podCIDR` and `podCIDRs[0]` in step, as the API server does: whichever is
/// set fills the other.
pub(super) fn normalize(kind: &str, v: &mut Value) {
    if kind != NODE {
        return;
    }
    let spec = &mut v["spec"];
    let single = spec
        .get("podCIDR")
        .and_then(Value::as_str)
        .map(str::to_string);
    let list_first = spec
        .get("podCIDRs")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_string);
    match (single, list_first) {
        (Some(s), None) => spec["podCIDRs"] = Value::Array(vec![s.into()]),
        (None, Some(f)) => spec["podCIDR"] = f.into(),
        _ => {}
    }
}

fn pod_cidrs(v: &Value) -> Vec<String> {
    v["spec"]["podCIDRs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Validates an update of `old` into `new`; Err carries a message naming the field.
pub(super) fn check_update(kind: &str, old: &Value, new: &Value) -> Result<(), String> {
    if kind != NODE {
        return Ok(());
    }
    let before = pod_cidrs(old);
    let after = pod_cidrs(new);
    if !before.is_empty() && before != after {
        return Err(format!(
            "spec.podCIDRs: may not change once set (is {before:?}, requested {after:?})"
        ));
    }
    if let (Some(single), Some(first)) = (new["spec"]["podCIDR"].as_str(), after.first())
        && single != first
    {
        return Err(format!(
            "spec.podCIDR {single:?} must equal spec.podCIDRs[0] {first:?}"
        ));
    }
    if after.len() > 2 {
        return Err(format!(
            "spec.podCIDRs: at most 2 entries (one per IP family), got {}",
            after.len()
        ));
    }
    Ok(())
}
