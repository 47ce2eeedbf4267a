//! Server-side apply as upstream's field manager does it: field ownership per manager in
//! `metadata.managedFields`, apply merges guided by list and map types, removal of fields an
//! applier stops applying, and conflicts with other owners.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Map, Value, json};

use crate::registry::Resource;
use crate::schema::{Schemas, get, schemas};

/// One field owned by another manager that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// The apiVersion of the other manager's entry.
    pub api_version: String,
    /// The field as upstream prints it: `.spec.replicas`,
    /// `.spec.template.spec.containers[name="web"].image`.
    pub field: String,
    /// `Apply` or `Update`: the operation of the other manager's entry.
    pub operation: String,
    /// The subresource the other manager wrote through; empty for the main resource.
    pub subresource: String,
}

impl Conflict {
    /// The cause message upstream puts in the 409: `conflict with "kubectl"`, or for updaters
    /// `conflict with "kube-controller-manager" using apps/v1`.
    pub fn message(&self) -> String {
        format!("conflict with {}", self.describe_manager())
    }

    fn describe_manager(&self) -> String {
        let mut out = quote(&self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {}", quote(&self.subresource)));
        }
        if self.operation == Operation::Update.as_str() {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    fn identifier(&self) -> String {
        let operation = if self.operation == Operation::Update.as_str() {
            Operation::Update
        } else {
            Operation::Apply
        };
        identifier(
            &self.manager,
            operation,
            &self.api_version,
            &self.subresource,
        )
    }
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Fields other managers own would change (409, one cause per conflict); the message is
    /// upstream's `Apply failed with N conflicts: ...`.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied object cannot be applied: wrong kind, managedFields set, malformed lists.
    #[error("{0}")]
    Invalid(String),
}

/// Server-side apply of `applied` (the user's partial object) by `manager` onto `live` (None when
/// the object does not exist yet). Returns the new object with `metadata.managedFields` updated
/// (operation "Apply", fieldsType "FieldsV1", time `now`, apiVersion of the resource). Without
/// `force`, fields owned by other managers whose values the apply would change are conflicts;
/// with force they are taken over. Fields the manager applied before but omits now are removed
/// from the object unless another manager also owns them (upstream semantics).
pub fn apply(
    resource: &Resource,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the apply patch must be a JSON object".into(),
        ));
    }
    check_kind(resource, applied)?;
    if managed_fields(applied).is_some_and(|m| !m.is_null()) {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let root = Ty::root(resource);
    validate(applied, root, &mut Vec::new()).map_err(|e| {
        ApplyError::Invalid(format!(
            "failed to create typed patch object ({}): {e}",
            describe_object(resource, applied)
        ))
    })?;

    let scope = Scope::of(resource, None);
    let config = applied_config(resource, applied);
    let mut live_object = live.cloned().unwrap_or_else(|| json!({}));
    remove_managed_fields(&mut live_object);
    let api_version = resource.api_version();
    let mut managers = live.and_then(managed_of).unwrap_or_default();
    if live.is_some() && managers.is_empty() {
        // Objects written before fields were tracked: their current fields get an owner first,
        // so that the apply conflicts with them rather than silently taking them.
        let before = Entry::new(BEFORE_FIRST_APPLY, Operation::Update, &api_version, "");
        let empty = skeleton(&live_object, root);
        record(
            &mut managers,
            &empty,
            &live_object,
            root,
            before,
            scope,
            now,
        );
    }

    let manager = if manager.is_empty() {
        UNKNOWN_MANAGER
    } else {
        manager
    };
    let applier = Entry::new(manager, Operation::Apply, &api_version, "");
    let attempt = |managers: Managers, force: bool| {
        apply_fields(
            &live_object,
            &config,
            root,
            managers,
            applier.clone(),
            scope,
            force,
        )
    };
    let (merged, mut managers) = match attempt(managers.clone(), force) {
        Ok(done) => done,
        Err(conflicts) if manager == KUBECTL => {
            // kubectl taking over from its own client-side apply: fields whose live values
            // still match the last-applied configuration are not conflicts.
            let Some(allowed) = last_applied_fields(&live_object, root, &api_version) else {
                return Err(public_conflicts(conflicts));
            };
            let remaining: Vec<(Conflict, Path)> = conflicts
                .into_iter()
                .filter(|(_, path)| !allowed.has(path))
                .collect();
            if !remaining.is_empty() {
                return Err(public_conflicts(remaining));
            }
            attempt(managers, true).map_err(public_conflicts)?
        }
        Err(conflicts) => return Err(public_conflicts(conflicts)),
    };

    let mut object = merged;
    strip_nulls(&mut object);
    // Upstream stamps the applier's entry only when the object changed.
    if object != live_object
        && let Some(entry) = managers.get_mut(&applier.id())
    {
        entry.time = Some(now.to_string());
    }
    if manager == KUBECTL && live.is_some_and(has_last_applied) {
        // kubectl's server-side apply keeps the client-side annotation current, so that a later
        // client-side apply still diffs against what was applied.
        set_annotation(&mut object, LAST_APPLIED, last_applied_of(applied));
    }
    write_managed_fields(&mut object, &managers);
    Ok(object)
}

/// Records a non-apply write (create, update or patch) by `manager` in `new`'s managedFields
/// (operation "Update"): the fields it set or changed relative to `old` become its own and leave
/// other managers' sets; entries whose sets become empty are dropped; managers are merged per
/// (manager, operation, apiVersion, subresource) as upstream does.
pub fn record_update(
    resource: &Resource,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    if !new.is_object() {
        return;
    }
    let mut managers = managed_for_update(old, new, subresource.is_some());
    remove_managed_fields(new);
    if managers.is_empty() && old.is_some() {
        // Upstream starts tracking an untracked object only on creation or on its first apply.
        return;
    }
    let root = Ty::root(resource);
    let manager = if manager.is_empty() {
        UNKNOWN_MANAGER
    } else {
        manager
    };
    let updater = Entry::new(
        manager,
        Operation::Update,
        &resource.api_version(),
        subresource.unwrap_or(""),
    );
    let scope = Scope::of(resource, subresource);
    if old.is_none() && managers.is_empty() {
        // A create that brings no entries of its own: its manager owns what it set, what
        // recording it from the kind's zero value finds.
        let zero = skeleton(new, root);
        if let (_, Some(fields)) =
            changed_fields(Some(&zero), new, root, Owning::Root(scope), false)
        {
            let mut creator = updater;
            creator.time = Some(now.to_string());
            let entry = creator.json_with(Value::Object(fields));
            set_managed_fields(new, vec![entry]);
        }
        return;
    }
    let old_object = match old {
        Some(old) => {
            let mut old = old.clone();
            remove_managed_fields(&mut old);
            old
        }
        None => skeleton(new, root).into_owned(),
    };
    record(&mut managers, &old_object, new, root, updater, scope, now);
    cap_update_managers(&mut managers);
    write_managed_fields(new, &managers);
}

/// The manager name for a request without `fieldManager`: upstream derives it from the
/// User-Agent (the part before the first '/'), e.g. "kubectl" or "kube-rs".
pub fn default_manager(user_agent: Option<&str>) -> String {
    let product = user_agent.unwrap_or("").split('/').next().unwrap_or("");
    let mut out = String::new();
    for c in product.chars() {
        // Upstream keeps printable characters only, within the 128-byte manager limit.
        if c.is_control() || (c.is_whitespace() && c != ' ') {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_MANAGER_LENGTH {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        UNKNOWN_MANAGER.to_string()
    } else {
        out
    }
}

const KUBECTL: &str = "kubectl";
const UNKNOWN_MANAGER: &str = "unknown";
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
const ANCIENT_CHANGES: &str = "ancient-changes";
/// Not a JSON manager identifier, so it never collides with a real entry.
const CURRENT_OPERATION: &str = "current-operation";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const MAX_MANAGER_LENGTH: usize = 128;
const MAX_UPDATE_MANAGERS: usize = 10;

/// Metadata the server owns: never part of anyone's fields (upstream strips these, and deletion
/// marks, which only the server sets).
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Metadata an applied configuration cannot set; dropping it keeps `creationTimestamp: null` in
/// generated manifests from clearing the live value.
const APPLY_IGNORED_METADATA: &[&str] = &[
    "creationTimestamp",
    "selfLink",
    "uid",
    "generation",
    "managedFields",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Definitions upstream marks `+structType=atomic`: owned and replaced whole. The served
/// definitions lack that marker.
const ATOMIC_TYPES: &[&str] = &[
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.EndpointAddress",
    "io.k8s.api.core.v1.EndpointPort",
    "io.k8s.api.core.v1.FileKeySelector",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.ScopeSelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.discovery.v1.EndpointPort",
    "io.k8s.api.networking.v1.ServiceBackendPort",
    "io.k8s.api.rbac.v1.RoleRef",
    "io.k8s.api.rbac.v1.Subject",
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
];

/// Defaults of list-map key fields (`+default` upstream), so that an applied port without a
/// protocol names the same element as the defaulted live one.
const KEY_DEFAULTS: &[(&str, &str, &str)] = &[
    ("io.k8s.api.core.v1.ContainerPort", "protocol", "TCP"),
    ("io.k8s.api.core.v1.ServicePort", "protocol", "TCP"),
];

static NULL: Value = Value::Null;

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: {}: {}",
            only.message(),
            only.field
        );
    }
    let mut sorted: Vec<&Conflict> = conflicts.iter().collect();
    sorted.sort_by_key(|c| c.identifier());
    let mut lines = Vec::new();
    let mut current = None;
    for c in sorted {
        let id = c.identifier();
        if current.as_ref() != Some(&id) {
            lines.push(format!("conflicts with {}:", c.describe_manager()));
            current = Some(id);
        }
        lines.push(format!("- {}", c.field));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

fn public_conflicts(conflicts: Vec<(Conflict, Path)>) -> ApplyError {
    ApplyError::Conflicts(conflicts.into_iter().map(|(c, _)| c).collect())
}

/// `invalid object type: apps/v1, Kind=Deployment` unless the applied object is of the resource.
fn check_kind(resource: &Resource, applied: &Value) -> Result<(), ApplyError> {
    let api_version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = applied.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version == resource.api_version() && kind == resource.kind {
        return Ok(());
    }
    let (group, version) = match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [version] => ("", *version),
        [group, version] => (*group, *version),
        _ => ("", ""),
    };
    Err(ApplyError::Invalid(format!(
        "invalid object type: {group}/{version}, Kind={kind}"
    )))
}

/// `namespace/name; group/version, Kind=Kind`, as upstream names the object in apply errors.
fn describe_object(resource: &Resource, object: &Value) -> String {
    let meta = |field: &str| {
        object
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    format!(
        "{}/{}; {}/{}, Kind={}",
        meta("namespace"),
        meta("name"),
        resource.group,
        resource.version,
        resource.kind
    )
}

/// The applied object as it is merged: status goes through its subresource, and server-set
/// metadata is not the applier's to set.
fn applied_config(resource: &Resource, applied: &Value) -> Value {
    let mut config = applied.clone();
    if let Some(map) = config.as_object_mut() {
        if resource.status {
            map.shift_remove("status");
        }
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in APPLY_IGNORED_METADATA {
                meta.shift_remove(*field);
            }
        }
    }
    config
}

fn remove_managed_fields(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("managedFields");
    }
}

