//! Small helpers on JSON values: type names and Go-style rendering of bad values.

use serde_json::Value;

/// The OpenAPI type name of a JSON value, as kube-openapi names it in type errors.
pub(super) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Renders a bad value the way `field.Error` does: numbers and booleans bare, strings quoted,
/// anything else as JSON.
pub(super) fn go_value(value: &Value) -> String {
    match value {
        Value::Number(n) => go_number(n),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => quote(s),
        other => other.to_string(),
    }
}

/// A number as Go's `%v` prints it (integral floats without a fraction).
pub(super) fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}

/// A string in double quotes with JSON escapes (Go's `%q` for printable text).
pub(super) fn quote(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// Finds the value at a field path such as `spec.podCidrAssignments[0].cidrBlocks`.
pub(super) fn lookup<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = root;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (key, indexes) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            current = current.get(key)?;
        }
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            current = current.get(index.parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

/// A copy of `value` without null members: the API server prunes nulls of non-nullable fields
/// and CEL rules never see a null nullable field, so rules are evaluated on what remains.
pub(super) fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}
