//! Strategic merge patch as upstream's `strategicpatch` package applies it on the server, with
//! merge strategies and keys read from the `x-kubernetes-patch-*` extensions of the definitions.
//!
//! Maps merge key by key and `null` deletes; lists whose field has the `merge` strategy merge
//! element-wise by their merge key (or as sets, for lists of scalars); other lists are replaced.
//! The directives `$patch`, `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>` are applied and never reach the result.

use serde_json::{Map, Value};

use super::{Resolved, Schemas, get};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Why a strategic merge patch could not be applied; messages follow upstream's.
#[derive(Debug, thiserror::Error)]
pub enum StrategicMergeError {
    /// The original or the patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// A value has the wrong JSON type for where it appears.
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        expected: &'static str,
        actual: &'static str,
    },
    /// The patch and the original both set a field the type does not have.
    #[error("unable to find api field in struct {type_name} for the json field {field:?}")]
    UnknownField { type_name: String, field: String },
    /// `$patch` with a value other than `replace` or `delete` (or `merge` in a list).
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType { directive: String, map: String },
    /// `$patch: merge` in a list.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeInList,
    /// An element of a merged list lacks the list's merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    /// A list of objects has the merge strategy but no merge key.
    #[error("cannot merge lists without merge key for type {0}")]
    NoMergeKeyDeclared(String),
    /// A list whose elements are lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A list mixing element types.
    #[error("list element types are not identical: {0}")]
    MixedElementTypes(String),
    /// A malformed `$deleteFromPrimitiveList/<field>` directive.
    #[error("invalid patch format of primitive list")]
    PrimitiveListFormat,
    /// A malformed `$retainKeys` directive, or patch fields missing from it.
    #[error("invalid patch format of retainKeys")]
    RetainKeysFormat,
    /// A malformed `$setElementOrder/<field>` directive.
    #[error("invalid patch format of setElementOrder list")]
    SetElementOrderFormat,
    /// A patch list ordered differently from its `$setElementOrder` list.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch { patch: String, order: String },
}

type Result<T> = std::result::Result<T, StrategicMergeError>;

/// How the lists (and maps) of a field are patched.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Strategy {
    /// Maps merge, lists are replaced.
    #[default]
    Default,
    /// Lists merge by merge key, or as sets of scalars.
    Merge,
    /// The patch value replaces the original.
    Replace,
}

/// What the schema says about one field.
#[derive(Clone, Copy, Default)]
struct Field<'a> {
    schema: Option<&'a Value>,
    strategy: Strategy,
    merge_key: Option<&'a str>,
}

/// Applies `patch` to `original` where `root` describes both.
pub(super) fn merge<'s>(
    schemas: &'s Schemas,
    root: Option<Resolved<'s>>,
    original: &Value,
    patch: &Value,
) -> Result<Value> {
    let (Value::Object(original), Value::Object(patch)) = (original, patch) else {
        return Err(StrategicMergeError::BadJsonDoc);
    };
    let merged = Merger { schemas }.map(original.clone(), patch.clone(), root)?;
    // Upstream answers an empty object when the whole document is deleted.
    Ok(Value::Object(merged.unwrap_or_default()))
}

struct Merger<'s> {
    schemas: &'s Schemas,
}

