//! `metadata` of a cluster-scoped custom resource, as the API server checks it on create.

use serde_json::Value;

use super::FieldError;
use super::value::{json_type, quote};

/// Fields of `ObjectMeta`; anything else is an unknown field under strict validation.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

const NAME_MAX: usize = 253;
const SUBDOMAIN_REGEX: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// `metadata` keys that `ObjectMeta` does not have.
pub(super) fn unknown_fields(metadata: &Value) -> Vec<FieldError> {
    let Some(fields) = metadata.as_object() else {
        return Vec::new();
    };
    fields
        .keys()
        .filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str()))
        .map(|k| {
            let path = format!("metadata.{k}");
            FieldError::new(&path, format!("unknown field {}", quote(&path)))
        })
        .collect()
}

/// Name present and a lowercase RFC 1123 subdomain; labels and annotations are string maps.
pub(super) fn validate(metadata: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let fields = match metadata {
        Some(Value::Object(fields)) => fields,
        None | Some(Value::Null) => {
            errors.push(name_required());
            return errors;
        }
        Some(other) => {
            errors.push(FieldError::new(
                "metadata",
                format!(
                    "must be a mapping with at least a name, not {}",
                    json_type(other)
                ),
            ));
            return errors;
        }
    };
    match fields.get("name") {
        Some(Value::String(name)) if !name.is_empty() => errors.extend(check_name(name)),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            let generated = fields
                .get("generateName")
                .and_then(Value::as_str)
                .is_some_and(|g| !g.is_empty());
            if !generated {
                errors.push(name_required());
            }
        }
        Some(other) => errors.push(FieldError::new(
            "metadata.name",
            format!("must be a string, not {}", json_type(other)),
        )),
    }
    for map in ["labels", "annotations"] {
        match fields.get(map) {
            None | Some(Value::Null) => {}
            Some(Value::Object(entries)) => {
                for (key, value) in entries {
                    let path = format!("metadata.{map}");
                    // Annotation keys are checked lowercased, as the API server does.
                    let checked_key = if map == "labels" {
                        key.clone()
                    } else {
                        key.to_lowercase()
                    };
                    for msg in label_key_errors(&checked_key) {
                        errors.push(FieldError::new(
                            &path,
                            format!("Invalid value: {}: {msg}", quote(key)),
                        ));
                    }
                    if map == "labels"
                        && let Some(v) = value.as_str()
                    {
                        for msg in label_value_errors(v) {
                            errors.push(FieldError::new(
                                &path,
                                format!("Invalid value: {}: {msg}", quote(v)),
                            ));
                        }
                    }
                    if !value.is_string() {
                        errors.push(FieldError::new(
                            format!("metadata.{map}.{key}"),
                            format!(
                                "must be a string (quote it: \"{value}\"), not {}",
                                json_type(value)
                            ),
                        ));
                    }
                }
            }
            Some(other) => errors.push(FieldError::new(
                format!("metadata.{map}"),
                format!("must be a mapping of strings, not {}", json_type(other)),
            )),
        }
    }
    errors
}

fn name_required() -> FieldError {
    FieldError::new(
        "metadata.name",
        "Required value: name or generateName is required",
    )
}

fn check_name(name: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let shown = quote(name);
    if name.len() > NAME_MAX {
        errors.push(FieldError::new(
            "metadata.name",
            format!("Invalid value: {shown}: must be no more than {NAME_MAX} characters"),
        ));
    }
    if !is_subdomain(name) {
        errors.push(FieldError::new(
            "metadata.name",
            format!(
                "Invalid value: {shown}: a lowercase RFC 1123 subdomain must consist of lower case \
                 alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
                 character (e.g. 'example.com', regex used for validation is '{SUBDOMAIN_REGEX}')"
            ),
        ));
    }
    errors
}

/// Lowercase RFC 1123 subdomain, checked without a regex engine: dot-separated labels of
/// `[a-z0-9-]` that start and end alphanumeric.
fn is_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

const LABEL_NAME_MAX: usize = 63;
const LABEL_KEY_REGEX: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must \
     start and end with an alphanumeric character";

/// Go's `RegexError` sentence: message, examples, and the regex.
fn regex_error(msg: &str, regex: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{regex}')",
        examples.join(" or ")
    )
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, the name part of a label key.
fn is_label_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_alphanumeric();
    bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Problems with a label (or annotation) key: `[prefix/]name`, worded as `IsLabelKey` words them.
fn label_key_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                if prefix.len() > NAME_MAX {
                    errors.push(format!("prefix part must be no more than {NAME_MAX} bytes"));
                }
                if !is_subdomain(prefix) {
                    errors.push(format!(
                        "prefix part a lowercase RFC 1123 subdomain must consist of lower case \
                         alphanumeric characters, '-' or '.', and must start and end with an \
                         alphanumeric character (e.g. 'example.com', regex used for validation \
                         is '{SUBDOMAIN_REGEX}')"
                    ));
                }
            }
            name
        }
        _ => {
            errors.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                regex_error(
                    LABEL_KEY_MSG,
                    LABEL_KEY_REGEX,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > LABEL_NAME_MAX {
        errors.push(format!(
            "name part must be no more than {LABEL_NAME_MAX} bytes"
        ));
    }
    if !is_label_name(name) {
        errors.push(format!(
            "name part {}",
            regex_error(
                LABEL_KEY_MSG,
                LABEL_KEY_REGEX,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errors
}

/// Problems with a label value: empty, or a label name of at most 63 bytes.
fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_NAME_MAX {
        errors.push(format!("must be no more than {LABEL_NAME_MAX} bytes"));
    }
    if !value.is_empty() && !is_label_name(value) {
        errors.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', and must start and end with an alphanumeric character",
            &format!("({LABEL_KEY_REGEX})?"),
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}