/// What a freshly created object is compared with: its kind's zero value as upstream's JSON has
/// it (non-pointer structs present, so that only what they hold is owned; see
/// `registry/zero_objects.rs`), or for a kind without one, the top-level structs, empty.
fn skeleton(object: &Value, root: Ty) -> Cow<'static, Value> {
    if let Some(zero) = root.name.and_then(crate::registry::zero_object) {
        return Cow::Borrowed(zero);
    }
    let mut out = Map::new();
    if let Some(map) = object.as_object() {
        for (key, value) in map {
            if value.is_object() && root.has_field(key) {
                out.insert(key.clone(), json!({}));
            }
        }
    }
    Cow::Owned(Value::Object(out))
}

/// Drops null members of objects: merging keeps an applied `null` until the end, where the
/// typed object upstream converts to has no such field.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Paths and sets of fields.

/// One step into a value: a field of a map, an element of a map list by its keys, an element of
/// a set by its value, or an element of an atomic list by index.
#[derive(Debug, Clone)]
enum Element {
    Field(String),
    /// Key fields sorted by name.
    Key(Vec<(String, Value)>),
    Value(Value),
    Index(usize),
}

type Path = Vec<Element>;

impl Element {
    fn rank(&self) -> u8 {
        match self {
            Element::Field(_) => 0,
            Element::Key(_) => 1,
            Element::Value(_) => 2,
            Element::Index(_) => 3,
        }
    }

    /// The FieldsV1 spelling: `f:name`, `k:{"name":"web"}`, `v:"a"`, `i:0`.
    fn encode(&self) -> String {
        match self {
            Element::Field(name) => format!("f:{name}"),
            Element::Key(fields) => {
                let body: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{}:{}", go_json(&json!(name)), go_json(value)))
                    .collect();
                format!("k:{{{}}}", body.join(","))
            }
            Element::Value(value) => format!("v:{}", go_json(value)),
            Element::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key; `Ok(None)` for kinds of element this server does not know, which
    /// upstream skips too.
    fn decode(text: &str) -> Result<Option<Element>, ()> {
        let (kind, body) = text.split_at_checked(2).ok_or(())?;
        Ok(Some(match kind {
            "f:" => Element::Field(body.to_string()),
            "k:" => {
                let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body) else {
                    return Err(());
                };
                let mut fields: Vec<(String, Value)> = map.into_iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Element::Key(fields)
            }
            "v:" => Element::Value(serde_json::from_str(body).map_err(|_| ())?),
            "i:" => Element::Index(body.parse().map_err(|_| ())?),
            _ if kind.ends_with(':') => return Ok(None),
            _ => return Err(()),
        }))
    }

    /// As upstream prints paths in conflicts: `.name`, `[name="web"]`, `[="a"]`, `[0]`.
    fn display(&self) -> String {
        match self {
            Element::Field(name) => format!(".{name}"),
            Element::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{name}={}", value_string(value)))
                    .collect();
                format!("[{}]", parts.join(","))
            }
            Element::Value(value) => format!("[={}]", value_string(value)),
            Element::Index(i) => format!("[{i}]"),
        }
    }
}

fn display_path(path: &[Element]) -> String {
    path.iter().map(Element::display).collect()
}

impl Ord for Element {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Element::Field(a), Element::Field(b)) => a.cmp(b),
            (Element::Key(a), Element::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b) {
                    let c = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Element::Value(a), Element::Value(b)) => compare_values(a, b),
            (Element::Index(a), Element::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Element {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Element {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Element {}

/// Upstream's total order of values: numbers, strings, booleans, lists, maps, null.
fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (integer(x), integer(y)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (x, y) in x.iter().zip(y) {
                let c = compare_values(x, y);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for (i, key) in keys.into_iter().enumerate() {
                if i == x.len() {
                    return Ordering::Less;
                }
                if i == y.len() {
                    return Ordering::Greater;
                }
                let c = match (x.get(key), y.get(key)) {
                    (None, _) => Ordering::Greater,
                    (_, None) => Ordering::Less,
                    (Some(x), Some(y)) => compare_values(x, y),
                };
                if c != Ordering::Equal {
                    return c;
                }
            }
            Ordering::Equal
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn integer(n: &serde_json::Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

/// A value as upstream prints it inside paths: strings quoted, the rest as JSON.
fn value_string(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(value_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", value_string(v)))
            .collect(),
        other => other.to_string(),
    }
}

/// JSON as Go's encoder writes it: object keys sorted, HTML characters escaped.
fn go_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value)
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// A set of field paths as a tree: `members` end a path here, `children` continue it. Children
/// are never empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Set {
    members: BTreeSet<Element>,
    children: BTreeMap<Element, Set>,
}

impl Set {
    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds a path; the empty path (the whole object) is not tracked.
    fn insert(&mut self, path: &[Element]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => match self.children.get_mut(first) {
                Some(child) => child.insert(rest),
                None => {
                    let mut child = Set::default();
                    child.insert(rest);
                    self.children.insert(first.clone(), child);
                }
            },
        }
    }

    fn has(&self, path: &[Element]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.absorb(other.clone());
        out
    }

    /// Adds every path of `other`, taking its elements rather than copying them.
    fn absorb(&mut self, other: Set) {
        if self.is_empty() {
            *self = other;
            return;
        }
        self.members.extend(other.members);
        for (pe, child) in other.children {
            match self.children.get_mut(&pe) {
                Some(mine) => mine.absorb(child),
                None => {
                    self.children.insert(pe, child);
                }
            }
        }
    }

    /// Paths of `self` not in `other`; a member of `other` does not remove paths below it.
    fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        Set { members, children }
    }

    fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    children.insert(pe.clone(), both);
                }
            }
        }
        Set { members, children }
    }

    /// Every path, members before deeper paths, as upstream iterates them.
    fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for pe in &self.members {
            let mut path = prefix.clone();
            path.push(pe.clone());
            out.push(path);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 object: elements in order, `.` where a path both ends and continues.
    fn to_fields(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".into(), json!({}));
        }
        // Members and children are both sorted: merge them rather than collect and look up.
        let mut members = self.members.iter().peekable();
        let mut children = self.children.iter().peekable();
        loop {
            let (pe, value) = match (members.peek(), children.peek()) {
                (None, None) => break,
                (Some(&member), Some(&(pe, child))) if member == pe => {
                    members.next();
                    children.next();
                    (pe, Value::Object(child.emit(true)))
                }
                (Some(&member), Some(&(pe, _))) if member < pe => {
                    members.next();
                    (member, Value::Object(Map::new()))
                }
                (_, Some(&(pe, child))) => {
                    children.next();
                    (pe, Value::Object(child.emit(false)))
                }
                (Some(&member), None) => {
                    members.next();
                    (member, Value::Object(Map::new()))
                }
            };
            out.insert(pe.encode(), value);
        }
        out
    }

    /// Parses FieldsV1; None when it is malformed.
    fn from_fields(fields: &Value) -> Option<Set> {
        let Value::Object(map) = fields else {
            return None;
        };
        Some(Set::read(map)?.0)
    }

    /// The set below one FieldsV1 object and whether the object also names its own path.
    fn read(map: &Map<String, Value>) -> Option<(Set, bool)> {
        let mut set = Set::default();
        let mut member = false;
        for (key, value) in map {
            if key == "." {
                member = true;
                continue;
            }
            let Some(pe) = Element::decode(key).ok()? else {
                continue;
            };
            let Value::Object(inner) = value else {
                return None;
            };
            let (child, child_member) = Set::read(inner)?;
            if child_member {
                set.members.insert(pe.clone());
            }
            if !child.is_empty() {
                set.children.insert(pe, child);
            }
        }
        // `{}` names a leaf.
        if set.is_empty() {
            member = true;
        }
        Some((set, member))
    }
}

// ---------------------------------------------------------------------------------------------
// Types: what the schema says about a value's lists and maps.

/// How the elements of a list are identified.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListKind {
    /// Owned and replaced whole.
    Atomic,
    /// Scalars identified by value.
    Set,
    /// Objects identified by these key fields.
    Map(Vec<String>),
}

/// A position in the kind's schema: the property schema that led here (which carries list and
/// map markers) and the definition it resolves to. Untyped positions have neither.
#[derive(Clone, Copy)]
struct Ty {
    schemas: &'static Schemas,
    site: Option<&'static Map<String, Value>>,
    node: Option<&'static Map<String, Value>>,
    name: Option<&'static str>,
}

impl Ty {
    fn root(resource: &Resource) -> Ty {
        let schemas = schemas();
        match schemas.root_schema(resource) {
            Some((name, node)) => Ty {
                schemas,
                site: None,
                node: Some(node),
                name: Some(name),
            },
            None => Ty::untyped(schemas),
        }
    }

    fn untyped(schemas: &'static Schemas) -> Ty {
        Ty {
            schemas,
            site: None,
            node: None,
            name: None,
        }
    }

    fn at(self, site: &'static Value) -> Ty {
        let resolved = self.schemas.resolve_schema(site);
        Ty {
            schemas: self.schemas,
            site: site.as_object(),
            node: resolved.map(|r| r.1),
            name: resolved.and_then(|r| r.0),
        }
    }

