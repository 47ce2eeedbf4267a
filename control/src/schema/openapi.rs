//! Building the definitions (k8s-openapi's schemas with upstream's extensions) and the per
//! group/version OpenAPI 3.0 documents that kubectl reads.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, Patch, Status};
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::patch_meta::FIELDS;
use crate::registry::Resource;

/// Where `$ref`s point to inside a document.
pub(super) const REF_PREFIX: &str = "#/components/schemas/";

const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// The patch content types kubectl looks for; without strategic-merge-patch it ignores the v3
/// document when computing patches.
const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// All definitions the documents need, by upstream name, sorted by name.
pub(super) fn definitions(resources: &[Resource]) -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    for resource in resources {
        (resource.schema)(&mut generator);
    }
    // Types answered by paths rather than being served kinds themselves.
    generator.subschema_for::<Scale>();
    generator.subschema_for::<Status>();
    generator.subschema_for::<DeleteOptions>();
    generator.subschema_for::<Patch>();
    generator.subschema_for::<ListMeta>();
    let mut defs = generator.take_definitions(true);

    for schema in defs.values_mut() {
        relax_required(schema);
    }
    // Upstream's v3 documents describe these as unions; k8s-openapi marks Quantity as
    // int-or-string, which would make clients send numbers where strings such as "100m" belong.
    if let Some(Value::Object(s)) = defs.get_mut(INT_OR_STRING) {
        s.shift_remove("x-kubernetes-int-or-string");
        s.insert("format".into(), "int-or-string".into());
        s.insert(
            "oneOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if let Some(Value::Object(s)) = defs.get_mut(QUANTITY) {
        s.shift_remove("x-kubernetes-int-or-string");
        s.insert(
            "oneOf".into(),
            json!([{"type": "string"}, {"type": "number"}]),
        );
    }
    add_patch_metadata(&mut defs);

    let mut delete_options_gvks = vec![gvk("", "DeleteOptions", "v1")];
    for resource in resources {
        let name = resource.definition_name();
        set_gvk(
            &mut defs,
            &name,
            gvk(resource.group, resource.kind, resource.version),
        );
        if resource.verbs.contains(&"list") {
            let list = list_definition(resource, &name);
            defs.insert(format!("{name}List"), list);
        }
        let options = gvk(resource.group, "DeleteOptions", resource.version);
        if !delete_options_gvks.contains(&options) {
            delete_options_gvks.push(options);
        }
    }
    set_gvk(&mut defs, SCALE, gvk("autoscaling", "Scale", "v1"));
    set_gvk(&mut defs, STATUS, gvk("", "Status", "v1"));
    if let Some(Value::Object(s)) = defs.get_mut(DELETE_OPTIONS) {
        s.insert(
            "x-kubernetes-group-version-kind".into(),
            Value::Array(delete_options_gvks),
        );
    }

    let mut sorted: Vec<(String, Value)> = defs.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.into_iter().collect()
}

/// Drops `metadata` from `required`: k8s-openapi requires it because the Rust field is not an
/// `Option`, upstream does not, and clients must be free to omit it.
fn relax_required(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let empty = match obj.get_mut("required") {
        Some(Value::Array(required)) => {
            required.retain(|r| r != "metadata");
            required.is_empty()
        }
        _ => false,
    };
    if empty {
        obj.shift_remove("required");
    }
}

/// Puts the table's extensions on the properties they describe.
fn add_patch_metadata(defs: &mut Map<String, Value>) {
    for (package, fields) in FIELDS {
        for field in *fields {
            let name = format!("{package}.{}", field.type_name);
            let Some(property) = defs
                .get_mut(&name)
                .and_then(|d| d.get_mut("properties"))
                .and_then(|p| p.get_mut(field.field))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            if !field.list_map_keys.is_empty() {
                property.insert(
                    "x-kubernetes-list-map-keys".into(),
                    json!(field.list_map_keys),
                );
            }
            for (key, value) in [
                ("x-kubernetes-list-type", field.list_type),
                ("x-kubernetes-map-type", field.map_type),
                ("x-kubernetes-patch-merge-key", field.merge_key),
                ("x-kubernetes-patch-strategy", field.strategy),
            ] {
                if !value.is_empty() {
                    property.insert(key.into(), value.into());
                }
            }
        }
    }
}

