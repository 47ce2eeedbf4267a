//! Decodes `application/vnd.kubernetes.protobuf` request bodies into the JSON a client would have
//! sent.
//!
//! kubectl sends protobuf for most `create` generators, `auth can-i` and `autoscale`, and never
//! retries with JSON, so the server turns such a body back into JSON and carries on as usual.
//!
//! The walk is generic: a message table derived at build time from the `k8s-pb` crate (see
//! `control/build.rs`) gives each field's tag and wire type, and the kind's OpenAPI schema from
//! k8s-openapi gives its JSON name (matched case-insensitively, which absorbs proto names such as
//! `uID`) and tells embedded Go structs apart: a message field with no property of its own is one
//! whose fields Go inlines into the parent. A few apimachinery messages have their own JSON form.
//!
//! Zero values follow what Go's encoder does: it writes every non-pointer field even when zero, and
//! a pointer set to zero looks the same on the wire. A zero number or boolean is dropped where the
//! Go field is a non-pointer tagged `omitempty` (the table in `omitempty.rs`, read from the Go
//! types), as upstream's JSON would drop it, and kept elsewhere (`replicas: 0`). Empty strings and
//! zero times, which upstream treats as unset anyway, are dropped or null.

use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::registry::{self, RESOURCES};

mod omitempty;

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body lacks the `k8s\0` prefix of Kubernetes' protobuf envelope.
    #[error("body is not a Kubernetes protobuf envelope: it does not start with \"k8s\\x00\"")]
    NotEnveloped,
    /// The `runtime.Unknown` envelope itself does not parse.
    #[error("malformed protobuf envelope: {0}")]
    Envelope(String),
    /// The envelope names a kind this server does not decode.
    #[error("kind {kind:?} of apiVersion {api_version:?} is not served over protobuf")]
    NotServed {
        /// The envelope's `apiVersion`.
        api_version: String,
        /// The envelope's `kind`.
        kind: String,
    },
    /// The envelope says its payload is compressed or otherwise encoded.
    #[error("{kind}: unsupported content encoding {encoding:?} in the protobuf envelope")]
    ContentEncoding {
        /// The envelope's `kind`.
        kind: String,
        /// The envelope's `contentEncoding`.
        encoding: String,
    },
    /// The envelope says its payload is not protobuf.
    #[error("{kind}: unsupported content type {content_type:?} in the protobuf envelope")]
    ContentType {
        /// The envelope's `kind`.
        kind: String,
        /// The envelope's `contentType`.
        content_type: String,
    },
    /// The object inside the envelope does not decode, at the JSON path given.
    #[error("decoding {kind} from protobuf: {path}: {reason}")]
    Field {
        /// The envelope's `kind`.
        kind: String,
        /// The JSON path of the field that failed (`.` for the object itself).
        path: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// Decodes a `k8s\0` + runtime.Unknown protobuf body into the JSON object it carries
/// (apiVersion/kind from the envelope's typeMeta). Errors for bodies that are not
/// protobuf-enveloped or whose kind is not served.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_envelope(body, 0)
}

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// Bounds recursion on untrusted input; real objects nest about a dozen messages deep.
const MAX_DEPTH: usize = 64;

const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

fn decode_envelope(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    let payload = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::NotEnveloped)?;
    let envelope = Envelope::parse(payload).map_err(ProtobufError::Envelope)?;
    let kind = envelope.kind.clone();
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding {
            kind,
            encoding: envelope.content_encoding,
        });
    }
    // Go's protobuf serializer leaves contentType empty; accept it spelled out too.
    if !envelope.content_type.is_empty() && !envelope.content_type.contains("protobuf") {
        return Err(ProtobufError::ContentType {
            kind,
            content_type: envelope.content_type,
        });
    }
    let (message, schema) = target(&envelope.api_version, &envelope.kind)?;
    let mut object = Map::new();
    object.insert("kind".into(), Value::String(envelope.kind.clone()));
    object.insert(
        "apiVersion".into(),
        Value::String(envelope.api_version.clone()),
    );
    let walk = Walk {
        definitions: &schemas().definitions,
    };
    walk.fields(envelope.raw, message, Some(schema), depth, &mut object)
        .map_err(|failure| failure.into_error(&envelope.kind))?;
    Ok(Value::Object(object))
}

/// The `runtime.Unknown` wrapper: typeMeta (1), raw (2), contentEncoding (3), contentType (4).
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Envelope<'a> {
    fn parse(payload: &'a [u8]) -> Result<Self, String> {
        let mut envelope = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
            content_type: String::new(),
        };
        let mut reader = Reader::new(payload);
        while let Some((tag, wire)) = reader.next_field()? {
            match tag {
                1 => {
                    let mut type_meta = Reader::new(wire.bytes("typeMeta")?);
                    while let Some((tag, wire)) = type_meta.next_field()? {
                        match tag {
                            1 => envelope.api_version = wire.string("typeMeta.apiVersion")?,
                            2 => envelope.kind = wire.string("typeMeta.kind")?,
                            _ => {}
                        }
                    }
                }
                2 => envelope.raw = wire.bytes("raw")?,
                3 => envelope.content_encoding = wire.string("contentEncoding")?,
                4 => envelope.content_type = wire.string("contentType")?,
                _ => {}
            }
        }
        Ok(envelope)
    }
}

/// The message and the JSON schema of the object an envelope names.
fn target(
    api_version: &str,
    kind: &str,
) -> Result<(&'static Message, &'static Value), ProtobufError> {
    let schemas = schemas();
    let not_served = || ProtobufError::NotServed {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    };
    let (name, schema) = match (api_version, kind) {
        // Go registers DeleteOptions in every group version: its apiVersion is the resource's.
        (_, "DeleteOptions") => (format!("{META_V1}.DeleteOptions"), &schemas.delete_options),
        ("autoscaling/v1", "Scale") => (
            "k8s.io.api.autoscaling.v1.Scale".to_string(),
            &schemas.scale,
        ),
        ("policy/v1", "Eviction") => (
            "k8s.io.api.policy.v1.Eviction".to_string(),
            &schemas.eviction,
        ),
        _ => {
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let index = RESOURCES
                .iter()
                .position(|r| r.group == group && r.version == version && r.kind == kind)
                .ok_or_else(not_served)?;
            (message_name(&RESOURCES[index]), &schemas.resources[index])
        }
    };
    let message = message(&name).ok_or_else(not_served)?;
    Ok((message, schema))
}

/// The proto name of a served kind: `k8s.io.api.<group's first label, or core>.<version>.<Kind>`.
fn message_name(resource: &registry::Resource) -> String {
    if resource.group == "apiextensions.k8s.io" {
        return format!(
            "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.{}.{}",
            resource.version, resource.kind
        );
    }
    let group = match resource.group {
        "" => "core",
        group => group.split('.').next().unwrap_or(group),
    };
    format!("k8s.io.api.{group}.{}.{}", resource.version, resource.kind)
}

