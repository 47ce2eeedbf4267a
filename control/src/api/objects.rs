//! CRUD on stored objects: get, list (limit/continue, selectors), create (generateName, dryRun),
//! update (optimistic concurrency, generation), delete (preconditions, propagation finalizers,
//! graceful pod deletion) and deletecollection. Patches end in [`update_object`] too.

use std::sync::Arc;

use axum::response::Response;
use base64::Engine;
use http::{HeaderValue, StatusCode};
use rand::Rng;
use serde_json::{Map, Value, json};

use super::fieldmanager;
use super::namespaces::Phase;
use super::selectors::Selectors;
use super::{
    ApiError, ApiRequest, ApiState, Output, TABLE_CONTENT_TYPE, json, json_as, json_text,
    now_rfc3339,
};
use crate::registry::{self, FieldError, Resource};
use crate::store::{Event, Key, Object, StoreError, Write};

/// The object's metadata, created if absent.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

/// A string field of the object's metadata.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    let metadata = crate::schema::get(object.as_object()?, "metadata")?;
    crate::schema::get(metadata.as_object()?, field)?.as_str()
}

/// The store key of an object of `resource` named `name` in `namespace`.
pub fn key(resource: &Resource, namespace: Option<&str>, name: &str) -> Key {
    Key::new(
        &resource.storage_name(),
        namespace.filter(|_| resource.namespaced).unwrap_or(""),
        name,
    )
}

fn target_key(request: &ApiRequest) -> Key {
    key(
        request.resource(),
        request.target.namespace.as_deref(),
        request.target.name.as_deref().unwrap_or(""),
    )
}

/// Whether upstream tracks `metadata.generation` for the kind (spec/status split kinds).
fn tracks_generation(r: &Resource) -> bool {
    matches!(
        (r.group, r.kind),
        ("apps", _)
            | ("batch", _)
            | ("autoscaling", _)
            | ("policy", _)
            | ("networking.k8s.io", "Ingress" | "NetworkPolicy")
            | ("", "ReplicationController")
    )
}

/// Everything but metadata and status: a change here bumps the generation.
fn spec_of(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    v
}

/// The response for one object in the representation the client asked for.
pub fn render(request: &ApiRequest, code: StatusCode, object: &Value) -> Response {
    match request.output {
        Output::Json => json(code, object),
        Output::Metadata => json(code, &PartialMetadata::of(object)),
        Output::Table => {
            let rv = meta_str(object, "resourceVersion").unwrap_or("");
            let table = super::table::table(
                request.resource(),
                std::slice::from_ref(object),
                json!({"resourceVersion": rv}),
                request.query.get("includeObject").unwrap_or("Metadata"),
                chrono::Utc::now(),
            );
            json_as(code, &table, TABLE_CONTENT_TYPE)
        }
    }
}

/// `PartialObjectMetadata` of an object, borrowing its metadata.
#[derive(serde::Serialize)]
pub struct PartialMetadata<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: &'a Value,
}

impl<'a> PartialMetadata<'a> {
    pub fn of(object: &'a Value) -> Self {
        static EMPTY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({}));
        PartialMetadata {
            kind: "PartialObjectMetadata",
            api_version: "meta.k8s.io/v1",
            metadata: object.get("metadata").unwrap_or(&*EMPTY),
        }
    }
}

/// `GET` one object (also its `status` subresource).
pub async fn get(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    let object = read(state, request.resource(), &target_key(request)).await?;
    Ok(render(request, StatusCode::OK, &object.value))
}

/// Reads one object or answers NotFound.
pub async fn read(state: &ApiState, resource: &Resource, key: &Key) -> Result<Object, ApiError> {
    state
        .store
        .get(key)
        .await
        .map_err(|e| ApiError::from_store(e, resource, &key.name))?
        .ok_or_else(|| ApiError::not_found(resource, &key.name))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: i64,
    ns: String,
    name: String,
}

