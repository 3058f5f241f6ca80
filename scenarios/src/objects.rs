//! The Kubernetes objects a scenario applies, parsed into the `unbounded_net::api` types.

use serde::de::DeserializeOwned;
use serde_json::Value;
use unbounded_net::api::{
    GROUP, GatewayPool, GatewayPoolPeering, Site, SiteGatewayPoolAssignment, SitePeering,
};

/// The only API version a scenario's objects may use.
pub const API_VERSION: &str = "net.unbounded-cloud.io/v1alpha1";

/// One custom resource, typed.
#[derive(Clone, Debug)]
pub enum KubeObject {
    Site(Site),
    GatewayPool(GatewayPool),
    SiteGatewayPoolAssignment(SiteGatewayPoolAssignment),
    SitePeering(SitePeering),
    GatewayPoolPeering(GatewayPoolPeering),
}

/// An object as written in the scenario (for applying verbatim) and its typed form.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub value: Value,
    pub object: KubeObject,
}

impl Manifest {
    pub fn kind(&self) -> &'static str {
        self.object.kind()
    }

    pub fn name(&self) -> &str {
        self.object.name()
    }
}

impl KubeObject {
    pub fn kind(&self) -> &'static str {
        match self {
            KubeObject::Site(_) => "Site",
            KubeObject::GatewayPool(_) => "GatewayPool",
            KubeObject::SiteGatewayPoolAssignment(_) => "SiteGatewayPoolAssignment",
            KubeObject::SitePeering(_) => "SitePeering",
            KubeObject::GatewayPoolPeering(_) => "GatewayPoolPeering",
        }
    }

    pub fn name(&self) -> &str {
        let meta = match self {
            KubeObject::Site(o) => &o.metadata,
            KubeObject::GatewayPool(o) => &o.metadata,
            KubeObject::SiteGatewayPoolAssignment(o) => &o.metadata,
            KubeObject::SitePeering(o) => &o.metadata,
            KubeObject::GatewayPoolPeering(o) => &o.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
    }
}

/// A problem inside one object: the path below the object (`spec.sites[0]`) and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectProblem {
    pub path: String,
    pub message: String,
}

impl ObjectProblem {
    fn new(path: impl Into<String>, message: impl Into<String>) -> ObjectProblem {
        ObjectProblem {
            path: path.into(),
            message: message.into(),
        }
    }
}

const KINDS: &str =
    "Site, GatewayPool, SiteGatewayPoolAssignment, SitePeering or GatewayPoolPeering";

/// Parse one object strictly: known apiVersion and kind, a name, no unknown fields, right types.
pub fn parse_object(value: &Value) -> Result<KubeObject, Vec<ObjectProblem>> {
    let Some(map) = value.as_object() else {
        return Err(vec![ObjectProblem::new(
            "",
            "each entry of `objects` must be a Kubernetes object with apiVersion, kind, metadata and spec",
        )]);
    };
    let mut problems = Vec::new();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => problems.push(ObjectProblem::new(
            "apiVersion",
            format!("apiVersion `{other}` is not served: use `{API_VERSION}`"),
        )),
        None => problems.push(ObjectProblem::new(
            "",
            format!("object has no apiVersion: add `apiVersion: {API_VERSION}`"),
        )),
    }
    if map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        problems.push(ObjectProblem::new(
            "metadata",
            "object has no name: add `metadata: {name: ...}`",
        ));
    }
    let kind = map.get("kind").and_then(Value::as_str);
    let typed = match kind {
        Some("Site") => typed(value).map(KubeObject::Site),
        Some("GatewayPool") => typed(value).map(KubeObject::GatewayPool),
        Some("SiteGatewayPoolAssignment") => {
            typed(value).map(KubeObject::SiteGatewayPoolAssignment)
        }
        Some("SitePeering") => typed(value).map(KubeObject::SitePeering),
        Some("GatewayPoolPeering") => typed(value).map(KubeObject::GatewayPoolPeering),
        Some("SiteNodeSlice") => Err(vec![ObjectProblem::new(
            "kind",
            "SiteNodeSlice is written only by the controller: remove it from `objects`",
        )]),
        Some("Node") => Err(vec![ObjectProblem::new(
            "kind",
            "Nodes come from `topology.nodes`: describe the machine there instead",
        )]),
        Some(other) => Err(vec![ObjectProblem::new(
            "kind",
            format!("kind `{other}` is not one a scenario applies: use {KINDS} (group {GROUP})"),
        )]),
        None => Err(vec![ObjectProblem::new(
            "",
            format!("object has no kind: add `kind:` with one of {KINDS}"),
        )]),
    };
    match typed {
        Ok(object) if problems.is_empty() => Ok(object),
        Ok(_) => Err(problems),
        Err(mut more) => {
            problems.append(&mut more);
            Err(problems)
        }
    }
}

/// Deserialize into `T`, reporting the failing field's path and every field `T` would ignore.
fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, Vec<ObjectProblem>> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path| unknown.push(ignored_path(&path));
    let ignoring = serde_ignored::Deserializer::new(value, &mut record);
    let result: Result<T, _> = serde_path_to_error::deserialize(ignoring);
    let mut problems: Vec<ObjectProblem> = unknown
        .into_iter()
        .filter(|p| !is_free_form(p))
        .map(|p| {
            let field = p.rsplit(['.', '[']).next().unwrap_or(&p).to_owned();
            ObjectProblem::new(
                p,
                format!("unknown field `{field}`: remove it or fix its spelling"),
            )
        })
        .collect();
    match result {
        Ok(object) if problems.is_empty() => Ok(object),
        Ok(_) => Err(problems),
        Err(err) => {
            let path = error_path(err.path());
            let message = err.into_inner().to_string();
            problems.push(ObjectProblem::new(path, message));
            Err(problems)
        }
    }
}

/// Fields that Kubernetes accepts on any object and our types do not model.
fn is_free_form(path: &str) -> bool {
    path == "apiVersion" || path == "kind" || path == "status" || path.starts_with("status.")
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => join(&ignored_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn error_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out = join(&out, key),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn source_document_peering_parses() {
        let value = json!({
            "apiVersion": API_VERSION, "kind": "SitePeering",
            "metadata": {"name": "azure-expressroute-peering"},
            "spec": {"sites": ["site-on-prem", "site-azure"], "meshNodes": false, "tunnelProtocol": "None"}
        });
        let KubeObject::SitePeering(peering) = parse_object(&value).unwrap() else {
            panic!("wrong kind");
        };
        assert_eq!(peering.spec.mesh_nodes, Some(false));
    }

    #[test]
    fn unknown_spec_field_is_named_with_its_path() {
        let value = json!({
            "apiVersion": API_VERSION, "kind": "SitePeering", "metadata": {"name": "p"},
            "spec": {"sites": ["a", "b"], "meshNode": false}
        });
        let problems = parse_object(&value).unwrap_err();
        assert_eq!(problems[0].path, "spec.meshNode");
        assert!(problems[0].message.contains("unknown field `meshNode`"));
    }

    #[test]
    fn wrong_type_names_the_field() {
        let value = json!({
            "apiVersion": API_VERSION, "kind": "Site", "metadata": {"name": "s"},
            "spec": {"nodeCidrs": "10.0.0.0/24"}
        });
        let problems = parse_object(&value).unwrap_err();
        assert_eq!(problems[0].path, "spec.nodeCidrs");
    }

    #[test]
    fn foreign_kinds_and_versions_are_rejected() {
        let value = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}});
        let problems = parse_object(&value).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["apiVersion", "kind"]);
    }
}
