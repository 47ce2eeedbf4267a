use serde_json::{Map, Value, json};

use super::*;
use crate::registry::find;

fn deployments() -> &'static Resource {
    find("apps", "v1", "deployments").expect("deployments are served")
}

fn document(path: &str) -> Value {
    let (bytes, _) = schemas().document(path).expect("document is served");
    serde_json::from_slice(&bytes).expect("document is JSON")
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.25", "env": [{"name": "A", "value": "1"}]},
                    {"name": "side", "image": "busybox", "env": [{"name": "B", "value": "2"}]}
                ]}
            }
        }
    })
}

fn merge(original: &Value, patch: Value) -> Value {
    schemas()
        .strategic_merge(deployments(), original, &patch)
        .expect("patch applies")
}

fn containers(v: &Value) -> &Vec<Value> {
    v["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
}

#[test]
fn the_apps_document_has_a_deployment_patch_with_field_validation_and_the_gvk() {
    let doc = document("apis/apps/v1");
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    assert_eq!(patch["x-kubernetes-action"], "patch");
    let params = patch["parameters"].as_array().expect("parameters");
    let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
    for name in ["fieldValidation", "fieldManager", "force", "dryRun"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let validation = params
        .iter()
        .find(|p| p["name"] == "fieldValidation")
        .expect("fieldValidation");
    assert_eq!(validation["in"], "query");
    assert_eq!(validation["schema"]["type"], "string");
    let content = &patch["requestBody"]["content"];
    for ct in PATCH_TYPES {
        assert!(content.get(ct).is_some(), "{ct} missing");
    }
}

const PATCH_TYPES: [&str; 4] = [
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

#[test]
fn the_core_document_serves_pods_with_list_create_and_cluster_wide_list() {
    let doc = document("api/v1");
    let collection = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(collection["get"]["x-kubernetes-action"], "list");
    assert_eq!(
        collection["get"]["x-kubernetes-group-version-kind"],
        json!({"group": "", "kind": "Pod", "version": "v1"})
    );
    assert_eq!(collection["post"]["x-kubernetes-action"], "post");
    assert_eq!(
        collection["delete"]["x-kubernetes-action"],
        "deletecollection"
    );
    let post_params: Vec<&str> = collection["post"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(post_params.contains(&"fieldValidation"));
    assert_eq!(
        doc["paths"]["/api/v1/pods"]["get"]["x-kubernetes-action"],
        "list"
    );
    let item = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    for method in ["get", "put", "patch", "delete"] {
        assert!(item.get(method).is_some(), "{method} missing");
    }
    assert!(doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"].is_object());
    assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.PodList"].is_object());
    // Cluster-scoped kinds have no namespace segment.
    assert!(doc["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
}

#[test]
fn the_index_links_every_group_version_with_its_hash() {
    let index = schemas().index();
    for (group, version) in registry::group_versions() {
        let key = openapi::group_version_key(group, version);
        let url = index["paths"][&key]["serverRelativeURL"]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing from the index"));
        let (_, hash) = schemas().document(&key).expect("document");
        assert_eq!(url, format!("/openapi/v3/{key}?hash={hash}"));
    }
    assert!(schemas().document("apis/nothing/v1").is_none());
}

#[test]
fn the_deployment_definition_carries_its_gvk_as_an_array() {
    let doc = document("apis/apps/v1");
    let deployment = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    let pod = &document("api/v1")["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    assert!(
        deployment.get("required").is_none(),
        "metadata is not required upstream"
    );
}

#[test]
fn pod_spec_containers_carry_the_name_merge_key() {
    let doc = document("apis/apps/v1");
    let schemas = &doc["components"]["schemas"];
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    let volumes = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
    assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
    let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
}

#[test]
fn int_or_string_and_quantity_are_described_as_upstream_does() {
    let doc = document("api/v1");
    let schemas = &doc["components"]["schemas"];
    let ios = &schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(ios["format"], "int-or-string");
    assert_eq!(
        ios["oneOf"],
        json!([{"type": "integer"}, {"type": "string"}])
    );
    let quantity = &schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(
        quantity["oneOf"],
        json!([{"type": "string"}, {"type": "number"}])
    );
    assert!(quantity.get("x-kubernetes-int-or-string").is_none());
}

#[test]
fn the_scale_subresource_answers_an_autoscaling_scale() {
    let doc = document("apis/apps/v1");
    let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    assert_eq!(
        scale["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"
    );
    assert!(doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
}

#[test]
fn every_reference_in_a_document_resolves_within_it() {
    for (group, version) in registry::group_versions() {
        let key = openapi::group_version_key(group, version);
        let doc = document(&key);
        let mut refs = Vec::new();
        openapi_refs(&doc, &mut refs);
        for r in refs {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{key}: {r} does not resolve"
            );
        }
    }
}

fn openapi_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => openapi_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| openapi_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_patch_table_entry_names_an_existing_property() {
    let defs = &schemas().definitions;
    for (package, fields) in patch_meta::FIELDS {
        for field in *fields {
            let name = format!("{package}.{}", field.type_name);
            assert!(
                defs.get(&name)
                    .and_then(|d| d["properties"].get(field.field))
                    .is_some(),
                "{name}.{} does not exist",
                field.field
            );
        }
    }
}

#[test]
fn unknown_fields_are_named_by_their_path() {
    let mut object = deployment();
    object["spec"]["bogusField"] = json!(1);
    object["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("nginx");
    assert_eq!(
        schemas().unknown_fields(deployments(), &object),
        vec![
            "spec.template.spec.containers[0].imagee".to_string(),
            "spec.bogusField".to_string()
        ]
    );
}

#[test]
fn unknown_fields_ignore_maps_and_object_meta_fields() {
    let mut object = deployment();
    object["metadata"]["labels"]["anything"] = json!("x");
    object["metadata"]["annotations"] = json!({"a.b/c": "d"});
    object["metadata"]["namespace"] = json!("default");
    object["metadata"]["managedFields"] =
        json!([{"manager": "m", "fieldsV1": {"f:spec": {"f:x": {}}}}]);
    object["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": "100m", "memory": 1024}});
    assert!(schemas().unknown_fields(deployments(), &object).is_empty());

    let configmaps = find("", "v1", "configmaps").expect("configmaps");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "y"}});
    assert!(schemas().unknown_fields(configmaps, &cm).is_empty());
    let bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labelz": {}}, "datum": {}});
    assert_eq!(
        schemas().unknown_fields(configmaps, &bad),
        vec!["metadata.labelz".to_string(), "datum".to_string()]
    );
}

#[test]
fn unknown_fields_ignore_raw_extension_content() {
    let revisions = find("apps", "v1", "controllerrevisions").expect("controllerrevisions");
    let revision =
        json!({"metadata": {"name": "r"}, "revision": 1, "data": {"spec": {"anything": true}}});
    assert!(schemas().unknown_fields(revisions, &revision).is_empty());
}

#[test]
fn a_container_image_patch_by_name_keeps_other_containers_and_env() {
    let merged = merge(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.26"}]}}}}),
    );
    let c = containers(&merged);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["image"], "nginx:1.26");
    assert_eq!(c[0]["env"], json!([{"name": "A", "value": "1"}]));
    assert_eq!(c[1]["name"], "side");
    assert_eq!(merged["spec"]["replicas"], 2);
}

#[test]
fn env_merges_by_name_and_patch_elements_keep_the_patch_order() {
    let merged = merge(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "env": [{"name": "C", "value": "3"}, {"name": "A", "value": "9"}]},
            {"name": "extra", "image": "redis"}
        ]}}}}),
    );
    let c = containers(&merged);
    let names: Vec<&str> = c.iter().filter_map(|c| c["name"].as_str()).collect();
    // Without $setElementOrder upstream keeps the patch's order for its elements and slots a
    // server-only element in only before patch elements it preceded.
    assert_eq!(names, ["nginx", "extra", "side"]);
    assert_eq!(
        c[0]["env"],
        json!([{"name": "C", "value": "3"}, {"name": "A", "value": "9"}])
    );
}