    fn properties(self) -> Option<&'static Map<String, Value>> {
        get(self.node?, "properties")?.as_object()
    }

    /// Whether `key` is a declared field of a struct (rather than a key of a map).
    fn has_field(self, key: &str) -> bool {
        self.properties().is_some_and(|p| get(p, key).is_some())
    }

    fn field(self, key: &str) -> Ty {
        if let Some(property) = self.properties().and_then(|p| get(p, key)) {
            return self.at(property);
        }
        match self.node.and_then(|n| get(n, "additionalProperties")) {
            Some(values) if values.is_object() => self.at(values),
            _ => Ty::untyped(self.schemas),
        }
    }

    fn items(self) -> Ty {
        match self.node.and_then(|n| get(n, "items")) {
            Some(items) => self.at(items),
            None => Ty::untyped(self.schemas),
        }
    }

    fn marker(self, name: &str) -> Option<&'static Value> {
        self.site
            .and_then(|s| get(s, name))
            .or_else(|| self.node.and_then(|n| get(n, name)))
    }

    /// Upstream's reading of the markers: `x-kubernetes-list-type` first; else a list merged by
    /// a patch merge key is a map list keyed by it; everything else is atomic.
    fn list_kind(self) -> ListKind {
        match self
            .marker("x-kubernetes-list-type")
            .and_then(Value::as_str)
        {
            Some("set") => ListKind::Set,
            Some("map") => {
                let keys: Vec<String> = self
                    .marker("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|keys| {
                        keys.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                if keys.is_empty() {
                    ListKind::Atomic
                } else {
                    ListKind::Map(keys)
                }
            }
            Some(_) => ListKind::Atomic,
            None => {
                let merges = self
                    .marker("x-kubernetes-patch-strategy")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.split(',').any(|s| s.trim() == "merge"));
                match self
                    .marker("x-kubernetes-patch-merge-key")
                    .and_then(Value::as_str)
                {
                    Some(key) if merges => ListKind::Map(vec![key.to_string()]),
                    _ => ListKind::Atomic,
                }
            }
        }
    }

    /// Whether a map or struct here is owned and replaced whole.
    fn map_atomic(self) -> bool {
        match self.marker("x-kubernetes-map-type").and_then(Value::as_str) {
            Some(kind) => kind == "atomic",
            None => self.name.is_some_and(|n| ATOMIC_TYPES.contains(&n)),
        }
    }

    /// The default of a field of the elements here, standing in for a missing list-map key.
    fn key_default(self, field: &str) -> Option<Value> {
        if let Some(default) = self
            .properties()
            .and_then(|p| p.get(field))
            .and_then(|f| f.get("default"))
        {
            return Some(default.clone());
        }
        let name = self.name?;
        KEY_DEFAULTS
            .iter()
            .find(|(ty, key, _)| *ty == name && *key == field)
            .map(|(_, _, value)| Value::String((*value).to_string()))
    }
}

/// The elements of a set or map list with the path element naming each; an error for elements
/// that cannot be named (upstream's messages).
fn keyed<'v>(
    items: &'v [Value],
    ty: Ty,
    kind: &ListKind,
) -> Result<Vec<(Element, &'v Value)>, String> {
    let element_ty = ty.items();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let pe = match kind {
            ListKind::Atomic => return Err("invalid indexing of non-associative list".into()),
            ListKind::Map(keys) => {
                let Value::Object(map) = item else {
                    return Err(if item.is_null() {
                        format!(
                            "element {i}: associative list with keys may not have a null element"
                        )
                    } else {
                        format!(
                            "element {i}: associative list with keys may not have non-map elements"
                        )
                    });
                };
                let mut fields: Vec<(String, Value)> = keys
                    .iter()
                    .filter_map(|k| {
                        let value = map.get(k).cloned().or_else(|| element_ty.key_default(k))?;
                        Some((k.clone(), value))
                    })
                    .collect();
                if fields.is_empty() {
                    return Err(format!(
                        "element {i}: associative list with keys has an element that omits all key fields {keys:?} (and doesn't have default values for any key fields)"
                    ));
                }
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Element::Key(fields)
            }
            ListKind::Set => match item {
                Value::Object(_) => {
                    return Err(format!(
                        "element {i}: associative list without keys has an element that's a map type"
                    ));
                }
                Value::Array(_) => {
                    return Err(format!(
                        "element {i}: not supported: associative list with lists as elements"
                    ));
                }
                Value::Null => {
                    return Err(format!(
                        "element {i}: associative list without keys has an element that's an explicit null"
                    ));
                }
                scalar => Element::Value(scalar.clone()),
            },
        };
        out.push((pe, item));
    }
    Ok(out)
}

