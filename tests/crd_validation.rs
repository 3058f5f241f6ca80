//! The manifest corpus under tests/data against the generated CRDs.
//!
//! - every `tests/data/invalid/*.yaml` is rejected, and one of the errors contains the text of
//!   each of its `# expect: ...` lines (so removing or rewording a rule fails here);
//! - every `tests/data/valid/*.yaml` is accepted (the source document's SitePeering example
//!   among them, byte for byte);
//! - every CEL rule of every CRD is exercised by at least one invalid manifest.
//!
//! Expected texts are what a real kube-apiserver prints too (the rule's `message`, or the
//! structural wording), so the same corpus can be replayed against one.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use unbounded_net::api::validation::{FieldError, validate_manifest};

const MIN_INVALID: usize = 45;

fn corpus(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> (String, serde_json::Value) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: serde_json::Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    (text, value)
}

fn expectations(path: &Path, text: &str) -> Vec<String> {
    let expects: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|e| e.trim().to_owned())
        .collect();
    assert!(
        !expects.is_empty(),
        "{} has no `# expect: <error text>` line",
        path.display()
    );
    expects
}

fn render(errors: &[FieldError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn every_invalid_manifest_fails_with_its_message() {
    let files = corpus("invalid");
    assert!(
        files.len() >= MIN_INVALID,
        "the invalid corpus has {} manifests, want at least {MIN_INVALID}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let (text, manifest) = load(path);
        let errors = render(&validate_manifest(&manifest));
        for expect in expectations(path, &text) {
            if !errors.iter().any(|e| e.contains(&expect)) {
                failures.push(format!(
                    "{}: want an error containing\n    {expect}\n  got {errors:#?}",
                    path.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_valid_manifest_passes() {
    let files = corpus("valid");
    assert!(!files.is_empty(), "no valid manifests found");
    let mut failures = Vec::new();
    for path in &files {
        let (_, manifest) = load(path);
        let errors = render(&validate_manifest(&manifest));
        if !errors.is_empty() {
            failures.push(format!("{}: {errors:#?}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn source_document_example_is_in_the_valid_corpus_verbatim() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/valid/source-document-sitepeering.yaml");
    let text = fs::read_to_string(&path).expect("the source document's SitePeering example");
    // The example as printed in the source document, comments and alignment included.
    let expected = "apiVersion: net.unbounded-cloud.io/v1alpha1\nkind: SitePeering\nmetadata:\n  \
                    name: azure-expressroute-peering\nspec:\n  sites:\n    - site-on-prem\n    - \
                    site-azure\n  meshNodes: false       # no WireGuard overlay\n  \
                    tunnelProtocol: None   # use the existing L3 path directly\n";
    assert_eq!(text, expected);
    let (_, manifest) = load(&path);
    assert_eq!(render(&validate_manifest(&manifest)), Vec::<String>::new());
}

/// Every CEL rule message of every CRD, collected from the generated schemas.
fn rule_messages() -> BTreeSet<String> {
    fn collect(node: &serde_json::Value, out: &mut BTreeSet<String>) {
        match node {
            serde_json::Value::Object(map) => {
                if let Some(rules) = map
                    .get("x-kubernetes-validations")
                    .and_then(|r| r.as_array())
                {
                    for rule in rules {
                        let message = rule["message"].as_str().expect("every rule has a message");
                        out.insert(message.to_owned());
                    }
                }
                map.values().for_each(|v| collect(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for crd in unbounded_net::api::all_crds() {
        collect(
            &serde_json::to_value(&crd).expect("CRD serialises"),
            &mut out,
        );
    }
    out
}

#[test]
fn every_cel_rule_is_exercised_by_the_corpus() {
    let messages = rule_messages();
    assert!(
        messages.len() >= 15,
        "only {} CEL rules found",
        messages.len()
    );
    let mut produced = Vec::new();
    for path in corpus("invalid") {
        let (_, manifest) = load(&path);
        produced.extend(render(&validate_manifest(&manifest)));
    }
    let missing: Vec<&String> = messages
        .iter()
        .filter(|m| !produced.iter().any(|e| e.contains(m.as_str())))
        .collect();
    assert!(
        missing.is_empty(),
        "no invalid manifest triggers these CEL rules; add one under tests/data/invalid: {missing:#?}"
    );
}

/// A structural constraint: kind, field path with list indexes written `[]`, keyword.
type Constraint = (String, String, &'static str);

/// Every structural constraint under `spec` of every CRD.
fn schema_constraints() -> BTreeSet<Constraint> {
    fn walk(kind: &str, node: &serde_json::Value, path: &str, out: &mut BTreeSet<Constraint>) {
        let mut add = |keyword: &'static str| {
            out.insert((kind.to_owned(), path.to_owned(), keyword));
        };
        for keyword in [
            "minimum",
            "maximum",
            "minLength",
            "maxLength",
            "minItems",
            "maxItems",
            "maxProperties",
            "pattern",
            "enum",
        ] {
            if node.get(keyword).is_some() {
                add(keyword);
            }
        }
        if node["x-kubernetes-list-type"] == "set" {
            add("set");
        }
        if let Some(required) = node["required"].as_array() {
            for field in required.iter().filter_map(|f| f.as_str()) {
                out.insert((kind.to_owned(), format!("{path}.{field}"), "required"));
            }
        }
        if let Some(props) = node["properties"].as_object() {
            for (key, child) in props {
                walk(kind, child, &format!("{path}.{key}"), out);
            }
        }
        if node["items"].is_object() {
            walk(kind, &node["items"], &format!("{path}[]"), out);
        }
    }
    let mut out = BTreeSet::new();
    for crd in unbounded_net::api::all_crds() {
        let kind = crd.spec.names.kind.clone();
        let crd = serde_json::to_value(&crd).expect("CRD serialises");
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        out.insert((kind.clone(), "spec".to_owned(), "required"));
        walk(&kind, &root["properties"]["spec"], "spec", &mut out);
    }
    out
}

/// The constraint an error message reports, if it is a structural one.
fn constraint_of(kind: &str, error: &FieldError) -> Option<Constraint> {
    let path = indexes_elided(&error.path);
    let m = error.message.as_str();
    let keyword = if m.contains("should be less than or equal to") {
        "maximum"
    } else if m.contains("should be greater than or equal to") {
        "minimum"
    } else if m.contains("chars long") {
        "minLength"
    } else if m.starts_with("Too long:") {
        "maxLength"
    } else if m.contains("should have at least") {
        "minItems"
    } else if m.starts_with("Too many:") {
        // Lists and maps word it alike; the schema tells them apart.
        return Some((kind.to_owned(), path, "maxItems|maxProperties"));
    } else if m.contains("should match") {
        "pattern"
    } else if m.starts_with("Unsupported value:") {
        "enum"
    } else if m.starts_with("Required value") {
        "required"
    } else if m.starts_with("Duplicate value:") {
        let list = path.strip_suffix("[]").unwrap_or(&path).to_owned();
        return Some((kind.to_owned(), list, "set"));
    } else {
        return None;
    };
    Some((kind.to_owned(), path, keyword))
}

fn indexes_elided(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn every_schema_constraint_is_exercised_by_the_corpus() {
    let mut hit = BTreeSet::new();
    for path in corpus("invalid") {
        let (_, manifest) = load(&path);
        let kind = manifest["kind"].as_str().unwrap_or_default().to_owned();
        for error in validate_manifest(&manifest) {
            if let Some((k, p, keyword)) = constraint_of(&kind, &error) {
                for keyword in keyword.split('|') {
                    hit.insert((k.clone(), p.clone(), keyword.to_owned()));
                }
            }
        }
    }
    let missing: Vec<String> = schema_constraints()
        .into_iter()
        .filter(|(k, p, keyword)| !hit.contains(&(k.clone(), p.clone(), (*keyword).to_owned())))
        .map(|(k, p, keyword)| format!("{k} {p} {keyword}"))
        .collect();
    assert!(
        missing.is_empty(),
        "no invalid manifest under tests/data/invalid violates these schema constraints; add \
         one each: {missing:#?}"
    );
}