impl<'s> Merger<'s> {
    /// Looks up a field of the object `node` describes. Errors, as upstream does, only for a
    /// struct that lacks the field; maps, schemaless objects and missing schemas give no metadata.
    fn field(&self, node: Option<Resolved<'s>>, key: &str) -> Result<Field<'s>> {
        let Some(node) = node else {
            return Ok(Field::default());
        };
        if let Some(property) = node.properties().and_then(|p| get(p, key)) {
            return Ok(field_of(property));
        }
        if let Some(values) = node.additional() {
            return Ok(Field {
                schema: Some(values),
                ..Field::default()
            });
        }
        if node.properties().is_some()
            && !node.preserves_unknown()
            && get(node.schema, "additionalProperties") != Some(&Value::Bool(true))
        {
            return Err(StrategicMergeError::UnknownField {
                type_name: node.type_name().to_string(),
                field: key.to_string(),
            });
        }
        Ok(Field::default())
    }

    fn resolve(&self, schema: Option<&'s Value>) -> Option<Resolved<'s>> {
        self.schemas.resolve(schema?)
    }

    /// The schema of the elements of a list field.
    fn items(&self, field: &Field<'s>) -> Option<&'s Value> {
        get(self.resolve(field.schema)?.schema, "items")
    }

    /// Merges `patch` into `original`; `None` when the patch deletes the map (`$patch: delete`).
    fn map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        node: Option<Resolved<'s>>,
    ) -> Result<Option<Map<String, Value>>> {
        if let Some(directive) = patch.shift_remove(DIRECTIVE) {
            return match directive.as_str() {
                // Applied to nothing, so that nested directives are still consumed.
                Some("replace") => self.map(Map::new(), patch, node),
                Some("delete") => Ok(None),
                _ => Err(StrategicMergeError::BadPatchType {
                    directive: display(&directive),
                    map: Value::Object(patch).to_string(),
                }),
            };
        }

        if let Some(retain) = patch.shift_remove(RETAIN_KEYS) {
            let Value::Array(retain) = retain else {
                return Err(StrategicMergeError::RetainKeysFormat);
            };
            let retained = |key: &str| retain.iter().any(|r| r.as_str() == Some(key));
            for (key, value) in &patch {
                if value.is_null()
                    || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                    || key.starts_with(SET_ELEMENT_ORDER)
                {
                    continue;
                }
                if !retained(key) {
                    return Err(StrategicMergeError::RetainKeysFormat);
                }
            }
            original.retain(|key, _| retained(key));
        }

        let orders: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for directive in orders {
            let Some(order) = patch.shift_remove(&directive) else {
                continue;
            };
            self.set_element_order(&mut original, &mut patch, &directive, order, node)?;
        }

        let mut deletions = Vec::new();
        for (key, value) in patch {
            if let Some(rest) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                let field = rest
                    .strip_prefix('/')
                    .filter(|f| !f.is_empty())
                    .ok_or(StrategicMergeError::PrimitiveListFormat)?;
                let Value::Array(values) = value else {
                    return Err(StrategicMergeError::PrimitiveListFormat);
                };
                deletions.push((field.to_string(), values));
                continue;
            }
            if value.is_null() {
                original.shift_remove(&key);
                continue;
            }
            let Some(current) = original.get_mut(&key) else {
                // New fields are not looked up strictly: unknown ones are left to validation.
                let field = self.field(node, &key).unwrap_or_default();
                if let Some(value) = self.fresh(value, &field)? {
                    original.insert(key, value);
                }
                continue;
            };
            if kind(current) != kind(&value) {
                let field = self.field(node, &key).unwrap_or_default();
                match self.fresh(value, &field)? {
                    Some(value) => *current = value,
                    None => {
                        original.shift_remove(&key);
                    }
                }
                continue;
            }
            let field = self.field(node, &key)?;
            match (current.take(), value) {
                (Value::Object(current_map), Value::Object(patch_map)) => {
                    let merged = if field.strategy == Strategy::Replace {
                        self.map(Map::new(), patch_map, self.resolve(field.schema))?
                    } else {
                        self.map(current_map, patch_map, self.resolve(field.schema))?
                    };
                    match merged {
                        Some(merged) => original.insert(key, Value::Object(merged)),
                        None => original.shift_remove(&key),
                    };
                }
                (Value::Array(current_list), Value::Array(patch_list)) => {
                    let merged = self.list(current_list, patch_list, &field)?;
                    original.insert(key, Value::Array(merged));
                }
                (_, value) => {
                    original.insert(key, value);
                }
            }
        }

        for (field, values) in deletions {
            if let Some(Value::Array(current)) = original.get_mut(&field) {
                current.retain(|v| !values.contains(v));
            }
        }
        Ok(Some(original))
    }

    /// A patch value for a field the original lacks: directives are applied against nothing.
    fn fresh(&self, value: Value, field: &Field<'s>) -> Result<Option<Value>> {
        Ok(match value {
            Value::Null => None,
            Value::Object(map) => self
                .map(Map::new(), map, self.resolve(field.schema))?
                .map(Value::Object),
            Value::Array(list) => Some(Value::Array(self.list(Vec::new(), list, field)?)),
            scalar => Some(scalar),
        })
    }

    /// Merges the list of a field according to its strategy.
    fn list(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        field: &Field<'s>,
    ) -> Result<Vec<Value>> {
        let items = self.items(field);
        if field.strategy != Strategy::Merge {
            return self.clean_elements(patch, items);
        }
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let is_map = element_kind(&original, &patch)? == Some(Kind::Object);
        if !is_map {
            let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
            for value in original.iter().chain(patch.iter()) {
                if !merged.contains(value) {
                    merged.push(value.clone());
                }
            }
            let (in_patch, server_only) = partition(merged, &patch, None)?;
            return normalize_order(in_patch, server_only, &patch, &original, None);
        }

        let Some(key) = field.merge_key else {
            return Err(StrategicMergeError::NoMergeKeyDeclared("struct".into()));
        };
        let mut original = original;
        let mut plain = Vec::with_capacity(patch.len());
        let mut replace = false;
        for element in patch {
            let Value::Object(map) = &element else {
                return Err(bad_type("map", &element));
            };
            let Some(directive) = map.get(DIRECTIVE) else {
                plain.push(element);
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    let Some(value) = map.get(key) else {
                        return Err(no_merge_key(map, key));
                    };
                    original.retain(|o| o.get(key) != Some(value));
                }
                Some("replace") => replace = true,
                Some("merge") => return Err(StrategicMergeError::MergeInList),
                _ => {
                    return Err(StrategicMergeError::BadPatchType {
                        directive: display(directive),
                        map: element.to_string(),
                    });
                }
            }
        }
        if replace {
            // The remaining elements are the whole new list.
            return self.clean_elements(plain, items);
        }

        let item_node = self.resolve(items);
        let server_order = original.clone();
        let mut merged = original;
        for element in &plain {
            let Value::Object(patch_map) = element else {
                return Err(bad_type("map", element));
            };
            let Some(value) = patch_map.get(key) else {
                return Err(no_merge_key(patch_map, key));
            };
            let position = merged.iter().position(|o| o.get(key) == Some(value));
            match position {
                Some(i) => {
                    let Value::Object(current) = merged[i].take() else {
                        return Err(bad_type("map", &merged[i]));
                    };
                    if let Some(m) = self.map(current, patch_map.clone(), item_node)? {
                        merged[i] = Value::Object(m);
                    }
                }
                None => {
                    if let Some(m) = self.map(Map::new(), patch_map.clone(), item_node)? {
                        merged.push(Value::Object(m));
                    }
                }
            }
        }
        let (in_patch, server_only) = partition(merged, &plain, Some(key))?;
        normalize_order(in_patch, server_only, &plain, &server_order, Some(key))
    }