/// Lists matching objects: whole, or a page of `limit` resumed by `continue`.
pub async fn list_objects(
    state: &ApiState,
    resource: &Resource,
    namespace: Option<&str>,
    selectors: &Selectors,
    limit: Option<usize>,
    token: Option<&str>,
) -> Result<(Vec<Value>, i64, Option<String>), ApiError> {
    // Later pages keep the first page's revision, so a watch from the list's version replays
    // whatever changed while the pages were read.
    let mut pinned = None;
    let mut after = match token {
        Some(t) => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| serde_json::from_slice::<Continue>(&b).ok())
                .ok_or_else(|| ApiError::BadRequest(format!("continue key is not valid: {t}")))?;
            if raw.rv < state.store.compacted() {
                return Err(ApiError::Expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                ));
            }
            pinned = Some(raw.rv);
            Some((raw.ns, raw.name))
        }
        None => None,
    };
    let storage = resource.storage_name();
    let mut items = Vec::new();
    let mut revision = None;
    // Selectors filter after reading, so read on until the page is full or the objects end.
    loop {
        let page = state
            .store
            .list(
                &storage,
                namespace,
                after.as_ref().map(|(n, m)| (n.as_str(), m.as_str())),
                limit.map(|l| (l - items.len()).max(1)),
            )
            .await
            .map_err(|e| ApiError::from_store(e, resource, ""))?;
        revision.get_or_insert(pinned.unwrap_or(page.revision));
        let last = page.items.last().map(|o| {
            (
                meta_str(&o.value, "namespace").unwrap_or("").to_string(),
                meta_str(&o.value, "name").unwrap_or("").to_string(),
            )
        });
        items.extend(
            page.items
                .into_iter()
                .map(|o| o.value)
                .filter(|v| selectors.matches(v)),
        );
        let full = limit.is_some_and(|l| items.len() >= l);
        if !page.more || last.is_none() {
            return Ok((items, revision.unwrap_or(0), None));
        }
        after = last;
        if full {
            let (ns, name) = after.unwrap_or_default();
            let token = serde_json::to_vec(&Continue {
                rv: revision.unwrap_or(0),
                ns,
                name,
            })
            .map_err(|e| ApiError::Internal(e.to_string()))?;
            return Ok((
                items,
                revision.unwrap_or(0),
                Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)),
            ));
        }
    }
}

/// `GET` a collection.
pub async fn list(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    let r = request.resource();
    let selectors = Selectors::from_query(&request.query, r)?;
    let limit = match request.query.get("limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::BadRequest(format!("invalid limit: {l}")))?,
        )
        .filter(|l| *l > 0),
        None => None,
    };
    let (items, revision, token) = list_objects(
        state,
        r,
        request.target.namespace.as_deref(),
        &selectors,
        limit,
        request.query.get("continue"),
    )
    .await?;
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = token {
        metadata["continue"] = json!(token);
    }
    Ok(match request.output {
        Output::Table => {
            let table = super::table::table(
                r,
                &items,
                metadata,
                request.query.get("includeObject").unwrap_or("Metadata"),
                chrono::Utc::now(),
            );
            json_as(StatusCode::OK, &table, TABLE_CONTENT_TYPE)
        }
        Output::Metadata => json(
            StatusCode::OK,
            &ListBody {
                kind: "PartialObjectMetadataList".into(),
                api_version: "meta.k8s.io/v1".into(),
                metadata: &metadata,
                items: &items.iter().map(PartialMetadata::of).collect::<Vec<_>>(),
            },
        ),
        Output::Json => json(
            StatusCode::OK,
            &ListBody {
                kind: format!("{}List", r.kind),
                api_version: r.api_version(),
                metadata: &metadata,
                items: &items,
            },
        ),
    })
}

/// A list's body, serialized from the items where they are: `json!` would first copy every
/// item into a new value, doubling what a large list holds in memory.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListBody<'a, T: serde::Serialize> {
    kind: String,
    api_version: String,
    metadata: &'a Value,
    items: &'a [T],
}

/// Upstream's DefaultStorageClass admission: a claim created without `storageClassName` gets
/// the default class (the newest one annotated `storageclass.kubernetes.io/is-default-class`).
/// An explicit empty class stays empty.
async fn default_storage_class(state: &ApiState, claim: &mut Value) -> Result<(), ApiError> {
    if claim["spec"].get("storageClassName").is_some() {
        return Ok(());
    }
    let default = default_class(
        state,
        ("storage.k8s.io", "storageclasses"),
        "storageclass.kubernetes.io/is-default-class",
    )
    .await?;
    if let (Some(class), Some(spec)) = (default, claim["spec"].as_object_mut()) {
        spec.insert("storageClassName".into(), class.into());
    }
    Ok(())
}

/// Upstream's DefaultIngressClass admission: a new Ingress that names no class (neither
/// `spec.ingressClassName` nor the old `kubernetes.io/ingress.class` annotation) gets the
/// default IngressClass.
async fn default_ingress_class(state: &ApiState, ingress: &mut Value) -> Result<(), ApiError> {
    let annotated = ingress["metadata"]["annotations"]
        .get("kubernetes.io/ingress.class")
        .is_some();
    if annotated || ingress["spec"].get("ingressClassName").is_some() {
        return Ok(());
    }
    let default = default_class(
        state,
        ("networking.k8s.io", "ingressclasses"),
        "ingressclass.kubernetes.io/is-default-class",
    )
    .await?;
    if let (Some(class), Some(spec)) = (default, ingress["spec"].as_object_mut()) {
        spec.insert("ingressClassName".into(), class.into());
    }
    Ok(())
}

