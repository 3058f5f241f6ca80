//! Evaluation of the CRDs' `x-kubernetes-validations` rules with `kube-cel`, the Kubernetes
//! CEL libraries (ip, cidr, lists, regex …) on top of the `cel` crate.

use kube_cel::ErrorKind;
use serde_json::Value;

use super::FieldError;
use super::value::{go_value, lookup, without_nulls};

/// Every failing rule, worded as the API server words a CEL failure:
/// `spec.nodeCidrs: Invalid value: <message>` for lists and objects (the value is omitted),
/// `spec.healthCheckSettings.transmitInterval: Invalid value: "5s5": <message>` for scalars.
pub(super) fn validate(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut evaluated = without_nulls(obj);
    // The status subresource discards status on create, so its rules never run.
    if let Some(fields) = evaluated.as_object_mut() {
        fields.remove("status");
    }
    let Err(failures) = kube_cel::validate(schema, &evaluated, None) else {
        return Vec::new();
    };
    failures
        .into_vec()
        .into_iter()
        .map(|failure| {
            let shown = match lookup(&evaluated, &failure.field_path) {
                Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
                    format!("{}: ", go_value(v))
                }
                _ => String::new(),
            };
            let message = match failure.kind {
                ErrorKind::ValidationFailure => {
                    format!("Invalid value: {shown}{}", failure.message)
                }
                // A rule that cannot be evaluated is a defect of the CRD, not of the manifest;
                // report it rather than passing the object silently.
                _ => format!(
                    "Internal error: rule {:?} could not be evaluated: {}",
                    failure.rule, failure.message
                ),
            };
            FieldError::new(failure.field_path, message)
        })
        .collect()
}