fn gvk(group: &str, kind: &str, version: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

fn set_gvk(defs: &mut Map<String, Value>, name: &str, gvk: Value) {
    if let Some(Value::Object(s)) = defs.get_mut(name) {
        s.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// `<Kind>List`, which k8s-openapi has only as a generic Rust type without a schema.
fn list_definition(resource: &Resource, item: &str) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", resource.kind, resource.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("List of {}.", resource.plural),
                "type": "array",
                "items": schema_ref(item),
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {
                "description": "Standard list metadata.",
                "allOf": [schema_ref(LIST_META)],
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [gvk(resource.group, &format!("{}List", resource.kind), resource.version)],
    })
}

/// The key of a group/version in the index and in document URLs: `api/v1` or `apis/apps/v1`.
pub(super) fn group_version_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The OpenAPI document of one group/version: its resources' paths and every definition those
/// paths reach.
pub(super) fn document(resources: &[&Resource], defs: &Map<String, Value>) -> Value {
    let mut paths = BTreeMap::new();
    for resource in resources {
        add_paths(&mut paths, resource);
    }
    let paths: Map<String, Value> = paths.into_iter().collect();

    let mut reached = BTreeSet::new();
    let mut pending = Vec::new();
    collect_refs(&Value::Object(paths.clone()), &mut pending);
    while let Some(name) = pending.pop() {
        if let Some(schema) = defs.get(&name)
            && reached.insert(name)
        {
            collect_refs(schema, &mut pending);
        }
    }
    let schemas: Map<String, Value> = reached
        .into_iter()
        .filter_map(|name| defs.get(&name).map(|s| (name, s.clone())))
        .collect();

    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "description": "Bearer Token authentication",
                    "in": "header",
                    "name": "authorization",
                    "type": "apiKey",
                },
            },
        },
    })
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref"
                    && let Some(name) = v.as_str().and_then(|r| r.strip_prefix(REF_PREFIX))
                {
                    out.push(name.to_string());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// `Apps`, `Core`, `RbacAuthorization`: the group as upstream spells it in operation ids.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(capitalize)
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({"description": description, "in": "query", "name": name, "schema": {"type": ty}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"description": description, "in": "path", "name": name, "required": true, "schema": {"type": "string"}})
}

fn pretty() -> Value {
    query(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed.",
    )
}

fn dry_run() -> Value {
    query(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
    )
}

fn field_manager() -> Value {
    query(
        "fieldManager",
        "string",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
    )
}

fn field_validation() -> Value {
    query(
        "fieldValidation",
        "string",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
    )
}

fn list_params(watch: bool) -> Vec<Value> {
    let mut params = vec![
        query(
            "continue",
            "string",
            "The continue option should be set when retrieving more results from the server.",
        ),
        query(
            "fieldSelector",
            "string",
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
        ),
        query(
            "labelSelector",
            "string",
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
        ),
        query(
            "limit",
            "integer",
            "limit is a maximum number of responses to return for a list call.",
        ),
        query(
            "resourceVersion",
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "resourceVersionMatch determines how resourceVersion is applied to list calls.",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "Timeout for the list/watch call.",
        ),
    ];
    if watch {
        params.push(query(
            "allowWatchBookmarks",
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
        ));
        params.push(query(
            "sendInitialEvents",
            "boolean",
            "`sendInitialEvents=true` may be set together with `watch=true`.",
        ));
        params.push(query(
            "watch",
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
        ));
    }
    params
}

fn delete_params() -> Vec<Value> {
    vec![
        dry_run(),
        query(
            "gracePeriodSeconds",
            "integer",
            "The duration in seconds before the object should be deleted.",
        ),
        query(
            "orphanDependents",
            "boolean",
            "Deprecated: please use the PropagationPolicy.",
        ),
        query(
            "propagationPolicy",
            "string",
            "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'.",
        ),
    ]
}