/// The name of the newest class (of `group`, `plural`) that `annotation` marks the default.
async fn default_class(
    state: &ApiState,
    (group, plural): (&str, &str),
    annotation: &str,
) -> Result<Option<String>, ApiError> {
    let classes = registry::find(group, "v1", plural).expect("the classes are served");
    let (items, _, _) =
        list_objects(state, classes, None, &Selectors::default(), None, None).await?;
    Ok(items
        .iter()
        .filter(|c| c["metadata"]["annotations"][annotation] == "true")
        .max_by_key(|c| {
            c["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_string)
        })
        .and_then(|c| c["metadata"]["name"].as_str().map(str::to_string)))
}

/// Runs admission on an object about to be written: unknown fields (per `fieldValidation`),
/// defaults, upstream validation, and the type check against the kind's k8s-openapi type.
/// Returns the normalized object and any warnings.
pub fn admit(
    request: &ApiRequest,
    resource: &Resource,
    mut object: Value,
    old: Option<&Value>,
) -> Result<(Value, Vec<String>), ApiError> {
    let cannot_handle = |detail: String| {
        ApiError::BadRequest(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}",
            kind = resource.kind,
            version = resource.version
        ))
    };
    let mut warnings = Vec::new();
    let unknown = crate::schema::schemas().unknown_fields(resource, &object);
    if !unknown.is_empty() {
        let listed = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect::<Vec<_>>();
        match request.query.get("fieldValidation").unwrap_or("Warn") {
            "Strict" => {
                return Err(cannot_handle(format!(
                    "strict decoding error: {}",
                    listed.join(", ")
                )));
            }
            "Ignore" => {}
            _ => warnings.extend(listed),
        }
    }
    registry::apply_defaults(resource, &mut object);
    drop_empty_metadata_lists(&mut object);
    let name = meta_str(&object, "name").unwrap_or("").to_string();
    let errors = registry::validate(resource, &object, old);
    if !errors.is_empty() {
        return Err(ApiError::invalid(resource, &name, errors));
    }
    let object = (resource.decode)(object).map_err(|e| {
        cannot_handle(if e.path.is_empty() || e.path == "." {
            e.message
        } else {
            format!("{}: {}", e.path, e.message)
        })
    })?;
    Ok((object, warnings))
}

/// Upstream omits empty metadata lists (`omitempty`): an emptied list disappears.
fn drop_empty_metadata_lists(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "finalizers",
            "ownerReferences",
            "managedFields",
            "labels",
            "annotations",
        ] {
            let empty = match meta.get(field) {
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(o)) => o.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                meta.remove(field);
            }
        }
    }
}

/// Adds `Warning: 299` headers, as upstream reports unknown fields under `fieldValidation=Warn`.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\""))) {
            response.headers_mut().append(http::header::WARNING, v);
        }
    }
    response
}

/// Checks and fills apiVersion and kind of a request body.
pub fn check_type(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::BadRequest(
            "the request body is not a JSON object".into(),
        ));
    };
    let expected = resource.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != expected => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )));
        }
        _ => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if k != resource.kind => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind
            )));
        }
        _ => {}
    }
    map.insert("apiVersion".into(), expected.into());
    map.insert("kind".into(), resource.kind.into());
    Ok(())
}

/// Five characters as upstream's generateName suffix draws them.
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Fails unless `namespace` exists and is not terminating.
async fn check_namespace(state: &ApiState, namespace: &str) -> Result<(), ApiError> {
    let phase = match state.namespaces.phase(namespace) {
        Some(phase) => phase,
        None => {
            let namespaces = registry::find("", "v1", "namespaces").expect("namespaces are served");
            let ns = read(state, namespaces, &key(namespaces, None, namespace)).await?;
            if ns.value["metadata"].get("deletionTimestamp").is_some() {
                Phase::Terminating
            } else {
                Phase::Active
            }
        }
    };
    if phase == Phase::Terminating {
        return Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        )));
    }
    Ok(())
}

/// Upstream's Pod QoS class from its containers' requests and limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod["spec"][f].as_array())
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let requests = &c["resources"]["requests"];
        let limits = &c["resources"]["limits"];
        for res in ["cpu", "memory"] {
            let (req, lim) = (&requests[res], &limits[res]);
            any |= !req.is_null() || !lim.is_null();
            // Requests default to limits, so a limit alone is enough for Guaranteed.
            if lim.is_null() || (!req.is_null() && req != lim) {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// `POST` a new object.
pub async fn create(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    let (created, warnings) = create_value(state, request, request.body_json()?, true).await?;
    Ok(with_warnings(
        created.respond(StatusCode::CREATED),
        &warnings,
    ))
}

/// An object as a write left it, with its JSON when the store has encoded it already.
pub struct Written {
    pub object: Arc<Value>,
    pub text: Option<Arc<str>>,
}

impl Written {
    fn stored(event: Event) -> Self {
        Written {
            object: event.object,
            text: Some(event.text),
        }
    }

    /// The object as a JSON response.
    pub fn respond(&self, code: StatusCode) -> Response {
        match &self.text {
            Some(text) => json_text(code, text.as_bytes().to_vec(), "application/json"),
            None => json(code, &*self.object),
        }
    }
}

/// Upstream's DefaultTolerationSeconds admission: a new pod that does not tolerate the
/// not-ready and unreachable NoExecute taints already tolerates them for the server's default
/// time (300 s), after which the node lifecycle evicts it from such a node.
fn default_toleration_seconds(pod: &mut Value, lifecycle: &crate::controllers::Lifecycle) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for (key, seconds) in [
        (
            "node.kubernetes.io/not-ready",
            lifecycle.not_ready_toleration_seconds,
        ),
        (
            "node.kubernetes.io/unreachable",
            lifecycle.unreachable_toleration_seconds,
        ),
    ] {
        let tolerated = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let exists = t.get("operator").and_then(Value::as_str) == Some("Exists");
            (t_key == key || (t_key.is_empty() && exists))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": seconds}),
            );
        }
    }
}

