//! Client-side validation of one manifest against the generated CRD schema, worded the way a
//! real kube-apiserver words its answer.
//!
//! [`validate_manifest`] picks the CRD by `apiVersion`/`kind`, then runs what the API server
//! runs on create, in the same order:
//!
//! 1. strict field validation (`kubectl --validate=strict`, the default): unknown fields are
//!    reported as `unknown field "spec.foo"` and nothing else is checked, as the server stops
//!    at decoding;
//! 2. `metadata` (name required, lowercase RFC 1123 subdomain);
//! 3. the structural OpenAPI schema (type, required, enum, pattern, bounds, lengths, counts)
//!    and `x-kubernetes-list-type: set` duplicates;
//! 4. every `x-kubernetes-validations` CEL rule, evaluated by the `kube-cel` crate — skipped,
//!    as the server skips it, when step 3 found a "blocking" error (wrong type, missing
//!    required field, unsupported enum value, too long, too many).
//!
//! `status` is not validated: these CRDs have a status subresource, so the server discards a
//! manifest's status on create.

mod cel;
mod metadata;
mod structural;
mod value;

use std::fmt;
use std::sync::OnceLock;

use serde_json::Value;

use super::GROUP;

/// API version every kind here is served at.
const VERSION: &str = "v1alpha1";

/// One problem with a manifest: where it is and what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field path such as `spec.tunnelMTU` or `spec.sites[1]` (empty for the whole object).
    pub path: String,
    /// What is wrong, worded as the API server words it.
    pub message: String,
}

impl FieldError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// Validates one manifest (a Kubernetes object as JSON) against the CRD its
/// `apiVersion`/`kind` names. Returns every problem found; empty means the API server would
/// accept it (as far as single-object rules go: cross-object rules are the controller's).
pub fn validate_manifest(obj: &Value) -> Vec<FieldError> {
    let Some(fields) = obj.as_object() else {
        return vec![FieldError::new(
            "",
            format!(
                "a manifest must be a mapping with apiVersion, kind, metadata and spec, not {}",
                value::json_type(obj)
            ),
        )];
    };
    let schema = match schema_for(fields.get("apiVersion"), fields.get("kind")) {
        Ok(schema) => schema,
        Err(error) => return vec![error],
    };

    let unknown = structural::unknown_fields(schema, obj);
    if !unknown.is_empty() {
        return unknown;
    }

    let mut errors = metadata::validate(fields.get("metadata"));
    let checked = structural::validate(schema, obj);
    errors.extend(checked.errors);
    if checked.blocking {
        errors.push(FieldError::new(
            "",
            "Invalid value: null: some validation rules were not checked because the object \
             was invalid; correct the existing errors to complete validation",
        ));
    } else {
        errors.extend(cel::validate(schema, obj));
    }
    errors
}

/// Kinds [`validate_manifest`] knows, in `all_crds()` order.
pub fn known_kinds() -> Vec<&'static str> {
    schemas().iter().map(|(kind, _)| kind.as_str()).collect()
}

/// `(kind, openAPIV3Schema)` of every CRD, rendered once.
fn schemas() -> &'static [(String, Value)] {
    static SCHEMAS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        super::all_crds()
            .into_iter()
            .filter_map(|crd| {
                let kind = crd.spec.names.kind.clone();
                let version = crd.spec.versions.into_iter().find(|v| v.name == VERSION)?;
                let schema = version.schema?.open_api_v3_schema?;
                // Serialising a schema the crate itself built cannot fail; skip it if it does,
                // so the kind is reported unknown rather than the process panicking.
                serde_json::to_value(schema).ok().map(|s| (kind, s))
            })
            .collect()
    })
}

fn schema_for(
    api_version: Option<&Value>,
    kind: Option<&Value>,
) -> Result<&'static Value, FieldError> {
    let expected = format!("{GROUP}/{VERSION}");
    let known = known_kinds().join(", ");
    let api_version = match api_version {
        None | Some(Value::Null) => {
            return Err(FieldError::new(
                "apiVersion",
                format!("Required value: set apiVersion: {expected}"),
            ));
        }
        Some(Value::String(v)) => v.as_str(),
        Some(other) => {
            return Err(FieldError::new(
                "apiVersion",
                format!(
                    "must be a string such as {expected}, not {}",
                    value::json_type(other)
                ),
            ));
        }
    };
    let kind = match kind {
        None | Some(Value::Null) => {
            return Err(FieldError::new(
                "kind",
                format!("Required value: set kind to one of {known}"),
            ));
        }
        Some(Value::String(k)) => k.as_str(),
        Some(other) => {
            return Err(FieldError::new(
                "kind",
                format!(
                    "must be a string (one of {known}), not {}",
                    value::json_type(other)
                ),
            ));
        }
    };
    if api_version != expected {
        return Err(FieldError::new(
            "apiVersion",
            format!(
                "no matches for kind {kind:?} in version {api_version:?}: the known kinds are {known}, all in {expected}"
            ),
        ));
    }
    schemas()
        .iter()
        .find(|(k, _)| k == kind)
        .map(|(_, schema)| schema)
        .ok_or_else(|| {
            FieldError::new(
                "kind",
                format!(
                    "no matches for kind {kind:?} in version {expected:?}: the known kinds are {known}"
                ),
            )
        })
}

#[cfg(test)]
mod tests;