/// Checks the applied object's lists as upstream's typed conversion does: elements of set and
/// map lists must be nameable and unique.
fn validate(value: &Value, ty: Ty, path: &mut Path) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                path.push(Element::Field(key.clone()));
                validate(child, ty.field(key), path)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            let kind = ty.list_kind();
            if kind == ListKind::Atomic {
                for (i, item) in items.iter().enumerate() {
                    path.push(Element::Index(i));
                    validate(item, ty.items(), path)?;
                    path.pop();
                }
                return Ok(());
            }
            let elements =
                keyed(items, ty, &kind).map_err(|e| format!("{}: {e}", display_path(path)))?;
            let mut seen = BTreeSet::new();
            for (pe, item) in elements {
                if !seen.insert(pe.clone()) {
                    return Err(format!(
                        "{}: duplicate entries for key {}",
                        display_path(path),
                        pe.display()
                    ));
                }
                path.push(pe);
                validate(item, ty.items(), path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Walks of values along their types: field sets, comparisons, merges and removals.

/// The fields a value sets: leaves, map entries, list elements and empty or null fields.
fn field_set(value: &Value, ty: Ty) -> Set {
    let mut set = Set::default();
    collect_fields(value, ty, &mut Vec::new(), &mut set);
    set
}

fn collect_fields(value: &Value, ty: Ty, path: &mut Path, set: &mut Set) {
    match value {
        Value::Object(map) => {
            if ty.map_atomic() {
                set.insert(path);
                return;
            }
            for (key, child) in map {
                path.push(Element::Field(key.clone()));
                collect_fields(child, ty.field(key), path, set);
                let empty = child.is_null() || child.as_object().is_some_and(Map::is_empty);
                if empty || !ty.has_field(key) {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let kind = ty.list_kind();
            let elements = match kind {
                ListKind::Atomic => Err(String::new()),
                _ => keyed(items, ty, &kind),
            };
            let Ok(elements) = elements else {
                set.insert(path);
                return;
            };
            let mut seen = BTreeSet::new();
            let mut duplicates = BTreeSet::new();
            for (pe, _) in &elements {
                if !seen.insert(pe) && duplicates.insert(pe) {
                    // Upstream owns a duplicated element as a whole.
                    path.push(pe.clone());
                    set.insert(path);
                    path.pop();
                }
            }
            for (pe, item) in &elements {
                if duplicates.contains(pe) {
                    continue;
                }
                path.push(pe.clone());
                collect_fields(item, ty.items(), path, set);
                set.insert(path);
                path.pop();
            }
        }
        _ => set.insert(path),
    }
}

/// Fields removed, changed and added from one object to another.
#[derive(Debug, Default)]
struct Comparison {
    removed: Set,
    modified: Set,
    added: Set,
}

impl Comparison {
    fn of(old: &Value, new: &Value, ty: Ty) -> Comparison {
        let mut out = Comparison::default();
        compare(Some(old), Some(new), ty, &mut Vec::new(), &mut out);
        out
    }

    fn scoped(self, scope: Scope) -> Comparison {
        Comparison {
            removed: scope.filter(self.removed),
            modified: scope.filter(self.modified),
            added: scope.filter(self.added),
        }
    }
}

/// How a pair of values is walked: as maps, as lists, or as one leaf.
enum Shape {
    Map,
    List,
    Leaf,
}

/// Maps and lists meet their own kind or null (an empty container); anything else is a leaf.
fn shape(lhs: Option<&Value>, rhs: Option<&Value>) -> Shape {
    let present = || lhs.into_iter().chain(rhs);
    let all = |f: fn(&Value) -> bool| present().all(|v| f(v) || v.is_null());
    if present().any(Value::is_object) && all(Value::is_object) {
        Shape::Map
    } else if present().any(Value::is_array) && all(Value::is_array) {
        Shape::List
    } else {
        Shape::Leaf
    }
}

fn is_empty_container(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

fn compare(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    ty: Ty,
    path: &mut Path,
    out: &mut Comparison,
) {
    let both_empty = is_empty_container(lhs) && is_empty_container(rhs);
    let leaf = match shape(lhs, rhs) {
        Shape::Map if !ty.map_atomic() && !both_empty => {
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let keys = l.keys().chain(r.keys().filter(|k| get(l, k).is_none()));
            for key in keys {
                path.push(Element::Field(key.clone()));
                compare(get(l, key), get(r, key), ty.field(key), path, out);
                path.pop();
            }
            false
        }
        Shape::List if !both_empty => {
            let empty = Vec::new();
            let l = lhs.and_then(Value::as_array).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_array).unwrap_or(&empty);
            compare_lists(l, r, ty, path, out).is_err()
        }
        _ => true,
    };
    match (lhs, rhs) {
        (None, _) => out.added.insert(path),
        (_, None) => out.removed.insert(path),
        (Some(l), Some(r)) if leaf && !values_equal(l, r) => out.modified.insert(path),
        _ => {}
    }
}

/// Compares the elements of a set or map list; an error when the list is atomic or its
/// elements cannot be named, so that it is compared whole.
fn compare_lists(
    lhs: &[Value],
    rhs: &[Value],
    ty: Ty,
    path: &mut Path,
    out: &mut Comparison,
) -> Result<(), ()> {
    let kind = ty.list_kind();
    if kind == ListKind::Atomic {
        return Err(());
    }
    let l = keyed(lhs, ty, &kind).map_err(|_| ())?;
    let r = keyed(rhs, ty, &kind).map_err(|_| ())?;
    let mut order: Vec<Element> = Vec::new();
    let mut l_values: BTreeMap<Element, Vec<&Value>> = BTreeMap::new();
    for (pe, item) in l {
        let entry = l_values.entry(pe.clone()).or_default();
        if entry.is_empty() {
            order.push(pe);
        }
        entry.push(item);
    }
    let mut r_values: BTreeMap<Element, Vec<&Value>> = BTreeMap::new();
    for (pe, item) in r {
        let entry = r_values.entry(pe.clone()).or_default();
        if entry.is_empty() && !l_values.contains_key(&pe) {
            order.push(pe);
        }
        entry.push(item);
    }
    let items = ty.items();
    for pe in order {
        let l = l_values.get(&pe).map(Vec::as_slice).unwrap_or_default();
        let r = r_values.get(&pe).map(Vec::as_slice).unwrap_or_default();
        path.push(pe);
        match (l, r) {
            ([], []) => {}
            (l, r) if l.len() <= 1 && r.len() <= 1 => {
                compare(l.first().copied(), r.first().copied(), items, path, out);
            }
            (l, r) if l.len() >= 2 && r.len() >= 2 => {
                let same = l.len() == r.len() && l.iter().zip(r).all(|(a, b)| values_equal(a, b));
                if !same {
                    out.modified.insert(path);
                }
            }
            (l, r) if l.len() >= 2 => {
                // Duplicates resolved: the survivor is new, the duplicated element gone.
                if let Some(single) = r.first() {
                    compare(None, Some(*single), items, path, out);
                }
                out.removed.insert(path);
            }
            (l, _) => {
                if let Some(single) = l.first() {
                    compare(Some(*single), None, items, path, out);
                }
                out.added.insert(path);
            }
        }
        path.pop();
    }
    Ok(())
}

/// `rhs` merged into `lhs`: maps merge by field, set and map lists by element, and everything
/// else (scalars, atomic lists and maps) takes the value of `rhs`.
fn merge(lhs: Option<&Value>, rhs: Option<&Value>, ty: Ty) -> Option<Value> {
    let (l, r) = match (lhs, rhs) {
        (None, None) => return None,
        (Some(l), None) => return Some(l.clone()),
        (None, Some(r)) => return Some(r.clone()),
        (Some(l), Some(r)) => (l, r),
    };
    let both_empty = is_empty_container(lhs) && is_empty_container(rhs);
    match shape(lhs, rhs) {
        Shape::Map if !ty.map_atomic() && !both_empty => {
            let empty = Map::new();
            let lm = l.as_object().unwrap_or(&empty);
            let rm = r.as_object().unwrap_or(&empty);
            let mut out = Map::new();
            for (key, value) in lm {
                if let Some(merged) = merge(Some(value), rm.get(key), ty.field(key)) {
                    out.insert(key.clone(), merged);
                }
            }
            for (key, value) in rm {
                if !lm.contains_key(key) {
                    out.insert(key.clone(), value.clone());
                }
            }
            Some(Value::Object(out))
        }
        Shape::List if !both_empty => {
            let empty = Vec::new();
            let ll = l.as_array().unwrap_or(&empty);
            let rl = r.as_array().unwrap_or(&empty);
            Some(match merge_lists(ll, rl, ty) {
                Some(items) => Value::Array(items),
                None => r.clone(),
            })
        }
        _ => Some(r.clone()),
    }
}

/// Merges set or map lists element by element, ordering the result as upstream does: applied
/// elements in applied order, live-only elements kept near their live neighbours. None when the
/// list is atomic or its elements cannot be named.
fn merge_lists(lhs: &[Value], rhs: &[Value], ty: Ty) -> Option<Vec<Value>> {
    let kind = ty.list_kind();
    if kind == ListKind::Atomic {
        return None;
    }
    let r = keyed(rhs, ty, &kind).ok()?;
    let l = keyed(lhs, ty, &kind).ok()?;
    let items = ty.items();

    let mut observed_r: BTreeMap<&Element, &Value> = BTreeMap::new();
    let mut r_pes: Vec<&Element> = Vec::new();
    for (pe, item) in &r {
        if !observed_r.contains_key(pe) {
            observed_r.insert(pe, item);
            r_pes.push(pe);
        }
    }
    // A live element that is duplicated is merged as null: the applied one replaces them.
    let mut observed_l: BTreeMap<&Element, &Value> = BTreeMap::new();
    for (pe, item) in &l {
        if observed_l.insert(pe, item).is_some() {
            observed_l.insert(pe, &NULL);
        }
    }
    let mut shared: VecDeque<&Element> = r_pes
        .iter()
        .copied()
        .filter(|pe| observed_l.contains_key(pe))
        .collect();
    let mut next_shared = shared.pop_front();
    let mut merged_r: BTreeSet<&Element> = BTreeSet::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let (mut li, mut ri) = (0, 0);
    while li < l.len() || ri < r_pes.len() {
        if li < l.len() && ri < r_pes.len() {
            let pe = &l[li].0;
            if pe == r_pes[ri] {
                merged_r.insert(pe);
                out.extend(merge(
                    observed_l.get(pe).copied(),
                    observed_r.get(pe).copied(),
                    items,
                ));
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if observed_r.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                // A shared element, but not the next one in applied order.
                li += 1;
                continue;
            }
        }
        if li < l.len() {
            let (pe, item) = &l[li];
            if !observed_r.contains_key(pe) {
                out.push((*item).clone());
                li += 1;
                continue;
            } else if merged_r.contains(pe) {
                li += 1;
            }
        }
        if ri < r_pes.len() {
            let pe = r_pes[ri];
            merged_r.insert(pe);
            out.extend(merge(
                observed_l.get(pe).copied(),
                observed_r.get(pe).copied(),
                items,
            ));
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    Some(out)
}

/// `value` without the paths in `to_remove` (a member removes the path and everything below).
/// None when nothing is left; maps keep an emptied field as null, as upstream does.
fn remove(value: &Value, ty: Ty, to_remove: &Set) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.is_empty() || ty.map_atomic() {
                return None;
            }
            let mut out = Map::new();
            for (key, child) in map {
                let pe = Element::Field(key.clone());
                if to_remove.members.contains(&pe) {
                    continue;
                }
                let kept = match to_remove.children.get(&pe) {
                    Some(below) => remove(child, ty.field(key), below).unwrap_or(Value::Null),
                    None => child.clone(),
                };
                out.insert(key.clone(), kept);
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            let kind = ty.list_kind();
            if items.is_empty() || kind == ListKind::Atomic {
                return None;
            }
            let elements = keyed(items, ty, &kind).ok()?;
            let mut out = Vec::with_capacity(items.len());
            for (pe, item) in elements {
                if to_remove.members.contains(&pe) {
                    continue;
                }
                match to_remove.children.get(&pe) {
                    Some(below) => out.extend(remove(item, ty.items(), below)),
                    None => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        scalar => Some(scalar.clone()),
    }
}

fn remove_fields(value: &Value, ty: Ty, to_remove: &Set) -> Value {
    remove(value, ty, to_remove).unwrap_or_else(|| json!({}))
}

/// `set` with every struct field it reaches into made a member too, so that removing the set
/// removes those fields (maps and list elements are not added).
fn with_named_fields(set: &Set, ty: Ty) -> Set {
    let mut out = Set {
        members: set.members.clone(),
        children: BTreeMap::new(),
    };
    for (pe, child) in &set.children {
        let child_ty = match pe {
            Element::Field(name) => {
                if ty.has_field(name) {
                    out.members.insert(pe.clone());
                }
                ty.field(name)
            }
            Element::Key(_) => ty.items(),
            _ => Ty::untyped(ty.schemas),
        };
        out.children
            .insert(pe.clone(), with_named_fields(child, child_ty));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Managers and their entries.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One managedFields entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: Operation,
    api_version: String,
    subresource: String,
    time: Option<String>,
    set: Set,
}

impl Entry {
    fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> Entry {
        Entry {
            manager: manager.to_string(),
            operation,
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
            time: None,
            set: Set::default(),
        }
    }

    fn id(&self) -> String {
        identifier(
            &self.manager,
            self.operation,
            &self.api_version,
            &self.subresource,
        )
    }

    fn conflict(&self, path: &[Element]) -> Conflict {
        Conflict {
            manager: self.manager.clone(),
            api_version: self.api_version.clone(),
            field: display_path(path),
            operation: self.operation.as_str().to_string(),
            subresource: self.subresource.clone(),
        }
    }

    fn to_json(&self) -> Value {
        self.json_with(self.set.to_fields())
    }

    /// The entry with `fields` as its FieldsV1.
    fn json_with(&self, fields: Value) -> Value {
        // Sized for every member at once: growing an IndexMap reallocates and rehashes it.
        let mut out = Map::with_capacity(7);
        out.insert("manager".into(), json!(self.manager));
        out.insert("operation".into(), json!(self.operation.as_str()));
        out.insert("apiVersion".into(), json!(self.api_version));
        if let Some(time) = &self.time {
            out.insert("time".into(), json!(time));
        }
        out.insert("fieldsType".into(), json!("FieldsV1"));
        out.insert("fieldsV1".into(), fields);
        if !self.subresource.is_empty() {
            out.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(out)
    }

    /// Reads an entry as upstream validates it: a known operation, an apiVersion, FieldsV1.
    fn from_json(value: &Value) -> Option<Entry> {
        let text = |field: &str| value.get(field).and_then(Value::as_str).unwrap_or("");
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        if text("apiVersion").is_empty() || text("fieldsType") != "FieldsV1" {
            return None;
        }
        let set = match value.get("fieldsV1") {
            None | Some(Value::Null) => Set::default(),
            Some(fields) => Set::from_fields(fields)?,
        };
        Some(Entry {
            manager: text("manager").to_string(),
            operation,
            api_version: text("apiVersion").to_string(),
            subresource: text("subresource").to_string(),
            time: value
                .get("time")
                .and_then(Value::as_str)
                .map(str::to_string),
            set,
        })
    }
}

/// Upstream's manager identifier: the entry's JSON without fields, type and time, and without
/// the apiVersion for appliers (so that an applier stays one entry across versions).
fn identifier(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> String {
    let mut out = format!(
        "{{\"manager\":{},\"operation\":\"{}\"",
        quote(manager),
        operation.as_str()
    );
    if operation == Operation::Update && !api_version.is_empty() {
        out.push_str(&format!(",\"apiVersion\":{}", quote(api_version)));
    }
    if !subresource.is_empty() {
        out.push_str(&format!(",\"subresource\":{}", quote(subresource)));
    }
    out.push('}');
    out
}

/// Entries by manager identifier.
type Managers = BTreeMap<String, Entry>;

fn decode_managers(list: &Value) -> Option<Managers> {
    let mut out = Managers::new();
    for item in list.as_array()? {
        let entry = Entry::from_json(item)?;
        out.insert(entry.id(), entry);
    }
    Some(out)
}

/// An object's `metadata.managedFields` (looked up field by field: a JSON pointer is parsed and
/// unescaped anew on every call).
fn managed_fields(object: &Value) -> Option<&Value> {
    object.get("metadata")?.get("managedFields")
}

/// The managers recorded on an object; None when its managedFields are malformed.
fn managed_of(object: &Value) -> Option<Managers> {
    match managed_fields(object) {
        None | Some(Value::Null) => Some(Managers::new()),
        Some(list) => decode_managers(list),
    }
}

/// The managers an update starts from: those the client sent (so that managedFields can be
/// edited), unless the write is to a subresource or the client sent none or garbage. `[]` and
/// `[{}]` reset them.
fn managed_for_update(old: Option<&Value>, new: &Value, subresource: bool) -> Managers {
    let live = || old.and_then(managed_of).unwrap_or_default();
    if subresource {
        return live();
    }
    match managed_fields(new) {
        Some(Value::Array(items))
            if items.is_empty()
                || (items.len() == 1
                    && items[0]
                        .as_object()
                        .is_some_and(|e| e.values().all(Value::is_null))) =>
        {
            Managers::new()
        }
        Some(list @ Value::Array(_)) => match decode_managers(list) {
            Some(managers) if !managers.is_empty() => managers,
            _ => live(),
        },
        _ => live(),
    }
}

/// Writes the entries in upstream's order: appliers first, then by time, manager, apiVersion
/// and subresource.
fn write_managed_fields(object: &mut Value, managers: &Managers) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    if managers.is_empty() {
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.shift_remove("managedFields");
        }
        return;
    }
    let mut entries: Vec<&Entry> = managers.values().collect();
    entries.sort_by(|a, b| {
        a.operation
            .as_str()
            .cmp(b.operation.as_str())
            .then_with(|| seconds(&a.time).cmp(&seconds(&b.time)))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    set_managed_fields(object, entries.into_iter().map(Entry::to_json).collect());
}

fn set_managed_fields(object: &mut Value, entries: Vec<Value>) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("managedFields".into(), Value::Array(entries));
    }
}

fn seconds(time: &Option<String>) -> i64 {
    time.as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// Which part of an object a write owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Whole,
    /// The main resource of a kind with a status subresource: status is not its to own.
    NoStatus,
    /// The status subresource.
    StatusOnly,
}

impl Scope {
    fn of(resource: &Resource, subresource: Option<&str>) -> Scope {
        match subresource {
            Some("status") => Scope::StatusOnly,
            _ if resource.status => Scope::NoStatus,
            _ => Scope::Whole,
        }
    }

    fn filter(self, mut set: Set) -> Set {
        let status = Element::Field("status".into());
        match self {
            Scope::Whole => {}
            Scope::NoStatus => {
                set.members.remove(&status);
                set.children.remove(&status);
            }
            Scope::StatusOnly => {
                set.members.retain(|pe| *pe == status);
                set.children.retain(|pe, _| *pe == status);
            }
        }
        set
    }
}

/// Drops what nobody owns: type and server-set metadata.
fn strip_server_fields(set: &mut Set) {
    let named = |pe: &Element, names: &[&str]| matches!(pe, Element::Field(f) if names.contains(&f.as_str()));
    set.members
        .retain(|pe| !named(pe, &["apiVersion", "kind", "metadata"]));
    let metadata = Element::Field("metadata".into());
    if let Some(meta) = set.children.get_mut(&metadata) {
        meta.members.retain(|pe| !named(pe, SERVER_METADATA));
        if meta.is_empty() {
            set.children.remove(&metadata);
        }
    }
}

/// Compares `old` with `new` and takes what changed from every manager but `workflow`: fields
/// changed or added leave their owners (conflicts unless `force`), removed fields leave
/// everyone. Entries left empty are dropped. Returns what changed or was added.
fn take_changes(
    old: &Value,
    new: &Value,
    root: Ty,
    managers: &mut Managers,
    workflow: &str,
    force: bool,
    scope: Scope,
) -> Result<Set, Vec<(Conflict, Path)>> {
    let comparison = Comparison::of(old, new, root).scoped(scope);
    let Comparison {
        removed,
        mut modified,
        added,
    } = comparison;
    modified.absorb(added);
    let changed = modified;
    let mut taken: Vec<(String, Set)> = Vec::new();
    for (id, entry) in managers.iter() {
        if id == workflow {
            continue;
        }
        let conflict = entry.set.intersection(&changed);
        if !conflict.is_empty() {
            taken.push((id.clone(), conflict));
        }
    }
    if !force && !taken.is_empty() {
        let mut conflicts = Vec::new();
        for (id, set) in &taken {
            if let Some(entry) = managers.get(id) {
                conflicts.extend(set.paths().into_iter().map(|p| (entry.conflict(&p), p)));
            }
        }
        return Err(conflicts);
    }
    for (id, set) in taken {
        if let Some(entry) = managers.get_mut(&id) {
            entry.set = entry.set.difference(&set);
        }
    }
    if !removed.is_empty() {
        for (id, entry) in managers.iter_mut() {
            if id != workflow {
                entry.set = entry.set.difference(&removed);
            }
        }
    }
    // An applier keeps its entry even when it owns nothing (it applied only a name): that
    // records that the object is tracked, so its next apply does not credit every field to
    // `before-first-apply` and rewrite the object.
    managers
        .retain(|id, e| !e.set.is_empty() || (id == workflow && e.operation == Operation::Apply));
    Ok(changed)
}

/// Records a write from `old` to `new` by `updater`: what changed becomes its own (merged into
/// its entry, stamped with `now`); a write that changes nothing leaves the entries alone.
fn record(
    managers: &mut Managers,
    old: &Value,
    new: &Value,
    root: Ty,
    updater: Entry,
    scope: Scope,
    now: &str,
) {
    let Ok(changed) = take_changes(old, new, root, managers, CURRENT_OPERATION, true, scope) else {
        return;
    };
    let mut set = scope.filter(changed);
    strip_server_fields(&mut set);
    if set.is_empty() {
        return;
    }
    let entry = managers.entry(updater.id()).or_insert(updater);
    entry.set.absorb(set);
    entry.time = Some(now.to_string());
}

/// What a create's manager owns of the fields it set: at the root not apiVersion, kind or
/// metadata itself (nor status, where the write's scope leaves it out); in metadata, not what
/// the server sets. ([`Scope::filter`] and [`strip_server_fields`], applied on the way down.)
#[derive(Debug, Clone, Copy)]
enum Owning {
    Root(Scope),
    Metadata,
    All,
}

impl Owning {
    /// How the fields below `key` are owned; None when nothing of them is.
    fn below(self, key: &str) -> Option<Owning> {
        match self {
            Owning::Root(Scope::NoStatus) if key == "status" => None,
            Owning::Root(Scope::StatusOnly) if key != "status" => None,
            Owning::Root(_) if key == "metadata" => Some(Owning::Metadata),
            _ => Some(Owning::All),
        }
    }

    /// Whether the field `key` can be owned itself, beyond what it holds.
    fn owns(self, key: &str) -> bool {
        match self {
            Owning::Root(_) => !["apiVersion", "kind", "metadata"].contains(&key),
            Owning::Metadata => !SERVER_METADATA.contains(&key),
            Owning::All => true,
        }
    }
}

/// What [`compare`] of `lhs` with `rhs` counts as added or modified, written straight as the
/// FieldsV1 that [`Set::emit`] writes of that set, with no set built in between (a create's
/// fields, from its kind's zero value): whether this path itself is among them, and the fields
/// below it, None when there are none. `marked` puts `.` first, for a path its parent owns as
/// well as what it holds.
fn changed_fields(
    lhs: Option<&Value>,
    rhs: &Value,
    ty: Ty,
    owning: Owning,
    marked: bool,
) -> (bool, Option<Map<String, Value>>) {
    let both_empty = is_empty_container(lhs) && is_empty_container(Some(rhs));
    let mut out = Map::new();
    if marked {
        out.insert(".".into(), json!({}));
    }
    let leaf = match shape(lhs, Some(rhs)) {
        Shape::Map if !ty.map_atomic() && !both_empty => {
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let mut fields: Vec<(&String, &Value)> =
                rhs.as_object().unwrap_or(&empty).iter().collect();
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
            // Fields only `lhs` has were removed: nothing of them is added or modified.
            for (key, value) in fields {
                let Some(below) = owning.below(key) else {
                    continue;
                };
                let old = get(l, key);
                let owned = owning.owns(key);
                let (member, held) =
                    changed_fields(old, value, ty.field(key), below, owned && old.is_none());
                emit_field(&mut out, || format!("f:{key}"), member && owned, held);
            }
            false
        }
        Shape::List if !both_empty => {
            let l = lhs.and_then(Value::as_array).map(Vec::as_slice);
            let r = rhs.as_array().map(Vec::as_slice).unwrap_or_default();
            !list_changed_fields(l.unwrap_or_default(), r, ty, &mut out)
        }
        _ => true,
    };
    let member = match lhs {
        None => true,
        Some(l) => leaf && !values_equal(l, rhs),
    };
    let held = out.len() > usize::from(marked);
    (member, held.then_some(out))
}

/// Writes one element of a FieldsV1 object: `{}` for a path owned itself, what it holds else.
fn emit_field(
    out: &mut Map<String, Value>,
    name: impl FnOnce() -> String,
    member: bool,
    held: Option<Map<String, Value>>,
) {
    match held {
        Some(held) => {
            out.insert(name(), Value::Object(held));
        }
        None if member => {
            out.insert(name(), json!({}));
        }
        None => {}
    }
}

/// [`changed_fields`] for the elements of a set or map list, as [`compare_lists`] pairs them,
/// written into `out`; false when the list is compared whole.
fn list_changed_fields(lhs: &[Value], rhs: &[Value], ty: Ty, out: &mut Map<String, Value>) -> bool {
    let kind = ty.list_kind();
    if kind == ListKind::Atomic {
        return false;
    }
    let (Ok(l), Ok(r)) = (keyed(lhs, ty, &kind), keyed(rhs, ty, &kind)) else {
        return false;
    };
    let mut l_values: BTreeMap<&Element, Vec<&Value>> = BTreeMap::new();
    for (pe, item) in &l {
        l_values.entry(pe).or_default().push(item);
    }
    let mut r_values: BTreeMap<&Element, Vec<&Value>> = BTreeMap::new();
    for (pe, item) in &r {
        r_values.entry(pe).or_default().push(item);
    }
    let items = ty.items();
    // Elements only `lhs` has were removed: nothing of them is added or modified.
    for (pe, r) in &r_values {
        let l = l_values.get(pe).map(Vec::as_slice).unwrap_or_default();
        let (member, held) = match (l, r.as_slice()) {
            (l, [single]) if l.len() <= 1 => {
                let old = l.first().copied();
                changed_fields(old, single, items, Owning::All, old.is_none())
            }
            (l, r) if l.len() >= 2 && r.len() >= 2 => {
                let same = l.len() == r.len() && l.iter().zip(r).all(|(a, b)| values_equal(a, b));
                (!same, None)
            }
            // Duplicates resolved: the survivor is new.
            (_, [single]) => (
                true,
                changed_fields(None, single, items, Owning::All, true).1,
            ),
            // Duplicated now: the element is owned whole.
            _ => (true, None),
        };
        emit_field(out, || pe.encode(), member, held);
    }
    true
}

/// Upstream keeps at most ten update entries, folding the oldest into `ancient-changes` per
/// apiVersion.
fn cap_update_managers(managers: &mut Managers) {
    let mut updaters: Vec<(i64, String)> = managers
        .iter()
        .filter(|(_, e)| e.operation == Operation::Update)
        .map(|(id, e)| (seconds(&e.time), id.clone()))
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort();
    let mut length = updaters.len();
    let mut first_of_version: BTreeMap<String, String> = BTreeMap::new();
    for (_, id) in updaters {
        if length <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(entry) = managers.get(&id).cloned() else {
            continue;
        };
        let Some(first) = first_of_version.get(&entry.api_version).cloned() else {
            first_of_version.insert(entry.api_version.clone(), id);
            continue;
        };
        let bucket_id = identifier(ANCIENT_CHANGES, Operation::Update, &entry.api_version, "");
        if !managers.contains_key(&bucket_id)
            && let Some(mut bucket) = managers.remove(&first)
        {
            bucket.manager = ANCIENT_CHANGES.into();
            bucket.subresource.clear();
            managers.insert(bucket_id.clone(), bucket);
        }
        managers.remove(&id);
        if let Some(bucket) = managers.get_mut(&bucket_id) {
            bucket.set = bucket.set.union(&entry.set);
            bucket.time = entry.time;
        }
        length -= 1;
    }
}

/// The apply itself: `config` merged into `live`, the applier's entry set to what it applied,
/// what it stopped applying pruned, and changed fields taken from their owners.
fn apply_fields(
    live: &Value,
    config: &Value,
    root: Ty,
    mut managers: Managers,
    applier: Entry,
    scope: Scope,
    force: bool,
) -> Result<(Value, Managers), Vec<(Conflict, Path)>> {
    let id = applier.id();
    let merged = merge(Some(live), Some(config), root).unwrap_or_else(|| json!({}));
    let previous = managers.get(&id);
    let last = previous.map(|e| e.set.clone()).unwrap_or_default();
    let time = previous.and_then(|e| e.time.clone());
    managers.insert(
        id.clone(),
        Entry {
            set: scope.filter(field_set(config, root)),
            time,
            ..applier
        },
    );
    let merged = prune(merged, &managers, &last, root);
    take_changes(live, &merged, root, &mut managers, &id, force, scope)?;
    // The applier's entry stays even when it owns nothing (it applied only a name): that records
    // that the object is tracked, so its next apply does not credit every field to
    // `before-first-apply` and rewrite the object.
    if let Some(entry) = managers.get_mut(&id) {
        strip_server_fields(&mut entry.set);
    }
    Ok((merged, managers))
}

/// Removes from `merged` the fields the applier applied last time (`last`) but not now, unless
/// some manager (the applier included) still owns them or they were never the applier's alone.
fn prune(merged: Value, managers: &Managers, last: &Set, root: Ty) -> Value {
    if last.is_empty() {
        return merged;
    }
    let last = with_named_fields(last, root);
    let pruned = remove_fields(&merged, root, &last);

    // Add back what anyone owns.
    let owned = managers
        .values()
        .fold(Set::default(), |all, e| all.union(&e.set));
    let merged_set = with_named_fields(&field_set(&merged, root), root);
    let pruned_set = with_named_fields(&field_set(&pruned, root), root);
    let keep = pruned_set.union(&with_named_fields(&owned, root));
    let pruned = remove_fields(&merged, root, &merged_set.difference(&keep));

    // Add back what was removed but never the applier's: only its own fields may go.
    let pruned_set = with_named_fields(&field_set(&pruned, root), root);
    let dropped = merged_set.difference(&pruned_set).intersection(&last);
    remove_fields(&merged, root, &dropped)
}

// ---------------------------------------------------------------------------------------------
// kubectl's client-side apply annotation.

fn has_last_applied(object: &Value) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .is_some_and(|a| !a.is_empty())
}

/// The fields of the last-applied configuration whose live values still match it: kubectl's
/// server-side apply may take those over from client-side apply without conflicts.
fn last_applied_fields(live: &Value, root: Ty, api_version: &str) -> Option<Set> {
    let text = live
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    let set = field_set(&last, root);
    let comparison = Comparison::of(&last, live, root);
    Some(
        set.difference(&comparison.modified)
            .difference(&comparison.added)
            .difference(&comparison.removed),
    )
}

/// The annotation value for an applied object, as kubectl writes it: sorted JSON of the
/// object without the annotation, newline-terminated.
fn last_applied_of(applied: &Value) -> String {
    let mut object = applied.clone();
    if let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.shift_remove(LAST_APPLIED);
    }
    format!("{}\n", go_json(&object))
}

fn set_annotation(object: &mut Value, key: &str, value: String) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(key.to_string(), Value::String(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;

    const T0: &str = "2024-05-01T10:00:00Z";
    const T1: &str = "2024-05-01T11:00:00Z";
    const T2: &str = "2024-05-01T12:00:00Z";

    fn deployments() -> &'static Resource {
        find("apps", "v1", "deployments").expect("deployments are served")
    }

    fn config_maps() -> &'static Resource {
        find("", "v1", "configmaps").expect("configmaps are served")
    }

    fn deployment(replicas: i64) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}
                    ]}
                }
            }
        })
    }

    fn entries(object: &Value) -> &Vec<Value> {
        object["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields")
    }

    fn entry<'a>(object: &'a Value, manager: &str) -> Option<&'a Value> {
        entries(object).iter().find(|e| e["manager"] == manager)
    }

    fn owned(object: &Value, manager: &str) -> Set {
        entry(object, manager)
            .and_then(|e| Set::from_fields(&e["fieldsV1"]))
            .unwrap_or_default()
    }

    fn path(text: &[&str]) -> Path {
        text.iter().map(|f| Element::Field((*f).into())).collect()
    }

    fn conflicts(result: Result<Value, ApplyError>) -> Vec<Conflict> {
        match result {
            Err(ApplyError::Conflicts(c)) => c,
            other => panic!("expected conflicts, got {other:?}"),
        }
    }

    #[test]
    fn applying_the_same_deployment_twice_changes_nothing_and_keeps_one_apply_entry() {
        let r = deployments();
        let first = apply(r, None, &deployment(2), "kubectl", false, T0).unwrap();
        let second = apply(r, Some(&first), &deployment(2), "kubectl", false, T1).unwrap();
        assert_eq!(
            second, first,
            "a repeated apply is a no-op, entry time included"
        );
        assert_eq!(entries(&second).len(), 1);
        let e = &entries(&second)[0];
        assert_eq!(e["manager"], "kubectl");
        assert_eq!(e["operation"], "Apply");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert_eq!(e["time"], T0);
    }

    #[test]
    fn the_fields_of_an_applied_deployment_match_upstreams_fieldsv1() {
        let applied = apply(deployments(), None, &deployment(2), "kubectl", false, T0).unwrap();
        let expected = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {},
                            "f:containerPort": {}
                        }}
                    }}}
                }
            }
        });
        let fields = &entries(&applied)[0]["fieldsV1"];
        // Compared as text: the order of keys is part of the format.
        assert_eq!(fields.to_string(), expected.to_string());
        assert_eq!(Set::from_fields(fields).unwrap().to_fields(), *fields);
    }

    #[test]
    fn a_second_applier_changing_replicas_conflicts_with_the_first_naming_the_field_and_manager() {
        let r = deployments();
        let live = apply(r, None, &deployment(2), "alice", false, T0).unwrap();
        let mut bobs = deployment(5);
        bobs["spec"].as_object_mut().unwrap().remove("template");
        let found = conflicts(apply(r, Some(&live), &bobs, "bob", false, T1));
        assert_eq!(
            found,
            vec![Conflict {
                manager: "alice".into(),
                api_version: "apps/v1".into(),
                field: ".spec.replicas".into(),
                operation: "Apply".into(),
                subresource: String::new(),
            }]
        );
        let message = ApplyError::Conflicts(found).to_string();
        assert_eq!(
            message,
            "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
        );
    }

    #[test]
    fn applying_an_equal_value_shares_the_field_without_conflict() {
        let r = deployments();
        let live = apply(r, None, &deployment(2), "alice", false, T0).unwrap();
        let shared = apply(r, Some(&live), &deployment(2), "bob", false, T1).unwrap();
        let replicas = path(&["spec", "replicas"]);
        assert!(owned(&shared, "alice").has(&replicas));
        assert!(owned(&shared, "bob").has(&replicas));
    }

    #[test]
    fn forcing_takes_the_conflicting_field_over() {
        let r = deployments();
        let live = apply(r, None, &deployment(2), "alice", false, T0).unwrap();
        let forced = apply(r, Some(&live), &deployment(5), "bob", true, T1).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let replicas = path(&["spec", "replicas"]);
        assert!(owned(&forced, "bob").has(&replicas));
        assert!(!owned(&forced, "alice").has(&replicas));
        // Fields both applied with equal values stay shared.
        assert!(owned(&forced, "alice").has(&path(&["spec", "selector"])));
    }

    #[test]
    fn dropping_a_field_from_the_applied_config_removes_it_from_the_object() {
        let r = deployments();
        let mut with_tier = deployment(2);
        with_tier["metadata"]["labels"]["tier"] = json!("front");
        let live = apply(r, None, &with_tier, "kubectl", false, T0).unwrap();
        assert_eq!(live["metadata"]["labels"]["tier"], "front");
        let mut without = deployment(2);
        without["spec"].as_object_mut().unwrap().remove("replicas");
        let next = apply(r, Some(&live), &without, "kubectl", false, T1).unwrap();
        assert!(next["metadata"]["labels"].get("tier").is_none());
        assert!(next["spec"].get("replicas").is_none());
        assert_eq!(next["metadata"]["labels"]["app"], "web");
        assert!(!owned(&next, "kubectl").has(&path(&["metadata", "labels", "tier"])));
        assert_eq!(entry(&next, "kubectl").unwrap()["time"], T1);
    }

    #[test]
    fn a_field_an_updater_also_owns_survives_when_the_applier_drops_it() {
        let r = deployments();
        let mut created = deployment(3);
        record_update(r, None, &mut created, "kubectl-create", None, T0);
        let mut with_tier = deployment(3);
        with_tier["metadata"]["labels"]["tier"] = json!("front");
        let applied = apply(r, Some(&created), &with_tier, "kubectl", false, T1).unwrap();
        let replicas = path(&["spec", "replicas"]);
        assert!(owned(&applied, "kubectl-create").has(&replicas));
        assert!(owned(&applied, "kubectl").has(&replicas));

        let mut smaller = deployment(3);
        smaller["spec"].as_object_mut().unwrap().remove("replicas");
        let next = apply(r, Some(&applied), &smaller, "kubectl", false, T2).unwrap();
        assert_eq!(next["spec"]["replicas"], 3, "still owned by kubectl-create");
        assert!(!owned(&next, "kubectl").has(&replicas));
        assert!(
            next["metadata"]["labels"].get("tier").is_none(),
            "kubectl alone owned the tier label"
        );
    }

    #[test]
    fn containers_merge_by_name_so_a_second_appliers_sidecar_survives_beside_the_first() {
        let r = deployments();
        let live = apply(r, None, &deployment(2), "alice", false, T0).unwrap();
        let sidecar = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "log", "image": "busybox"}]}}}
        });
        let both = apply(r, Some(&live), &sidecar, "bob", false, T1).unwrap();
        let names: Vec<&Value> = both["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["name"])
            .collect();
        assert_eq!(names, [&json!("web"), &json!("log")]);
        assert_eq!(both["spec"]["replicas"], 2);

        // Alice re-applying her own container list leaves Bob's container alone.
        let again = apply(r, Some(&both), &deployment(2), "alice", false, T2).unwrap();
        assert_eq!(
            again["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let log = Element::Key(vec![("name".into(), json!("log"))]);
        let mut bobs = path(&["spec", "template", "spec", "containers"]);
        bobs.push(log);
        assert!(owned(&again, "bob").has(&bobs));
    }

    #[test]
    fn fields_nobody_owns_such_as_defaults_survive_when_the_applier_drops_others() {
        let r = deployments();
        let mut with_tier = deployment(2);
        with_tier["metadata"]["labels"]["tier"] = json!("front");
        let mut live = apply(r, None, &with_tier, "kubectl", false, T0).unwrap();
        // What admission defaults after the apply belongs to no manager.
        live["spec"]["progressDeadlineSeconds"] = json!(600);
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] =
            json!("IfNotPresent");
        let next = apply(r, Some(&live), &deployment(2), "kubectl", false, T1).unwrap();
        assert!(next["metadata"]["labels"].get("tier").is_none());
        assert_eq!(next["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            next["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }

    #[test]
    fn a_list_element_the_applier_stops_applying_is_removed_unless_another_owns_it() {
        let r = deployments();
        let mut two = deployment(2);
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "log", "image": "busybox"}));
        two["metadata"]["finalizers"] = json!(["a.io/x"]);
        let live = apply(r, None, &two, "alice", false, T0).unwrap();
        let bobs = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "finalizers": ["b.io/y"]}
        });
        let live = apply(r, Some(&live), &bobs, "bob", false, T1).unwrap();
        assert_eq!(live["metadata"]["finalizers"], json!(["a.io/x", "b.io/y"]));

        let next = apply(r, Some(&live), &deployment(2), "alice", false, T2).unwrap();
        let containers = next["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "web");
        assert_eq!(next["metadata"]["finalizers"], json!(["b.io/y"]));
        let mut finalizers = path(&["metadata", "finalizers"]);
        finalizers.push(Element::Value(json!("b.io/y")));
        assert!(owned(&next, "bob").has(&finalizers));
        assert_eq!(
            entry(&next, "bob").unwrap()["fieldsV1"],
            json!({"f:metadata": {"f:finalizers": {"v:\"b.io/y\"": {}}}})
        );
    }

    #[test]
    fn a_port_applied_without_its_protocol_is_the_defaulted_live_port() {
        let r = deployments();
        let mut live = apply(r, None, &deployment(2), "kubectl", false, T0).unwrap();
        live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        let again = apply(r, Some(&live), &deployment(2), "kubectl", false, T1).unwrap();
        let ports = again["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0]["protocol"], "TCP");
    }

    #[test]
    fn record_update_on_create_makes_the_creator_own_every_field_it_set() {
        let r = deployments();
        let mut created = deployment(2);
        record_update(r, None, &mut created, "kubectl-create", None, T0);
        let all = entries(&created);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0]["operation"], "Update");
        assert_eq!(all[0]["manager"], "kubectl-create");
        assert_eq!(all[0]["time"], T0);
        let set = owned(&created, "kubectl-create");
        for p in [
            path(&["metadata", "labels", "app"]),
            path(&["spec", "replicas"]),
            path(&["spec", "selector"]),
            path(&["spec", "template", "metadata", "labels", "app"]),
        ] {
            assert!(set.has(&p), "{} not owned", display_path(&p));
        }
        let mut image = path(&["spec", "template", "spec", "containers"]);
        image.push(Element::Key(vec![("name".into(), json!("web"))]));
        image.push(Element::Field("image".into()));
        assert!(set.has(&image));
        for p in [
            path(&["metadata", "name"]),
            path(&["apiVersion"]),
            path(&["kind"]),
        ] {
            assert!(!set.has(&p), "{} is the server's", display_path(&p));
        }
        assert_eq!(
            all[0]["fieldsV1"]["f:metadata"]["f:labels"],
            json!({".": {}, "f:app": {}}),
            "an added map is owned itself too"
        );
    }

    #[test]
    fn record_update_moves_a_changed_field_from_its_old_owner_to_the_updater() {
        let r = deployments();
        let mut created = deployment(2);
        record_update(r, None, &mut created, "kubectl-create", None, T0);
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(4);
        record_update(r, Some(&created), &mut scaled, "kubectl-edit", None, T1);
        let replicas = path(&["spec", "replicas"]);
        assert!(owned(&scaled, "kubectl-edit").has(&replicas));
        assert!(!owned(&scaled, "kubectl-create").has(&replicas));
        assert!(owned(&scaled, "kubectl-create").has(&path(&["spec", "selector"])));
        assert_eq!(entry(&scaled, "kubectl-edit").unwrap()["time"], T1);
        assert_eq!(entry(&scaled, "kubectl-create").unwrap()["time"], T0);
    }

    #[test]
    fn a_create_owns_what_the_kinds_zero_value_lacks_as_upstream_records_it() {
        // `kubectl create deployment web --image=nginx` as stored, defaults applied.
        let mut created = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "progressDeadlineSeconds": 600, "replicas": 1, "revisionHistoryLimit": 10,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                    "type": "RollingUpdate"
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "image": "nginx", "imagePullPolicy": "Always", "name": "nginx",
                            "resources": {}, "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File"
                        }],
                        "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                        "schedulerName": "default-scheduler", "securityContext": {},
                        "terminationGracePeriodSeconds": 30
                    }
                }
            },
            "status": {}
        });
        record_update(
            deployments(),
            None,
            &mut created,
            "kubectl-create",
            None,
            T0,
        );
        // What kube-apiserver 1.33 records for the same create: structs of the zero value
        // (strategy, template and its metadata and spec) are not owned themselves.
        let upstream = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:progressDeadlineSeconds": {}, "f:replicas": {}, "f:revisionHistoryLimit": {},
                "f:selector": {},
                "f:strategy": {
                    "f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                    "f:type": {}
                },
                "f:template": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        "f:containers": {"k:{\"name\":\"nginx\"}": {
                            ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                            "f:resources": {}, "f:terminationMessagePath": {},
                            "f:terminationMessagePolicy": {}
                        }},
                        "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                        "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}
                    }
                }
            }
        });
        assert_eq!(
            entry(&created, "kubectl-create").unwrap()["fieldsV1"],
            upstream
        );

        // A ConfigMap's data is a map, absent from the zero value: the create owns it too.
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "sport"}, "data": {"sport": "football"}});
        record_update(config_maps(), None, &mut cm, "kubectl-create", None, T0);
        assert_eq!(
            entry(&cm, "kubectl-create").unwrap()["fieldsV1"],
            json!({"f:data": {".": {}, "f:sport": {}}})
        );
    }

    #[test]
    fn updates_by_one_manager_share_an_entry_and_emptied_entries_disappear() {
        let r = config_maps();
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        record_update(r, None, &mut cm, "creator", None, T0);
        let mut changed = cm.clone();
        changed["data"]["a"] = json!("2");
        record_update(r, Some(&cm), &mut changed, "editor", None, T1);
        // As upstream, the creator keeps the map it created; only the changed field moves.
        let creator = owned(&changed, "creator");
        assert!(creator.has(&path(&["data"])) && !creator.has(&path(&["data", "a"])));
        let mut more = changed.clone();
        more["data"]["b"] = json!("3");
        record_update(r, Some(&changed), &mut more, "editor", None, T2);
        assert_eq!(entries(&more).len(), 2);
        let editor = owned(&more, "editor");
        assert!(editor.has(&path(&["data", "a"])) && editor.has(&path(&["data", "b"])));
        assert_eq!(entry(&more, "editor").unwrap()["time"], T2);

        // A write that changes nothing leaves the entries as they were.
        let mut same = more.clone();
        record_update(r, Some(&more), &mut same, "someone", None, T2);
        assert_eq!(same, more);
        // Through a subresource the same name is another manager.
        let mut status_write = more.clone();
        status_write["data"]["c"] = json!("4");
        record_update(
            r,
            Some(&more),
            &mut status_write,
            "editor",
            Some("scale"),
            T2,
        );
        assert_eq!(entries(&status_write).len(), 3);

        // A removed field leaves every owner; the creator, left with nothing, disappears.
        let mut cleared = more.clone();
        cleared["data"] = json!({"b": "3"});
        record_update(r, Some(&more), &mut cleared, "editor", None, T2);
        assert!(entry(&cleared, "creator").is_some(), "still owns the map");
        let mut dropped = cleared.clone();
        dropped.as_object_mut().unwrap().remove("data");
        dropped["metadata"]["labels"] = json!({"x": "y"});
        record_update(r, Some(&cleared), &mut dropped, "editor", None, T2);
        assert!(
            entry(&dropped, "creator").is_none(),
            "its only field was removed"
        );
        assert!(owned(&dropped, "editor").has(&path(&["metadata", "labels", "x"])));
    }

    #[test]
    fn status_writes_own_only_status_and_main_writes_never_own_status() {
        let r = deployments();
        let mut created = deployment(2);
        created["status"] = json!({"replicas": 1});
        record_update(r, None, &mut created, "kubectl-create", None, T0);
        assert!(entries(&created)[0]["fieldsV1"].get("f:status").is_none());

        let mut reported = created.clone();
        reported["status"]["replicas"] = json!(2);
        reported["status"]["readyReplicas"] = json!(2);
        record_update(
            r,
            Some(&created),
            &mut reported,
            "controller",
            Some("status"),
            T1,
        );
        let e = entry(&reported, "controller").unwrap();
        assert_eq!(e["subresource"], "status");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:status": {"f:readyReplicas": {}, "f:replicas": {}}})
        );
    }

    #[test]
    fn conflicts_with_updaters_name_their_api_version_and_group_by_manager() {
        let r = deployments();
        let mut created = deployment(2);
        record_update(r, None, &mut created, "kubectl-create", None, T0);
        let mut changed = deployment(3);
        changed["metadata"]["labels"]["app"] = json!("other");
        let found = conflicts(apply(r, Some(&created), &changed, "kubectl", false, T1));
        let fields: Vec<&str> = found.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, [".metadata.labels.app", ".spec.replicas"]);
        assert_eq!(
            found[0].message(),
            "conflict with \"kubectl-create\" using apps/v1"
        );
        assert_eq!(
            ApplyError::Conflicts(found).to_string(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl-create\" using apps/v1:\n- .metadata.labels.app\n- .spec.replicas"
        );
    }

    #[test]
    fn an_untracked_object_gets_a_before_first_apply_owner_on_its_first_apply() {
        let r = deployments();
        let live = deployment(2);
        let found = conflicts(apply(
            r,
            Some(&live),
            &deployment(3),
            "kubectl-ssa",
            false,
            T0,
        ));
        assert_eq!(found[0].manager, "before-first-apply");
        assert_eq!(found[0].field, ".spec.replicas");
        let applied = apply(r, Some(&live), &deployment(2), "kubectl-ssa", false, T0).unwrap();
        assert!(entry(&applied, "before-first-apply").is_some());
        assert!(entry(&applied, "kubectl-ssa").is_some());
        // An untracked object stays untracked through updates.
        let mut updated = live.clone();
        updated["spec"]["replicas"] = json!(9);
        record_update(r, Some(&live), &mut updated, "kubectl-edit", None, T0);
        assert!(updated["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn kubectl_takes_over_what_its_client_side_apply_last_applied() {
        let r = deployments();
        let mut manifest = deployment(2);
        let last = last_applied_of(&manifest);
        manifest["metadata"]["annotations"] = json!({LAST_APPLIED: last});
        let mut created = manifest.clone();
        record_update(r, None, &mut created, "kubectl-client-side-apply", None, T0);

        let desired = deployment(3);
        // Another manager would conflict; kubectl may take the fields it last applied.
        assert!(apply(r, Some(&created), &desired, "helm", false, T1).is_err());
        let upgraded = apply(r, Some(&created), &desired, "kubectl", false, T1).unwrap();
        assert_eq!(upgraded["spec"]["replicas"], 3);
        let annotation = upgraded["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap();
        assert!(annotation.ends_with('\n'));
        let recorded: Value = serde_json::from_str(annotation).unwrap();
        assert_eq!(recorded["spec"]["replicas"], 3);
    }

    #[test]
    fn managed_fields_sent_with_an_update_are_kept_and_an_empty_list_resets_them() {
        let r = config_maps();
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        record_update(r, None, &mut cm, "creator", None, T0);
        let mut reset = cm.clone();
        reset["metadata"]["managedFields"] = json!([]);
        reset["data"]["a"] = json!("2");
        record_update(r, Some(&cm), &mut reset, "editor", None, T1);
        assert!(reset["metadata"].get("managedFields").is_none());

        let mut omitted = cm.clone();
        omitted["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        omitted["data"]["b"] = json!("2");
        record_update(r, Some(&cm), &mut omitted, "editor", None, T1);
        assert_eq!(entries(&omitted).len(), 2, "the live entries were kept");
    }

    #[test]
    fn applied_lists_with_duplicate_keys_or_managed_fields_are_invalid() {
        let r = deployments();
        let mut twice = deployment(2);
        let container = twice["spec"]["template"]["spec"]["containers"][0].clone();
        twice["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(container);
        let Err(ApplyError::Invalid(message)) = apply(r, None, &twice, "kubectl", false, T0) else {
            panic!("duplicate containers are invalid");
        };
        assert!(
            message.ends_with(
                ".spec.template.spec.containers: duplicate entries for key [name=\"web\"]"
            ),
            "{message}"
        );
        let mut with_fields = deployment(2);
        with_fields["metadata"]["managedFields"] = json!([]);
        assert!(matches!(
            apply(r, None, &with_fields, "kubectl", false, T0),
            Err(ApplyError::Invalid(m)) if m == "metadata.managedFields must be nil"
        ));
        let mut wrong_kind = deployment(2);
        wrong_kind["kind"] = json!("StatefulSet");
        assert!(matches!(
            apply(r, None, &wrong_kind, "kubectl", false, T0),
            Err(ApplyError::Invalid(m)) if m == "invalid object type: apps/v1, Kind=StatefulSet"
        ));
    }

    #[test]
    fn update_entries_beyond_ten_fold_into_ancient_changes() {
        let r = config_maps();
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"seed": "x"}});
        record_update(r, None, &mut cm, "creator", None, T0);
        for i in 0..12 {
            let mut next = cm.clone();
            next["data"][format!("k{i}")] = json!("v");
            let time = format!("2024-05-01T10:{i:02}:00Z");
            record_update(r, Some(&cm), &mut next, &format!("m{i}"), None, &time);
            cm = next;
        }
        let all = entries(&cm);
        assert_eq!(all.len(), 10);
        let ancient = entry(&cm, "ancient-changes").unwrap();
        assert!(ancient["fieldsV1"]["f:data"].get("f:k0").is_some());
    }

    #[test]
    fn the_manager_defaults_to_the_user_agent_product() {
        assert_eq!(
            default_manager(Some("kubectl/v1.33.1 (linux/amd64) kubernetes/abc")),
            "kubectl"
        );
        assert_eq!(default_manager(Some("kube-rs/0.99")), "kube-rs");
        assert_eq!(default_manager(None), "unknown");
    }

    #[test]
    fn paths_print_as_upstream_prints_them() {
        let p = vec![
            Element::Field("spec".into()),
            Element::Key(vec![
                ("containerPort".into(), json!(80)),
                ("protocol".into(), json!("TCP")),
            ]),
            Element::Value(json!("a")),
            Element::Index(2),
        ];
        assert_eq!(
            display_path(&p),
            ".spec[containerPort=80,protocol=\"TCP\"][=\"a\"][2]"
        );
    }

    /// What the general comparison says a write from `old` to `new` added or modified.
    fn compared(old: &Value, new: &Value, ty: Ty) -> Set {
        let Comparison {
            mut modified,
            added,
            ..
        } = Comparison::of(old, new, ty);
        modified.absorb(added);
        modified
    }

    #[test]
    fn a_create_owns_what_the_general_comparison_with_the_zero_value_finds() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "a"}, "finalizers": ["x", "y"],
                         "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
                                              "name": "o", "uid": "u", "controller": true}]},
            "spec": {
                "containers": [
                    {"name": "a", "image": "i", "args": ["--x", "--x"],
                     "env": [{"name": "E", "value": "1"}, {"name": "F", "value": ""}],
                     "ports": [{"containerPort": 80}, {"containerPort": 80, "protocol": "UDP"}],
                     "resources": {}},
                    {"name": "b", "image": "j", "securityContext": null}
                ],
                "nodeSelector": {},
                "tolerations": [{"key": "k", "operator": "Exists"}]
            },
            "status": {"phase": "Pending"}
        });
        let service = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"}],
                     "selector": {"app": "a"}, "type": "ClusterIP"},
            "status": {"loadBalancer": {}}
        });
        let config_map = json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {}},
            "data": {"k": "v", "empty": ""}, "binaryData": null
        });
        let cases = [
            (deployments(), deployment(2)),
            (find("", "v1", "pods").unwrap(), pod),
            (find("", "v1", "services").unwrap(), service),
            (config_maps(), config_map),
        ];
        for (r, new) in cases {
            let root = Ty::root(r);
            let zero = skeleton(&new, root);
            let (_, fast) = changed_fields(Some(&zero), &new, root, Owning::All, false);
            let fast = Value::Object(fast.expect("fields"));
            // As text: the fields' order counts too.
            let general = compared(&zero, &new, root).to_fields();
            assert_eq!(fast.to_string(), general.to_string(), "{}", r.kind);

            // The whole entry matches what recording the create from the zero value writes.
            let mut general = Managers::new();
            let creator = Entry::new("m", Operation::Update, &r.api_version(), "");
            let scope = Scope::of(r, None);
            record(&mut general, &zero, &new, root, creator, scope, T0);
            let mut object = new.clone();
            record_update(r, None, &mut object, "m", None, T0);
            let mut expected = new.clone();
            write_managed_fields(&mut expected, &general);
            assert_eq!(object.to_string(), expected.to_string(), "{}", r.kind);
        }
    }

    #[test]
    fn the_narrowed_comparison_agrees_on_changed_lists_duplicates_and_nulls() {
        let r = find("", "v1", "pods").unwrap();
        let root = Ty::root(r);
        let pod = |containers: Value, finalizers: Value| {
            json!({"metadata": {"name": "p", "finalizers": finalizers},
                   "spec": {"containers": containers}})
        };
        let pairs = [
            // Elements kept, changed, added and removed.
            (
                pod(
                    json!([{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]),
                    json!(["x"]),
                ),
                pod(
                    json!([{"name": "b", "image": "2"}, {"name": "c", "image": "1"}]),
                    json!(["x", "y"]),
                ),
            ),
            // Duplicates on either side, resolved or kept.
            (
                pod(
                    json!([{"name": "a", "image": "1"}, {"name": "a", "image": "2"}]),
                    json!(["x", "x"]),
                ),
                pod(json!([{"name": "a", "image": "3"}]), json!(["x", "x"])),
            ),
            (
                pod(json!([{"name": "a", "image": "1"}]), json!(["x"])),
                pod(
                    json!([{"name": "a", "image": "1"}, {"name": "a", "image": "1"}]),
                    json!(["y", "y"]),
                ),
            ),
            (
                pod(
                    json!([{"name": "a", "image": "1"}, {"name": "a"}]),
                    json!(["x", "x"]),
                ),
                pod(
                    json!([{"name": "a", "image": "1"}, {"name": "a", "image": "2"}]),
                    json!(["x", "x"]),
                ),
            ),
            // Lists that cannot be named are compared whole; nulls and empty containers.
            (
                pod(json!([{"image": "1"}]), json!(null)),
                pod(json!([{"image": "2"}]), json!([])),
            ),
            (pod(json!(null), json!({})), pod(json!([]), json!(null))),
            (
                json!({"spec": 1}),
                json!({"spec": {"containers": []}, "metadata": null}),
            ),
        ];
        for (old, new) in pairs {
            let (_, fast) = changed_fields(Some(&old), &new, root, Owning::All, false);
            let fast = fast.map(Value::Object).unwrap_or_else(|| json!({}));
            let general = compared(&old, &new, root).to_fields();
            assert_eq!(fast.to_string(), general.to_string(), "{old} -> {new}");
        }
    }
}