/// Creates `object` in the request's namespace; returns it as stored, with any warnings.
/// `record` credits the fields to the request's manager (apply has done its own bookkeeping).
pub async fn create_value(
    state: &ApiState,
    request: &ApiRequest,
    mut object: Value,
    record: bool,
) -> Result<(Written, Vec<String>), ApiError> {
    let r = request.resource();
    check_type(r, &mut object)?;
    if r.kind == "Pod" && r.group.is_empty() {
        default_toleration_seconds(&mut object, &state.lifecycle);
    }
    let url_namespace = request.target.namespace.clone();
    let meta = metadata_mut(&mut object);
    if r.namespaced {
        let url_namespace = url_namespace.unwrap_or_default();
        match crate::schema::get(meta, "namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_namespace => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
            _ => {
                meta.insert("namespace".into(), url_namespace.clone().into());
            }
        }
    } else {
        meta.remove("namespace");
    }
    let (name, generated_from) = match (
        crate::schema::get(meta, "name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty()),
        crate::schema::get(meta, "generateName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty()),
    ) {
        (Some(name), _) => (name.to_string(), None),
        (None, Some(prefix)) => (generated_name(prefix), Some(prefix.to_string())),
        (None, None) => {
            return Err(ApiError::invalid(
                r,
                "",
                vec![FieldError {
                    field: "metadata.name".into(),
                    error_type: registry::ErrorType::Required,
                    value: None,
                    detail: "name or generateName is required".into(),
                }],
            ));
        }
    };
    meta.insert("name".into(), name.clone().into());
    meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
    meta.insert("creationTimestamp".into(), now_rfc3339().into());
    for server_set in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(server_set);
    }
    if tracks_generation(r) {
        meta.insert("generation".into(), 1.into());
    } else {
        meta.remove("generation");
    }
    if r.status
        && r.kind != "Node"
        && let Some(o) = object.as_object_mut()
    {
        // Upstream resets the status to its type's zero value: `{}` where Go's status is a
        // struct (a Service's holds `loadBalancer: {}`), nothing where it is a pointer.
        match crate::registry::zero_object(&r.definition_name()).and_then(|z| z.get("status")) {
            Some(zero) => o.insert("status".into(), zero.clone()),
            None => o.remove("status"),
        };
    }
    if r.kind == "Pod" && r.group.is_empty() {
        object["status"] = json!({"phase": "Pending", "qosClass": qos_class(&object)});
    }
    if r.kind == "PersistentVolumeClaim" && r.group.is_empty() {
        default_storage_class(state, &mut object).await?;
    }
    if r.kind == "Ingress" && r.group == "networking.k8s.io" {
        default_ingress_class(state, &mut object).await?;
    }
    let (mut object, warnings) = admit(request, r, object, None)?;
    allocate(state, request, r, &mut object, None)?;
    if record {
        fieldmanager::record_update(
            r,
            None,
            &mut object,
            &request.field_manager(),
            None,
            &now_rfc3339(),
        );
    }
    if r.namespaced {
        check_namespace(state, meta_str(&object, "namespace").unwrap_or("")).await?;
    }
    let namespace = meta_str(&object, "namespace").map(str::to_string);
    if request.query.dry_run() {
        // A dry run still reports what the write would: an existing name is a conflict.
        let existing = state
            .store
            .get(&key(r, namespace.as_deref(), &name))
            .await
            .map_err(|e| ApiError::from_store(e, r, &name))?;
        if existing.is_some() {
            return Err(ApiError::from_store(StoreError::AlreadyExists, r, &name));
        }
        let written = Written {
            object: Arc::new(object),
            text: None,
        };
        return Ok((written, warnings));
    }
    let (mut name, mut object) = (name, object);
    let mut draws = 0;
    loop {
        // Only a generated name may need the object again, for another draw.
        let value = if generated_from.is_some() {
            object.clone()
        } else {
            std::mem::take(&mut object)
        };
        let write = Write::Create {
            key: key(r, namespace.as_deref(), &name),
            value,
        };
        match state.store.write(write).await {
            Ok(event) => return Ok((Written::stored(event), warnings)),
            // A generated name that is taken is drawn again, as upstream retries.
            Err(StoreError::AlreadyExists) if draws < 8 && generated_from.is_some() => {
                draws += 1;
                name = generated_name(generated_from.as_deref().unwrap_or_default());
                metadata_mut(&mut object).insert("name".into(), name.clone().into());
            }
            Err(e) => return Err(ApiError::from_store(e, r, &name)),
        }
    }
}

/// Hands a Service being written its ClusterIP and node ports (see [`super::services`]).
pub fn allocate(
    state: &ApiState,
    request: &ApiRequest,
    resource: &Resource,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if resource.kind != "Service" || !resource.group.is_empty() || Part::of(request) != Part::Main {
        return Ok(());
    }
    let namespace = meta_str(object, "namespace").unwrap_or("").to_string();
    let name = meta_str(object, "name").unwrap_or("").to_string();
    state
        .services
        .allocate(
            &format!("{namespace}/{name}"),
            object,
            old,
            request.query.dry_run(),
        )
        .map_err(|errors| ApiError::invalid(resource, &name, errors))
}

/// Upstream keeps generated names within 63 characters: a prefix of at most 58, then 5 more.
const MAX_GENERATE_PREFIX: usize = 58;

/// A name made from a `generateName` prefix.
fn generated_name(prefix: &str) -> String {
    let mut cut = prefix.len().min(MAX_GENERATE_PREFIX);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &prefix[..cut], name_suffix())
}

