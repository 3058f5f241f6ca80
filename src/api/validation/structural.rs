//! The structural OpenAPI part of validation, worded as kube-openapi and `field.Error` word it
//! (`spec.tunnelMTU: Invalid value: 10000: spec.tunnelMTU in body should be less than or
//! equal to 9000`).

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::FieldError;
use super::metadata;
use super::value::{go_number, go_value, json_type, quote};

/// Result of the structural pass.
pub(super) struct Checked {
    pub errors: Vec<FieldError>,
    /// An error the API server treats as blocking CEL evaluation was found.
    pub blocking: bool,
}

/// Fields the schema does not declare, as strict field validation reports them.
pub(super) fn unknown_fields(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut found = Vec::new();
    if let Some(fields) = obj.as_object() {
        for (key, value) in fields {
            if key == "apiVersion" || key == "kind" {
                // Type metadata: every object has it; the generated schema does not list it.
            } else if key == "metadata" {
                found.extend(metadata::unknown_fields(value));
            } else if let Some(child) = property(schema, key) {
                unknown_in(child, value, key, &mut found);
            } else {
                found.push(unknown(key));
            }
        }
    }
    found
}

fn unknown_in(schema: &Value, value: &Value, path: &str, found: &mut Vec<FieldError>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            let declared = schema.get("properties").is_some();
            for (key, child_value) in fields {
                let child_path = format!("{path}.{key}");
                match (property(schema, key), extra) {
                    (Some(child), _) | (None, Some(child)) => {
                        unknown_in(child, child_value, &child_path, found)
                    }
                    (None, None) if declared => found.push(unknown(&child_path)),
                    (None, None) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_in(item_schema, item, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

fn unknown(path: &str) -> FieldError {
    FieldError::new(path, format!("unknown field {}", quote(path)))
}

fn property<'s>(schema: &'s Value, key: &str) -> Option<&'s Value> {
    schema.get("properties")?.get(key)
}

/// Checks `obj` against the CRD root schema. `metadata` is left to [`metadata::validate`] and
/// `status` is skipped (the status subresource discards it on create).
pub(super) fn validate(schema: &Value, obj: &Value) -> Checked {
    let mut walk = Walk::default();
    let Some(fields) = obj.as_object() else {
        walk.type_invalid("", "object", obj);
        return walk.finish();
    };
    walk.required(schema, fields, "");
    for (key, value) in fields {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "status") || value.is_null()
        {
            continue;
        }
        if let Some(child) = property(schema, key) {
            walk.node(child, value, key);
        }
    }
    walk.finish()
}

#[derive(Default)]
struct Walk {
    errors: Vec<FieldError>,
    blocking: bool,
}

impl Walk {
    fn finish(self) -> Checked {
        Checked {
            errors: self.errors,
            blocking: self.blocking,
        }
    }

    fn push(&mut self, path: &str, body: String, blocking: bool) {
        self.blocking |= blocking;
        self.errors.push(FieldError::new(path, body));
    }

    /// `field.Invalid`: the bad value, then kube-openapi's sentence naming the field.
    fn invalid(&mut self, path: &str, value: &str, detail: String) {
        self.push(
            path,
            format!("Invalid value: {value}: {path} in body {detail}"),
            false,
        );
    }

    fn type_invalid(&mut self, path: &str, expected: &str, value: &Value) {
        let actual = json_type(value);
        self.push(
            path,
            format!("Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""),
            true,
        );
    }

    fn node(&mut self, schema: &Value, value: &Value, path: &str) {
        let expected = schema.get("type").and_then(Value::as_str);
        if let (Some(expected), Some(format)) =
            (expected, schema.get("format").and_then(Value::as_str))
            && let Some(actual) = format_mismatch(expected, format, value)
        {
            self.push(
                path,
                format!("Invalid value: \"{actual}\": {path} in body must be of type {format}: \"{actual}\""),
                true,
            );
            return;
        }
        if let Some(expected) = expected
            && !type_matches(expected, value)
        {
            self.type_invalid(path, expected, value);
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            let supported: Vec<String> = allowed
                .iter()
                .map(|v| quote(v.as_str().map_or(&v.to_string(), |s| s)))
                .collect();
            self.push(
                path,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    go_value(value),
                    supported.join(", ")
                ),
                true,
            );
        }
        match value {
            Value::String(s) => self.string(schema, s, path),
            Value::Number(n) => self.number(schema, n, path),
            Value::Array(items) => self.array(schema, items, path),
            Value::Object(fields) => self.object(schema, fields, path),
            _ => {}
        }
    }

    fn string(&mut self, schema: &Value, s: &str, path: &str) {
        let chars = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && chars > max
        {
            let unit = if max == 1 { "byte" } else { "bytes" };
            self.push(
                path,
                format!("Too long: may not be more than {max} {unit}"),
                true,
            );
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && chars < min
        {
            self.invalid(
                path,
                &quote(s),
                format!("should be at least {min} chars long"),
            );
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => self.invalid(path, &quote(s), format!("should match '{pattern}'")),
                Err(e) => self.push(
                    path,
                    format!("Internal error: the CRD's pattern {pattern:?} does not compile: {e}"),
                    true,
                ),
            }
        }
    }

    fn number(&mut self, schema: &Value, n: &serde_json::Number, path: &str) {
        let Some(v) = n.as_f64() else { return };
        let shown = go_number(n);
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && v > max
        {
            self.invalid(
                path,
                &shown,
                format!("should be less than or equal to {}", bound(max)),
            );
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && v < min
        {
            self.invalid(
                path,
                &shown,
                format!("should be greater than or equal to {}", bound(min)),
            );
        }
    }

    fn array(&mut self, schema: &Value, items: &[Value], path: &str) {
        let count = items.len() as u64;
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && count > max
        {
            let unit = if max == 1 { "item" } else { "items" };
            self.push(
                path,
                format!("Too many: {count}: must have at most {max} {unit}"),
                true,
            );
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && count < min
        {
            self.invalid(
                path,
                &count.to_string(),
                format!("should have at least {min} items"),
            );
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if item.is_null() && !nullable(item_schema) {
                    let expected = item_schema
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("object");
                    self.type_invalid(&item_path, expected, item);
                } else if !item.is_null() {
                    self.node(item_schema, item, &item_path);
                }
            }
        }
        if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
            let mut seen = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                if !seen.insert(item.to_string()) {
                    self.push(
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", go_value(item)),
                        false,
                    );
                }
            }
        }
    }

    fn object(&mut self, schema: &Value, fields: &Map<String, Value>, path: &str) {
        let count = fields.len() as u64;
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && count > max
        {
            let unit = if max == 1 { "item" } else { "items" };
            self.push(
                path,
                format!("Too many: {count}: must have at most {max} {unit}"),
                true,
            );
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
            && count < min
        {
            self.invalid(
                path,
                &count.to_string(),
                format!("should have at least {min} properties"),
            );
        }
        self.required(schema, fields, path);
        let extra = schema.get("additionalProperties").filter(|a| a.is_object());
        for (key, value) in fields {
            let child_path = format!("{path}.{key}");
            let Some(child) = property(schema, key).or(extra) else {
                continue; // reported by the strict unknown-field pass
            };
            if value.is_null() {
                // Null in a nullable field is kept and valid; elsewhere the server prunes it.
                continue;
            }
            self.node(child, value, &child_path);
        }
    }

    /// Required fields that are absent (or null without `nullable`, which the server prunes).
    fn required(&mut self, schema: &Value, fields: &Map<String, Value>, path: &str) {
        let Some(required) = schema.get("required").and_then(Value::as_array) else {
            return;
        };
        for key in required.iter().filter_map(Value::as_str) {
            let present = match fields.get(key) {
                None => false,
                Some(Value::Null) => property(schema, key).is_some_and(nullable),
                Some(_) => true,
            };
            if !present {
                let child_path = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                self.push(&child_path, "Required value".to_owned(), true);
            }
        }
    }
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable") == Some(&Value::Bool(true))
}

/// kube-openapi's first type check, for a schema with a `format`: a scalar or object whose
/// Go type matches neither the type nor the format is reported against the format, naming
/// the Go format of the value (`must be of type int32: "float64"`). Strings and arrays are
/// left to the plain type check.
fn format_mismatch(expected: &str, format: &str, value: &Value) -> Option<&'static str> {
    if !supported_format(expected, format) {
        return None;
    }
    let (data_type, data_format) = match value {
        Value::Bool(_) => ("boolean", ""),
        Value::Object(_) => ("object", ""),
        Value::Number(n) if type_matches("integer", value) && !n.is_f64() => ("integer", "int64"),
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => ("integer", "int64"),
        Value::Number(_) => ("number", "float64"),
        Value::String(_) | Value::Array(_) | Value::Null => return None,
    };
    let compatible = expected == data_type
        || format == data_format
        || (data_type == "integer" && expected == "number");
    (!compatible).then_some(data_format)
}

/// Formats the API server keeps in a CRD schema; it drops any other (`uint32`, `uint8` …),
/// so those never produce format errors.
fn supported_format(schema_type: &str, format: &str) -> bool {
    const STRING_FORMATS: &[&str] = &[
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
    ];
    match schema_type {
        "integer" => matches!(format, "int32" | "int64"),
        "number" => matches!(format, "float" | "double"),
        "string" => STRING_FORMATS.contains(&format.replace('-', "").as_str()),
        _ => false,
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match (expected, value) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("boolean", Value::Bool(_))
        | ("number", Value::Number(_)) => true,
        // kube-openapi accepts a float that is a whole number where an integer is expected.
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// A schema bound as Go's `%v` prints a float64 (`9000`, not `9000.0`).
fn bound(b: f64) -> String {
    if b.fract() == 0.0 && b.abs() < 1e15 {
        format!("{b:.0}")
    } else {
        b.to_string()
    }
}