fn message(name: &str) -> Option<&'static Message> {
    MESSAGES
        .binary_search_by(|m| m.name.cmp(name))
        .ok()
        .map(|i| &MESSAGES[i])
}

/// The OpenAPI schemas of every decodable kind, generated once.
struct Schemas {
    definitions: Map<String, Value>,
    /// One root (a `$ref`) per entry of `RESOURCES`, in the same order.
    resources: Vec<Value>,
    delete_options: Value,
    scale: Value,
    eviction: Value,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        use k8s_openapi::{api, apimachinery::pkg::apis::meta};
        let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
        let resources = RESOURCES
            .iter()
            .map(|r| (r.schema)(&mut generator).to_value())
            .collect();
        let delete_options = generator
            .subschema_for::<meta::v1::DeleteOptions>()
            .to_value();
        let scale = generator
            .subschema_for::<api::autoscaling::v1::Scale>()
            .to_value();
        let eviction = generator
            .subschema_for::<api::policy::v1::Eviction>()
            .to_value();
        Schemas {
            definitions: generator.take_definitions(true),
            resources,
            delete_options,
            scale,
            eviction,
        }
    })
}

/// One message of the table generated by `build.rs`.
struct Message {
    /// Full proto name, e.g. `k8s.io.api.apps.v1.Deployment`.
    name: &'static str,
    /// Sorted by tag.
    fields: &'static [Field],
}

struct Field {
    tag: u32,
    /// The prost (snake case) field name: the JSON name, ignoring case and underscores.
    name: &'static str,
    repeated: bool,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int32,
    Int64,
    Double,
    String,
    Bytes,
    /// An index into `MESSAGES`.
    Message(usize),
    /// A `map<string, V>`: repeated entries with key 1 and value 2.
    Map(MapValue),
}

#[derive(Clone, Copy)]
enum MapValue {
    String,
    Bytes,
    Message(usize),
}

include!(concat!(env!("OUT_DIR"), "/k8s_pb_messages.rs"));

/// Messages whose JSON form is not an object of their fields.
#[derive(Clone, Copy, Debug)]
enum Special {
    /// `{seconds, nanos}` → RFC 3339 with seconds; the empty message is Go's zero time → null.
    Time,
    /// Like `Time`, with microseconds.
    MicroTime,
    /// `{string}` → the string.
    Quantity,
    /// `{type, intVal, strVal}` → the string when type is 1, else the number.
    IntOrString,
    /// `{raw}` holding JSON (or a nested protobuf envelope) → that value; empty → null.
    Raw,
    /// `{repeated string items}` → the array.
    StringList,
}

fn special(name: &str) -> Option<Special> {
    let (package, ident) = name.rsplit_once('.')?;
    match (package, ident) {
        (META_V1, "Time") => Some(Special::Time),
        (META_V1, "MicroTime") => Some(Special::MicroTime),
        ("k8s.io.apimachinery.pkg.api.resource", "Quantity") => Some(Special::Quantity),
        ("k8s.io.apimachinery.pkg.util.intstr", "IntOrString") => Some(Special::IntOrString),
        ("k8s.io.apimachinery.pkg.runtime", "RawExtension") | (META_V1, "FieldsV1") => {
            Some(Special::Raw)
        }
        (META_V1, "Verbs") | (_, "ExtraValue") => Some(Special::StringList),
        _ => None,
    }
}

/// A decoding failure with the JSON path to it, gathered innermost first while unwinding.
struct Failure {
    path: Vec<String>,
    reason: String,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Self {
        Failure {
            path: Vec::new(),
            reason: reason.into(),
        }
    }

    fn at(mut self, segment: &str) -> Self {
        self.path.push(segment.to_string());
        self
    }

    fn into_error(mut self, kind: &str) -> ProtobufError {
        self.path.reverse();
        let mut path = String::new();
        for segment in &self.path {
            if !path.is_empty() && !segment.starts_with('[') {
                path.push('.');
            }
            path.push_str(segment);
        }
        if path.is_empty() {
            path.push('.');
        }
        ProtobufError::Field {
            kind: kind.to_string(),
            path,
            reason: self.reason,
        }
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure::new(reason)
    }
}

/// Whether upstream's JSON leaves out `field` of `message` when it is zero: a non-pointer Go
/// number or boolean tagged `omitempty`.
fn omits_zero(message: &str, field: &str) -> bool {
    omitempty::OMITTED_ZEROS
        .binary_search_by_key(&message, |(m, _)| m)
        .is_ok_and(|i| omitempty::OMITTED_ZEROS[i].1.contains(&field))
}

/// The schema-driven walk over one object.
struct Walk<'s> {
    definitions: &'s Map<String, Value>,
}

impl<'s> Walk<'s> {
    /// Decodes the fields of `message` in `bytes` into `out`, which may already hold a parent's
    /// fields when `message` is an embedded Go struct.
    fn fields(
        &self,
        bytes: &[u8],
        message: &'static Message,
        schema: Option<&'s Value>,
        depth: usize,
        out: &mut Map<String, Value>,
    ) -> Result<(), Failure> {
        if depth > MAX_DEPTH {
            return Err(Failure::new(format!(
                "nested more than {MAX_DEPTH} messages deep"
            )));
        }
        let properties = schema.and_then(|s| self.properties(s));
        let mut reader = Reader::new(bytes);
        while let Some((tag, wire)) = reader.next_field()? {
            // Unknown tags come from newer clients; proto semantics say skip them.
            let Ok(index) = message.fields.binary_search_by_key(&tag, |f| f.tag) else {
                continue;
            };
            let field = &message.fields[index];
            let property =
                properties.and_then(|p| p.iter().find(|(name, _)| same_name(field.name, name)));
            if let (None, Kind::Message(inner), false) = (property, field.kind, field.repeated)
                && properties.is_some_and(|p| embeds(&MESSAGES[inner], p))
            {
                // Its fields fail under their own names, which are the parent's JSON names.
                let payload = wire.bytes(field.name)?;
                self.fields(payload, &MESSAGES[inner], schema, depth + 1, out)?;
                continue;
            }
            let (name, property) = match property {
                Some((name, property)) => (name.clone(), Some(property)),
                None => (lower_camel(field.name), None),
            };
            self.field(field, wire, property, depth, &name, out)
                .map_err(|f| f.at(&name))?;
            // Go writes non-pointer numbers and booleans even when zero; JSON omits those
            // tagged omitempty.
            let zero = |v: &Value| *v == Value::Bool(false) || v.as_f64() == Some(0.0);
            if out.get(&name).is_some_and(zero) && omits_zero(message.name, &name) {
                out.remove(&name);
            }
        }
        Ok(())
    }