/// What an update writes to: the object itself, or one of its subresources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
    Finalize,
}

impl Part {
    /// The part a request's subresource names.
    pub fn of(request: &ApiRequest) -> Self {
        match request.target.subresource.as_deref() {
            Some("status") => Part::Status,
            Some("finalize") => Part::Finalize,
            _ => Part::Main,
        }
    }
}

/// Merges what a write may change into the stored object: server-owned metadata is kept, the
/// main resource keeps the stored status, the status subresource changes only status.
pub fn prepare_update(resource: &Resource, old: &Value, mut new: Value, part: Part) -> Value {
    match part {
        Part::Status => {
            let mut merged = old.clone();
            // Upstream's status strategy for Deployments resets only spec and labels: the
            // deployment controller writes the revision annotation with the status.
            if resource.kind == "Deployment" && resource.group == "apps" {
                match new.pointer("/metadata/annotations") {
                    Some(a) => merged["metadata"]["annotations"] = a.clone(),
                    None => {
                        metadata_mut(&mut merged).remove("annotations");
                    }
                }
            }
            merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if merged["status"].is_null() {
                merged.as_object_mut().map(|o| o.remove("status"));
            }
            return merged;
        }
        Part::Finalize => {
            let mut merged = old.clone();
            merged["spec"]["finalizers"] = new["spec"]["finalizers"].clone();
            return merged;
        }
        Part::Main => {}
    }
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let meta = metadata_mut(&mut new);
    // Defaulting tells creates from updates by the resourceVersion.
    if let Some(rv) = old_meta.get("resourceVersion") {
        meta.insert("resourceVersion".into(), rv.clone());
    }
    for kept in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
    ] {
        match old_meta.get(kept) {
            Some(v) => meta.insert(kept.into(), v.clone()),
            None => meta.remove(kept),
        };
    }
    if resource.kind == "Service" && resource.group.is_empty() {
        keep_service_allocations(old, &mut new);
    }
    // A Namespace's finalizers change only through its finalize subresource, as upstream.
    if resource.kind == "Namespace" && resource.group.is_empty() && new["spec"].is_object() {
        match old["spec"].get("finalizers") {
            Some(finalizers) => new["spec"]["finalizers"] = finalizers.clone(),
            None => {
                new["spec"]
                    .as_object_mut()
                    .map(|spec| spec.remove("finalizers"));
            }
        }
    }
    if resource.status {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                new.as_object_mut().map(|o| o.remove("status"));
            }
        }
    }
    if tracks_generation(resource) && spec_of(old) != spec_of(&new) {
        let generation = old_meta["generation"].as_i64().unwrap_or(0) + 1;
        metadata_mut(&mut new).insert("generation".into(), generation.into());
    }
    new
}