#[test]
fn client_side_apply_patches_with_set_element_order_apply_and_order() {
    let merged = merge(
        &deployment(),
        json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
               "spec": {"template": {"spec": {
                   "$setElementOrder/containers": [{"name": "side"}, {"name": "nginx"}],
                   "containers": [{"image": "nginx:1.26", "name": "nginx"}]}}}}),
    );
    let c = containers(&merged);
    let names: Vec<&str> = c.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["side", "nginx"]);
    assert_eq!(c[1]["image"], "nginx:1.26");
    assert_eq!(c[1]["env"], json!([{"name": "A", "value": "1"}]));
    assert!(
        merged["spec"]["template"]["spec"]
            .get("$setElementOrder/containers")
            .is_none()
    );
    assert_eq!(
        merged["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{}"
    );
}

#[test]
fn a_patch_delete_directive_removes_a_list_element() {
    let merged = merge(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}}),
    );
    let c = containers(&merged);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["name"], "nginx");
    assert!(!merged.to_string().contains("$patch"));
}

#[test]
fn a_patch_replace_directive_replaces_the_whole_list() {
    let merged = merge(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "x"}
        ]}}}}),
    );
    assert_eq!(
        containers(&merged),
        &vec![json!({"name": "only", "image": "x"})]
    );
}