    /// Decodes one occurrence of `field` into `out[name]`.
    fn field(
        &self,
        field: &Field,
        wire: Wire<'_>,
        property: Option<&'s Value>,
        depth: usize,
        name: &str,
        out: &mut Map<String, Value>,
    ) -> Result<(), Failure> {
        if let Kind::Map(value_kind) = field.kind {
            let values = self.subschema(property, "additionalProperties");
            let (key, value) = self.map_entry(wire.bytes(name)?, value_kind, values, depth)?;
            let entry = out
                .entry(name.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = entry {
                map.insert(key, value);
            }
            return Ok(());
        }
        if field.repeated {
            let items = out
                .entry(name.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            // Only an embedded struct's scalar of the same name can sit there; it keeps its place.
            let Value::Array(items) = items else {
                return Ok(());
            };
            let element = self.subschema(property, "items");
            match (field.kind, wire) {
                // Packed numbers: proto3 encoders may send them so, even where Go never does.
                (Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Double, Wire::Bytes(packed)) => {
                    let mut reader = Reader::new(packed);
                    while !reader.is_empty() {
                        let wire = match field.kind {
                            Kind::Double => Wire::Fixed64(reader.fixed64()?),
                            _ => Wire::Varint(reader.varint()?),
                        };
                        items.push(self.value(field.kind, wire, element, depth)?);
                    }
                }
                (kind, wire) => {
                    let at = format!("[{}]", items.len());
                    items.push(
                        self.value(kind, wire, element, depth)
                            .map_err(|f| f.at(&at))?,
                    );
                }
            }
            return Ok(());
        }
        let value = self.value(field.kind, wire, property, depth)?;
        // Go writes non-pointer strings even when empty; empty means unset to every reader.
        if value.as_str().is_some_and(str::is_empty)
            && matches!(field.kind, Kind::String | Kind::Bytes)
        {
            out.remove(name);
            return Ok(());
        }
        out.insert(name.to_string(), value);
        Ok(())
    }

    fn map_entry(
        &self,
        bytes: &[u8],
        value_kind: MapValue,
        schema: Option<&'s Value>,
        depth: usize,
    ) -> Result<(String, Value), Failure> {
        let kind = match value_kind {
            MapValue::String => Kind::String,
            MapValue::Bytes => Kind::Bytes,
            MapValue::Message(index) => Kind::Message(index),
        };
        let mut key = String::new();
        let mut value = None;
        let mut reader = Reader::new(bytes);
        while let Some((tag, wire)) = reader.next_field()? {
            match tag {
                1 => key = wire.string("map key")?,
                2 => value = Some(wire),
                _ => {}
            }
        }
        // An absent value is the value type's zero, which for strings and bytes is kept: a label
        // or a ConfigMap key may well be empty.
        let wire = value.unwrap_or(Wire::Bytes(&[]));
        let value = self
            .value(kind, wire, schema, depth)
            .map_err(|f| f.at(&key))?;
        Ok((key, value))
    }

    /// The JSON value of one wire value of `kind`.
    fn value(
        &self,
        kind: Kind,
        wire: Wire<'_>,
        schema: Option<&'s Value>,
        depth: usize,
    ) -> Result<Value, Failure> {
        Ok(match kind {
            Kind::Bool => Value::Bool(wire.varint("bool")? != 0),
            // Go sign-extends negative int32s to ten-byte varints; truncating undoes that.
            Kind::Int32 => Value::from(wire.varint("int32")? as i32),
            // Kubernetes' JSON writes int64 as numbers, unlike proto3's JSON mapping.
            Kind::Int64 => Value::from(wire.varint("int64")? as i64),
            Kind::Double => {
                let bits = match wire {
                    Wire::Fixed64(bits) => bits,
                    _ => return Err(Failure::new("expected a 64-bit double")),
                };
                serde_json::Number::from_f64(f64::from_bits(bits))
                    .map(Value::Number)
                    .ok_or_else(|| Failure::new("double is not a finite number"))?
            }
            Kind::String => Value::String(wire.string("string")?),
            Kind::Bytes => Value::String(
                base64::engine::general_purpose::STANDARD.encode(wire.bytes("bytes")?),
            ),
            Kind::Message(index) => {
                self.message(&MESSAGES[index], wire.bytes("message")?, schema, depth + 1)?
            }
            Kind::Map(_) => return Err(Failure::new("a map cannot be a map's value")),
        })
    }

    /// The JSON value of one message: an object of its fields, or its special form.
    fn message(
        &self,
        message: &'static Message,
        bytes: &[u8],
        schema: Option<&'s Value>,
        depth: usize,
    ) -> Result<Value, Failure> {
        if depth > MAX_DEPTH {
            return Err(Failure::new(format!(
                "nested more than {MAX_DEPTH} messages deep"
            )));
        }
        let Some(special) = special(message.name) else {
            let mut object = Map::new();
            self.fields(bytes, message, schema, depth, &mut object)?;
            return Ok(Value::Object(object));
        };
        let mut reader = Reader::new(bytes);
        let mut fields = Vec::new();
        while let Some(field) = reader.next_field()? {
            fields.push(field);
        }
        let last = |tag: u32| {
            fields
                .iter()
                .rev()
                .find(|(t, _)| *t == tag)
                .map(|(_, w)| *w)
        };
        Ok(match special {
            Special::Time | Special::MicroTime => {
                if fields.is_empty() {
                    return Ok(Value::Null);
                }
                let seconds = last(1)
                    .map(|w| w.varint("seconds"))
                    .transpose()?
                    .unwrap_or(0) as i64;
                let nanos = last(2).map(|w| w.varint("nanos")).transpose()?.unwrap_or(0) as i32;
                let time = u32::try_from(nanos)
                    .ok()
                    .and_then(|nanos| chrono::DateTime::from_timestamp(seconds, nanos))
                    .ok_or_else(|| {
                        Failure::new(format!("time {seconds}s {nanos}ns is out of range"))
                    })?;
                let format = match special {
                    Special::Time => "%Y-%m-%dT%H:%M:%SZ",
                    _ => "%Y-%m-%dT%H:%M:%S%.6fZ",
                };
                Value::String(time.format(format).to_string())
            }
            Special::Quantity => Value::String(
                last(1)
                    .map(|w| w.string("quantity"))
                    .transpose()?
                    .unwrap_or_default(),
            ),
            Special::IntOrString => {
                let is_string = last(1).map(|w| w.varint("type")).transpose()? == Some(1);
                if is_string {
                    Value::String(
                        last(3)
                            .map(|w| w.string("strVal"))
                            .transpose()?
                            .unwrap_or_default(),
                    )
                } else {
                    Value::from(
                        last(2)
                            .map(|w| w.varint("intVal"))
                            .transpose()?
                            .unwrap_or(0) as i32,
                    )
                }
            }
            Special::Raw => {
                let raw = last(1)
                    .map(|w| w.bytes("raw"))
                    .transpose()?
                    .unwrap_or_default();
                if raw.is_empty() {
                    Value::Null
                } else if raw.starts_with(MAGIC) {
                    decode_envelope(raw, depth + 1).map_err(|e| Failure::new(e.to_string()))?
                } else {
                    serde_json::from_slice(raw)
                        .map_err(|e| Failure::new(format!("raw is not JSON: {e}")))?
                }
            }
            Special::StringList => Value::Array(
                fields
                    .iter()
                    .filter(|(tag, _)| *tag == 1)
                    .map(|(_, w)| w.string("items").map(Value::String))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Follows `$ref`s and the `allOf: [$ref]` wrapper schemars puts around described references.
    fn resolve(&self, mut schema: &'s Value) -> &'s Value {
        for _ in 0..16 {
            if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
                match reference
                    .rsplit('/')
                    .next()
                    .and_then(|name| self.definitions.get(name))
                {
                    Some(target) => schema = target,
                    None => break,
                }
            } else if let Some(first) = schema.get("allOf").and_then(|all| all.get(0)) {
                schema = first;
            } else {
                break;
            }
        }
        schema
    }

    fn properties(&self, schema: &'s Value) -> Option<&'s Map<String, Value>> {
        self.resolve(schema)
            .get("properties")
            .and_then(Value::as_object)
    }

    fn subschema(&self, schema: Option<&'s Value>, key: &str) -> Option<&'s Value> {
        schema.and_then(|s| self.resolve(s).get(key))
    }
}

/// Whether a message field that has no property of its own is a Go struct embedded in the parent:
/// some of its fields are properties of the parent. (A field the schema simply does not know yet,
/// from a newer proto, stays a field of its own.)
fn embeds(inner: &Message, parent: &Map<String, Value>) -> bool {
    inner
        .fields
        .iter()
        .any(|f| parent.keys().any(|name| same_name(f.name, name)))
}

/// Compares a prost field name with a JSON property name, ignoring case and separators: prost
/// turns `uID` into `u_id` and `aPIGroup` into `a_pi_group`.
fn same_name(field: &str, property: &str) -> bool {
    let significant = |b: &u8| !matches!(b, b'_' | b'-' | b'$');
    field
        .bytes()
        .filter(significant)
        .map(|b| b.to_ascii_lowercase())
        .eq(property
            .bytes()
            .filter(significant)
            .map(|b| b.to_ascii_lowercase()))
}

/// The JSON name of a field the schema does not know: `restart_policy_rules` →
/// `restartPolicyRules`.
fn lower_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// One field's value as it appears on the wire.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    /// No Kubernetes field is 32-bit fixed; such values are only skipped.
    Fixed32,
}

impl<'a> Wire<'a> {
    fn varint(self, what: &str) -> Result<u64, String> {
        match self {
            Wire::Varint(v) => Ok(v),
            _ => Err(format!(
                "{what}: expected a varint, found {}",
                self.describe()
            )),
        }
    }

    fn bytes(self, what: &str) -> Result<&'a [u8], String> {
        match self {
            Wire::Bytes(b) => Ok(b),
            _ => Err(format!(
                "{what}: expected length-delimited bytes, found {}",
                self.describe()
            )),
        }
    }

    fn string(self, what: &str) -> Result<String, String> {
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what}: not valid UTF-8"))
    }

    fn describe(self) -> &'static str {
        match self {
            Wire::Varint(_) => "a varint",
            Wire::Fixed64(_) => "a 64-bit value",
            Wire::Bytes(_) => "length-delimited bytes",
            Wire::Fixed32 => "a 32-bit value",
        }
    }
}

/// A cursor over protobuf wire format that never reads past its slice.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next field's tag and value, or `None` at the end.
    fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3)
            .ok()
            .filter(|t| *t != 0)
            .ok_or_else(|| format!("invalid field tag {}", key >> 3))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(self.fixed64()?),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|len| *len <= self.buf.len())
                    .ok_or_else(|| {
                        format!("field {tag}: length {len} runs past the end of the message")
                    })?;
                let (bytes, rest) = self.buf.split_at(len);
                self.buf = rest;
                Wire::Bytes(bytes)
            }
            5 => {
                self.take::<4>()?;
                Wire::Fixed32
            }
            other => return Err(format!("field {tag}: unsupported wire type {other}")),
        };
        Ok(Some((tag, wire)))
    }

    fn varint(&mut self) -> Result<u64, String> {
        let buf = self.buf;
        let mut value = 0u64;
        for (i, byte) in buf.iter().enumerate().take(10) {
            let bits = u64::from(byte & 0x7f);
            if i == 9 && bits > 1 {
                return Err("varint overflows 64 bits".to_string());
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                self.buf = &buf[i + 1..];
                return Ok(value);
            }
        }
        Err(if buf.len() < 10 {
            "truncated varint".to_string()
        } else {
            "varint longer than 10 bytes".to_string()
        })
    }

    fn fixed64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take::<8>()?))
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or_else(|| format!("truncated {N}-byte value"))?;
        self.buf = rest;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use k8s_pb::api::{
        apps::v1 as apps, authorization::v1 as authz, autoscaling::v1 as autoscaling,
        batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
        policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
    };
    use k8s_pb::apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1 as meta, runtime, util::intstr::IntOrString,
    };
    use prost::Message as _;
    use serde_json::json;

    use super::*;

    /// Wraps an object as client-go does: `k8s\0`, then runtime.Unknown with typeMeta and raw.
    fn envelope(api_version: &str, kind: &str, object: &impl prost::Message) -> Vec<u8> {
        let unknown = runtime::Unknown {
            type_meta: Some(runtime::TypeMeta {
                api_version: Some(api_version.to_string()),
                kind: Some(kind.to_string()),
            }),
            raw: Some(object.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        [MAGIC, &unknown.encode_to_vec()].concat()
    }

    fn some(value: &str) -> Option<String> {
        Some(value.to_string())
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // The `go_*` builders fill every non-pointer field, zero or not, because Go's encoder writes
    // them all: these are the bytes kubectl sends, not a tidier subset.

    fn go_meta(name: &str, labels: &[(&str, &str)]) -> Option<meta::ObjectMeta> {
        Some(meta::ObjectMeta {
            name: some(name),
            generate_name: some(""),
            namespace: some(""),
            self_link: some(""),
            uid: some(""),
            resource_version: some(""),
            generation: Some(0),
            creation_timestamp: Some(meta::Time::default()),
            labels: map(labels),
            ..Default::default()
        })
    }

    fn go_container(name: &str, image: &str, command: &[&str]) -> core::Container {
        core::Container {
            name: some(name),
            image: some(image),
            command: strings(command),
            working_dir: some(""),
            resources: Some(core::ResourceRequirements::default()),
            termination_message_path: some(""),
            termination_message_policy: some(""),
            image_pull_policy: some(""),
            stdin: Some(false),
            stdin_once: Some(false),
            tty: Some(false),
            ..Default::default()
        }
    }

    fn go_pod_template(
        labels: &[(&str, &str)],
        container: core::Container,
        restart_policy: &str,
    ) -> Option<core::PodTemplateSpec> {
        Some(core::PodTemplateSpec {
            metadata: go_meta("", labels),
            spec: Some(core::PodSpec {
                containers: vec![container],
                restart_policy: some(restart_policy),
                dns_policy: some(""),
                service_account_name: some(""),
                service_account: some(""),
                node_name: some(""),
                host_network: Some(false),
                host_pid: Some(false),
                host_ipc: Some(false),
                hostname: some(""),
                subdomain: some(""),
                scheduler_name: some(""),
                priority_class_name: some(""),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn create_deployment_decodes_to_kubectl_json_and_keeps_replicas_zero() {
        let deployment = apps::Deployment {
            metadata: go_meta("web", &[("app", "web")]),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(0),
                selector: Some(meta::LabelSelector {
                    match_labels: map(&[("app", "web")]),
                    ..Default::default()
                }),
                template: go_pod_template(
                    &[("app", "web")],
                    go_container("web", "registry.local/web:1", &[]),
                    "",
                ),
                strategy: Some(apps::DeploymentStrategy {
                    r#type: some(""),
                    rolling_update: None,
                }),
                min_ready_seconds: Some(0),
                paused: Some(false),
                ..Default::default()
            }),
            status: Some(apps::DeploymentStatus {
                observed_generation: Some(0),
                replicas: Some(0),
                updated_replicas: Some(0),
                ready_replicas: Some(0),
                available_replicas: Some(0),
                unavailable_replicas: Some(0),
                ..Default::default()
            }),
        };
        let decoded = decode(&envelope("apps/v1", "Deployment", &deployment)).unwrap();
        // `kubectl create deployment web --image=registry.local/web:1 --replicas=0 --dry-run=client -o json`
        let kubectl = json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.local/web:1", "resources": {}}]}
                },
                "strategy": {}
            },
            "status": {}
        });
        assert_eq!(decoded, kubectl);
        assert!(
            decoded["metadata"].get("generateName").is_none(),
            "empty strings are dropped"
        );
    }

    #[test]
    fn create_configmap_keeps_empty_values_in_data() {
        let configmap = core::ConfigMap {
            metadata: go_meta("cfg", &[]),
            data: map(&[("a", "1"), ("b", "")]),
            ..Default::default()
        };
        let decoded = decode(&envelope("v1", "ConfigMap", &configmap)).unwrap();
        // `kubectl create configmap cfg --from-literal=a=1 --from-literal=b= --dry-run=client -o json`
        let kubectl = json!({
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "cfg", "creationTimestamp": null},
            "data": {"a": "1", "b": ""}
        });
        assert_eq!(decoded, kubectl);
    }

    #[test]
    fn configmap_bytes_sent_by_kubectl_decode() {
        // Sent by kubectl 1.32 for `create configmap cfg --from-literal=a=1 --from-literal=b=`. Unlike
        // prost, Go writes the empty value of `b` explicitly (`12 00`).
        let body: &[u8] = &[
            0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x43, 0x6f,
            0x6e, 0x66, 0x69, 0x67, 0x4d, 0x61, 0x70, 0x12, 0x24, 0x0a, 0x13, 0x0a, 0x03, 0x63,
            0x66, 0x67, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00,
            0x42, 0x00, 0x12, 0x06, 0x0a, 0x01, 0x61, 0x12, 0x01, 0x31, 0x12, 0x05, 0x0a, 0x01,
            0x62, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00,
        ];
        let expected = json!({
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "cfg", "creationTimestamp": null},
            "data": {"a": "1", "b": ""}
        });
        assert_eq!(decode(body).unwrap(), expected);
    }

    #[test]
    fn the_omitted_zeros_table_is_sorted_and_names_fields_the_messages_have() {
        let table = omitempty::OMITTED_ZEROS;
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0), "messages sorted");
        assert!(table.iter().all(|(_, f)| f.windows(2).all(|w| w[0] < w[1])));
        assert!(omits_zero("k8s.io.api.apps.v1.DeploymentSpec", "paused"));
        assert!(omits_zero(
            "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "generation"
        ));
        // Pointers: a zero sent for them was set on purpose.
        assert!(!omits_zero("k8s.io.api.apps.v1.DeploymentSpec", "replicas"));
        assert!(!omits_zero(
            "k8s.io.api.core.v1.PodSpec",
            "terminationGracePeriodSeconds"
        ));
        // Not tagged omitempty: JSON keeps the zero too.
        assert!(!omits_zero(
            "k8s.io.api.apps.v1.ReplicaSetStatus",
            "replicas"
        ));
        assert!(!omits_zero("k8s.io.api.core.v1.ServicePort", "port"));
    }

    #[test]
    fn secret_data_bytes_become_base64() {
        let secret = core::Secret {
            metadata: go_meta("s", &[]),
            data: [
                ("password".to_string(), b"hunter2".to_vec()),
                ("empty".to_string(), Vec::new()),
            ]
            .into(),
            r#type: some(""),
            ..Default::default()
        };
        let decoded = decode(&envelope("v1", "Secret", &secret)).unwrap();
        // `kubectl create secret generic s --from-literal=password=hunter2 --from-literal=empty= --dry-run=client -o json`
        let kubectl = json!({
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": "s", "creationTimestamp": null},
            "data": {"empty": "", "password": "aHVudGVyMg=="}
        });
        assert_eq!(decoded, kubectl);
    }

    #[test]
    fn create_namespace_keeps_its_empty_spec_and_status() {
        let namespace = core::Namespace {
            metadata: go_meta("ns1", &[]),
            spec: Some(core::NamespaceSpec::default()),
            status: Some(core::NamespaceStatus {
                phase: some(""),
                ..Default::default()
            }),
        };
        let decoded = decode(&envelope("v1", "Namespace", &namespace)).unwrap();
        // `kubectl create namespace ns1 --dry-run=client -o json`
        let kubectl = json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": "ns1", "creationTimestamp": null},
            "spec": {},
            "status": {}
        });
        assert_eq!(decoded, kubectl);
    }

    fn go_service_port(name: &str, port: i32, target: IntOrString) -> core::ServicePort {
        core::ServicePort {
            name: some(name),
            protocol: some("TCP"),
            port: Some(port),
            target_port: Some(target),
            node_port: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn create_service_decodes_target_ports_as_numbers_or_names() {
        let service = core::Service {
            metadata: go_meta("svc", &[("app", "svc")]),
            spec: Some(core::ServiceSpec {
                ports: vec![
                    go_service_port(
                        "80-8080",
                        80,
                        IntOrString {
                            r#type: Some(0),
                            int_val: Some(8080),
                            str_val: some(""),
                        },
                    ),
                    go_service_port(
                        "443-https",
                        443,
                        IntOrString {
                            r#type: Some(1),
                            int_val: Some(0),
                            str_val: some("https"),
                        },
                    ),
                ],
                selector: map(&[("app", "svc")]),
                cluster_ip: some(""),
                r#type: some("ClusterIP"),
                session_affinity: some(""),
                load_balancer_ip: some(""),
                external_name: some(""),
                external_traffic_policy: some(""),
                health_check_node_port: Some(0),
                publish_not_ready_addresses: Some(false),
                ..Default::default()
            }),
            status: Some(core::ServiceStatus {
                load_balancer: Some(core::LoadBalancerStatus::default()),
                ..Default::default()
            }),
        };
        let decoded = decode(&envelope("v1", "Service", &service)).unwrap();
        // `kubectl create service clusterip svc --tcp=80:8080 --tcp=443:https --dry-run=client -o json`
        let kubectl = json!({
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"name": "svc", "creationTimestamp": null, "labels": {"app": "svc"}},
            "spec": {
                "ports": [
                    {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "443-https", "protocol": "TCP", "port": 443, "targetPort": "https"}
                ],
                "selector": {"app": "svc"},
                "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        });
        assert_eq!(decoded, kubectl);
    }

    fn go_job_spec(name: &str, command: &[&str], restart_policy: &str) -> Option<batch::JobSpec> {
        Some(batch::JobSpec {
            template: go_pod_template(&[], go_container(name, "busybox", command), restart_policy),
            ..Default::default()
        })
    }

    #[test]
    fn create_job_decodes_to_kubectl_json() {
        let job = batch::Job {
            metadata: go_meta("j", &[]),
            spec: go_job_spec("j", &["echo", "hi"], "Never"),
            status: Some(batch::JobStatus {
                active: Some(0),
                succeeded: Some(0),
                failed: Some(0),
                completed_indexes: some(""),
                ..Default::default()
            }),
        };
        let decoded = decode(&envelope("batch/v1", "Job", &job)).unwrap();
        // `kubectl create job j --image=busybox --dry-run=client -o json -- echo hi`
        let kubectl = json!({
            "kind": "Job",
            "apiVersion": "batch/v1",
            "metadata": {"name": "j", "creationTimestamp": null},
            "spec": {
                "template": {
                    "metadata": {"creationTimestamp": null},
                    "spec": {
                        "containers": [{"name": "j", "image": "busybox", "command": ["echo", "hi"], "resources": {}}],
                        "restartPolicy": "Never"
                    }
                }
            },
            "status": {}
        });
        assert_eq!(decoded, kubectl);
    }

    #[test]
    fn create_cronjob_decodes_to_kubectl_json() {
        let cronjob = batch::CronJob {
            metadata: go_meta("cj", &[]),
            spec: Some(batch::CronJobSpec {
                schedule: some("*/5 * * * *"),
                concurrency_policy: some(""),
                job_template: Some(batch::JobTemplateSpec {
                    metadata: go_meta("cj", &[]),
                    spec: go_job_spec("cj", &[], "OnFailure"),
                }),
                ..Default::default()
            }),
            status: Some(batch::CronJobStatus::default()),
        };
        let decoded = decode(&envelope("batch/v1", "CronJob", &cronjob)).unwrap();
        // `kubectl create cronjob cj --image=busybox --schedule='*/5 * * * *' --dry-run=client -o json`
        let kubectl = json!({
            "kind": "CronJob",
            "apiVersion": "batch/v1",
            "metadata": {"name": "cj", "creationTimestamp": null},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {
                    "metadata": {"name": "cj", "creationTimestamp": null},
                    "spec": {
                        "template": {
                            "metadata": {"creationTimestamp": null},
                            "spec": {
                                "containers": [{"name": "cj", "image": "busybox", "resources": {}}],
                                "restartPolicy": "OnFailure"
                            }
                        }
                    }
                }
            },
            "status": {}
        });
        assert_eq!(decoded, kubectl);
    }

    #[test]
    fn create_role_keeps_the_empty_core_api_group() {
        let role = rbac::Role {
            metadata: go_meta("r", &[]),
            rules: vec![rbac::PolicyRule {
                verbs: strings(&["get"]),
                api_groups: strings(&[""]),
                resources: strings(&["pods"]),
                ..Default::default()
            }],
        };
        let decoded = decode(&envelope("rbac.authorization.k8s.io/v1", "Role", &role)).unwrap();
        // `kubectl create role r --verb=get --resource=pods --dry-run=client -o json`
        let kubectl = json!({
            "kind": "Role",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "r", "creationTimestamp": null},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]
        });
        assert_eq!(decoded, kubectl);
    }

    #[test]
    fn create_quota_decodes_quantities_as_strings() {
        let quantity = |q: &str| Quantity { string: some(q) };
        let quota = core::ResourceQuota {
            metadata: go_meta("q", &[]),
            spec: Some(core::ResourceQuotaSpec {
                hard: [
                    ("cpu".to_string(), quantity("1")),
                    ("memory".to_string(), quantity("1Gi")),
                    ("pods".to_string(), quantity("2")),
                ]
                .into(),
                ..Default::default()
            }),
            status: Some(core::ResourceQuotaStatus::default()),
        };
        let decoded = decode(&envelope("v1", "ResourceQuota", &quota)).unwrap();
        // `kubectl create quota q --hard=cpu=1,memory=1Gi,pods=2 --dry-run=client -o json`
        let kubectl = json!({
            "kind": "ResourceQuota",
            "apiVersion": "v1",
            "metadata": {"name": "q", "creationTimestamp": null},
            "spec": {"hard": {"cpu": "1", "memory": "1Gi", "pods": "2"}},
            "status": {}
        });
        assert_eq!(decoded, kubectl);
    }

    #[test]
    fn auth_can_i_self_subject_access_review_decodes() {
        let review = authz::SelfSubjectAccessReview {
            metadata: go_meta("", &[]),
            spec: Some(authz::SelfSubjectAccessReviewSpec {
                resource_attributes: Some(authz::ResourceAttributes {
                    namespace: some("default"),
                    verb: some("get"),
                    group: some(""),
                    version: some(""),
                    resource: some("pods"),
                    subresource: some(""),
                    name: some(""),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            }),
            status: Some(authz::SubjectAccessReviewStatus {
                allowed: Some(false),
                denied: Some(false),
                reason: some(""),
                evaluation_error: some(""),
            }),
        };
        let decoded = decode(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &review,
        ))
        .unwrap();
        // What `kubectl auth can-i get pods -n default` would send as JSON.
        let kubectl = json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}},
            "status": {"allowed": false}
        });
        assert_eq!(decoded, kubectl);
    }

    #[test]
    fn priority_class_keeps_negative_values() {
        let class = scheduling::PriorityClass {
            metadata: go_meta("pc", &[]),
            value: Some(-5),
            global_default: Some(false),
            description: some(""),
            preemption_policy: some("PreemptLowerPriority"),
        };
        let decoded = decode(&envelope("scheduling.k8s.io/v1", "PriorityClass", &class)).unwrap();
        // `kubectl create priorityclass pc --value=-5 --dry-run=client -o json`
        let kubectl = json!({
            "kind": "PriorityClass",
            "apiVersion": "scheduling.k8s.io/v1",
            "metadata": {"name": "pc", "creationTimestamp": null},
            "value": -5,
            "preemptionPolicy": "PreemptLowerPriority"
        });
        assert_eq!(decoded, kubectl);
    }

    fn delete_options() -> meta::DeleteOptions {
        meta::DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: Some(meta::Preconditions {
                uid: some("8d2b7f4e"),
                resource_version: None,
            }),
            propagation_policy: some("Foreground"),
            dry_run: strings(&["All"]),
            ..Default::default()
        }
    }

    #[test]
    fn delete_options_decode_under_any_group_version() {
        for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
            let decoded =
                decode(&envelope(api_version, "DeleteOptions", &delete_options())).unwrap();
            let expected = json!({
                "kind": "DeleteOptions",
                "apiVersion": api_version,
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "8d2b7f4e"},
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            });
            assert_eq!(decoded, expected, "as {api_version}");
        }
    }

    #[test]
    fn eviction_and_scale_subresource_bodies_decode() {
        let eviction = policy::Eviction {
            metadata: Some(meta::ObjectMeta {
                name: some("web-1"),
                namespace: some("default"),
                ..Default::default()
            }),
            delete_options: Some(delete_options()),
        };
        let decoded = decode(&envelope("policy/v1", "Eviction", &eviction)).unwrap();
        let expected = json!({
            "kind": "Eviction",
            "apiVersion": "policy/v1",
            "metadata": {"name": "web-1", "namespace": "default"},
            "deleteOptions": {
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "8d2b7f4e"},
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            }
        });
        assert_eq!(decoded, expected);

        let scale = autoscaling::Scale {
            metadata: Some(meta::ObjectMeta {
                name: some("web"),
                namespace: some("default"),
                ..Default::default()
            }),
            spec: Some(autoscaling::ScaleSpec { replicas: Some(3) }),
            status: Some(autoscaling::ScaleStatus {
                replicas: Some(0),
                selector: some(""),
            }),
        };
        let decoded = decode(&envelope("autoscaling/v1", "Scale", &scale)).unwrap();
        let expected = json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3},
            "status": {"replicas": 0}
        });
        assert_eq!(decoded, expected);
    }

    #[test]
    fn embedded_go_structs_are_inlined_into_their_parent() {
        let name = |n: &str| Some(core::LocalObjectReference { name: some(n) });
        let pod = core::Pod {
            metadata: Some(meta::ObjectMeta {
                name: some("web"),
                ..Default::default()
            }),
            spec: Some(core::PodSpec {
                volumes: vec![core::Volume {
                    name: some("config"),
                    volume_source: Some(core::VolumeSource {
                        config_map: Some(core::ConfigMapVolumeSource {
                            local_object_reference: name("cfg"),
                            default_mode: Some(420),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                }],
                containers: vec![core::Container {
                    name: some("web"),
                    image: some("registry.local/web:1"),
                    env: vec![core::EnvVar {
                        name: some("PASSWORD"),
                        value: some(""),
                        value_from: Some(core::EnvVarSource {
                            secret_key_ref: Some(core::SecretKeySelector {
                                local_object_reference: name("s"),
                                key: some("password"),
                                optional: None,
                            }),
                            ..Default::default()
                        }),
                    }],
                    env_from: vec![core::EnvFromSource {
                        config_map_ref: Some(core::ConfigMapEnvSource {
                            local_object_reference: name("cfg"),
                            optional: None,
                        }),
                        ..Default::default()
                    }],
                    readiness_probe: Some(core::Probe {
                        handler: Some(core::ProbeHandler {
                            http_get: Some(core::HttpGetAction {
                                path: some("/healthz"),
                                port: Some(IntOrString {
                                    r#type: Some(1),
                                    int_val: Some(0),
                                    str_val: some("http"),
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        period_seconds: Some(5),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        };
        let decoded = decode(&envelope("v1", "Pod", &pod)).unwrap();
        let expected = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": "web"},
            "spec": {
                "volumes": [{"name": "config", "configMap": {"name": "cfg", "defaultMode": 420}}],
                "containers": [{
                    "name": "web",
                    "image": "registry.local/web:1",
                    "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}}],
                    "envFrom": [{"configMapRef": {"name": "cfg"}}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5}
                }]
            }
        });
        assert_eq!(decoded, expected);
    }

    #[test]
    fn times_are_rfc3339_and_the_zero_time_is_null() {
        let lease = coordination::Lease {
            metadata: Some(meta::ObjectMeta {
                name: some("node-1"),
                creation_timestamp: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(999_999_999),
                }),
                ..Default::default()
            }),
            spec: Some(coordination::LeaseSpec {
                holder_identity: some("node-1"),
                lease_duration_seconds: Some(40),
                acquire_time: Some(meta::MicroTime::default()),
                renew_time: Some(meta::MicroTime {
                    seconds: Some(1_700_000_000),
                    nanos: Some(123_456_789),
                }),
                lease_transitions: Some(2),
                ..Default::default()
            }),
        };
        let decoded = decode(&envelope("coordination.k8s.io/v1", "Lease", &lease)).unwrap();
        let expected = json!({
            "kind": "Lease",
            "apiVersion": "coordination.k8s.io/v1",
            "metadata": {"name": "node-1", "creationTimestamp": "2023-11-14T22:13:20Z"},
            "spec": {
                "holderIdentity": "node-1",
                "leaseDurationSeconds": 40,
                "acquireTime": null,
                "renewTime": "2023-11-14T22:13:20.123456Z",
                "leaseTransitions": 2
            }
        });
        assert_eq!(decoded, expected);
    }

    #[test]
    fn raw_extensions_and_managed_fields_decode_as_json_and_int64_as_numbers() {
        let revision = apps::ControllerRevision {
            metadata: Some(meta::ObjectMeta {
                name: some("web-1"),
                generation: Some(9_007_199_254_740_993),
                managed_fields: vec![meta::ManagedFieldsEntry {
                    manager: some("kubectl"),
                    operation: some("Update"),
                    api_version: some("apps/v1"),
                    fields_type: some("FieldsV1"),
                    fields_v1: Some(meta::FieldsV1 {
                        raw: Some(br#"{"f:data":{}}"#.to_vec()),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            data: Some(runtime::RawExtension {
                raw: Some(br#"{"spec":{"template":{"x":1}}}"#.to_vec()),
            }),
            revision: Some(3),
        };
        let decoded = decode(&envelope("apps/v1", "ControllerRevision", &revision)).unwrap();
        let expected = json!({
            "kind": "ControllerRevision",
            "apiVersion": "apps/v1",
            "metadata": {
                "name": "web-1",
                "generation": 9_007_199_254_740_993_i64,
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "apps/v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {}}
                }]
            },
            "data": {"spec": {"template": {"x": 1}}},
            "revision": 3
        });
        assert_eq!(decoded, expected);
    }

    /// Walks every message reachable from the decodable kinds and collects the message fields that
    /// have no JSON property and are inlined.
    fn inlined_fields() -> BTreeSet<String> {
        let schemas = schemas();
        let walk = Walk {
            definitions: &schemas.definitions,
        };
        // Metrics are only ever read, so no body of theirs is decoded.
        let mut roots: Vec<(&'static Message, &Value)> = RESOURCES
            .iter()
            .zip(&schemas.resources)
            .filter(|(r, _)| r.verbs.contains(&"create"))
            .map(|(r, schema)| (message(&message_name(r)).unwrap(), schema))
            .collect();
        for (api_version, kind) in [
            ("v1", "DeleteOptions"),
            ("autoscaling/v1", "Scale"),
            ("policy/v1", "Eviction"),
        ] {
            roots.push(target(api_version, kind).unwrap());
        }
        let mut inlined = BTreeSet::new();
        let mut seen = BTreeSet::new();
        while let Some((message, schema)) = roots.pop() {
            if special(message.name).is_some()
                || !seen.insert((message.name, schema as *const Value))
            {
                continue;
            }
            let Some(properties) = walk.properties(schema) else {
                continue;
            };
            for field in message.fields {
                let property = properties
                    .iter()
                    .find(|(name, _)| same_name(field.name, name));
                match (property, field.kind) {
                    (Some((_, property)), Kind::Message(inner)) => {
                        let key = if field.repeated { "items" } else { "" };
                        let schema = if key.is_empty() {
                            Some(property)
                        } else {
                            walk.subschema(Some(property), key)
                        };
                        roots.extend(schema.map(|s| (&MESSAGES[inner], s)));
                    }
                    (Some((_, property)), Kind::Map(MapValue::Message(inner))) => {
                        roots.extend(
                            walk.subschema(Some(property), "additionalProperties")
                                .map(|s| (&MESSAGES[inner], s)),
                        );
                    }
                    (None, Kind::Message(inner)) if embeds(&MESSAGES[inner], properties) => {
                        inlined.insert(format!(
                            "{}.{}",
                            message.name.trim_start_matches("k8s.io.api."),
                            field.name
                        ));
                        roots.push((&MESSAGES[inner], schema));
                    }
                    _ => {}
                }
            }
        }
        inlined
    }

    #[test]
    fn every_decodable_kind_has_a_message_and_only_go_embeddings_are_inlined() {
        let expected: BTreeSet<String> = [
            "core.v1.ConfigMapEnvSource.local_object_reference",
            "core.v1.ConfigMapKeySelector.local_object_reference",
            "core.v1.ConfigMapProjection.local_object_reference",
            "core.v1.ConfigMapVolumeSource.local_object_reference",
            "core.v1.EphemeralContainer.ephemeral_container_common",
            "core.v1.PersistentVolumeSpec.persistent_volume_source",
            "core.v1.Probe.handler",
            "core.v1.SecretEnvSource.local_object_reference",
            "core.v1.SecretKeySelector.local_object_reference",
            "core.v1.SecretProjection.local_object_reference",
            "core.v1.Volume.volume_source",
            "networking.v1.IngressRule.ingress_rule_value",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(inlined_fields(), expected);
    }

    #[test]
    fn unserved_kinds_are_errors() {
        let hpa = k8s_pb::api::autoscaling::v1::HorizontalPodAutoscaler::default();
        let err = decode(&envelope("autoscaling/v1", "HorizontalPodAutoscaler", &hpa)).unwrap_err();
        assert!(matches!(err, ProtobufError::NotServed { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "kind \"HorizontalPodAutoscaler\" of apiVersion \"autoscaling/v1\" is not served over protobuf"
        );
        let err = decode(&envelope("", "", &hpa)).unwrap_err();
        assert!(matches!(err, ProtobufError::NotServed { .. }), "{err}");
    }

    /// A length-delimited field, for bodies prost would refuse to build.
    fn len_field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        [
            &[tag << 3 | 2, u8::try_from(bytes.len()).unwrap()][..],
            bytes,
        ]
        .concat()
    }

    #[test]
    fn field_errors_name_the_json_path() {
        let container = len_field(1, b"\xff\xfe");
        let pod_spec = len_field(2, &container);
        let template = len_field(2, &pod_spec);
        let spec = len_field(3, &template);
        let raw = len_field(2, &spec);
        let type_meta = [len_field(1, b"apps/v1"), len_field(2, b"Deployment")].concat();
        let body = [MAGIC, &len_field(1, &type_meta), &len_field(2, &raw)].concat();
        let err = decode(&body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "decoding Deployment from protobuf: spec.template.spec.containers[0].name: string: not valid UTF-8"
        );

        // replicas (tag 1 of DeploymentSpec) sent as bytes instead of a varint
        let raw = len_field(2, &len_field(1, b"abc"));
        let body = [MAGIC, &len_field(1, &type_meta), &len_field(2, &raw)].concat();
        let err = decode(&body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "decoding Deployment from protobuf: spec.replicas: int32: expected a varint, found length-delimited bytes"
        );
    }

    #[test]
    fn bodies_without_the_envelope_are_errors() {
        for body in [&b""[..], b"{\"kind\":\"Pod\"}", b"k8s", b"k9s\0"] {
            assert!(
                matches!(decode(body), Err(ProtobufError::NotEnveloped)),
                "{body:?}"
            );
        }
        let err = decode(b"k8s\0\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff").unwrap_err();
        assert!(matches!(err, ProtobufError::Envelope(_)), "{err}");
        let configmap = core::ConfigMap::default();
        let mut compressed =
            runtime::Unknown::decode(&envelope("v1", "ConfigMap", &configmap)[4..]).unwrap();
        compressed.content_encoding = some("gzip");
        let err = decode(&[MAGIC, &compressed.encode_to_vec()].concat()).unwrap_err();
        assert!(
            matches!(err, ProtobufError::ContentEncoding { .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_bodies_are_errors_never_panics() {
        let deployment = apps::Deployment {
            metadata: go_meta("web", &[("app", "web")]),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(2),
                template: go_pod_template(&[("app", "web")], go_container("web", "x", &["sh"]), ""),
                ..Default::default()
            }),
            status: None,
        };
        let body = envelope("apps/v1", "Deployment", &deployment);
        assert!(decode(&body).is_ok());
        let mut failures = 0;
        for end in 0..body.len() {
            failures += usize::from(decode(&body[..end]).is_err());
        }
        for i in 4..body.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut mutated = body.clone();
                mutated[i] ^= flip;
                failures += usize::from(decode(&mutated).is_err());
            }
        }
        // A deterministic stream of random bytes behind the magic prefix.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..2000 {
            let noise: Vec<u8> = (0..len % 300)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            failures += usize::from(decode(&[MAGIC, &noise].concat()).is_err());
        }
        assert!(failures > 0);
    }

    #[test]
    fn deeply_nested_bodies_are_rejected() {
        let mut body = envelope(
            "apps/v1",
            "ControllerRevision",
            &apps::ControllerRevision::default(),
        );
        for _ in 0..200 {
            let outer = apps::ControllerRevision {
                data: Some(runtime::RawExtension { raw: Some(body) }),
                ..Default::default()
            };
            body = envelope("apps/v1", "ControllerRevision", &outer);
        }
        let err = decode(&body).unwrap_err();
        assert!(
            err.to_string()
                .contains("nested more than 64 messages deep"),
            "{err}"
        );
    }
}