/// An update that leaves out a Service's allocated addresses keeps them, as upstream's registry does.
fn keep_service_allocations(old: &Value, new: &mut Value) {
    if !new["spec"].is_object() {
        return;
    }
    let type_of = |svc: &Value| {
        svc["spec"]["type"]
            .as_str()
            .unwrap_or("ClusterIP")
            .to_string()
    };
    let (old_type, new_type) = (type_of(old), type_of(new));
    // Upstream keeps what was allocated while the new type still needs it...
    let fields: &[&str] = if new_type == "ExternalName" {
        &["healthCheckNodePort"]
    } else {
        &[
            "clusterIP",
            "clusterIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "healthCheckNodePort",
        ]
    };
    for field in fields {
        let missing = new["spec"]
            .get(*field)
            .is_none_or(|v| v.is_null() || v == "");
        if missing && let Some(v) = old["spec"].get(*field) {
            new["spec"][*field] = v.clone();
        }
    }
    if old_type == new_type {
        return;
    }
    // ...and, as its dropTypeDependentFields, drops what the new type has no use for when the
    // write left it as it was.
    let spec = new["spec"].as_object_mut().expect("checked above");
    if new_type == "ExternalName" && spec.get("clusterIP") == old["spec"].get("clusterIP") {
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            spec.remove(field);
        }
    }
    let keeps_node_ports = new_type == "NodePort"
        || (new_type == "LoadBalancer"
            && spec.get("allocateLoadBalancerNodePorts") != Some(&json!(false)));
    if !keeps_node_ports && let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
        for port in ports {
            let unchanged = old_ports
                .iter()
                .any(|o| o["port"] == port["port"] && o.get("nodePort") == port.get("nodePort"));
            if unchanged && let Some(port) = port.as_object_mut() {
                port.remove("nodePort");
            }
        }
    }
    if new_type != "LoadBalancer" {
        if spec.get("healthCheckNodePort") == old["spec"].get("healthCheckNodePort") {
            spec.remove("healthCheckNodePort");
        }
        spec.remove("allocateLoadBalancerNodePorts");
    }
    let external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !matches!(new_type.as_str(), "NodePort" | "LoadBalancer") && !external_ips {
        spec.remove("externalTrafficPolicy");
    }
}

/// Credits the fields a non-apply write changed to the request's field manager.
pub fn record_write(request: &ApiRequest, resource: &Resource, old: &Value, new: &mut Value) {
    fieldmanager::record_update(
        resource,
        Some(old),
        new,
        &request.field_manager(),
        request.target.subresource.as_deref(),
        &now_rfc3339(),
    );
}

/// Whether a write turning `old` into `new` ends the object's life, as upstream's
/// ShouldDeleteDuringUpdate decides: it was already being deleted with no grace period left
/// (a terminating pod waits for its node to delete it with grace 0), and nothing holds it now.
fn ready_to_go(resource: &Resource, old: &Value, new: &Value) -> bool {
    let old_meta = &old["metadata"];
    if old_meta.get("deletionTimestamp").is_none()
        || old_meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) > 0
    {
        return false;
    }
    let no_finalizers = new["metadata"]["finalizers"]
        .as_array()
        .is_none_or(|f| f.is_empty());
    let namespace_done = !(resource.kind == "Namespace" && resource.group.is_empty())
        || new["spec"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
    no_finalizers && namespace_done
}

/// Writes an updated object over `old` (revision-checked), deleting it instead when it was
/// marked for deletion and nothing holds it any more. Unchanged objects are not rewritten.
pub async fn update_object(
    state: &ApiState,
    resource: &Resource,
    key: Key,
    old: &Object,
    mut new: Value,
    dry_run: bool,
) -> Result<Arc<Value>, StoreError> {
    // Compare as stored: the stored copy carries its resourceVersion.
    metadata_mut(&mut new).insert("resourceVersion".into(), old.revision.to_string().into());
    if new == old.value || dry_run {
        return Ok(Arc::new(new));
    }
    if ready_to_go(resource, &old.value, &new) {
        let event = state
            .store
            .write(Write::Delete {
                key,
                expected: old.revision,
            })
            .await?;
        return Ok(event.object);
    }
    let event = state
        .store
        .write(Write::Update {
            key,
            value: new,
            expected: old.revision,
        })
        .await?;
    Ok(event.object)
}

