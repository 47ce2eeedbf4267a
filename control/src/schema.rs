//! OpenAPI v3 documents, strict unknown-field detection and strategic merge patch, all driven by
//! the same definitions: k8s-openapi's schemas carrying upstream's patch and list metadata.

mod openapi;
mod patch_meta;
mod strategic;

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::registry::{self, Resource};

pub use strategic::StrategicMergeError;

/// The served OpenAPI documents and the definitions behind them.
pub struct Schemas {
    /// Looked up on every `$ref` every write follows: hashed with Fx, not SipHash.
    definitions: FxHashMap<String, Value>,
    index: Value,
    documents: HashMap<String, Document>,
}

struct Document {
    bytes: Bytes,
    hash: String,
}

/// The schemas of every served resource, built on first use.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas::build(registry::RESOURCES))
}

impl Schemas {
    fn build(resources: &[Resource]) -> Schemas {
        let definitions = openapi::definitions(resources);
        let mut documents = HashMap::new();
        let mut index = Map::new();
        let mut group_versions: Vec<(&str, &str)> = Vec::new();
        for r in resources {
            if !group_versions.contains(&(r.group, r.version)) {
                group_versions.push((r.group, r.version));
            }
        }
        for (group, version) in group_versions {
            let members: Vec<&Resource> = resources
                .iter()
                .filter(|r| r.group == group && r.version == version)
                .collect();
            let document = openapi::document(&members, &definitions);
            // A Value always encodes (its keys are strings); the fallback is never taken.
            let bytes = Bytes::from(
                serde_json::to_vec(&document).unwrap_or_else(|_| document.to_string().into_bytes()),
            );
            let hash = hex(&Sha256::digest(&bytes));
            let key = openapi::group_version_key(group, version);
            index.insert(
                key.clone(),
                json!({ "serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}") }),
            );
            documents.insert(key, Document { bytes, hash });
        }
        Schemas {
            definitions: definitions.into_iter().collect(),
            index: json!({ "paths": index }),
            documents,
        }
    }

    /// `{"paths":{"api/v1":{"serverRelativeURL":"/openapi/v3/api/v1?hash=H"},...}}` for every
    /// served group/version.
    pub fn index(&self) -> &Value {
        &self.index
    }

    /// The serialized document for `api/v1` or `apis/<group>/<version>` and its content hash (hex,
    /// for `ETag`); `None` if that group/version is not served.
    pub fn document(&self, path: &str) -> Option<(Bytes, &str)> {
        let doc = self.documents.get(path.trim_matches('/'))?;
        Some((doc.bytes.clone(), doc.hash.as_str()))
    }

    /// Fields of `object` that the resource's schema does not know, named as upstream's strict
    /// decoding names them (`spec.template.spec.containers[0].imagee`), in document order.
    pub fn unknown_fields(&self, resource: &Resource, object: &Value) -> Vec<String> {
        let mut found = Vec::new();
        let root = self.definition(&resource.definition_name());
        let mut path = String::new();
        self.walk_unknown(root, object, &mut path, &mut found);
        found
    }

    /// Applies a strategic merge patch to `original` with upstream's semantics for this kind.
    pub fn strategic_merge(
        &self,
        resource: &Resource,
        original: &Value,
        patch: &Value,
    ) -> Result<Value, StrategicMergeError> {
        let root = self.definition(&resource.definition_name());
        strategic::merge(self, root, original, patch)
    }

    /// The schema of `resource`'s objects and the name of its definition, for walkers outside
    /// this module (server-side apply tracks field ownership along it).
    pub(crate) fn root_schema(&self, resource: &Resource) -> Option<(&str, &Map<String, Value>)> {
        let root = self.definition(&resource.definition_name())?;
        Some((root.name?, root.schema))
    }

    /// `schema` with references and description wrappers followed, and the name of the
    /// definition it landed on, if any.
    pub(crate) fn resolve_schema<'a>(
        &'a self,
        schema: &'a Value,
    ) -> Option<(Option<&'a str>, &'a Map<String, Value>)> {
        let resolved = self.resolve(schema)?;
        Some((resolved.name, resolved.schema))
    }

    fn definition(&self, name: &str) -> Option<Resolved<'_>> {
        let (name, schema) = self.definitions.get_key_value(name)?;
        Some(Resolved {
            schema: schema.as_object()?,
            name: Some(name.as_str()),
        })
    }

    /// Follows `$ref`s and the single-element `allOf` wrappers that carry a description next to
    /// a reference, down to the schema that describes the value.
    fn resolve<'a>(&'a self, mut schema: &'a Value) -> Option<Resolved<'a>> {
        let mut name = None;
        // Wrapper chains are short; the bound only guards against a reference cycle.
        for _ in 0..16 {
            let obj = schema.as_object()?;
            if let Some(reference) = get(obj, "$ref").and_then(Value::as_str) {
                let target = reference.strip_prefix(openapi::REF_PREFIX)?;
                let (key, def) = self.definitions.get_key_value(target)?;
                name = Some(key.as_str());
                schema = def;
                continue;
            }
            if let Some([inner]) = get(obj, "allOf")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                schema = inner;
                continue;
            }
            return Some(Resolved { schema: obj, name });
        }
        None
    }

    fn walk_unknown(
        &self,
        node: Option<Resolved<'_>>,
        value: &Value,
        path: &mut String,
        found: &mut Vec<String>,
    ) {
        let Some(node) = node else { return };
        if node.preserves_unknown() {
            return;
        }
        match value {
            Value::Object(map) => {
                let properties = node.properties();
                let additional = node.additional();
                if properties.is_none() && additional.is_none() {
                    // An object without declared fields (RawExtension, FieldsV1) holds anything.
                    return;
                }
                for (key, child) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    match properties.and_then(|p| get(p, key)).or(additional) {
                        Some(schema) => self.walk_unknown(self.resolve(schema), child, path, found),
                        None if get(node.schema, "additionalProperties")
                            == Some(&Value::Bool(true)) => {}
                        None => found.push(path.clone()),
                    }
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                let Some(item_schema) = get(node.schema, "items") else {
                    return;
                };
                let item = self.resolve(item_schema);
                for (i, child) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.walk_unknown(item, child, path, found);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
}

/// A schema with references followed, and the definition it came from when there was one.
#[derive(Clone, Copy)]
struct Resolved<'a> {
    schema: &'a Map<String, Value>,
    name: Option<&'a str>,
}

impl<'a> Resolved<'a> {
    fn properties(&self) -> Option<&'a Map<String, Value>> {
        get(self.schema, "properties").and_then(Value::as_object)
    }

    /// The schema of a map's values.
    fn additional(&self) -> Option<&'a Value> {
        get(self.schema, "additionalProperties").filter(|v| v.is_object())
    }

    fn preserves_unknown(&self) -> bool {
        get(self.schema, "x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
    }

    /// The Go type name upstream errors use: `PodSpec` for `io.k8s.api.core.v1.PodSpec`.
    fn type_name(&self) -> &'a str {
        self.name
            .map(|n| n.rsplit('.').next().unwrap_or(n))
            .unwrap_or("object")
    }
}

/// `map.get(key)`, scanning small maps rather than hashing the key: a schema object holds a
/// handful of keywords, an object's metadata a handful of fields, and comparing a few short
/// strings costs less than SipHash (serde_json's maps keep insertion order with std's hasher).
pub(crate) fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if map.len() <= SCAN_UP_TO {
        map.iter().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        map.get(key)
    }
}

/// Maps up to this size are scanned by [`get`].
const SCAN_UP_TO: usize = 8;

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02X}");
        out
    })
}

#[cfg(test)]
mod tests;