#[test]
fn a_patch_replace_directive_on_a_map_replaces_it() {
    let merged = merge(
        &deployment(),
        json!({"metadata": {"labels": {"$patch": "replace", "new": "1"}}}),
    );
    assert_eq!(merged["metadata"]["labels"], json!({"new": "1"}));
}

#[test]
fn a_patch_delete_directive_on_a_map_deletes_it() {
    let merged = merge(
        &deployment(),
        json!({"spec": {"strategy": {"$patch": "delete"}}}),
    );
    assert!(merged["spec"].get("strategy").is_none());
}

#[test]
fn null_removes_a_label_and_other_labels_stay() {
    let merged = merge(
        &deployment(),
        json!({"metadata": {"labels": {"tier": null, "new": "x"}}}),
    );
    assert_eq!(
        merged["metadata"]["labels"],
        json!({"app": "web", "new": "x"})
    );
    // Removing a field keeps the others in their order.
    let merged = merge(&deployment(), json!({"spec": {"replicas": null}}));
    let keys: Vec<&String> = merged["spec"].as_object().expect("spec").keys().collect();
    assert_eq!(keys, ["selector", "strategy", "template"]);
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list_removes() {
    let merged = merge(
        &deployment(),
        json!({"metadata": {"finalizers": ["b", "a"]}}),
    );
    assert_eq!(merged["metadata"]["finalizers"], json!(["b", "a"]));
    let merged = merge(&deployment(), json!({"metadata": {"finalizers": ["b"]}}));
    assert_eq!(merged["metadata"]["finalizers"], json!(["b", "a"]));
    let merged = merge(
        &merged,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    );
    assert_eq!(merged["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn lists_without_a_merge_strategy_are_replaced() {
    let original = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "args": ["a", "b"]}]}}}});
    let merged = merge(
        &original,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "args": ["z"]}]}}}}),
    );
    assert_eq!(containers(&merged)[0]["args"], json!(["z"]));
}