fn responses(schema: &Value, codes: &[(&str, &str)]) -> Value {
    let mut out = Map::new();
    for (code, description) in codes {
        out.insert(
            (*code).into(),
            json!({"description": description, "content": {"application/json": {"schema": schema}}}),
        );
    }
    out.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(out)
}

/// What the operations on one path share.
struct Target<'a> {
    tag: String,
    gvk: Value,
    schema: Value,
    /// `AppsV1NamespacedDeployment` and the like, prefixed by the verb.
    id: String,
    kind: &'a str,
    /// ` status of`, ` scale of` or empty, for descriptions.
    of: &'a str,
}

impl Target<'_> {
    fn op(
        &self,
        action: &str,
        verb: &str,
        description: String,
        parameters: Vec<Value>,
        body: Option<Value>,
        responses: Value,
    ) -> Value {
        let mut op = Map::new();
        op.insert("description".into(), description.into());
        op.insert("operationId".into(), format!("{verb}{}", self.id).into());
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(body) = body {
            op.insert("requestBody".into(), body);
        }
        op.insert("responses".into(), responses);
        op.insert("tags".into(), json!([self.tag]));
        op.insert("x-kubernetes-action".into(), action.into());
        op.insert("x-kubernetes-group-version-kind".into(), self.gvk.clone());
        Value::Object(op)
    }

    fn read(&self) -> Value {
        self.op(
            "get",
            "read",
            format!("read{} the specified {}", self.of, self.kind),
            vec![],
            None,
            responses(&self.schema, &[("200", "OK")]),
        )
    }

    fn replace(&self) -> Value {
        self.op(
            "put",
            "replace",
            format!("replace{} the specified {}", self.of, self.kind),
            vec![dry_run(), field_manager(), field_validation()],
            Some(json!({"content": {"*/*": {"schema": self.schema}}, "required": true})),
            responses(&self.schema, &[("200", "OK"), ("201", "Created")]),
        )
    }

    fn patch(&self) -> Value {
        let content: Map<String, Value> = PATCH_CONTENT_TYPES
            .iter()
            .map(|ct| ((*ct).to_string(), json!({"schema": schema_ref(PATCH)})))
            .collect();
        self.op(
            "patch",
            "patch",
            format!("partially update{} the specified {}", self.of, self.kind),
            vec![
                dry_run(),
                field_manager(),
                field_validation(),
                query(
                    "force",
                    "boolean",
                    "Force is going to \"force\" Apply requests. Force flag must be unset for non-apply patch requests.",
                ),
            ],
            Some(json!({"content": content, "required": true})),
            responses(&self.schema, &[("200", "OK"), ("201", "Created")]),
        )
    }
}