    /// Elements of a replaced list, with directives inside them applied.
    fn clean_elements(&self, list: Vec<Value>, items: Option<&'s Value>) -> Result<Vec<Value>> {
        let node = self.resolve(items);
        let mut out = Vec::with_capacity(list.len());
        for element in list {
            match element {
                Value::Object(map) => {
                    if let Some(m) = self.map(Map::new(), map, node)? {
                        out.push(Value::Object(m));
                    }
                }
                other => out.push(other),
            }
        }
        Ok(out)
    }

    /// `$setElementOrder/<field>`: merges the field's list (if the patch has one) and orders the
    /// result by the directive, keeping elements only the server has near their old neighbours.
    fn set_element_order(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        directive: &str,
        order: Value,
        node: Option<Resolved<'s>>,
    ) -> Result<()> {
        let Value::Array(order) = order else {
            return Err(bad_type("slice", &order));
        };
        let key = directive
            .strip_prefix(SET_ELEMENT_ORDER)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|k| !k.is_empty())
            .ok_or(StrategicMergeError::SetElementOrderFormat)?
            .to_string();
        let original_list = match original.get(&key) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(bad_type("slice", other)),
        };
        let patch_list = match patch.shift_remove(&key) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(other) => return Err(bad_type("slice", &other)),
        };
        let field = self.field(node, &key)?;
        let merge_key = field.merge_key;
        if let Some(patch_list) = &patch_list {
            validate_order(patch_list, &order, merge_key)?;
        }
        let merged = match (original_list.clone(), patch_list) {
            (Some(current), None) => current,
            (None, Some(list)) => self.list(Vec::new(), list, &field)?,
            (Some(current), Some(list)) => self.list(current, list, &field)?,
            (None, None) => return Ok(()),
        };
        let (in_order, server_only) = partition(merged, &order, merge_key)?;
        let ordered = normalize_order(
            in_order,
            server_only,
            &order,
            &original_list.unwrap_or_default(),
            merge_key,
        )?;
        original.insert(key, Value::Array(ordered));
        Ok(())
    }
}

fn field_of(property: &Value) -> Field<'_> {
    let marker = |name| property.as_object().and_then(|p| get(p, name));
    let strategies = marker("x-kubernetes-patch-strategy")
        .and_then(Value::as_str)
        .unwrap_or("");
    let strategy = strategies
        .split(',')
        .map(str::trim)
        .fold(Strategy::Default, |acc, s| match s {
            "merge" => Strategy::Merge,
            "replace" => Strategy::Replace,
            // retainKeys works through the `$retainKeys` directive clients send.
            _ => acc,
        });
    Field {
        schema: Some(property),
        strategy,
        merge_key: marker("x-kubernetes-patch-merge-key").and_then(Value::as_str),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn kind(value: &Value) -> Kind {
    match value {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(_) => Kind::Number,
        Value::String(_) => Kind::String,
        Value::Array(_) => Kind::Array,
        Value::Object(_) => Kind::Object,
    }
}

fn kind_name(value: &Value) -> &'static str {
    match kind(value) {
        Kind::Null => "nil",
        Kind::Bool => "bool",
        Kind::Number => "float64",
        Kind::String => "string",
        Kind::Array => "slice",
        Kind::Object => "map",
    }
}