#[test]
fn retain_keys_drops_rolling_update_when_the_type_becomes_recreate() {
    let merged = merge(
        &deployment(),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
    );
    assert_eq!(merged["spec"]["strategy"], json!({"type": "Recreate"}));
    // The patch kubectl 1.32 computes from these documents for the same change.
    let merged = merge(
        &deployment(),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"},
               "template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}, {"name": "side"}],
                                     "containers": [{"image": "nginx:1.26", "name": "nginx"}]}}}}),
    );
    assert_eq!(merged["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(containers(&merged)[0]["image"], "nginx:1.26");
    assert_eq!(containers(&merged)[1]["name"], "side");
    let err = schemas()
        .strategic_merge(
            deployments(),
            &deployment(),
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        )
        .expect_err("a patched key missing from $retainKeys is invalid");
    assert!(matches!(err, StrategicMergeError::RetainKeysFormat));
}

#[test]
fn an_unknown_field_set_in_both_original_and_patch_is_an_error() {
    let mut original = deployment();
    original["spec"]["bogus"] = json!({"a": 1});
    let err = schemas()
        .strategic_merge(
            deployments(),
            &original,
            &json!({"spec": {"bogus": {"b": 2}}}),
        )
        .expect_err("unknown field");
    assert_eq!(
        err.to_string(),
        "unable to find api field in struct DeploymentSpec for the json field \"bogus\""
    );
    // A new unknown field is merged and left to strict validation.
    let merged = merge(&deployment(), json!({"spec": {"bogus": 1}}));
    assert_eq!(merged["spec"]["bogus"], 1);
}

#[test]
fn invalid_directives_are_errors() {
    let bad = |patch: Value| {
        schemas()
            .strategic_merge(deployments(), &deployment(), &patch)
            .expect_err("invalid patch")
    };
    assert!(matches!(
        bad(json!({"metadata": {"labels": {"$patch": "explode"}}})),
        StrategicMergeError::BadPatchType { .. }
    ));
    assert!(matches!(
        bad(json!({"spec": {"template": {"spec": {"containers": [{"$patch": "merge"}]}}}})),
        StrategicMergeError::MergeInList
    ));
    assert!(matches!(
        bad(json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})),
        StrategicMergeError::NoMergeKey { .. }
    ));
    assert!(matches!(
        bad(json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"name": "side", "image": "x"}]}}}})),
        StrategicMergeError::SetElementOrderMismatch { .. }
    ));
    assert!(matches!(bad(json!([])), StrategicMergeError::BadJsonDoc));
}

#[test]
fn documents_are_deterministic() {
    let first = Schemas::build(registry::RESOURCES);
    let second = Schemas::build(registry::RESOURCES);
    for (group, version) in registry::group_versions() {
        let key = openapi::group_version_key(group, version);
        let (a, ha) = first.document(&key).expect("first");
        let (b, hb) = second.document(&key).expect("second");
        assert_eq!(ha, hb, "{key}");
        assert_eq!(a, b, "{key}");
    }
    assert_eq!(first.index(), second.index());
}

#[test]
fn schemas_build_for_every_resource() {
    let schemas = schemas();
    for r in registry::RESOURCES {
        let name = r.definition_name();
        assert!(
            schemas.definitions.contains_key(&name),
            "{name} has no definition"
        );
        let key = openapi::group_version_key(r.group, r.version);
        let doc = document(&key);
        assert!(
            doc["components"]["schemas"].get(&name).is_some(),
            "{key} lacks {name}"
        );
        let empty =
            json!({"apiVersion": r.api_version(), "kind": r.kind, "metadata": {"name": "x"}});
        assert!(schemas.unknown_fields(r, &empty).is_empty(), "{name}");
        assert_eq!(
            schemas
                .strategic_merge(r, &empty, &json!({"metadata": {"labels": {"a": "b"}}}))
                .expect("label patch")["metadata"]["labels"]["a"],
            "b"
        );
    }
}

#[test]
fn get_finds_what_the_map_holds_whether_it_scans_or_hashes() {
    for size in [0, 1, SCAN_UP_TO, SCAN_UP_TO + 1, 40] {
        let map: Map<String, Value> = (0..size).map(|i| (format!("k{i}"), json!(i))).collect();
        for i in 0..size {
            assert_eq!(get(&map, &format!("k{i}")), Some(&json!(i)), "size {size}");
        }
        assert_eq!(get(&map, "absent"), None, "size {size}");
        assert_eq!(get(&map, "k"), None, "a prefix is not a key (size {size})");
    }
}