/// `PUT` an object (or its status or finalize subresource).
pub async fn update(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    let r = request.resource();
    let name = request.target.name.clone().unwrap_or_default();
    let mut object = request.body_json()?;
    check_type(r, &mut object)?;
    if let Some(body_name) = meta_str(&object, "name")
        && body_name != name
    {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if r.namespaced
        && let (Some(body_ns), Some(url_ns)) = (
            meta_str(&object, "namespace"),
            request.target.namespace.as_deref(),
        )
        && !body_ns.is_empty()
        && body_ns != url_ns
    {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    let key = target_key(request);
    let precondition = meta_str(&object, "resourceVersion").map(str::to_string);
    metadata_mut(&mut object).insert("name".into(), name.clone().into());
    let part = Part::of(request);
    // Without a resourceVersion the update is unconditional: a concurrent write is retried over.
    for _ in 0..16 {
        let old = read(state, r, &key).await?;
        if let Some(rv) = &precondition
            && *rv != old.revision.to_string()
        {
            return Err(ApiError::from_store(
                StoreError::Conflict(old.revision),
                r,
                &name,
            ));
        }
        let merged = prepare_update(r, &old.value, object.clone(), part);
        let (mut merged, warnings) = admit(request, r, merged, Some(&old.value))?;
        allocate(state, request, r, &mut merged, Some(&old.value))?;
        record_write(request, r, &old.value, &mut merged);
        match update_object(state, r, key.clone(), &old, merged, request.query.dry_run()).await {
            Ok(written) => return Ok(with_warnings(json(StatusCode::OK, &*written), &warnings)),
            Err(StoreError::Conflict(_)) if precondition.is_none() => continue,
            Err(e) => return Err(ApiError::from_store(e, r, &name)),
        }
    }
    Err(ApiError::from_store(StoreError::Conflict(0), r, &name))
}

/// Options of a delete, from the body (DeleteOptions) or the query.
#[derive(Debug, Default)]
pub struct DeleteOptions {
    propagation: Option<String>,
    grace: Option<i64>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

fn delete_options(request: &ApiRequest) -> Result<DeleteOptions, ApiError> {
    let body = if request.body.is_empty() {
        json!({})
    } else {
        request.body_json()?
    };
    delete_options_of(&body, request)
}

/// Delete options from a DeleteOptions body (or an Eviction's `deleteOptions`) and the query.
pub fn delete_options_of(body: &Value, request: &ApiRequest) -> Result<DeleteOptions, ApiError> {
    let query = &request.query;
    let orphan = body["orphanDependents"]
        .as_bool()
        .or_else(|| query.get("orphanDependents").map(|v| v == "true"));
    let propagation = body["propagationPolicy"]
        .as_str()
        .or_else(|| query.get("propagationPolicy"))
        .map(str::to_string)
        .or_else(|| match orphan {
            Some(true) => Some("Orphan".into()),
            Some(false) => Some("Background".into()),
            None => None,
        });
    if let Some(p) = &propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::BadRequest(format!(
            "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    let grace = body["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()))
        // A year is more grace than anything needs, and keeps timestamps representable.
        .map(|g| g.clamp(0, 365 * 24 * 3600));
    let body_dry_run = match &body["dryRun"] {
        Value::Null => false,
        Value::Array(values) if values.iter().all(|v| v == "All") => !values.is_empty(),
        other => {
            return Err(ApiError::BadRequest(format!(
                "dryRun: Unsupported value: {other}: supported values: \"All\""
            )));
        }
    };
    Ok(DeleteOptions {
        dry_run: body_dry_run || query.dry_run(),
        propagation,
        grace,
        uid: body["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
    })
}

/// Deletes one stored object per the options; returns the response body and whether it is gone.
pub async fn delete_one(
    state: &ApiState,
    resource: &Resource,
    key: Key,
    options: &DeleteOptions,
) -> Result<(Value, bool), ApiError> {
    let dry_run = options.dry_run;
    let name = key.name.clone();
    // Writers race with us (controllers adding finalizers): retry on stale revisions.
    for _ in 0..8 {
        let old = read(state, resource, &key).await?;
        let meta = &old.value["metadata"];
        if let Some(uid) = &options.uid
            && meta["uid"].as_str() != Some(uid.as_str())
        {
            return Err(ApiError::Conflict {
                group: resource.group.into(),
                resource: resource.storage_name(),
                name,
                detail: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta["uid"].as_str().unwrap_or("")
                ),
            });
        }
        if let Some(rv) = &options.resource_version
            && *rv != old.revision.to_string()
        {
            return Err(ApiError::Conflict {
                group: resource.group.into(),
                resource: resource.storage_name(),
                name,
                detail: format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    old.revision
                ),
            });
        }
        let is_namespace = resource.kind == "Namespace" && resource.group.is_empty();
        let is_pod = resource.kind == "Pod" && resource.group.is_empty();
        if meta.get("deletionTimestamp").is_some() && is_namespace {
            return Err(ApiError::Conflict {
                group: String::new(),
                resource: "namespaces".into(),
                name,
                detail: "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.".into(),
            });
        }
        let mut new = old.value.clone();
        let mut finalizers: Vec<Value> = meta["finalizers"].as_array().cloned().unwrap_or_default();
        match options.propagation.as_deref() {
            Some("Orphan") if !finalizers.contains(&json!("orphan")) => {
                finalizers.push(json!("orphan"))
            }
            Some("Foreground") if !finalizers.contains(&json!("foregroundDeletion")) => {
                finalizers.push(json!("foregroundDeletion"))
            }
            _ => {}
        }
        // A pod on a node gets its grace period for the node agent to stop it.
        let grace = if is_pod && old.value["spec"]["nodeName"].is_string() {
            options
                .grace
                .or_else(|| old.value["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
                .clamp(0, 365 * 24 * 3600)
        } else {
            0
        };
        let wait = !finalizers.is_empty() || grace > 0 || is_namespace;
        if !wait {
            if dry_run {
                return Ok((old.value, true));
            }
            match state
                .store
                .write(Write::Delete {
                    key: key.clone(),
                    expected: old.revision,
                })
                .await
            {
                Ok(event) => return Ok(((*event.object).clone(), true)),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(ApiError::from_store(e, resource, &name)),
            }
        }
        let m = metadata_mut(&mut new);
        let deadline = (chrono::Utc::now() + chrono::Duration::seconds(grace))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        if m.get("deletionTimestamp").is_none() {
            m.insert("deletionTimestamp".into(), deadline.into());
            m.insert("deletionGracePeriodSeconds".into(), grace.into());
            // Upstream bumps the generation when deletion starts, so controllers notice.
            if let Some(generation) = m
                .get("generation")
                .and_then(Value::as_i64)
                .filter(|g| *g > 0)
            {
                m.insert("generation".into(), (generation + 1).into());
            }
        } else if is_pod && grace < m["deletionGracePeriodSeconds"].as_i64().unwrap_or(i64::MAX) {
            // A shorter grace period moves the deadline earlier.
            m.insert("deletionTimestamp".into(), deadline.into());
            m.insert("deletionGracePeriodSeconds".into(), grace.into());
        }
        if !finalizers.is_empty() {
            m.insert("finalizers".into(), Value::Array(finalizers));
        }
        if is_namespace {
            new["status"]["phase"] = json!("Terminating");
        }
        match update_object(state, resource, key.clone(), &old, new, dry_run).await {
            Ok(value) => {
                let gone = value["metadata"].get("deletionTimestamp").is_none();
                return Ok((Arc::unwrap_or_clone(value), gone));
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(ApiError::from_store(e, resource, &name)),
        }
    }
    Err(ApiError::from_store(
        StoreError::Conflict(0),
        resource,
        &name,
    ))
}

fn success_status(resource: &Resource, object: &Value) -> Value {
    let mut details = json!({
        "name": meta_str(object, "name").unwrap_or(""),
        "kind": resource.plural,
        "uid": meta_str(object, "uid").unwrap_or(""),
    });
    if !resource.group.is_empty() {
        details["group"] = json!(resource.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// `DELETE` one object.
pub async fn delete(state: &Arc<ApiState>, request: &ApiRequest) -> Result<Response, ApiError> {
    let r = request.resource();
    let options = delete_options(request)?;
    let (object, gone) = delete_one(state, r, target_key(request), &options).await?;
    if gone && !(r.kind == "Pod" && r.group.is_empty()) {
        return Ok(json(StatusCode::OK, &success_status(r, &object)));
    }
    Ok(json(StatusCode::OK, &object))
}

/// `DELETE` a collection: every object matching the selectors.
pub async fn delete_collection(
    state: &Arc<ApiState>,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let r = request.resource();
    let options = delete_options(request)?;
    let selectors = Selectors::from_query(&request.query, r)?;
    let namespace = request.target.namespace.as_deref();
    let (items, revision, _) = list_objects(state, r, namespace, &selectors, None, None).await?;
    let mut deleted = Vec::new();
    for item in items {
        let key = key(
            r,
            meta_str(&item, "namespace"),
            meta_str(&item, "name").unwrap_or(""),
        );
        match delete_one(state, r, key, &options).await {
            Ok((object, _)) => deleted.push(object),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json(
        StatusCode::OK,
        &ListBody {
            kind: format!("{}List", r.kind),
            api_version: r.api_version(),
            metadata: &json!({"resourceVersion": revision.to_string()}),
            items: &deleted,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_follows_requests_and_limits() {
        let pod = |resources: Value| json!({"spec": {"containers": [{"name": "a", "resources": resources}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
    }

    #[test]
    fn updates_keep_server_metadata_and_bump_generation_on_spec_change() {
        let r = registry::find("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "web", "uid": "u1", "generation": 3, "creationTimestamp": "t"},
                         "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let new = json!({"metadata": {"name": "web", "uid": "forged"}, "spec": {"replicas": 2}, "status": {"replicas": 9}});
        let merged = prepare_update(r, &old, new, Part::Main);
        assert_eq!(merged["metadata"]["uid"], "u1");
        assert_eq!(merged["metadata"]["generation"], 4);
        assert_eq!(merged["status"]["replicas"], 1);
        let same = prepare_update(r, &old, old.clone(), Part::Main);
        assert_eq!(same["metadata"]["generation"], 3);
    }

    #[test]
    fn namespace_finalizers_change_only_through_finalize() {
        let r = registry::find("", "v1", "namespaces").unwrap();
        let old = json!({"metadata": {"name": "t"}, "spec": {"finalizers": ["kubernetes"]}});
        let cleared = json!({"metadata": {"name": "t"}, "spec": {"finalizers": []}});
        let kept = prepare_update(r, &old, cleared.clone(), Part::Main);
        assert_eq!(kept["spec"]["finalizers"], json!(["kubernetes"]));
        let finalized = prepare_update(r, &old, cleared, Part::Finalize);
        assert_eq!(finalized["spec"]["finalizers"], json!([]));
    }

    #[test]
    fn status_writes_touch_only_status() {
        let r = registry::find("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}});
        let new = json!({"metadata": {"name": "web", "labels": {"x": "y"}}, "spec": {"replicas": 5}, "status": {"replicas": 1}});
        let merged = prepare_update(r, &old, new, Part::Status);
        assert_eq!(merged["spec"]["replicas"], 1);
        assert_eq!(merged["status"]["replicas"], 1);
        assert!(merged["metadata"].get("labels").is_none());
    }
}