fn bad_type(expected: &'static str, actual: &Value) -> StrategicMergeError {
    StrategicMergeError::BadArgType {
        expected,
        actual: kind_name(actual),
    }
}

fn no_merge_key(map: &Map<String, Value>, key: &str) -> StrategicMergeError {
    StrategicMergeError::NoMergeKey {
        map: Value::Object(map.clone()).to_string(),
        key: key.to_string(),
    }
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The common kind of the elements of some lists; `None` when they are all empty.
fn element_kind(original: &[Value], patch: &[Value]) -> Result<Option<Kind>> {
    let mut found = None;
    for value in original.iter().chain(patch) {
        let k = kind(value);
        if k == Kind::Array {
            return Err(StrategicMergeError::ListOfLists);
        }
        match found {
            None => found = Some(k),
            Some(prev) if prev != k => {
                return Err(StrategicMergeError::MixedElementTypes(format!(
                    "{} {}",
                    Value::Array(original.to_vec()),
                    Value::Array(patch.to_vec())
                )));
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

/// The merge-key value of a map element, or the element itself for scalars.
fn identity<'v>(value: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(key) => value.get(key),
        None => Some(value),
    }
}

fn position_in(list: &[Value], value: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(value, key)?;
    list.iter().position(|v| identity(v, key) == Some(id))
}

/// Splits `merged` into elements present in `by` (by merge key) and the others, keeping order.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut present = Vec::with_capacity(merged.len());
    let mut others = Vec::new();
    for value in merged {
        if let Some(key) = key {
            let Value::Object(map) = &value else {
                // Scalars in a keyed list: compare them whole, as nothing else identifies them.
                if by.contains(&value) {
                    present.push(value);
                } else {
                    others.push(value);
                }
                continue;
            };
            if !map.contains_key(key) {
                return Err(no_merge_key(map, key));
            }
        }
        if position_in(by, &value, key).is_some() {
            present.push(value);
        } else {
            others.push(value);
        }
    }
    Ok((present, others))
}

/// Sorts `list` stably by the positions of its elements in `order`; unknown ones go last.
fn sort_by_order(mut list: Vec<Value>, order: &[Value], key: Option<&str>) -> Result<Vec<Value>> {
    if let Some(key) = key {
        for value in list.iter().chain(order) {
            if let Value::Object(map) = value
                && !map.contains_key(key)
            {
                return Err(no_merge_key(map, key));
            }
        }
    }
    list.sort_by_key(|v| position_in(order, v, key).unwrap_or(usize::MAX));
    Ok(list)
}

/// Orders the patch's elements by `patch_order` and the server-only ones by `server_order`, then
/// interleaves them: a server-only element goes before the first patch element that follows it
/// in `server_order`.
fn normalize_order(
    in_patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>> {
    let right = sort_by_order(in_patch, patch_order, key)?;
    let left = sort_by_order(server_only, server_order, key)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (Some(l), Some(r)) => {
                let before = match (
                    position_in(server_order, l, key),
                    position_in(server_order, r, key),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                };
                if before {
                    out.extend(left.next());
                } else {
                    out.extend(right.next());
                }
            }
        }
    }
    Ok(out)
}

/// Checks that the patch list's elements (deletions aside) appear in the `$setElementOrder` list
/// in the same relative order.
fn validate_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<()> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let deleting = |v: &Value| key.is_some() && v.get(DIRECTIVE) == Some(&Value::from("delete"));
    let kept: Vec<&Value> = patch.iter().filter(|v| !deleting(v)).collect();
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if kept[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        let equal = match key {
            None => kept[p] == &order[o],
            Some(key) => {
                let (Value::Object(left), Value::Object(right)) = (kept[p], &order[o]) else {
                    return Err(bad_type("map", kept[p]));
                };
                let (Some(l), Some(r)) = (left.get(key), right.get(key)) else {
                    let missing = if left.contains_key(key) { right } else { left };
                    return Err(no_merge_key(missing, key));
                };
                l == r
            }
        };
        if equal {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() {
        return Err(StrategicMergeError::SetElementOrderMismatch {
            patch: Value::Array(patch.to_vec()).to_string(),
            order: Value::Array(order.to_vec()).to_string(),
        });
    }
    Ok(())
}