fn add_paths(paths: &mut BTreeMap<String, Value>, r: &Resource) {
    let prefix = format!("/{}", group_version_key(r.group, r.version));
    let group_version = format!("{}{}", group_camel(r.group), capitalize(r.version));
    let tag = format!(
        "{}_{}",
        if r.group.is_empty() {
            "core".to_string()
        } else {
            let camel = group_camel(r.group);
            let mut chars = camel.chars();
            chars
                .next()
                .map(|c| c.to_lowercase().chain(chars).collect())
                .unwrap_or_default()
        },
        r.version
    );
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let definition = r.definition_name();
    let target = Target {
        tag: tag.clone(),
        gvk: gvk(r.group, r.kind, r.version),
        schema: schema_ref(&definition),
        id: format!("{group_version}{scope}{}", r.kind),
        kind: r.kind,
        of: "",
    };
    let list_schema = schema_ref(&format!("{definition}List"));
    let status_schema = schema_ref(STATUS);
    let has = |verb: &str| r.verbs.contains(&verb);

    let (collection, mut scope_params) = if r.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
            vec![path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            )],
        )
    } else {
        (format!("{prefix}/{}", r.plural), vec![])
    };
    scope_params.push(pretty());

    let mut item = Map::new();
    let mut ops = Map::new();
    if has("list") {
        ops.insert(
            "get".into(),
            target.op(
                "list",
                "list",
                format!("list or watch objects of kind {}", r.kind),
                list_params(true),
                None,
                responses(&list_schema, &[("200", "OK")]),
            ),
        );
    }
    if has("create") {
        ops.insert(
            "post".into(),
            target.op(
                "post",
                "create",
                format!("create a {}", r.kind),
                vec![dry_run(), field_manager(), field_validation()],
                Some(json!({"content": {"*/*": {"schema": target.schema}}, "required": true})),
                responses(
                    &target.schema,
                    &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                ),
            ),
        );
    }
    if has("deletecollection") {
        let mut params = list_params(false);
        params.extend(delete_params());
        ops.insert(
            "delete".into(),
            Target {
                id: format!("{group_version}Collection{scope}{}", r.kind),
                tag: tag.clone(),
                gvk: target.gvk.clone(),
                schema: target.schema.clone(),
                kind: r.kind,
                of: "",
            }
            .op(
                "deletecollection",
                "delete",
                format!("delete collection of {}", r.kind),
                params,
                Some(json!({"content": {"*/*": {"schema": schema_ref(DELETE_OPTIONS)}}})),
                responses(&status_schema, &[("200", "OK")]),
            ),
        );
    }
    if !ops.is_empty() {
        ops.insert("parameters".into(), Value::Array(scope_params.clone()));
        paths.insert(collection.clone(), Value::Object(ops));
    }

    let item_path = format!("{collection}/{{name}}");
    let mut item_params = vec![path_param("name", &format!("name of the {}", r.kind))];
    item_params.extend(scope_params.iter().cloned());
    if has("get") {
        item.insert("get".into(), target.read());
    }
    if has("update") {
        item.insert("put".into(), target.replace());
    }
    if has("patch") {
        item.insert("patch".into(), target.patch());
    }
    if has("delete") {
        item.insert(
            "delete".into(),
            target.op(
                "delete",
                "delete",
                format!("delete a {}", r.kind),
                delete_params(),
                Some(json!({"content": {"*/*": {"schema": schema_ref(DELETE_OPTIONS)}}})),
                responses(&status_schema, &[("200", "OK"), ("202", "Accepted")]),
            ),
        );
    }
    if !item.is_empty() {
        item.insert("parameters".into(), Value::Array(item_params.clone()));
        paths.insert(item_path.clone(), Value::Object(item));
    }

    if r.namespaced && has("list") {
        let all = Target {
            id: format!("{group_version}{}ForAllNamespaces", r.kind),
            tag: tag.clone(),
            gvk: target.gvk.clone(),
            schema: target.schema.clone(),
            kind: r.kind,
            of: "",
        };
        let mut ops = Map::new();
        ops.insert(
            "get".into(),
            all.op(
                "list",
                "list",
                format!("list or watch objects of kind {}", r.kind),
                vec![],
                None,
                responses(&list_schema, &[("200", "OK")]),
            ),
        );
        let mut params = list_params(true);
        params.push(pretty());
        ops.insert("parameters".into(), Value::Array(params));
        paths.insert(format!("{prefix}/{}", r.plural), Value::Object(ops));
    }

    let subresources = [
        (
            r.status,
            "status",
            " status of",
            target.gvk.clone(),
            target.schema.clone(),
        ),
        (
            r.scale,
            "scale",
            " scale of",
            gvk("autoscaling", "Scale", "v1"),
            schema_ref(SCALE),
        ),
    ];
    for (served, name, of, gvk, schema) in subresources {
        if !served {
            continue;
        }
        let sub = Target {
            id: format!("{group_version}{scope}{}{}", r.kind, capitalize(name)),
            tag: tag.clone(),
            gvk,
            schema,
            kind: r.kind,
            of,
        };
        let mut ops = Map::new();
        ops.insert("get".into(), sub.read());
        ops.insert("put".into(), sub.replace());
        ops.insert("patch".into(), sub.patch());
        ops.insert("parameters".into(), Value::Array(item_params.clone()));
        paths.insert(format!("{item_path}/{name}"), Value::Object(ops));
    }
}
