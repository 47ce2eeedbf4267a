//! Upstream (Kubernetes 1.33) validation of served objects: field errors with upstream paths, types and messages.

use std::fmt;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::registry::Resource;

// ---------------------------------------------------------------------------------------------
// Field errors
// ---------------------------------------------------------------------------------------------

/// The kind of a field error, as upstream's `field.ErrorType`.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorType {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
}

impl ErrorType {
    /// The canonical text upstream prints for the type (`Required value`, `Unsupported value`, ...).
    fn text(&self) -> &'static str {
        match self {
            ErrorType::Required => "Required value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::NotFound => "Not found",
        }
    }
}

/// One field-level validation error, formatted exactly as upstream's `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The JSON path of the field, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
    /// What is wrong with the field.
    pub error_type: ErrorType,
    /// The offending value as upstream prints it. Values that upstream renders with Go's `%#v`
    /// (selectors, update strategies, int-or-string) are kept pre-rendered under [`GO_REPR`].
    pub value: Option<Value>,
    /// Free-form detail appended after the value.
    pub detail: String,
}

/// Key of a one-entry object holding a value already rendered the way upstream's Go formatting prints it.
pub const GO_REPR: &str = "$goRepr";

impl FieldError {
    /// StatusCause.reason upstream: "FieldValueRequired", "FieldValueInvalid", "FieldValueNotSupported", ...
    pub fn reason(&self) -> &'static str {
        match self.error_type {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::NotFound => "FieldValueNotFound",
        }
    }

    /// The message without the field path (upstream `ErrorBody`, used as StatusCause.message).
    pub fn body(&self) -> String {
        let mut s = match self.error_type {
            // Upstream never prints the value of these kinds.
            ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong => {
                self.error_type.text().to_string()
            }
            _ => match &self.value {
                None => self.error_type.text().to_string(),
                Some(v) => format!("{}: {}", self.error_type.text(), render_value(v)),
            },
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Renders a bad value as upstream 1.33 does: strings quoted Go-style, numbers and booleans bare,
/// string maps and slices with Go's `%#v` syntax.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        // A nil interface is printed as the quoted word.
        Value::Null => go_quote("null"),
        Value::Object(m) => {
            if let (1, Some(Value::String(repr))) = (m.len(), m.get(GO_REPR)) {
                return repr.clone();
            }
            if m.values().all(Value::is_string) {
                return go_string_map(Some(m));
            }
            v.to_string()
        }
        Value::Array(items) => {
            if items.iter().all(Value::is_string) {
                return go_string_slice(Some(items));
            }
            v.to_string()
        }
    }
}

/// Quotes like Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c == ' ' || (!c.is_control() && !c.is_whitespace()) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// `map[string]string{...}` as Go's `%#v` prints it: keys sorted, `nil` for an absent map.
fn go_string_map(m: Option<&Map<String, Value>>) -> String {
    let Some(m) = m else {
        return "map[string]string(nil)".to_string();
    };
    let mut entries: Vec<(&String, &str)> = m
        .iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .collect();
    entries.sort();
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
        .collect();
    format!("map[string]string{{{}}}", body.join(", "))
}

/// `[]string{...}` as Go's `%#v` prints it.
fn go_string_slice(items: Option<&Vec<Value>>) -> String {
    let Some(items) = items else {
        return "[]string(nil)".to_string();
    };
    let body: Vec<String> = items
        .iter()
        .map(|v| go_quote(v.as_str().unwrap_or("")))
        .collect();
    format!("[]string{{{}}}", body.join(", "))
}

/// A value that upstream prints with Go syntax this module cannot derive from JSON alone.
fn go_repr(repr: String) -> Value {
    json!({ GO_REPR: repr })
}

/// A `*metav1.LabelSelector` as upstream prints it (`v1.LabelSelector{MatchLabels:..., MatchExpressions:...}`).
fn go_label_selector(sel: Option<&Value>) -> Value {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return Value::String("null".into());
    };
    let exprs = match field(sel, "matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(str_of(e, "key")),
                        go_quote(str_of(e, "operator")),
                        go_string_slice(field(e, "values").and_then(Value::as_array))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    go_repr(format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_string_map(map_of(sel, "matchLabels")),
        exprs
    ))
}

/// An `intstr.IntOrString` value as upstream prints it.
fn go_int_or_string(v: &Value) -> Value {
    match v {
        Value::String(s) => go_repr(format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(s)
        )),
        other => go_repr(format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or(0)
        )),
    }
}

/// An update strategy struct (`apps.DeploymentStrategy{Type:"x", RollingUpdate:(*T)(nil)}`).
fn go_strategy(type_name: &str, rolling_type: &str, strategy: &Value) -> Value {
    let rolling = if field(strategy, "rollingUpdate").is_some() {
        format!("(*apps.{rolling_type})(0xc000000000)")
    } else {
        format!("(*apps.{rolling_type})(nil)")
    };
    go_repr(format!(
        "apps.{type_name}{{Type:{}, RollingUpdate:{rolling}}}",
        go_quote(str_of(strategy, "type"))
    ))
}

// ---------------------------------------------------------------------------------------------
// Paths and constructors
// ---------------------------------------------------------------------------------------------

/// A field path rendered the way upstream's `field.Path.String()` renders it.
#[derive(Clone, Debug)]
struct Path(String);

impl Path {
    fn new(name: &str) -> Path {
        Path(name.to_string())
    }

    // Built by pushing rather than `format!`: every validation makes paths for the fields it
    // visits, long before any of them names an error.
    fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            return Path(name.to_string());
        }
        self.joined(".", name, "")
    }

    fn index(&self, i: usize) -> Path {
        self.joined("[", &i.to_string(), "]")
    }

    fn key(&self, k: &str) -> Path {
        self.joined("[", k, "]")
    }

    fn joined(&self, open: &str, part: &str, close: &str) -> Path {
        let mut path = String::with_capacity(self.0.len() + open.len() + part.len() + close.len());
        path.push_str(&self.0);
        path.push_str(open);
        path.push_str(part);
        path.push_str(close);
        Path(path)
    }
}

type Errs = Vec<FieldError>;

fn err(path: &Path, error_type: ErrorType, value: Option<Value>, detail: &str) -> FieldError {
    FieldError {
        field: path.0.clone(),
        error_type,
        value,
        detail: detail.to_string(),
    }
}

fn required(path: &Path, detail: &str) -> FieldError {
    err(path, ErrorType::Required, None, detail)
}

fn forbidden(path: &Path, detail: &str) -> FieldError {
    err(path, ErrorType::Forbidden, None, detail)
}

fn invalid(path: &Path, value: impl Into<Value>, detail: &str) -> FieldError {
    err(path, ErrorType::Invalid, Some(value.into()), detail)
}

fn duplicate(path: &Path, value: impl Into<Value>) -> FieldError {
    err(path, ErrorType::Duplicate, Some(value.into()), "")
}

fn not_found(path: &Path, value: impl Into<Value>) -> FieldError {
    err(path, ErrorType::NotFound, Some(value.into()), "")
}

fn too_long(path: &Path, max: usize) -> FieldError {
    err(
        path,
        ErrorType::TooLong,
        None,
        &format!("may not be more than {max} bytes"),
    )
}

fn too_many(path: &Path, actual: usize, max: usize) -> FieldError {
    err(
        path,
        ErrorType::TooMany,
        Some(json!(actual)),
        &format!("must have at most {max} items"),
    )
}

fn not_supported(path: &Path, value: impl Into<Value>, valid: &[&str]) -> FieldError {
    let detail = if valid.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
        format!("supported values: {}", quoted.join(", "))
    };
    err(path, ErrorType::NotSupported, Some(value.into()), &detail)
}

/// Every message of a check as an `Invalid` error on one path.
fn invalid_each(path: &Path, value: &str, msgs: Vec<String>) -> Errs {
    msgs.into_iter().map(|m| invalid(path, value, &m)).collect()
}

const IS_NEGATIVE: &str = "must be greater than or equal to 0";
const FIELD_IMMUTABLE: &str = "field is immutable";
const NOT_POSITIVE: &str = "must be greater than zero";

fn nonnegative(v: i64, path: &Path) -> Errs {
    if v < 0 {
        vec![invalid(path, v, IS_NEGATIVE)]
    } else {
        vec![]
    }
}

// ---------------------------------------------------------------------------------------------
// JSON access that never panics on missing or mistyped fields
// ---------------------------------------------------------------------------------------------

static NULL: Value = Value::Null;

/// A field of an object, scanned for in a small map rather than hashed (see
/// [`crate::schema::get`]); None for null, as upstream's decoding leaves a null field unset.
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    crate::schema::get(v.as_object()?, key).filter(|x| !x.is_null())
}

fn obj<'a>(v: &'a Value, key: &str) -> &'a Value {
    field(v, key).unwrap_or(&NULL)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    field(v, key).and_then(Value::as_str).unwrap_or("")
}

fn opt_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    field(v, key).and_then(Value::as_str)
}

fn arr_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    field(v, key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn map_of<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    field(v, key).and_then(Value::as_object)
}

fn int_of(v: &Value, key: &str) -> Option<i64> {
    field(v, key).and_then(Value::as_i64)
}

fn bool_of(v: &Value, key: &str) -> bool {
    field(v, key).and_then(Value::as_bool).unwrap_or(false)
}

fn has_key(m: Option<&Map<String, Value>>, key: &str) -> bool {
    m.is_some_and(|m| m.contains_key(key))
}

// ---------------------------------------------------------------------------------------------
// Formats (upstream k8s.io/apimachinery/pkg/util/validation), matched by hand
// ---------------------------------------------------------------------------------------------

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const WILDCARD_SUBDOMAIN_FMT: &str =
    "\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const WILDCARD_SUBDOMAIN_MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_KEY_MSG: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_MSG: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";
const HTTP_HEADER_FMT: &str = "[-A-Za-z0-9]+";
const HTTP_HEADER_MSG: &str = "a valid HTTP header must consist of alphanumeric characters or '-'";
const RELAXED_ENV_MSG: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b: Vec<char> = s.chars().collect();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == '-')
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(matches_dns1123_label)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1035_label(s: &str) -> bool {
    matches_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name(s: &str) -> bool {
    let b: Vec<char> = s.chars().collect();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn is_dns1123_label(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns1123_label(v) {
        if matches_dns1123_subdomain(v) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

fn is_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !matches_dns1123_subdomain(v) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

fn is_dns1035_label(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns1035_label(v) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn is_wildcard_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = v.strip_prefix("*.").is_some_and(matches_dns1123_subdomain);
    if !ok {
        errs.push(regex_error(
            WILDCARD_SUBDOMAIN_MSG,
            WILDCARD_SUBDOMAIN_FMT,
            &["*.example.com"],
        ));
    }
    errs
}

fn is_qualified_name(v: &str) -> Vec<String> {
    let mut errs = vec![];
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !matches_qualified_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

fn is_valid_label_value(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !(v.is_empty() || matches_qualified_name(v)) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        vec![]
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = vec![];
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty()
        || !port
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !port.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

fn has_chdir_prefix(v: &str) -> Vec<String> {
    if v == "." {
        vec!["must not be '.'".to_string()]
    } else if v == ".." {
        vec!["must not be '..'".to_string()]
    } else if v.starts_with("..") {
        vec!["must not start with '..'".to_string()]
    } else {
        vec![]
    }
}

fn is_config_map_key(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !ok {
        errs.push(regex_error(
            CONFIG_KEY_MSG,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(has_chdir_prefix(v));
    errs
}

/// Environment variable names as validated with `RelaxedEnvironmentVariableValidation`, on by default in 1.33.
fn is_relaxed_env_var_name(v: &str) -> Vec<String> {
    let mut errs = vec![];
    if v.is_empty() {
        errs.push("environment variable name must be non-empty".to_string());
    }
    if v.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(RELAXED_ENV_MSG.to_string());
    }
    errs
}

fn is_valid_percent(v: &str) -> Vec<String> {
    let ok = v
        .strip_suffix('%')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if ok {
        vec![]
    } else {
        vec![regex_error(PERCENT_MSG, PERCENT_FMT, &["1%", "93%"])]
    }
}

fn is_http_header_name(v: &str) -> Vec<String> {
    let ok = !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        vec![]
    } else {
        vec![regex_error(
            HTTP_HEADER_MSG,
            HTTP_HEADER_FMT,
            &["X-Header-Name"],
        )]
    }
}

fn is_valid_user_id(id: i64) -> Vec<String> {
    if (0..=i64::from(i32::MAX)).contains(&id) {
        vec![]
    } else {
        vec![inclusive_range_error(0, i64::from(i32::MAX))]
    }
}

/// Go's `net.ParseIP` tolerating leading zeros in IPv4 octets (`netutils.ParseIPSloppy`).
fn parse_ip_sloppy(v: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = v.parse::<std::net::IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<&str> = v.split('.').collect();
    if octets.len() != 4 {
        return None;
    }
    let mut out = [0u8; 4];
    for (i, o) in octets.iter().enumerate() {
        if o.is_empty() || o.len() > 3 || !o.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        out[i] = o.parse().ok()?;
    }
    Some(std::net::IpAddr::from(out))
}

fn is_valid_ip(path: &Path, v: &str) -> Errs {
    if parse_ip_sloppy(v).is_none() {
        vec![invalid(
            path,
            v,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )]
    } else {
        vec![]
    }
}

fn parse_cidr_sloppy(v: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, bits) = v.split_once('/')?;
    let ip = parse_ip_sloppy(ip)?;
    if bits.is_empty() || !bits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn is_valid_cidr(path: &Path, v: &str) -> Errs {
    if parse_cidr_sloppy(v).is_none() {
        vec![invalid(
            path,
            v,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        )]
    } else {
        vec![]
    }
}

fn validate_dns1123_label(v: &str, path: &Path) -> Errs {
    invalid_each(path, v, is_dns1123_label(v))
}

fn validate_dns1123_subdomain(v: &str, path: &Path) -> Errs {
    invalid_each(path, v, is_dns1123_subdomain(v))
}

fn validate_qualified_name(v: &str, path: &Path) -> Errs {
    invalid_each(path, v, is_qualified_name(v))
}

fn validate_port_num_or_name(port: Option<&Value>, path: &Path) -> Errs {
    match port {
        Some(Value::String(s)) => invalid_each(path, s, is_valid_port_name(s)),
        Some(v) => {
            let n = v.as_i64().unwrap_or(0);
            is_valid_port_num(n)
                .into_iter()
                .map(|m| invalid(path, n, &m))
                .collect()
        }
        None => is_valid_port_num(0)
            .into_iter()
            .map(|m| invalid(path, 0, &m))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Object names
// ---------------------------------------------------------------------------------------------

/// How a kind's `metadata.name` is validated upstream.
#[derive(Clone, Copy, PartialEq, Debug)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
}

/// Upstream `maskTrailingDash`: a generateName prefix may end with '-'.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let cut = name
            .char_indices()
            .rev()
            .nth(1)
            .map(|(i, _)| i)
            .unwrap_or(0);
        format!("{}a", &name[..cut])
    } else {
        name.to_string()
    }
}

fn name_errors(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix && rule != NameRule::PathSegment {
        masked = mask_trailing_dash(name);
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Subdomain => is_dns1123_subdomain(name),
        NameRule::Label => is_dns1123_label(name),
        NameRule::Dns1035 => is_dns1035_label(name),
        NameRule::PathSegment => {
            if !prefix && (name == "." || name == "..") {
                return vec![format!("may not be '{name}'")];
            }
            let mut errs = vec![];
            for bad in ["/", "%"] {
                if name.contains(bad) {
                    errs.push(format!("may not contain '{bad}'"));
                }
            }
            errs
        }
    }
}

fn name_rule(resource: &Resource) -> NameRule {
    match (resource.group, resource.kind) {
        ("", "Service") => NameRule::Dns1035,
        ("", "Namespace") | ("apps", "StatefulSet") => NameRule::Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

// ---------------------------------------------------------------------------------------------
// Object metadata
// ---------------------------------------------------------------------------------------------

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

fn validate_label_name(key: &str, path: &Path) -> Errs {
    invalid_each(path, key, is_qualified_name(key))
}

/// Upstream `ValidateLabels`: errors sit on the map path itself, not on the key.
fn validate_labels(labels: Option<&Map<String, Value>>, path: &Path) -> Errs {
    let mut errs = vec![];
    for (k, v) in labels.into_iter().flatten() {
        errs.extend(validate_label_name(k, path));
        let v = v.as_str().unwrap_or("");
        errs.extend(invalid_each(path, v, is_valid_label_value(v)));
    }
    errs
}

fn validate_annotations(annotations: Option<&Map<String, Value>>, path: &Path) -> Errs {
    let mut errs = vec![];
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        for m in is_qualified_name(&k.to_lowercase()) {
            errs.push(invalid(path, k.as_str(), &m));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

fn validate_owner_references(refs: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    let mut first_controller = String::new();
    for r in refs {
        let api_version = str_of(r, "apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(invalid(
                &path.child("apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        let kind = str_of(r, "kind");
        if kind.is_empty() {
            errs.push(invalid(&path.child("kind"), kind, "kind must not be empty"));
        }
        let name = str_of(r, "name");
        if name.is_empty() {
            errs.push(invalid(&path.child("name"), name, "name must not be empty"));
        }
        let uid = str_of(r, "uid");
        if uid.is_empty() {
            errs.push(invalid(&path.child("uid"), uid, "uid must not be empty"));
        }
        if api_version == "v1" && kind == "Event" {
            errs.push(invalid(
                path,
                r.clone(),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if bool_of(r, "controller") {
            let current = format!("{kind}/{name}");
            if first_controller.is_empty() {
                first_controller = current;
            } else {
                errs.push(invalid(
                    path,
                    Value::Array(refs.to_vec()),
                    &format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first_controller} and {current}"
                    ),
                ));
            }
        }
    }
    errs
}

fn validate_finalizers(finalizers: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    let names: Vec<&str> = finalizers.iter().filter_map(Value::as_str).collect();
    for f in &names {
        errs.extend(invalid_each(path, f, is_qualified_name(f)));
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errs.push(invalid(
            path,
            Value::Array(finalizers.to_vec()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    // The core group additionally wants a domain on every non-standard finalizer.
    for (i, f) in names.iter().enumerate() {
        errs.extend(validate_kube_finalizer_name(f, &path.index(i)));
    }
    errs
}

fn validate_kube_finalizer_name(f: &str, path: &Path) -> Errs {
    if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
        vec![invalid(
            path,
            f,
            "name is neither a standard finalizer name nor is it fully qualified",
        )]
    } else {
        vec![]
    }
}

/// Upstream `ValidateObjectMeta` on create. Namespace presence is checked by the caller.
fn validate_object_meta(object: &Value, rule: NameRule) -> Errs {
    let meta = obj(object, "metadata");
    let path = Path::new("metadata");
    let mut errs = vec![];
    let generate_name = str_of(meta, "generateName");
    if !generate_name.is_empty() {
        errs.extend(invalid_each(
            &path.child("generateName"),
            generate_name,
            name_errors(rule, generate_name, true),
        ));
    }
    let name = str_of(meta, "name");
    if name.is_empty() {
        // A generated name is filled in by the caller before the object is stored.
        if generate_name.is_empty() {
            errs.push(required(
                &path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        errs.extend(invalid_each(
            &path.child("name"),
            name,
            name_errors(rule, name, false),
        ));
    }
    errs.extend(validate_meta_common(meta, &path));
    errs
}

fn validate_meta_common(meta: &Value, path: &Path) -> Errs {
    let mut errs = vec![];
    if let Some(g) = int_of(meta, "generation") {
        errs.extend(nonnegative(g, &path.child("generation")));
    }
    errs.extend(validate_labels(
        map_of(meta, "labels"),
        &path.child("labels"),
    ));
    errs.extend(validate_annotations(
        map_of(meta, "annotations"),
        &path.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        arr_of(meta, "ownerReferences"),
        &path.child("ownerReferences"),
    ));
    errs.extend(validate_finalizers(
        arr_of(meta, "finalizers"),
        &path.child("finalizers"),
    ));
    errs
}

/// Upstream `ValidateObjectMetaUpdate`: identity is immutable, labels and annotations stay valid.
/// Names are not re-validated on update (upstream lets old, now-invalid names be updated).
fn validate_object_meta_update(object: &Value, old: &Value) -> Errs {
    let meta = obj(object, "metadata");
    let old_meta = obj(old, "metadata");
    let path = Path::new("metadata");
    let mut errs = vec![];
    if field(old_meta, "deletionTimestamp").is_some() {
        let old_f: Vec<&str> = arr_of(old_meta, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut extra: Vec<&str> = arr_of(meta, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !old_f.contains(f))
            .collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            let quoted: Vec<String> = extra.iter().map(|f| go_quote(f)).collect();
            errs.push(forbidden(
                &path.child("finalizers"),
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }
    if let (Some(new_g), Some(old_g)) = (int_of(meta, "generation"), int_of(old_meta, "generation"))
        && new_g < old_g
    {
        errs.push(invalid(
            &path.child("generation"),
            new_g,
            "must not be decremented",
        ));
    }
    for key in ["name", "namespace"] {
        let new_v = str_of(meta, key);
        if new_v != str_of(old_meta, key) {
            errs.push(invalid(&path.child(key), new_v, FIELD_IMMUTABLE));
        }
    }
    errs.extend(validate_labels(
        map_of(meta, "labels"),
        &path.child("labels"),
    ));
    errs.extend(validate_annotations(
        map_of(meta, "annotations"),
        &path.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        arr_of(meta, "ownerReferences"),
        &path.child("ownerReferences"),
    ));
    // Only the core finalizer-name rule runs again on update.
    for (i, f) in arr_of(meta, "finalizers")
        .iter()
        .filter_map(Value::as_str)
        .enumerate()
    {
        errs.extend(validate_kube_finalizer_name(
            f,
            &path.child("finalizers").index(i),
        ));
    }
    errs
}

/// Metadata rules for create or update.
fn validate_meta(object: &Value, old: Option<&Value>, rule: NameRule) -> Errs {
    match old {
        None => validate_object_meta(object, rule),
        Some(old) => validate_object_meta_update(object, old),
    }
}

/// Upstream `ValidateImmutableField` on a JSON value.
fn immutable(
    new: Option<&Value>,
    old: Option<&Value>,
    path: &Path,
    render: fn(Option<&Value>) -> Value,
) -> Errs {
    if new != old {
        vec![invalid(path, render(new), FIELD_IMMUTABLE)]
    } else {
        vec![]
    }
}

fn plain_value(v: Option<&Value>) -> Value {
    v.cloned().unwrap_or(Value::String("null".into()))
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

fn validate_label_selector(sel: Option<&Value>, path: &Path) -> Errs {
    let Some(sel) = sel else {
        return vec![];
    };
    let mut errs = validate_labels(map_of(sel, "matchLabels"), &path.child("matchLabels"));
    for (i, expr) in arr_of(sel, "matchExpressions").iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = arr_of(expr, "values");
        let op = str_of(expr, "operator");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(required(
                        &p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(forbidden(
                        &p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(invalid(
                &p.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        errs.extend(validate_label_name(str_of(expr, "key"), &p.child("key")));
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            errs.extend(invalid_each(
                &p.child("values").index(j),
                v,
                is_valid_label_value(v),
            ));
        }
    }
    errs
}

/// Whether a selector would fail upstream's `LabelSelectorAsSelector` conversion.
fn selector_is_invalid(sel: Option<&Value>) -> bool {
    !validate_label_selector(sel, &Path::new("")).is_empty()
}

/// Whether the selector selects nothing in particular (no requirements at all).
fn selector_is_empty(sel: &Value) -> bool {
    map_of(sel, "matchLabels").is_none_or(Map::is_empty)
        && arr_of(sel, "matchExpressions").is_empty()
}

/// Upstream selector semantics: a nil selector matches nothing, an empty one everything.
fn selector_matches(sel: Option<&Value>, labels: Option<&Map<String, Value>>) -> bool {
    let Some(sel) = sel else {
        return false;
    };
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    for (k, v) in map_of(sel, "matchLabels").into_iter().flatten() {
        if get(k) != v.as_str() {
            return false;
        }
    }
    for expr in arr_of(sel, "matchExpressions") {
        let key = str_of(expr, "key");
        let values: Vec<&str> = arr_of(expr, "values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let ok = match str_of(expr, "operator") {
            "In" => get(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => get(key).is_some(),
            "DoesNotExist" => get(key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn selector_mismatch(template: &Value, path: &Path) -> FieldError {
    let labels = map_of(obj(template, "metadata"), "labels");
    invalid(
        &path.child("metadata").child("labels"),
        go_repr(go_string_map(labels)),
        "`selector` does not match template `labels`",
    )
}

// ---------------------------------------------------------------------------------------------
// Resource quantities (upstream k8s.io/apimachinery/pkg/api/resource)
// ---------------------------------------------------------------------------------------------

/// The suffix family a quantity was written in; it decides its canonical form.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum QuantityFormat {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A parsed quantity, exact to the nano unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Parses upstream's quantity syntax; `None` when it is not a quantity.
    pub(crate) fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let digits = format!("{int_part}{frac_part}");
        let mut mantissa: i128 = 0;
        for c in digits.chars() {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(c.to_digit(10)?))?;
        }
        let mut exp10: i32 = -(frac_part.len() as i32);
        let mut mult2: u32 = 0;
        let format = match suffix {
            "" => QuantityFormat::DecimalSI,
            "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
                mult2 = 10
                    * (1 + ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                        .iter()
                        .position(|x| *x == suffix)? as u32);
                QuantityFormat::BinarySI
            }
            "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => {
                exp10 += match suffix {
                    "n" => -9,
                    "u" => -6,
                    "m" => -3,
                    "k" => 3,
                    "M" => 6,
                    "G" => 9,
                    "T" => 12,
                    "P" => 15,
                    _ => 18,
                };
                QuantityFormat::DecimalSI
            }
            _ => {
                let e = suffix.strip_prefix(['e', 'E'])?;
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                exp10 += e.parse::<i32>().ok()?;
                QuantityFormat::DecimalExponent
            }
        };
        // Scale to nano units, rounding any finer precision up as upstream does.
        let mut nanos = mantissa.checked_mul(1i128.checked_shl(mult2)?)?;
        let shift = exp10 + 9;
        if shift >= 0 {
            nanos = nanos.checked_mul(10i128.checked_pow(shift as u32)?)?;
        } else {
            let div = 10i128.checked_pow((-shift) as u32)?;
            nanos = nanos / div + i128::from(nanos % div != 0);
        }
        Some(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    /// `nanos` thousand-millionths of a unit (nanocores of CPU), written in decimal SI.
    pub(crate) fn from_nanos(nanos: i128) -> Quantity {
        Quantity {
            nanos,
            format: QuantityFormat::DecimalSI,
        }
    }

    /// `units` whole units (bytes of memory), written in binary SI.
    pub(crate) fn binary(units: i128) -> Quantity {
        Quantity {
            nanos: units.saturating_mul(NANO),
            format: QuantityFormat::BinarySI,
        }
    }

    /// The amount in thousand-millionths of a unit.
    pub(crate) fn nanos(&self) -> i128 {
        self.nanos
    }

    /// Rounds away from zero to milli precision (upstream `SetDefaults_ResourceList`).
    pub(crate) fn round_up_milli(self) -> Quantity {
        let unit = 1_000_000i128;
        let rem = self.nanos % unit;
        let nanos = if rem == 0 {
            self.nanos
        } else if self.nanos > 0 {
            self.nanos - rem + unit
        } else {
            self.nanos - rem - unit
        };
        Quantity { nanos, ..self }
    }

    pub(crate) fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    fn decimal_parts(&self) -> (i128, i32) {
        let mut mantissa = self.nanos;
        let mut exp = -9i32;
        while mantissa != 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            exp += 1;
        }
        let m = exp.rem_euclid(3);
        (mantissa * 10i128.pow(m as u32), exp - m)
    }
}

impl fmt::Display for Quantity {
    /// The canonical form upstream serializes (`0.5` → `500m`, `1024Mi` → `1Gi`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        if format == QuantityFormat::BinarySI
            && (self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0)
        {
            format = QuantityFormat::DecimalSI;
        }
        if format == QuantityFormat::BinarySI {
            let mut amount = self.nanos / NANO;
            let mut exp = 0usize;
            while exp < 6 && amount % 1024 == 0 {
                amount /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return write!(f, "{amount}{suffix}");
        }
        let (mantissa, exp) = self.decimal_parts();
        let suffix = match (format, exp) {
            (_, 0) => String::new(),
            (QuantityFormat::DecimalExponent, e) => format!("e{e}"),
            (_, -9) => "n".into(),
            (_, -6) => "u".into(),
            (_, -3) => "m".into(),
            (_, 3) => "k".into(),
            (_, 6) => "M".into(),
            (_, 9) => "G".into(),
            (_, 12) => "T".into(),
            (_, 15) => "P".into(),
            (_, 18) => "E".into(),
            (_, e) => format!("e{e}"),
        };
        write!(f, "{mantissa}{suffix}")
    }
}

fn quantity_of(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => Quantity::parse(s),
        Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Pod specs
// ---------------------------------------------------------------------------------------------

use std::collections::{HashMap, HashSet};

/// Context that changes pod-spec rules between a Pod and an embedded template.
#[derive(Clone, Copy)]
struct PodOpts {
    /// The object being validated is a Pod (not a template in a workload).
    is_pod: bool,
}

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// Upstream `ValidatePodTemplateSpec` (the template's own labels sit at `template.labels`).
fn validate_pod_template_spec(template: &Value, path: &Path, opts: PodOpts) -> Errs {
    let meta = obj(template, "metadata");
    let mut errs = validate_labels(map_of(meta, "labels"), &path.child("labels"));
    errs.extend(validate_annotations(
        map_of(meta, "annotations"),
        &path.child("annotations"),
    ));
    errs.extend(validate_pod_specific_annotations(
        map_of(meta, "annotations"),
        &path.child("annotations"),
    ));
    let spec = obj(template, "spec");
    errs.extend(validate_pod_spec(spec, &path.child("spec"), opts));
    if !arr_of(spec, "ephemeralContainers").is_empty() {
        errs.push(forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

fn validate_pod_specific_annotations(
    annotations: Option<&Map<String, Value>>,
    path: &Path,
) -> Errs {
    let key = "controller.kubernetes.io/pod-deletion-cost";
    match annotations.and_then(|a| a.get(key)) {
        Some(v) => {
            let s = v.as_str().unwrap_or("");
            if s.parse::<i32>().is_ok() {
                vec![]
            } else {
                vec![invalid(&path.key(key), s, "must be a 32bit integer")]
            }
        }
        None => vec![],
    }
}

/// Upstream `ValidatePodSpec`, in upstream order.
fn validate_pod_spec(spec: &Value, path: &Path, opts: PodOpts) -> Errs {
    let mut errs = vec![];
    let grace = int_of(spec, "terminationGracePeriodSeconds");
    if grace.is_none() {
        errs.push(required(&path.child("terminationGracePeriodSeconds"), ""));
    }
    let host_users = field(spec, "hostUsers")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let restart_policy = str_of(spec, "restartPolicy");
    let (vols, vol_errs) = validate_volumes(arr_of(spec, "volumes"), &path.child("volumes"), opts);
    errs.extend(vol_errs);
    let ctx = ContainerCtx {
        vols: &vols,
        grace,
        restart_policy,
        host_users,
    };
    errs.extend(validate_containers(
        arr_of(spec, "containers"),
        &ctx,
        &path.child("containers"),
    ));
    errs.extend(validate_init_containers(
        arr_of(spec, "initContainers"),
        arr_of(spec, "containers"),
        &ctx,
        &path.child("initContainers"),
    ));
    errs.extend(validate_host_network_deps(spec, path, opts));
    errs.extend(validate_restart_policy(
        restart_policy,
        &path.child("restartPolicy"),
    ));
    errs.extend(validate_dns_policy(
        str_of(spec, "dnsPolicy"),
        &path.child("dnsPolicy"),
    ));
    errs.extend(validate_labels(
        map_of(spec, "nodeSelector"),
        &path.child("nodeSelector"),
    ));
    errs.extend(validate_pod_security_context(
        spec,
        &path.child("securityContext"),
    ));
    errs.extend(validate_image_pull_secrets(
        arr_of(spec, "imagePullSecrets"),
        &path.child("imagePullSecrets"),
    ));
    errs.extend(validate_affinity(
        obj(spec, "affinity"),
        &path.child("affinity"),
    ));
    errs.extend(validate_dns_config(spec, &path.child("dnsConfig")));
    for (i, g) in arr_of(spec, "readinessGates").iter().enumerate() {
        errs.extend(validate_qualified_name(
            str_of(g, "conditionType"),
            &path.child("readinessGates").index(i).child("conditionType"),
        ));
    }
    errs.extend(validate_scheduling_gates(
        arr_of(spec, "schedulingGates"),
        &path.child("schedulingGates"),
    ));
    errs.extend(validate_topology_spread(
        arr_of(spec, "topologySpreadConstraints"),
        &path.child("topologySpreadConstraints"),
    ));
    if !host_users {
        for (key, child) in [
            ("hostNetwork", "hostNetwork"),
            ("hostPID", "HostPID"),
            ("hostIPC", "HostIPC"),
        ] {
            if bool_of(spec, key) {
                errs.push(forbidden(
                    &path.child(child),
                    "when `pod.Spec.HostUsers` is false",
                ));
            }
        }
    }
    for (key, check) in [
        ("serviceAccountName", NameRule::Subdomain),
        ("nodeName", NameRule::Subdomain),
    ] {
        let v = str_of(spec, key);
        if !v.is_empty() {
            errs.extend(invalid_each(
                &path.child(key),
                v,
                name_errors(check, v, false),
            ));
        }
    }
    if let Some(v) = int_of(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(i32::MAX)).contains(&v)
    {
        errs.push(invalid(
            &path.child("activeDeadlineSeconds"),
            v,
            &inclusive_range_error(1, i64::from(i32::MAX)),
        ));
    }
    for key in ["hostname", "subdomain"] {
        let v = str_of(spec, key);
        if !v.is_empty() {
            errs.extend(validate_dns1123_label(v, &path.child(key)));
        }
    }
    errs.extend(validate_tolerations(
        arr_of(spec, "tolerations"),
        &path.child("tolerations"),
    ));
    for (i, alias) in arr_of(spec, "hostAliases").iter().enumerate() {
        let p = path.child("hostAliases").index(i);
        errs.extend(is_valid_ip(&p.child("ip"), str_of(alias, "ip")));
        for (j, h) in arr_of(alias, "hostnames").iter().enumerate() {
            errs.extend(validate_dns1123_subdomain(
                h.as_str().unwrap_or(""),
                &p.child("hostnames").index(j),
            ));
        }
    }
    let pc = str_of(spec, "priorityClassName");
    if !pc.is_empty() {
        errs.extend(validate_dns1123_subdomain(
            pc,
            &path.child("priorityClassName"),
        ));
    }
    if let Some(rc) = opt_str(spec, "runtimeClassName") {
        errs.extend(validate_dns1123_subdomain(
            rc,
            &path.child("runtimeClassName"),
        ));
    }
    if let Some(p) = opt_str(spec, "preemptionPolicy") {
        match p {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(required(&path.child("preemptionPolicy"), "")),
            _ => errs.push(not_supported(
                &path.child("preemptionPolicy"),
                p,
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    if let Some(overhead) = map_of(spec, "overhead") {
        let req = json!({ "limits": overhead });
        errs.extend(validate_resources(&req, &path.child("overhead")));
    }
    if let Some(os) = field(spec, "os") {
        errs.extend(validate_os(spec, os, path));
    }
    errs
}

fn validate_restart_policy(policy: &str, path: &Path) -> Errs {
    match policy {
        "Always" | "OnFailure" | "Never" => vec![],
        "" => vec![required(path, "")],
        other => vec![not_supported(
            path,
            other,
            &["Always", "OnFailure", "Never"],
        )],
    }
}

fn validate_dns_policy(policy: &str, path: &Path) -> Errs {
    match policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => vec![],
        "" => vec![required(path, "")],
        other => vec![not_supported(
            path,
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )],
    }
}

fn validate_host_network_deps(spec: &Value, path: &Path, opts: PodOpts) -> Errs {
    let mut errs = vec![];
    if !bool_of(spec, "hostNetwork") {
        return errs;
    }
    for (i, c) in arr_of(spec, "containers").iter().enumerate() {
        for (j, p) in arr_of(c, "ports").iter().enumerate() {
            let hp = int_of(p, "hostPort").unwrap_or(0);
            let cp = int_of(p, "containerPort").unwrap_or(0);
            if (opts.is_pod || hp != 0) && hp != cp {
                errs.push(invalid(
                    &path
                        .child("containers")
                        .index(i)
                        .child("ports")
                        .index(j)
                        .child("hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
    errs
}

fn validate_image_pull_secrets(secrets: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    for (i, s) in secrets.iter().enumerate() {
        let only_name = s.as_object().is_some_and(|m| m.keys().all(|k| k == "name"));
        if !only_name {
            errs.push(invalid(&path.index(i), s.clone(), "only name may be set"));
        }
    }
    errs
}

fn validate_scheduling_gates(gates: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    let mut seen = HashSet::new();
    for (i, g) in gates.iter().enumerate() {
        let name = str_of(g, "name");
        errs.extend(validate_qualified_name(name, &path.index(i)));
        if !seen.insert(name) {
            errs.push(duplicate(&path.index(i), name));
        }
    }
    errs
}

fn validate_os(spec: &Value, os: &Value, path: &Path) -> Errs {
    let name = str_of(os, "name");
    let os_path = path.child("os");
    if name.is_empty() {
        return vec![required(&os_path.child("name"), "cannot be empty")];
    }
    let mut errs = vec![];
    match name {
        "linux" => {
            if field(obj(spec, "securityContext"), "windowsOptions").is_some() {
                errs.push(forbidden(
                    &path.child("securityContext").child("windowsOptions"),
                    "windows options cannot be set for a linux pod",
                ));
            }
            for_each_container(spec, path, |c, cp| {
                if field(obj(c, "securityContext"), "windowsOptions").is_some() {
                    errs.push(forbidden(
                        &cp.child("securityContext").child("windowsOptions"),
                        "windows options cannot be set for a linux pod",
                    ));
                }
            });
        }
        "windows" => {
            let sc = obj(spec, "securityContext");
            let scp = path.child("securityContext");
            for key in ["appArmorProfile", "seLinuxOptions"] {
                if field(sc, key).is_some() {
                    errs.push(forbidden(
                        &scp.child(key),
                        "cannot be set for a windows pod",
                    ));
                }
            }
            if field(spec, "hostUsers").is_some() {
                errs.push(forbidden(
                    &path.child("hostUsers"),
                    "cannot be set for a windows pod",
                ));
            }
            for key in ["hostPID", "hostIPC"] {
                if bool_of(spec, key) {
                    errs.push(forbidden(
                        &path.child(key),
                        "cannot be set for a windows pod",
                    ));
                }
            }
            for key in [
                "seccompProfile",
                "fsGroup",
                "fsGroupChangePolicy",
                "sysctls",
                "runAsUser",
                "runAsGroup",
                "supplementalGroups",
                "supplementalGroupsPolicy",
                "seLinuxChangePolicy",
            ] {
                let set = match field(sc, key) {
                    Some(Value::Array(a)) => !a.is_empty() || key == "supplementalGroups",
                    Some(_) => true,
                    None => false,
                };
                if set {
                    errs.push(forbidden(
                        &scp.child(key),
                        "cannot be set for a windows pod",
                    ));
                }
            }
            if field(spec, "shareProcessNamespace").is_some() {
                errs.push(forbidden(
                    &path.child("shareProcessNamespace"),
                    "cannot be set for a windows pod",
                ));
            }
            for_each_container(spec, path, |c, cp| {
                let sc = obj(c, "securityContext");
                for key in [
                    "appArmorProfile",
                    "seLinuxOptions",
                    "seccompProfile",
                    "capabilities",
                    "readOnlyRootFilesystem",
                    "privileged",
                    "allowPrivilegeEscalation",
                    "procMount",
                    "runAsUser",
                    "runAsGroup",
                ] {
                    if field(sc, key).is_some() {
                        errs.push(forbidden(
                            &cp.child("securityContext").child(key),
                            "cannot be set for a windows pod",
                        ));
                    }
                }
            });
        }
        other => errs.push(not_supported(&os_path, other, &["linux", "windows"])),
    }
    errs
}

/// Visits init, regular and ephemeral containers with their paths, as upstream's `VisitContainersWithPath`.
fn for_each_container(spec: &Value, path: &Path, mut f: impl FnMut(&Value, &Path)) {
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in arr_of(spec, key).iter().enumerate() {
            f(c, &path.child(key).index(i));
        }
    }
}

// --- volumes -------------------------------------------------------------------------------

/// Volume sources in upstream's checking order, with the path segment upstream reports for a second source.
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

type Volumes<'a> = HashMap<&'a str, &'a Value>;

fn validate_volumes<'a>(volumes: &'a [Value], path: &Path, opts: PodOpts) -> (Volumes<'a>, Errs) {
    let mut errs = vec![];
    let mut vols: Volumes<'a> = HashMap::new();
    for (i, vol) in volumes.iter().enumerate() {
        let idx = path.index(i);
        let name_path = idx.child("name");
        let name = str_of(vol, "name");
        let mut el = validate_volume_source(vol, &idx, opts);
        if name.is_empty() {
            el.push(required(&name_path, ""));
        } else {
            el.extend(validate_dns1123_label(name, &name_path));
        }
        if vols.contains_key(name) {
            el.push(duplicate(&name_path, name));
        }
        if el.is_empty() {
            vols.insert(name, vol);
        } else {
            errs.extend(el);
        }
    }
    (vols, errs)
}

fn validate_volume_source(vol: &Value, path: &Path, opts: PodOpts) -> Errs {
    let mut errs = vec![];
    let mut count = 0;
    for (key, forbidden_name) in VOLUME_SOURCES {
        let Some(source) = field(vol, key) else {
            continue;
        };
        if count > 0 {
            errs.push(forbidden(
                &path.child(forbidden_name),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        errs.extend(validate_one_volume_source(key, source, path, opts));
    }
    if count == 0 {
        errs.push(required(path, "must specify a volume type"));
    }
    errs
}

fn required_strings(source: &Value, path: &Path, keys: &[&str]) -> Errs {
    keys.iter()
        .filter(|k| str_of(source, k).is_empty())
        .map(|k| required(&path.child(k), ""))
        .collect()
}

fn validate_one_volume_source(key: &str, source: &Value, path: &Path, opts: PodOpts) -> Errs {
    let p = path.child(key);
    match key {
        "emptyDir" => match field(source, "sizeLimit").and_then(quantity_of) {
            Some(q) if q.is_negative() => vec![forbidden(
                &p.child("sizeLimit"),
                "SizeLimit field must be a valid resource quantity",
            )],
            _ => vec![],
        },
        "hostPath" => validate_host_path(source, &p),
        "gitRepo" => {
            let mut errs = required_strings(source, &p, &["repository"]);
            errs.extend(validate_local_descending_path(
                str_of(source, "directory"),
                &p.child("directory"),
            ));
            errs
        }
        "gcePersistentDisk" | "awsElasticBlockStore" => {
            // Upstream reports the GCE disk under `persistentDisk`.
            let p = if key == "gcePersistentDisk" {
                path.child("persistentDisk")
            } else {
                p
            };
            let id = if key == "gcePersistentDisk" {
                "pdName"
            } else {
                "volumeID"
            };
            let mut errs = required_strings(source, &p, &[id]);
            let part = int_of(source, "partition").unwrap_or(0);
            if !(0..=255).contains(&part) {
                errs.push(invalid(
                    &p.child("partition"),
                    part,
                    &inclusive_range_error(1, 255),
                ));
            }
            errs
        }
        "secret" => {
            let mut errs = required_strings(source, &p, &["secretName"]);
            errs.extend(validate_file_mode(source, "defaultMode", &p));
            errs.extend(validate_key_to_paths(
                arr_of(source, "items"),
                &p.child("items"),
            ));
            errs
        }
        "configMap" => {
            let mut errs = required_strings(source, &p, &["name"]);
            errs.extend(validate_file_mode(source, "defaultMode", &p));
            errs.extend(validate_key_to_paths(
                arr_of(source, "items"),
                &p.child("items"),
            ));
            errs
        }
        "nfs" => {
            let mut errs = required_strings(source, &p, &["server", "path"]);
            let nfs_path = str_of(source, "path");
            if !nfs_path.starts_with('/') {
                errs.push(invalid(
                    &p.child("path"),
                    nfs_path,
                    "must be an absolute path",
                ));
            }
            errs
        }
        "iscsi" => required_strings(source, &p, &["targetPortal", "iqn"]),
        "glusterfs" => {
            let mut errs = vec![];
            if str_of(source, "endpoints").is_empty() {
                errs.push(required(&p.child("endpoints"), ""));
            }
            errs.extend(required_strings(source, &p, &["path"]));
            errs
        }
        "persistentVolumeClaim" => required_strings(source, &p, &["claimName"]),
        "rbd" => {
            let mut errs = vec![];
            if arr_of(source, "monitors").is_empty() {
                errs.push(required(&p.child("monitors"), ""));
            }
            errs.extend(required_strings(source, &p, &["image"]));
            errs
        }
        "cinder" | "portworxVolume" => required_strings(source, &p, &["volumeID"]),
        "cephfs" => {
            if arr_of(source, "monitors").is_empty() {
                vec![required(&p.child("monitors"), "")]
            } else {
                vec![]
            }
        }
        "downwardAPI" => {
            let mut errs = validate_file_mode(source, "defaultMode", &p);
            for item in arr_of(source, "items") {
                errs.extend(validate_downward_api_file(item, &p));
            }
            errs
        }
        "flexVolume" => required_strings(source, &p, &["driver"]),
        "azureFile" => required_strings(source, &p, &["secretName", "shareName"]),
        "vsphereVolume" => required_strings(source, &p, &["volumePath"]),
        "photonPersistentDisk" => required_strings(source, &p, &["pdID"]),
        "scaleIO" => required_strings(source, &p, &["gateway", "system", "volumeName"]),
        "azureDisk" => required_strings(source, &p, &["diskName", "diskURI"]),
        "projected" => validate_projected(source, &p),
        "csi" => validate_csi_driver_name(str_of(source, "driver"), &p.child("driver")),
        "ephemeral" => match field(source, "volumeClaimTemplate") {
            None => vec![required(&p.child("volumeClaimTemplate"), "")],
            Some(t) => {
                let tp = p.child("volumeClaimTemplate");
                let mut errs = validate_annotations(
                    map_of(obj(t, "metadata"), "annotations"),
                    &tp.child("metadata").child("annotations"),
                );
                errs.extend(validate_labels(
                    map_of(obj(t, "metadata"), "labels"),
                    &tp.child("metadata").child("labels"),
                ));
                errs.extend(validate_pvc_spec(obj(t, "spec"), &tp.child("spec")));
                errs
            }
        },
        "image" => {
            let mut errs = vec![];
            if opts.is_pod && str_of(source, "reference").is_empty() {
                errs.push(required(&p.child("reference"), ""));
            }
            errs.extend(validate_pull_policy(
                str_of(source, "pullPolicy"),
                &p.child("pullPolicy"),
            ));
            errs
        }
        _ => vec![],
    }
}

fn validate_host_path(source: &Value, path: &Path) -> Errs {
    let host_path = str_of(source, "path");
    if host_path.is_empty() {
        return vec![required(&path.child("path"), "")];
    }
    let mut errs = validate_path_no_backsteps(host_path, &path.child("path"));
    if let Some(t) = opt_str(source, "type") {
        const TYPES: &[&str] = &[
            "",
            "BlockDevice",
            "CharDevice",
            "Directory",
            "DirectoryOrCreate",
            "File",
            "FileOrCreate",
            "Socket",
        ];
        if !TYPES.contains(&t) {
            errs.push(not_supported(&path.child("type"), t, TYPES));
        }
    }
    errs
}

fn validate_csi_driver_name(driver: &str, path: &Path) -> Errs {
    let mut errs = vec![];
    if driver.is_empty() {
        errs.push(required(path, ""));
    }
    if driver.len() > 63 {
        errs.push(too_long(path, 63));
    }
    errs.extend(invalid_each(
        path,
        driver,
        is_dns1123_subdomain(&driver.to_lowercase()),
    ));
    errs
}

fn validate_file_mode(source: &Value, key: &str, path: &Path) -> Errs {
    match int_of(source, key) {
        Some(m) if !(0..=0o777).contains(&m) => vec![invalid(&path.child(key), m, FILE_MODE_MSG)],
        _ => vec![],
    }
}

fn validate_key_to_paths(items: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    for (i, kp) in items.iter().enumerate() {
        errs.extend(validate_key_to_path(kp, &path.index(i)));
    }
    errs
}

fn validate_key_to_path(kp: &Value, path: &Path) -> Errs {
    let mut errs = required_strings(kp, path, &["key", "path"]);
    errs.extend(validate_local_non_reserved_path(
        str_of(kp, "path"),
        &path.child("path"),
    ));
    errs.extend(validate_file_mode(kp, "mode", path));
    errs
}

fn validate_path_no_backsteps(target: &str, path: &Path) -> Errs {
    if target.replace('\\', "/").split('/').any(|p| p == "..") {
        vec![invalid(path, target, "must not contain '..'")]
    } else {
        vec![]
    }
}

fn validate_local_descending_path(target: &str, path: &Path) -> Errs {
    let mut errs = vec![];
    if target.starts_with('/') {
        errs.push(invalid(path, target, "must be a relative path"));
    }
    errs.extend(validate_path_no_backsteps(target, path));
    errs
}

fn validate_local_non_reserved_path(target: &str, path: &Path) -> Errs {
    let mut errs = validate_local_descending_path(target, path);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(invalid(path, target, "must not start with '..'"));
    }
    errs
}

const VOLUME_DOWNWARD_FIELDS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];
const ENV_DOWNWARD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn validate_downward_api_file(file: &Value, path: &Path) -> Errs {
    let mut errs = required_strings(file, path, &["path"]);
    errs.extend(validate_local_non_reserved_path(
        str_of(file, "path"),
        &path.child("path"),
    ));
    if let Some(fr) = field(file, "fieldRef") {
        errs.extend(validate_object_field_selector(
            fr,
            VOLUME_DOWNWARD_FIELDS,
            &path.child("fieldRef"),
        ));
        if field(file, "resourceFieldRef").is_some() {
            errs.push(invalid(
                path,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            ));
        }
    } else if let Some(rf) = field(file, "resourceFieldRef") {
        errs.extend(validate_resource_field_selector(
            rf,
            &path.child("resourceFieldRef"),
            true,
        ));
    } else {
        errs.push(required(
            path,
            "one of fieldRef and resourceFieldRef is required",
        ));
    }
    errs.extend(validate_file_mode(file, "mode", path));
    errs
}

fn validate_projected(source: &Value, path: &Path) -> Errs {
    let mut errs = validate_file_mode(source, "defaultMode", path);
    let mut all_paths: HashSet<String> = HashSet::new();
    for (i, src) in arr_of(source, "sources").iter().enumerate() {
        let sp = path.child("sources").index(i);
        let mut num = 0;
        for kind in ["secret", "configMap"] {
            let Some(s) = field(src, kind) else {
                continue;
            };
            num += 1;
            let pp = sp.child(kind);
            if str_of(s, "name").is_empty() {
                errs.push(required(&pp.child("name"), ""));
            }
            for (j, kp) in arr_of(s, "items").iter().enumerate() {
                errs.extend(validate_key_to_path(kp, &pp.child("items").index(j)));
                let item_path = str_of(kp, "path");
                if !item_path.is_empty() && !all_paths.insert(item_path.to_string()) {
                    errs.push(invalid(
                        path,
                        str_of(s, "name"),
                        "conflicting duplicate paths",
                    ));
                }
            }
        }
        if let Some(d) = field(src, "downwardAPI") {
            num += 1;
            for item in arr_of(d, "items") {
                errs.extend(validate_downward_api_file(item, &sp.child("downwardAPI")));
                let item_path = str_of(item, "path");
                if !item_path.is_empty() && !all_paths.insert(item_path.to_string()) {
                    errs.push(invalid(path, item_path, "conflicting duplicate paths"));
                }
            }
        }
        if let Some(t) = field(src, "serviceAccountToken") {
            num += 1;
            let tp = sp.child("serviceAccountToken");
            let exp = int_of(t, "expirationSeconds").unwrap_or(3600);
            if exp < 600 {
                errs.push(invalid(
                    &tp.child("expirationSeconds"),
                    exp,
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if exp > 1 << 32 {
                errs.push(invalid(
                    &tp.child("expirationSeconds"),
                    exp,
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            let token_path = str_of(t, "path");
            if token_path.is_empty() {
                errs.push(required(&path.child("path"), ""));
            } else {
                errs.extend(validate_local_non_reserved_path(
                    token_path,
                    &path.child("path"),
                ));
            }
        }
        if field(src, "clusterTrustBundle").is_some() {
            num += 1;
        }
        if num > 1 {
            errs.push(forbidden(
                &sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
    errs
}

// --- containers ----------------------------------------------------------------------------

struct ContainerCtx<'a> {
    vols: &'a Volumes<'a>,
    grace: Option<i64>,
    restart_policy: &'a str,
    host_users: bool,
}

fn validate_containers(containers: &[Value], ctx: &ContainerCtx, path: &Path) -> Errs {
    if containers.is_empty() {
        return vec![required(path, "")];
    }
    let mut errs = vec![];
    let mut names = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_container_common(c, ctx, &p));
        let name = str_of(c, "name");
        if !names.insert(name) {
            errs.push(duplicate(&p.child("name"), name));
        }
        if let Some(l) = field(c, "lifecycle") {
            errs.extend(validate_lifecycle(l, ctx.grace, &p.child("lifecycle")));
        }
        errs.extend(validate_probes(c, ctx.grace, &p));
        if field(c, "restartPolicy").is_some() {
            errs.push(forbidden(
                &p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    errs.extend(check_host_port_conflicts(containers, path));
    errs
}

fn validate_probes(c: &Value, grace: Option<i64>, p: &Path) -> Errs {
    let mut errs = vec![];
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = field(c, key) else {
            continue;
        };
        let pp = p.child(key);
        errs.extend(validate_probe(probe, grace, &pp));
        match key {
            "readinessProbe" => {
                if let Some(t) = int_of(probe, "terminationGracePeriodSeconds") {
                    errs.push(invalid(
                        &pp.child("terminationGracePeriodSeconds"),
                        t,
                        "must not be set for readinessProbes",
                    ));
                }
            }
            _ => {
                let st = int_of(probe, "successThreshold").unwrap_or(0);
                if st != 1 {
                    errs.push(invalid(&pp.child("successThreshold"), st, "must be 1"));
                }
            }
        }
    }
    errs
}

fn validate_init_containers(
    containers: &[Value],
    regular: &[Value],
    ctx: &ContainerCtx,
    path: &Path,
) -> Errs {
    let mut errs = vec![];
    let mut names: HashSet<&str> = regular.iter().map(|c| str_of(c, "name")).collect();
    for (i, c) in containers.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_container_common(c, ctx, &p));
        let mut restart_always = false;
        if let Some(rp) = opt_str(c, "restartPolicy") {
            if rp != "Always" {
                errs.push(not_supported(&p.child("restartPolicy"), rp, &["Always"]));
            }
            restart_always = rp == "Always";
        }
        let name = str_of(c, "name");
        if names.contains(name) {
            errs.push(duplicate(&p.child("name"), name));
        } else if !name.is_empty() {
            names.insert(name);
        }
        errs.extend(check_host_port_conflicts(std::slice::from_ref(c), path));
        if restart_always {
            if let Some(l) = field(c, "lifecycle") {
                errs.extend(validate_lifecycle(l, ctx.grace, &p.child("lifecycle")));
            }
            errs.extend(validate_probes(c, ctx.grace, &p));
        } else {
            for key in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if field(c, key).is_some() {
                    errs.push(forbidden(
                        &p.child(key),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
    errs
}

fn check_host_port_conflicts(containers: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    let mut seen = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, p) in arr_of(c, "ports").iter().enumerate() {
            let hp = int_of(p, "hostPort").unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!("{}/{}/{}", str_of(p, "protocol"), str_of(p, "hostIP"), hp);
            if !seen.insert(key.clone()) {
                errs.push(duplicate(
                    &path.index(i).child("ports").index(j).child("hostPort"),
                    key,
                ));
            }
        }
    }
    errs
}

/// Upstream `validateContainerCommon`, shared by regular and init containers.
fn validate_container_common(c: &Value, ctx: &ContainerCtx, path: &Path) -> Errs {
    let mut errs = vec![];
    let name = str_of(c, "name");
    if name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    } else {
        errs.extend(validate_dns1123_label(name, &path.child("name")));
    }
    if str_of(c, "image").is_empty() {
        errs.push(required(&path.child("image"), ""));
    }
    match str_of(c, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(required(&path.child("terminationMessagePolicy"), "")),
        other => errs.push(not_supported(
            &path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    errs.extend(validate_container_ports(
        arr_of(c, "ports"),
        &path.child("ports"),
    ));
    errs.extend(validate_env(arr_of(c, "env"), &path.child("env")));
    errs.extend(validate_env_from(
        arr_of(c, "envFrom"),
        &path.child("envFrom"),
    ));
    errs.extend(validate_volume_mounts(
        c,
        ctx.vols,
        &path.child("volumeMounts"),
    ));
    errs.extend(validate_volume_devices(
        c,
        ctx.vols,
        &path.child("volumeDevices"),
    ));
    errs.extend(validate_pull_policy(
        str_of(c, "imagePullPolicy"),
        &path.child("imagePullPolicy"),
    ));
    errs.extend(validate_resources(
        obj(c, "resources"),
        &path.child("resources"),
    ));
    errs.extend(validate_resize_policy(
        arr_of(c, "resizePolicy"),
        ctx.restart_policy,
        &path.child("resizePolicy"),
    ));
    errs.extend(validate_security_context(
        field(c, "securityContext"),
        ctx.host_users,
        &path.child("securityContext"),
    ));
    errs
}

fn validate_container_ports(ports: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = str_of(port, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                errs.extend(invalid_each(&p.child("name"), name, msgs));
            } else if !names.insert(name) {
                errs.push(duplicate(&p.child("name"), name));
            }
        }
        let cp = int_of(port, "containerPort").unwrap_or(0);
        if cp == 0 {
            errs.push(required(&p.child("containerPort"), ""));
        } else {
            for m in is_valid_port_num(cp) {
                errs.push(invalid(&p.child("containerPort"), cp, &m));
            }
        }
        let hp = int_of(port, "hostPort").unwrap_or(0);
        if hp != 0 {
            for m in is_valid_port_num(hp) {
                errs.push(invalid(&p.child("hostPort"), hp, &m));
            }
        }
        errs.extend(validate_protocol(
            str_of(port, "protocol"),
            &p.child("protocol"),
        ));
    }
    errs
}

fn validate_protocol(protocol: &str, path: &Path) -> Errs {
    if protocol.is_empty() {
        vec![required(path, "")]
    } else if !PROTOCOLS.contains(&protocol) {
        vec![not_supported(path, protocol, PROTOCOLS)]
    } else {
        vec![]
    }
}

fn validate_env(vars: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    for (i, ev) in vars.iter().enumerate() {
        let p = path.index(i);
        let name = str_of(ev, "name");
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        } else {
            errs.extend(invalid_each(
                &p.child("name"),
                name,
                is_relaxed_env_var_name(name),
            ));
        }
        errs.extend(validate_env_value_from(ev, &p.child("valueFrom")));
    }
    errs
}

fn validate_env_value_from(ev: &Value, path: &Path) -> Errs {
    let Some(from) = field(ev, "valueFrom") else {
        return vec![];
    };
    let mut errs = vec![];
    let mut num = 0;
    if let Some(fr) = field(from, "fieldRef") {
        num += 1;
        errs.extend(validate_object_field_selector(
            fr,
            ENV_DOWNWARD_FIELDS,
            &path.child("fieldRef"),
        ));
    }
    if let Some(rf) = field(from, "resourceFieldRef") {
        num += 1;
        errs.extend(validate_resource_field_selector(
            rf,
            &path.child("resourceFieldRef"),
            false,
        ));
    }
    for key in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(r) = field(from, key) {
            num += 1;
            errs.extend(validate_key_selector(r, &path.child(key)));
        }
    }
    if num == 0 {
        errs.push(invalid(
            path,
            "",
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if !str_of(ev, "value").is_empty() {
        errs.push(invalid(
            path,
            "",
            "may not be specified when `value` is not empty",
        ));
    } else if num > 1 {
        errs.push(invalid(
            path,
            "",
            "may not have more than one field specified at a time",
        ));
    }
    errs
}

fn validate_key_selector(r: &Value, path: &Path) -> Errs {
    let name = str_of(r, "name");
    let mut errs = invalid_each(&path.child("name"), name, is_dns1123_subdomain(name));
    let key = str_of(r, "key");
    if key.is_empty() {
        errs.push(required(&path.child("key"), ""));
    } else {
        errs.extend(invalid_each(
            &path.child("key"),
            key,
            is_config_map_key(key),
        ));
    }
    errs
}

/// Splits `metadata.labels['key']` into path and subscript.
fn split_subscripted(fp: &str) -> Option<(&str, &str)> {
    let open = fp.find("['")?;
    let inner = fp.strip_suffix("']")?;
    (open + 2 <= inner.len()).then(|| (&fp[..open], &inner[open + 2..]))
}

fn validate_object_field_selector(fs: &Value, expressions: &[&str], path: &Path) -> Errs {
    let api_version = str_of(fs, "apiVersion");
    if api_version.is_empty() {
        return vec![required(&path.child("apiVersion"), "")];
    }
    let fp = str_of(fs, "fieldPath");
    if fp.is_empty() {
        return vec![required(&path.child("fieldPath"), "")];
    }
    let conversion = if api_version != "v1" {
        Err(format!("unsupported pod version: {api_version}"))
    } else if let Some((p, _)) = split_subscripted(fp) {
        if p == "metadata.annotations" || p == "metadata.labels" {
            Ok(fp.to_string())
        } else {
            Err(format!("field label does not support subscript: {fp}"))
        }
    } else {
        match fp {
            "metadata.annotations"
            | "metadata.labels"
            | "metadata.name"
            | "metadata.namespace"
            | "metadata.uid"
            | "spec.nodeName"
            | "spec.restartPolicy"
            | "spec.serviceAccountName"
            | "spec.schedulerName"
            | "status.phase"
            | "status.hostIP"
            | "status.hostIPs"
            | "status.podIP"
            | "status.podIPs" => Ok(fp.to_string()),
            "spec.host" => Ok("spec.nodeName".to_string()),
            _ => Err(format!("field label not supported: {fp}")),
        }
    };
    let internal = match conversion {
        Ok(p) => p,
        Err(e) => {
            return vec![invalid(
                &path.child("fieldPath"),
                fp,
                &format!("error converting fieldPath: {e}"),
            )];
        }
    };
    if let Some((p, sub)) = split_subscripted(&internal) {
        return match p {
            "metadata.annotations" => validate_qualified_name(&sub.to_lowercase(), path),
            "metadata.labels" => validate_qualified_name(sub, path),
            _ => vec![invalid(path, p, "does not support subscript")],
        };
    }
    if !expressions.contains(&internal.as_str()) {
        return vec![not_supported(
            &path.child("fieldPath"),
            internal,
            expressions,
        )];
    }
    vec![]
}

fn validate_resource_field_selector(rf: &Value, path: &Path, volume: bool) -> Errs {
    let resource = str_of(rf, "resource");
    if volume && str_of(rf, "containerName").is_empty() {
        vec![required(&path.child("containerName"), "")]
    } else if resource.is_empty() {
        vec![required(&path.child("resource"), "")]
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        vec![not_supported(
            &path.child("resource"),
            resource,
            RESOURCE_FIELD_PATHS,
        )]
    } else {
        vec![]
    }
}

fn validate_env_from(sources: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    for (i, ev) in sources.iter().enumerate() {
        let p = path.index(i);
        let prefix = str_of(ev, "prefix");
        if !prefix.is_empty() {
            errs.extend(invalid_each(
                &p.child("prefix"),
                prefix,
                is_relaxed_env_var_name(prefix),
            ));
        }
        let mut num = 0;
        for key in ["configMapRef", "secretRef"] {
            let Some(r) = field(ev, key) else {
                continue;
            };
            num += 1;
            let name = str_of(r, "name");
            let np = p.child(key).child("name");
            if name.is_empty() {
                errs.push(required(&np, ""));
            } else {
                errs.extend(invalid_each(
                    &np,
                    name,
                    name_errors(NameRule::Subdomain, name, true),
                ));
            }
        }
        if num == 0 {
            errs.push(invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if num > 1 {
            errs.push(invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

fn validate_volume_mounts(c: &Value, vols: &Volumes, path: &Path) -> Errs {
    let mut errs = vec![];
    let devices: Vec<(&str, &str)> = arr_of(c, "volumeDevices")
        .iter()
        .map(|d| (str_of(d, "name"), str_of(d, "devicePath")))
        .collect();
    let mut mount_points = HashSet::new();
    for (i, m) in arr_of(c, "volumeMounts").iter().enumerate() {
        let p = path.index(i);
        let name = str_of(m, "name");
        let mount_path = str_of(m, "mountPath");
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        }
        if !vols.contains_key(name) {
            errs.push(not_found(&p.child("name"), name));
        }
        if mount_path.is_empty() {
            errs.push(required(&p.child("mountPath"), ""));
        }
        if !mount_points.insert(mount_path) {
            errs.push(invalid(&p.child("mountPath"), mount_path, "must be unique"));
        }
        if devices.iter().any(|(n, _)| *n == name) {
            errs.push(invalid(
                &p.child("name"),
                name,
                "must not already exist in volumeDevices",
            ));
        }
        if devices.iter().any(|(_, dp)| *dp == mount_path) {
            errs.push(invalid(
                &p.child("mountPath"),
                mount_path,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub_path = str_of(m, "subPath");
        let sub_path_expr = str_of(m, "subPathExpr");
        if vols.get(name).is_some_and(|v| field(v, "image").is_some()) {
            if !sub_path.is_empty() {
                errs.push(invalid(
                    &p.child("subPath"),
                    sub_path,
                    "not allowed in image volume sources",
                ));
            }
            if !sub_path_expr.is_empty() {
                errs.push(invalid(
                    &p.child("subPathExpr"),
                    sub_path_expr,
                    "not allowed in image volume sources",
                ));
            }
        }
        // Upstream reports sub-path problems on the list path, without the index.
        if !sub_path.is_empty() {
            errs.extend(validate_local_descending_path(
                sub_path,
                &path.child("subPath"),
            ));
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(invalid(
                    &p.child("subPathExpr"),
                    sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            errs.extend(validate_local_descending_path(
                sub_path_expr,
                &path.child("subPathExpr"),
            ));
        }
        if let Some(prop) = opt_str(m, "mountPropagation") {
            let pp = path.child("mountPropagation");
            const MODES: &[&str] = &["Bidirectional", "HostToContainer", "None"];
            if !MODES.contains(&prop) {
                errs.push(not_supported(&pp, prop, MODES));
            }
            let privileged = bool_of(obj(c, "securityContext"), "privileged");
            if prop == "Bidirectional" && !privileged {
                errs.push(forbidden(
                    &pp,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
        if let Some(rro) = opt_str(m, "recursiveReadOnly") {
            let rp = path.child("recursiveReadOnly");
            match rro {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if !bool_of(m, "readOnly") {
                        errs.push(forbidden(
                            &rp,
                            "may only be specified when readOnly is true",
                        ));
                    }
                    if opt_str(m, "mountPropagation").is_some_and(|p| p != "None") {
                        errs.push(forbidden(
                            &rp,
                            "may only be specified when mountPropagation is None or not specified",
                        ));
                    }
                }
                other => errs.push(not_supported(
                    &rp,
                    other,
                    &["Disabled", "Enabled", "IfPossible"],
                )),
            }
        }
    }
    errs
}

fn validate_volume_devices(c: &Value, vols: &Volumes, path: &Path) -> Errs {
    let mut errs = vec![];
    let mounts: Vec<(&str, &str)> = arr_of(c, "volumeMounts")
        .iter()
        .map(|m| (str_of(m, "name"), str_of(m, "mountPath")))
        .collect();
    let mut names = HashSet::new();
    let mut paths = HashSet::new();
    for (i, d) in arr_of(c, "volumeDevices").iter().enumerate() {
        let p = path.index(i);
        let name = str_of(d, "name");
        let dev_path = str_of(d, "devicePath");
        let source = vols.get(name);
        let is_pvc = source.is_some_and(|v| {
            field(v, "persistentVolumeClaim").is_some() || field(v, "ephemeral").is_some()
        });
        if name.is_empty() {
            errs.push(required(&p.child("name"), ""));
        }
        if names.contains(name) {
            errs.push(invalid(&p.child("name"), name, "must be unique"));
        }
        if source.is_some() && !is_pvc {
            errs.push(invalid(
                &p.child("name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            ));
        }
        if source.is_none() {
            errs.push(not_found(&p.child("name"), name));
        }
        if dev_path.is_empty() {
            errs.push(required(&p.child("devicePath"), ""));
        }
        if paths.contains(dev_path) {
            errs.push(invalid(&p.child("devicePath"), dev_path, "must be unique"));
        }
        if !dev_path.is_empty() && dev_path.split('/').any(|s| s == "..") {
            errs.push(invalid(
                &p.child("devicePath"),
                dev_path,
                "can not contain backsteps ('..')",
            ));
        } else {
            paths.insert(dev_path);
        }
        if mounts.iter().any(|(n, _)| *n == name) {
            errs.push(invalid(
                &p.child("name"),
                name,
                "must not already exist in volumeMounts",
            ));
        }
        if mounts.iter().any(|(_, mp)| *mp == dev_path) {
            errs.push(invalid(
                &p.child("devicePath"),
                dev_path,
                "must not already exist as a path in volumeMounts",
            ));
        }
        if !name.is_empty() {
            names.insert(name);
        }
    }
    errs
}

fn validate_pull_policy(policy: &str, path: &Path) -> Errs {
    match policy {
        "Always" | "IfNotPresent" | "Never" => vec![],
        "" => vec![required(path, "")],
        other => vec![not_supported(
            path,
            other,
            &["Always", "IfNotPresent", "Never"],
        )],
    }
}

fn validate_resize_policy(policies: &[Value], pod_restart: &str, path: &Path) -> Errs {
    let mut errs = vec![];
    let mut seen = HashSet::new();
    for (i, p) in policies.iter().enumerate() {
        let name = str_of(p, "resourceName");
        if !seen.insert(name) {
            errs.push(duplicate(&path.index(i), name));
        }
        match name {
            "cpu" | "memory" => {}
            "" => errs.push(required(path, "")),
            other => errs.push(not_supported(path, other, &["cpu", "memory"])),
        }
        let rp = str_of(p, "restartPolicy");
        match rp {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(required(path, "")),
            other => errs.push(not_supported(
                path,
                other,
                &["NotRequired", "RestartContainer"],
            )),
        }
        if pod_restart == "Never" && rp != "NotRequired" {
            errs.push(invalid(
                path,
                rp,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
    errs
}

fn validate_security_context(sc: Option<&Value>, host_users: bool, path: &Path) -> Errs {
    let Some(sc) = sc else {
        return vec![];
    };
    let mut errs = vec![];
    for key in ["runAsUser", "runAsGroup"] {
        if let Some(id) = int_of(sc, key) {
            for m in is_valid_user_id(id) {
                errs.push(invalid(&path.child(key), id, &m));
            }
        }
    }
    if let Some(pm) = opt_str(sc, "procMount") {
        if pm != "Default" && pm != "Unmasked" {
            errs.push(not_supported(
                &path.child("procMount"),
                pm,
                &["Default", "Unmasked"],
            ));
        }
        if host_users && pm == "Unmasked" {
            errs.push(invalid(
                &path.child("procMount"),
                pm,
                "`hostUsers` must be false to use `Unmasked`",
            ));
        }
    }
    errs.extend(validate_seccomp_profile(
        field(sc, "seccompProfile"),
        &path.child("seccompProfile"),
    ));
    if field(sc, "allowPrivilegeEscalation").and_then(Value::as_bool) == Some(false) {
        if bool_of(sc, "privileged") {
            errs.push(invalid(
                path,
                sc.clone(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        for cap in arr_of(obj(sc, "capabilities"), "add") {
            if cap.as_str() == Some("CAP_SYS_ADMIN") {
                errs.push(invalid(
                    path,
                    sc.clone(),
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                ));
            }
        }
    }
    errs.extend(validate_app_armor_profile(
        field(sc, "appArmorProfile"),
        &path.child("appArmorProfile"),
    ));
    errs
}

fn validate_seccomp_profile(sp: Option<&Value>, path: &Path) -> Errs {
    let Some(sp) = sp else {
        return vec![];
    };
    let mut errs = vec![];
    let t = str_of(sp, "type");
    match t {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(required(
            &path.child("type"),
            "type is required when seccompProfile is set",
        )),
        other => errs.push(not_supported(
            &path.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    let localhost = opt_str(sp, "localhostProfile");
    if t == "Localhost" {
        match localhost {
            None => errs.push(required(
                &path.child("localhostProfile"),
                "must be set when seccomp type is Localhost",
            )),
            Some(lp) => errs.extend(validate_local_descending_path(
                lp,
                &path.child("localhostProfile"),
            )),
        }
    } else if localhost.is_some() {
        errs.push(invalid(
            &path.child("localhostProfile"),
            go_repr(format!(
                "core.SeccompProfile{{Type:{}, LocalhostProfile:(*string)(0xc000000000)}}",
                go_quote(t)
            )),
            "can only be set when seccomp type is Localhost",
        ));
    }
    errs
}

fn validate_app_armor_profile(p: Option<&Value>, path: &Path) -> Errs {
    let Some(p) = p else {
        return vec![];
    };
    let mut errs = vec![];
    let localhost = opt_str(p, "localhostProfile");
    match str_of(p, "type") {
        "Localhost" => match localhost {
            None => errs.push(required(
                &path.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            )),
            Some(lp) => {
                if lp.trim() != lp {
                    errs.push(invalid(
                        &path.child("localhostProfile"),
                        lp,
                        "must not be padded with whitespace",
                    ));
                } else if lp.is_empty() {
                    errs.push(required(
                        &path.child("localhostProfile"),
                        "must be set when AppArmor type is Localhost",
                    ));
                }
                if lp.len() > 4095 {
                    errs.push(too_long(&path.child("localhostProfile"), 4095));
                }
            }
        },
        "RuntimeDefault" | "Unconfined" => {
            if let Some(lp) = localhost {
                errs.push(invalid(
                    &path.child("localhostProfile"),
                    lp,
                    "can only be set when AppArmor type is Localhost",
                ));
            }
        }
        "" => errs.push(required(
            &path.child("type"),
            "type is required when appArmorProfile is set",
        )),
        other => errs.push(not_supported(
            &path.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    errs
}

fn validate_pod_security_context(spec: &Value, path: &Path) -> Errs {
    let Some(sc) = field(spec, "securityContext") else {
        return vec![];
    };
    let mut errs = vec![];
    if let Some(g) = int_of(sc, "fsGroup") {
        for m in is_valid_user_id(g) {
            errs.push(invalid(&path.child("fsGroup"), g, &m));
        }
    }
    for key in ["runAsUser", "runAsGroup"] {
        if let Some(id) = int_of(sc, key) {
            for m in is_valid_user_id(id) {
                errs.push(invalid(&path.child(key), id, &m));
            }
        }
    }
    for (i, g) in arr_of(sc, "supplementalGroups").iter().enumerate() {
        let g = g.as_i64().unwrap_or(0);
        for m in is_valid_user_id(g) {
            errs.push(invalid(&path.child("supplementalGroups").index(i), g, &m));
        }
    }
    if field(spec, "shareProcessNamespace").and_then(Value::as_bool) == Some(true)
        && bool_of(spec, "hostPID")
    {
        errs.push(invalid(
            &path.child("shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    errs.extend(validate_sysctls(
        spec,
        arr_of(sc, "sysctls"),
        &path.child("sysctls"),
    ));
    if let Some(p) = opt_str(sc, "fsGroupChangePolicy")
        && p != "OnRootMismatch"
        && p != "Always"
    {
        errs.push(not_supported(
            &path.child("fsGroupChangePolicy"),
            p,
            &["Always", "OnRootMismatch"],
        ));
    }
    errs.extend(validate_seccomp_profile(
        field(sc, "seccompProfile"),
        &path.child("seccompProfile"),
    ));
    errs.extend(validate_app_armor_profile(
        field(sc, "appArmorProfile"),
        &path.child("appArmorProfile"),
    ));
    if let Some(p) = opt_str(sc, "supplementalGroupsPolicy")
        && p != "Merge"
        && p != "Strict"
    {
        errs.push(not_supported(
            &path.child("supplementalGroupsPolicy"),
            p,
            &["Merge", "Strict"],
        ));
    }
    if let Some(p) = opt_str(sc, "seLinuxChangePolicy")
        && p != "MountOption"
        && p != "Recursive"
    {
        errs.push(not_supported(
            &path.child("seLinuxChangePolicy"),
            p,
            &["MountOption", "Recursive"],
        ));
    }
    errs
}

fn is_valid_sysctl_name(name: &str) -> bool {
    if name.len() > 253 {
        return false;
    }
    let seg_ok = |s: &str| {
        let b: Vec<char> = s.chars().collect();
        !b.is_empty()
            && is_lower_alnum(b[0])
            && is_lower_alnum(b[b.len() - 1])
            && b.iter().all(|&c| is_lower_alnum(c) || c == '-' || c == '_')
    };
    name.split(['.', '/']).all(seg_ok)
}

fn validate_sysctls(spec: &Value, sysctls: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    let mut names = HashSet::new();
    for (i, s) in sysctls.iter().enumerate() {
        let name = str_of(s, "name");
        let np = path.index(i).child("name");
        if name.is_empty() {
            errs.push(required(&np, ""));
        } else if !is_valid_sysctl_name(name) {
            errs.push(invalid(
                &np,
                name,
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if names.contains(name) {
            errs.push(duplicate(&np, name));
        }
        let normalized = name.replace('/', ".");
        let is_net = normalized.starts_with("net.");
        let is_ipc = normalized.starts_with("kernel.shm")
            || normalized.starts_with("kernel.msg")
            || normalized == "kernel.sem"
            || normalized.starts_with("fs.mqueue.");
        if bool_of(spec, "hostNetwork") && is_net {
            errs.push(invalid(
                &np,
                name,
                "may not be specified when 'hostNetwork' is true",
            ));
        } else if bool_of(spec, "hostIPC") && is_ipc {
            errs.push(invalid(
                &np,
                name,
                "may not be specified when 'hostIPC' is true",
            ));
        }
        names.insert(name);
    }
    errs
}

// --- handlers, probes, lifecycle ------------------------------------------------------------

fn validate_probe(probe: &Value, grace: Option<i64>, path: &Path) -> Errs {
    let mut errs = validate_handler(probe, false, grace, path);
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        errs.extend(nonnegative(
            int_of(probe, key).unwrap_or(0),
            &path.child(key),
        ));
    }
    if let Some(t) = int_of(probe, "terminationGracePeriodSeconds")
        && t <= 0
    {
        errs.push(invalid(
            &path.child("terminationGracePeriodSeconds"),
            t,
            "must be greater than 0",
        ));
    }
    errs
}

fn validate_lifecycle(l: &Value, grace: Option<i64>, path: &Path) -> Errs {
    let mut errs = vec![];
    for key in ["postStart", "preStop"] {
        if let Some(h) = field(l, key) {
            errs.extend(validate_handler(h, true, grace, &path.child(key)));
        }
    }
    errs
}

fn validate_handler(h: &Value, lifecycle: bool, grace: Option<i64>, path: &Path) -> Errs {
    let mut errs = vec![];
    let mut num = 0;
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    for kind in kinds {
        let Some(action) = field(h, kind) else {
            continue;
        };
        let p = path.child(kind);
        if num > 0 {
            errs.push(forbidden(&p, "may not specify more than 1 handler type"));
            continue;
        }
        num += 1;
        match *kind {
            "exec" => {
                if arr_of(action, "command").is_empty() {
                    errs.push(required(&p.child("command"), ""));
                }
            }
            "httpGet" => {
                if str_of(action, "path").is_empty() {
                    errs.push(required(&p.child("path"), ""));
                }
                errs.extend(validate_port_num_or_name(
                    field(action, "port"),
                    &p.child("port"),
                ));
                let scheme = str_of(action, "scheme");
                if scheme != "HTTP" && scheme != "HTTPS" {
                    errs.push(not_supported(
                        &p.child("scheme"),
                        scheme,
                        &["HTTP", "HTTPS"],
                    ));
                }
                for header in arr_of(action, "httpHeaders") {
                    let n = str_of(header, "name");
                    errs.extend(invalid_each(
                        &p.child("httpHeaders"),
                        n,
                        is_http_header_name(n),
                    ));
                }
            }
            "tcpSocket" => {
                errs.extend(validate_port_num_or_name(
                    field(action, "port"),
                    &p.child("port"),
                ));
            }
            "grpc" => {
                let port = int_of(action, "port").unwrap_or(0);
                for m in is_valid_port_num(port) {
                    errs.push(invalid(&p.child("port"), port, &m));
                }
            }
            _ => {
                let seconds = int_of(action, "seconds").unwrap_or(0);
                if let Some(g) = grace
                    && (seconds < 0 || seconds > g)
                {
                    errs.push(invalid(
                        &p,
                        seconds,
                        &format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({g})"
                        ),
                    ));
                }
            }
        }
    }
    if num == 0 {
        errs.push(required(path, "must specify a handler type"));
    }
    errs
}

// --- resources -----------------------------------------------------------------------------

const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "requests.storage",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_hugepage_resource(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepage_resource(name)
}

/// Upstream `validateContainerResourceName`.
fn validate_container_resource_name(name: &str, path: &Path) -> Errs {
    let mut errs = invalid_each(path, name, is_qualified_name(name));
    if !errs.is_empty() {
        return errs;
    }
    if !name.contains('/') {
        let standard = STANDARD_RESOURCES.contains(&name)
            || is_hugepage_resource(name)
            || name.starts_with("requests.hugepages-");
        if !standard {
            errs.push(invalid(
                path,
                name,
                "must be a standard resource type or fully qualified",
            ));
        }
        let container =
            matches!(name, "cpu" | "memory" | "ephemeral-storage") || is_hugepage_resource(name);
        if !container {
            errs.push(invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
    errs
}

fn validate_quantity_value(name: &str, q: Quantity, path: &Path) -> Errs {
    let mut errs = vec![];
    if q.is_negative() {
        errs.push(invalid(path, q.to_string(), IS_NEGATIVE));
    }
    let integer = is_extended_resource(name)
        || matches!(
            name,
            "pods"
                | "services"
                | "replicationcontrollers"
                | "resourcequotas"
                | "secrets"
                | "configmaps"
                | "persistentvolumeclaims"
                | "services.nodeports"
                | "services.loadbalancers"
        );
    if integer && q.nanos % NANO != 0 {
        errs.push(invalid(path, q.to_string(), "must be an integer"));
    }
    errs
}

/// Upstream `ValidateContainerResourceRequirements`: names, quantities and requests <= limits.
fn validate_resources(res: &Value, path: &Path) -> Errs {
    let mut errs = vec![];
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let limits = map_of(res, "limits");
    let mut lim_cpu_mem = false;
    let mut req_cpu_mem = false;
    let mut lim_huge = false;
    let mut req_huge = false;
    for (name, q) in limits.into_iter().flatten() {
        let p = lim_path.key(name);
        errs.extend(validate_container_resource_name(name, &p));
        if let Some(q) = quantity_of(q) {
            errs.extend(validate_quantity_value(name, q, &p));
        }
        lim_huge |= is_hugepage_resource(name);
        lim_cpu_mem |= name == "cpu" || name == "memory";
    }
    for (name, q) in map_of(res, "requests").into_iter().flatten() {
        let p = req_path.key(name);
        errs.extend(validate_container_resource_name(name, &p));
        let q = quantity_of(q);
        if let Some(q) = q {
            errs.extend(validate_quantity_value(name, q, &p));
        }
        match (q, limits.and_then(|l| l.get(name))) {
            (Some(q), Some(limit)) => {
                if let Some(limit) = quantity_of(limit) {
                    if q.nanos != limit.nanos && !is_overcommit_allowed(name) {
                        errs.push(invalid(
                            &req_path,
                            q.to_string(),
                            &format!("must be equal to {name} limit of {limit}"),
                        ));
                    } else if q.nanos > limit.nanos {
                        errs.push(invalid(
                            &req_path,
                            q.to_string(),
                            &format!("must be less than or equal to {name} limit of {limit}"),
                        ));
                    }
                }
            }
            (_, None) if !is_overcommit_allowed(name) => errs.push(required(
                &lim_path,
                "Limit must be set for non overcommitable resources",
            )),
            _ => {}
        }
        req_huge |= is_hugepage_resource(name);
        req_cpu_mem |= name == "cpu" || name == "memory";
    }
    if !lim_cpu_mem && !req_cpu_mem && (req_huge || lim_huge) {
        errs.push(forbidden(path, "HugePages require cpu or memory"));
    }
    errs
}

// --- scheduling ----------------------------------------------------------------------------

fn validate_node_selector_term(term: &Value, allow_invalid_values: bool, path: &Path) -> Errs {
    let mut errs = vec![];
    for (j, req) in arr_of(term, "matchExpressions").iter().enumerate() {
        let p = path.child("matchExpressions").index(j);
        let values = arr_of(req, "values");
        let op = str_of(req, "operator");
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(required(
                        &p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(forbidden(
                        &p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            "Gt" | "Lt" => {
                if values.len() != 1 {
                    errs.push(required(
                        &p.child("values"),
                        "must be specified single value when `operator` is 'Lt' or 'Gt'",
                    ));
                }
            }
            _ => errs.push(invalid(
                &p.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        errs.extend(validate_label_name(str_of(req, "key"), &p.child("key")));
        if !allow_invalid_values {
            for (k, v) in values.iter().enumerate() {
                let v = v.as_str().unwrap_or("");
                errs.extend(invalid_each(
                    &p.child("values").index(k),
                    v,
                    is_valid_label_value(v),
                ));
            }
        }
    }
    for (j, req) in arr_of(term, "matchFields").iter().enumerate() {
        let p = path.child("matchFields").index(j);
        let op = str_of(req, "operator");
        match op {
            "In" | "NotIn" => {
                if arr_of(req, "values").len() != 1 {
                    errs.push(required(
                        &p.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            _ => errs.push(invalid(
                &p.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        let key = str_of(req, "key");
        if key != "metadata.name" {
            errs.push(invalid(
                &p.child("key"),
                key,
                "not a valid field selector key",
            ));
        } else {
            for (k, v) in arr_of(req, "values").iter().enumerate() {
                let v = v.as_str().unwrap_or("");
                errs.extend(validate_dns1123_subdomain(v, &p.child("values").index(k)));
            }
        }
    }
    errs
}

fn validate_pod_affinity_term(term: &Value, path: &Path) -> Errs {
    let mut errs =
        validate_label_selector(field(term, "labelSelector"), &path.child("labelSelector"));
    errs.extend(validate_label_selector(
        field(term, "namespaceSelector"),
        &path.child("namespaceSelector"),
    ));
    for ns in arr_of(term, "namespaces") {
        let ns = ns.as_str().unwrap_or("");
        errs.extend(invalid_each(
            &path.child("namespace"),
            ns,
            is_dns1123_label(ns),
        ));
    }
    for key in ["matchLabelKeys", "mismatchLabelKeys"] {
        let keys = arr_of(term, key);
        if keys.is_empty() {
            continue;
        }
        if field(term, "labelSelector").is_none() {
            errs.push(forbidden(
                &path.child(key),
                "must not be specified when labelSelector is not set",
            ));
            continue;
        }
        for (i, k) in keys.iter().enumerate() {
            errs.extend(validate_label_name(
                k.as_str().unwrap_or(""),
                &path.child(key).index(i),
            ));
        }
    }
    let tk = str_of(term, "topologyKey");
    if tk.is_empty() {
        errs.push(required(&path.child("topologyKey"), "can not be empty"));
    }
    errs.extend(validate_label_name(tk, &path.child("topologyKey")));
    errs
}

fn validate_affinity(affinity: &Value, path: &Path) -> Errs {
    let mut errs = vec![];
    if let Some(na) = field(affinity, "nodeAffinity") {
        let np = path.child("nodeAffinity");
        if let Some(req) = field(na, "requiredDuringSchedulingIgnoredDuringExecution") {
            let rp = np
                .child("requiredDuringSchedulingIgnoredDuringExecution")
                .child("nodeSelectorTerms");
            let terms = arr_of(req, "nodeSelectorTerms");
            if terms.is_empty() {
                errs.push(required(&rp, "must have at least one node selector term"));
            }
            for (i, t) in terms.iter().enumerate() {
                errs.extend(validate_node_selector_term(t, false, &rp.index(i)));
            }
        }
        let pp = np.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in arr_of(na, "preferredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            let w = int_of(t, "weight").unwrap_or(0);
            if !(1..=100).contains(&w) {
                errs.push(invalid(
                    &pp.index(i).child("weight"),
                    w,
                    "must be in the range 1-100",
                ));
            }
            errs.extend(validate_node_selector_term(
                obj(t, "preference"),
                true,
                &pp.index(i).child("preference"),
            ));
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = field(affinity, kind) else {
            continue;
        };
        let kp = path.child(kind);
        let rp = kp.child("requiredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in arr_of(pa, "requiredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            errs.extend(validate_pod_affinity_term(t, &rp.index(i)));
        }
        let pp = kp.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in arr_of(pa, "preferredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            let w = int_of(t, "weight").unwrap_or(0);
            if !(1..=100).contains(&w) {
                errs.push(invalid(
                    &pp.index(i).child("weight"),
                    w,
                    "must be in the range 1-100",
                ));
            }
            errs.extend(validate_pod_affinity_term(
                obj(t, "podAffinityTerm"),
                &pp.index(i).child("podAffinityTerm"),
            ));
        }
    }
    errs
}

fn validate_tolerations(tolerations: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = str_of(t, "key");
        let op = str_of(t, "operator");
        let effect = str_of(t, "effect");
        if !key.is_empty() {
            errs.extend(validate_label_name(key, &p.child("key")));
        }
        if key.is_empty() && op != "Exists" {
            errs.push(invalid(
                &p.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if field(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.push(invalid(
                &p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let value = str_of(t, "value");
        match op {
            "Equal" | "" => {
                let msgs = is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(invalid(&p.child("operator"), value, &msgs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(invalid(
                        &p.child("operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(not_supported(
                &p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(not_supported(
                &p.child("effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
    errs
}

fn validate_topology_spread(constraints: &[Value], path: &Path) -> Errs {
    let mut errs = vec![];
    for (i, c) in constraints.iter().enumerate() {
        let p = path.index(i);
        let skew = int_of(c, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            errs.push(invalid(&p.child("maxSkew"), skew, NOT_POSITIVE));
        }
        let tk = str_of(c, "topologyKey");
        if tk.is_empty() {
            errs.push(required(&p.child("topologyKey"), "can not be empty"));
        }
        let wu = str_of(c, "whenUnsatisfiable");
        if wu != "DoNotSchedule" && wu != "ScheduleAnyway" {
            errs.push(not_supported(
                &p.child("whenUnsatisfiable"),
                wu,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        if constraints[i + 1..]
            .iter()
            .any(|o| str_of(o, "topologyKey") == tk && str_of(o, "whenUnsatisfiable") == wu)
        {
            errs.push(duplicate(
                &p.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{tk}, {wu}}}"),
            ));
        }
        if let Some(md) = int_of(c, "minDomains") {
            if md <= 0 {
                errs.push(invalid(&p.child("minDomains"), md, NOT_POSITIVE));
            }
            if wu != "DoNotSchedule" {
                errs.push(invalid(
                    &p.child("minDomains"),
                    md,
                    &format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {wu}"
                    ),
                ));
            }
        }
        for key in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            if let Some(v) = opt_str(c, key)
                && v != "Honor"
                && v != "Ignore"
            {
                errs.push(not_supported(&p.child(key), v, &["Honor", "Ignore"]));
            }
        }
        let keys = arr_of(c, "matchLabelKeys");
        if !keys.is_empty() {
            let sel = field(c, "labelSelector");
            if sel.is_none() {
                errs.push(forbidden(
                    &p.child("matchLabelKeys"),
                    "must not be specified when labelSelector is not set",
                ));
            }
            for (j, k) in keys.iter().enumerate() {
                let k = k.as_str().unwrap_or("");
                let kp = p.child("matchLabelKeys").index(j);
                errs.extend(validate_label_name(k, &kp));
                let in_selector = sel.is_some_and(|s| {
                    has_key(map_of(s, "matchLabels"), k)
                        || arr_of(s, "matchExpressions")
                            .iter()
                            .any(|e| str_of(e, "key") == k)
                });
                if in_selector {
                    errs.push(invalid(
                        &kp,
                        k,
                        "exists in both matchLabelKeys and labelSelector",
                    ));
                }
            }
        }
        errs.extend(validate_label_selector(
            field(c, "labelSelector"),
            &p.child("labelSelector"),
        ));
    }
    errs
}

fn validate_dns_config(spec: &Value, path: &Path) -> Errs {
    let config = field(spec, "dnsConfig");
    if str_of(spec, "dnsPolicy") == "None" {
        let Some(c) = config else {
            return vec![required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            )];
        };
        if arr_of(c, "nameservers").is_empty() {
            return vec![required(
                &path.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )];
        }
    }
    let Some(c) = config else {
        return vec![];
    };
    let mut errs = vec![];
    let ns = arr_of(c, "nameservers");
    if ns.len() > 3 {
        errs.push(invalid(
            &path.child("nameservers"),
            Value::Array(ns.to_vec()),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, n) in ns.iter().enumerate() {
        errs.extend(is_valid_ip(
            &path.child("nameservers").index(i),
            n.as_str().unwrap_or(""),
        ));
    }
    let searches = arr_of(c, "searches");
    if searches.len() > 32 {
        errs.push(invalid(
            &path.child("searches"),
            Value::Array(searches.to_vec()),
            "must not have more than 32 search paths",
        ));
    }
    let joined: Vec<&str> = searches.iter().filter_map(Value::as_str).collect();
    if joined.join(" ").len() > 2048 {
        errs.push(invalid(
            &path.child("searches"),
            Value::Array(searches.to_vec()),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        let s = s.as_str().unwrap_or("");
        if s == "." {
            continue;
        }
        let s = s.strip_suffix('.').unwrap_or(s);
        let underscore_ok = s.split('.').all(|l| {
            matches_dns1123_label(l.strip_prefix('_').unwrap_or(l).replace('_', "-").as_str())
        });
        if !(matches_dns1123_subdomain(s) || (!s.is_empty() && underscore_ok)) || s.len() > 253 {
            let mut msgs = vec![];
            if s.len() > 253 {
                msgs.push(max_len_error(253));
            }
            msgs.push(regex_error(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character",
                DNS1123_SUBDOMAIN_FMT,
                &["example.com"],
            ));
            errs.extend(invalid_each(&path.child("searches").index(i), s, msgs));
        }
    }
    for (i, o) in arr_of(c, "options").iter().enumerate() {
        if str_of(o, "name").is_empty() {
            errs.push(required(
                &path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

/// Upstream validation of a (defaulted) object of this resource; `old` is the stored object on update.
///
/// The list is in upstream order and not de-duplicated (upstream de-duplicates only the message of
/// the aggregate). Namespace presence and scope, name generation, node-port and cluster-IP
/// allocation are the caller's job.
pub fn validate(resource: &Resource, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let rule = name_rule(resource);
    match (resource.group, resource.kind) {
        ("", "Pod") => validate_pod(object, old),
        ("", "PodTemplate") => validate_pod_template(object, old),
        ("", "ReplicationController") => validate_replication_controller(object, old),
        ("", "Service") => validate_service(object, old),
        ("", "ConfigMap") => validate_config_map(object, old),
        ("", "Secret") => validate_secret(object, old),
        ("", "Namespace") => validate_namespace(object, old),
        ("", "PersistentVolumeClaim") => validate_pvc(object, old),
        ("", "Endpoints") => validate_endpoints(object, old),
        ("", "Node") => validate_node(object, old, rule),
        ("discovery.k8s.io", "EndpointSlice") => validate_endpoint_slice(object, old),
        ("apps", "Deployment") => validate_deployment(object, old),
        ("apps", "ReplicaSet") => validate_replica_set(object, old),
        ("apps", "StatefulSet") => validate_stateful_set(object, old),
        ("apps", "DaemonSet") => validate_daemon_set(object, old),
        ("apps", "ControllerRevision") => validate_controller_revision(object, old),
        ("batch", "Job") => validate_job(object, old),
        ("batch", "CronJob") => validate_cron_job(object, old),
        ("networking.k8s.io", "Ingress") => validate_ingress(object, old),
        ("networking.k8s.io", "IngressClass") => validate_ingress_class(object, old),
        ("networking.k8s.io", "NetworkPolicy") => validate_network_policy(object, old),
        ("rbac.authorization.k8s.io", kind) => validate_rbac(kind, object, old),
        // Reviews are answered, never stored; upstream checks only their spec.
        ("authorization.k8s.io", _) | ("authentication.k8s.io", _) => vec![],
        _ => validate_meta(object, old, rule),
    }
}

/// Upstream `ValidateNodeUpdate`'s rule for pod ranges: set once (from none), then kept, since
/// nodes route other nodes' pod traffic by them.
fn validate_node(node: &Value, old: Option<&Value>, rule: NameRule) -> Errs {
    let mut errs = validate_meta(node, old, rule);
    if let Some(old) = old {
        let ranges = |n: &Value| {
            let spec = obj(n, "spec");
            (
                str_of(spec, "podCIDR").to_string(),
                arr_of(spec, "podCIDRs").to_vec(),
            )
        };
        let before = ranges(old);
        let set = !before.0.is_empty() || !before.1.is_empty();
        if set && before != ranges(node) {
            errs.push(forbidden(
                &Path::new("spec").child("podCIDRs"),
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Pods and pod templates
// ---------------------------------------------------------------------------------------------

const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Upstream `validatePodMetadataAndSpec`.
fn validate_pod_metadata_and_spec(pod: &Value) -> Errs {
    let spec = obj(pod, "spec");
    let spec_path = Path::new("spec");
    let mut errs = validate_object_meta(pod, NameRule::Subdomain);
    errs.extend(validate_pod_specific_annotations(
        map_of(obj(pod, "metadata"), "annotations"),
        &Path::new("metadata").child("annotations"),
    ));
    errs.extend(validate_pod_spec(
        spec,
        &spec_path,
        PodOpts { is_pod: true },
    ));
    if str_of(spec, "serviceAccountName").is_empty() {
        for (vi, vol) in arr_of(spec, "volumes").iter().enumerate() {
            for (si, src) in arr_of(obj(vol, "projected"), "sources").iter().enumerate() {
                if field(src, "serviceAccountToken").is_some() {
                    errs.push(forbidden(
                        &spec_path
                            .child("volumes")
                            .index(vi)
                            .child("projected")
                            .child("sources")
                            .index(si)
                            .child("serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    for key in ["containers", "initContainers"] {
        for (i, c) in arr_of(spec, key).iter().enumerate() {
            let image = str_of(c, "image");
            if image.trim() != image {
                errs.push(invalid(
                    &spec_path.child(key).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    errs
}

fn validate_pod(pod: &Value, old: Option<&Value>) -> Errs {
    let Some(old) = old else {
        let mut errs = validate_pod_metadata_and_spec(pod);
        let spec = obj(pod, "spec");
        let spec_path = Path::new("spec");
        if !arr_of(spec, "ephemeralContainers").is_empty() {
            errs.push(forbidden(
                &spec_path.child("ephemeralContainers"),
                "cannot be set on create",
            ));
        }
        if !str_of(spec, "nodeName").is_empty() && !arr_of(spec, "schedulingGates").is_empty() {
            errs.push(forbidden(
                &spec_path.child("nodeName"),
                "cannot be set until all schedulingGates have been cleared",
            ));
        }
        return errs;
    };
    let mut errs = validate_object_meta_update(pod, old);
    errs.extend(validate_pod_metadata_and_spec(pod));
    errs.extend(validate_pod_spec_update(obj(pod, "spec"), obj(old, "spec")));
    errs
}

/// Upstream `ValidatePodUpdate`: only images, deadlines, added tolerations and removed gates may change.
fn validate_pod_spec_update(spec: &Value, old: &Value) -> Errs {
    let spec_path = Path::new("spec");
    let mut errs = vec![];
    for key in ["containers", "initContainers"] {
        let new_list = arr_of(spec, key);
        if new_list.len() != arr_of(old, key).len() {
            errs.push(forbidden(
                &spec_path.child(key),
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
        for (i, c) in new_list.iter().enumerate() {
            let image = str_of(c, "image");
            if image.is_empty() {
                errs.push(required(&spec_path.child(key).index(i).child("image"), ""));
            }
            if image.trim() != image {
                errs.push(invalid(
                    &spec_path.child(key).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    let deadline_path = spec_path.child("activeDeadlineSeconds");
    match (
        int_of(spec, "activeDeadlineSeconds"),
        int_of(old, "activeDeadlineSeconds"),
    ) {
        (Some(new), old_deadline) => {
            if !(0..=i64::from(i32::MAX)).contains(&new) {
                errs.push(invalid(
                    &deadline_path,
                    new,
                    &inclusive_range_error(0, i64::from(i32::MAX)),
                ));
                return errs;
            }
            if old_deadline.is_some_and(|o| o < new) {
                errs.push(invalid(
                    &deadline_path,
                    new,
                    "must be less than or equal to previous value",
                ));
                return errs;
            }
        }
        (None, Some(_)) => errs.push(invalid(
            &deadline_path,
            "null",
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }
    let new_tol = arr_of(spec, "tolerations");
    let tol_ok = arr_of(old, "tolerations").iter().all(|o| {
        new_tol.iter().any(|n| {
            let strip = |t: &Value| {
                let mut t = t.clone();
                if let Some(m) = t.as_object_mut() {
                    m.remove("tolerationSeconds");
                }
                t
            };
            strip(o) == strip(n)
        })
    });
    if !tol_ok {
        errs.push(forbidden(
            &spec_path.child("tolerations"),
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    } else {
        errs.extend(validate_tolerations(
            new_tol,
            &spec_path.child("tolerations"),
        ));
    }
    let old_gates: Vec<&str> = arr_of(old, "schedulingGates")
        .iter()
        .map(|g| str_of(g, "name"))
        .collect();
    for (i, g) in arr_of(spec, "schedulingGates").iter().enumerate() {
        let name = str_of(g, "name");
        if !old_gates.contains(&name) {
            errs.push(forbidden(
                &spec_path.child("schedulingGates").index(i).child("name"),
                &format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    if spec == old {
        return errs;
    }
    let mut munged = spec.clone();
    if let Some(m) = munged.as_object_mut() {
        for key in ["containers", "initContainers"] {
            if let Some(Value::Array(list)) = m.get_mut(key) {
                for (i, c) in list.iter_mut().enumerate() {
                    let old_image = arr_of(old, key).get(i).map(|o| obj(o, "image").clone());
                    if let (Some(cm), Some(img)) = (c.as_object_mut(), old_image) {
                        if img.is_null() {
                            cm.remove("image");
                        } else {
                            cm.insert("image".into(), img);
                        }
                    }
                }
            }
        }
        for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match old.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        let old_grace = int_of(old, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0)
            && int_of(spec, "terminationGracePeriodSeconds") == Some(1)
        {
            m.insert("terminationGracePeriodSeconds".into(), json!(old_grace));
        }
        if !arr_of(old, "schedulingGates").is_empty() {
            let old_sel = map_of(old, "nodeSelector");
            let only_additions = old_sel
                .into_iter()
                .flatten()
                .all(|(k, v)| map_of(spec, "nodeSelector").and_then(|n| n.get(k)) == Some(v));
            if m.get("nodeSelector") != old.get("nodeSelector") {
                if !only_additions {
                    errs.push(invalid(
                        &spec_path.child("nodeSelector"),
                        go_repr(go_string_map(map_of(spec, "nodeSelector"))),
                        "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
                    ));
                }
                match old.get("nodeSelector") {
                    Some(v) => m.insert("nodeSelector".into(), v.clone()),
                    None => m.remove("nodeSelector"),
                };
            }
        }
    }
    if &munged != old {
        errs.push(forbidden(
            &spec_path,
            &format!(
                "pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n{}",
                spec_diff("core.PodSpec", old, &munged)
            ),
        ));
    }
    errs
}

/// A short description of changed top-level fields, in the spirit of upstream's `cmp.Diff`.
fn spec_diff(type_name: &str, old: &Value, new: &Value) -> String {
    let mut out = format!("  {type_name}{{\n");
    let mut keys: Vec<&String> = old
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .chain(new.as_object().into_iter().flat_map(|m| m.keys()))
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (o, n) = (old.get(k), new.get(k));
        if o == n {
            continue;
        }
        let go_name = {
            let mut c = k.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        };
        if let Some(o) = o {
            out.push_str(&format!("- \t{go_name}: {o},\n"));
        }
        if let Some(n) = n {
            out.push_str(&format!("+ \t{go_name}: {n},\n"));
        }
    }
    out.push_str("  }\n");
    out
}

fn validate_pod_template(object: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(object, old, NameRule::Subdomain);
    errs.extend(validate_pod_template_spec(
        obj(object, "template"),
        &Path::new("template"),
        PodOpts { is_pod: false },
    ));
    errs
}

fn validate_replication_controller(object: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(object, old, NameRule::Subdomain);
    let spec = obj(object, "spec");
    let path = Path::new("spec");
    errs.extend(nonnegative(
        int_of(spec, "minReadySeconds").unwrap_or(0),
        &path.child("minReadySeconds"),
    ));
    let selector = map_of(spec, "selector");
    if selector.is_none_or(Map::is_empty) {
        errs.push(required(&path.child("selector"), ""));
    }
    errs.extend(nonnegative(
        int_of(spec, "replicas").unwrap_or(0),
        &path.child("replicas"),
    ));
    let tpath = path.child("template");
    match field(spec, "template") {
        None => errs.push(required(&tpath, "")),
        Some(template) => {
            if let Some(sel) = selector.filter(|s| !s.is_empty()) {
                let labels = map_of(obj(template, "metadata"), "labels");
                let matches = sel
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                if !matches {
                    errs.push(selector_mismatch(template, &tpath));
                }
            }
            errs.extend(validate_pod_template_spec(
                template,
                &tpath,
                PodOpts { is_pod: false },
            ));
            errs.extend(validate_template_restart_always(
                template,
                &tpath,
                "ReplicationController",
            ));
        }
    }
    errs
}

/// Workload templates must restart always and may not carry a deadline.
fn validate_template_restart_always(template: &Value, tpath: &Path, kind: &str) -> Errs {
    let mut errs = vec![];
    let spec = obj(template, "spec");
    let rp = str_of(spec, "restartPolicy");
    if rp != "Always" {
        errs.push(not_supported(
            &tpath.child("spec").child("restartPolicy"),
            rp,
            &["Always"],
        ));
    }
    if int_of(spec, "activeDeadlineSeconds").is_some() {
        errs.push(forbidden(
            &tpath.child("spec").child("activeDeadlineSeconds"),
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// apps/v1
// ---------------------------------------------------------------------------------------------

/// The value of an int-or-percent as upstream's `getIntOrPercentValue` reads it.
fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => {
            if is_valid_percent(s).is_empty() {
                s.trim_end_matches('%').parse().unwrap_or(0)
            } else {
                s.parse().unwrap_or(0)
            }
        }
        Some(v) => v.as_i64().unwrap_or(0),
        None => 0,
    }
}

fn validate_positive_int_or_percent(v: Option<&Value>, path: &Path) -> Errs {
    match v {
        Some(Value::String(s)) => is_valid_percent(s)
            .into_iter()
            .map(|m| invalid(path, go_int_or_string(&Value::String(s.clone())), &m))
            .collect(),
        Some(v) => nonnegative(v.as_i64().unwrap_or(0), path),
        None => vec![],
    }
}

fn not_more_than_100_percent(v: Option<&Value>, path: &Path) -> Errs {
    match v {
        Some(Value::String(s)) if is_valid_percent(s).is_empty() => {
            if int_or_percent_value(v) > 100 {
                vec![invalid(
                    path,
                    go_int_or_string(&Value::String(s.clone())),
                    "must not be greater than 100%",
                )]
            } else {
                vec![]
            }
        }
        _ => vec![],
    }
}

fn int_or_string_repr(v: Option<&Value>) -> Value {
    go_int_or_string(v.unwrap_or(&json!(0)))
}

/// Selector rules shared by Deployment and ReplicaSet, then the template checks.
fn validate_rs_selector_and_template(spec: &Value, path: &Path, kind: &str) -> Errs {
    let mut errs = vec![];
    let selector = field(spec, "selector");
    match selector {
        None => errs.push(required(&path.child("selector"), "")),
        Some(sel) => {
            errs.extend(validate_label_selector(Some(sel), &path.child("selector")));
            if selector_is_empty(sel) {
                errs.push(invalid(
                    &path.child("selector"),
                    go_label_selector(Some(sel)),
                    "empty selector is invalid for deployment",
                ));
            }
        }
    }
    if selector_is_invalid(selector) {
        errs.push(invalid(
            &path.child("selector"),
            go_label_selector(selector),
            "invalid label selector",
        ));
        return errs;
    }
    let template = obj(spec, "template");
    let tpath = path.child("template");
    let everything = selector.is_some_and(selector_is_empty);
    if !everything && !selector_matches(selector, map_of(obj(template, "metadata"), "labels")) {
        errs.push(selector_mismatch(template, &tpath));
    }
    errs.extend(validate_pod_template_spec(
        template,
        &tpath,
        PodOpts { is_pod: false },
    ));
    errs.extend(validate_template_restart_always(template, &tpath, kind));
    errs
}

fn validate_deployment(object: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(object, old, NameRule::Subdomain);
    let spec = obj(object, "spec");
    let path = Path::new("spec");
    errs.extend(nonnegative(
        int_of(spec, "replicas").unwrap_or(0),
        &path.child("replicas"),
    ));
    errs.extend(validate_rs_selector_and_template(spec, &path, "ReplicaSet"));
    errs.extend(validate_deployment_strategy(
        obj(spec, "strategy"),
        &path.child("strategy"),
    ));
    let min_ready = int_of(spec, "minReadySeconds").unwrap_or(0);
    errs.extend(nonnegative(min_ready, &path.child("minReadySeconds")));
    if let Some(r) = int_of(spec, "revisionHistoryLimit") {
        errs.extend(nonnegative(r, &path.child("revisionHistoryLimit")));
    }
    if let Some(p) = int_of(spec, "progressDeadlineSeconds") {
        errs.extend(nonnegative(p, &path.child("progressDeadlineSeconds")));
        if p <= min_ready {
            errs.push(invalid(
                &path.child("progressDeadlineSeconds"),
                p,
                "must be greater than minReadySeconds",
            ));
        }
    }
    if let Some(old) = old {
        errs.extend(selector_immutable(spec, obj(old, "spec"), &path));
    }
    errs
}

fn selector_immutable(spec: &Value, old_spec: &Value, path: &Path) -> Errs {
    immutable(
        field(spec, "selector"),
        field(old_spec, "selector"),
        &path.child("selector"),
        go_label_selector,
    )
}

fn validate_deployment_strategy(strategy: &Value, path: &Path) -> Errs {
    let rolling = field(strategy, "rollingUpdate");
    match str_of(strategy, "type") {
        "Recreate" => match rolling {
            Some(_) => vec![forbidden(
                &path.child("rollingUpdate"),
                "may not be specified when strategy `type` is 'Recreate'",
            )],
            None => vec![],
        },
        "RollingUpdate" => match rolling {
            None => vec![required(
                &path.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )],
            Some(ru) => {
                let rp = path.child("rollingUpdate");
                let mu = field(ru, "maxUnavailable");
                let ms = field(ru, "maxSurge");
                let mut errs = validate_positive_int_or_percent(mu, &rp.child("maxUnavailable"));
                errs.extend(validate_positive_int_or_percent(ms, &rp.child("maxSurge")));
                if int_or_percent_value(mu) == 0 && int_or_percent_value(ms) == 0 {
                    errs.push(invalid(
                        &rp.child("maxUnavailable"),
                        int_or_string_repr(mu),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                errs.extend(not_more_than_100_percent(mu, &rp.child("maxUnavailable")));
                errs
            }
        },
        _ => vec![not_supported(
            path,
            go_strategy("DeploymentStrategy", "RollingUpdateDeployment", strategy),
            &["Recreate", "RollingUpdate"],
        )],
    }
}

fn validate_replica_set(object: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(object, old, NameRule::Subdomain);
    let spec = obj(object, "spec");
    let path = Path::new("spec");
    errs.extend(nonnegative(
        int_of(spec, "replicas").unwrap_or(0),
        &path.child("replicas"),
    ));
    errs.extend(nonnegative(
        int_of(spec, "minReadySeconds").unwrap_or(0),
        &path.child("minReadySeconds"),
    ));
    errs.extend(validate_rs_selector_and_template(spec, &path, "ReplicaSet"));
    if let Some(old) = old {
        errs.extend(selector_immutable(spec, obj(old, "spec"), &path));
    }
    errs
}

fn validate_daemon_set(object: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(object, old, NameRule::Subdomain);
    let spec = obj(object, "spec");
    let path = Path::new("spec");
    let selector = field(spec, "selector");
    errs.extend(validate_label_selector(selector, &path.child("selector")));
    let template = obj(spec, "template");
    let tpath = path.child("template");
    if !selector_is_invalid(selector)
        && !selector_matches(selector, map_of(obj(template, "metadata"), "labels"))
    {
        errs.push(selector_mismatch(template, &tpath));
    }
    if let Some(sel) = selector
        && selector_is_empty(sel)
    {
        errs.push(invalid(
            &path.child("selector"),
            go_label_selector(Some(sel)),
            "empty selector is invalid for daemonset",
        ));
    }
    errs.extend(validate_pod_template_spec(
        template,
        &tpath,
        PodOpts { is_pod: false },
    ));
    errs.extend(validate_template_restart_always(
        template,
        &tpath,
        "DaemonSet",
    ));
    errs.extend(nonnegative(
        int_of(spec, "minReadySeconds").unwrap_or(0),
        &path.child("minReadySeconds"),
    ));
    let strategy = obj(spec, "updateStrategy");
    let sp = path.child("updateStrategy");
    match str_of(strategy, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match field(strategy, "rollingUpdate") {
            None => errs.push(required(&sp.child("rollingUpdate"), "")),
            Some(ru) => {
                let rp = sp.child("rollingUpdate");
                let mu = field(ru, "maxUnavailable");
                let ms = field(ru, "maxSurge");
                errs.extend(validate_positive_int_or_percent(
                    mu,
                    &rp.child("maxUnavailable"),
                ));
                errs.extend(validate_positive_int_or_percent(ms, &rp.child("maxSurge")));
                errs.extend(not_more_than_100_percent(mu, &rp.child("maxUnavailable")));
                errs.extend(not_more_than_100_percent(ms, &rp.child("maxSurge")));
                let has_unavailable = int_or_percent_value(mu) != 0;
                let has_surge = int_or_percent_value(ms) != 0;
                if has_unavailable && has_surge {
                    errs.push(invalid(
                        &rp.child("maxSurge"),
                        int_or_string_repr(ms),
                        "may not be set when maxUnavailable is non-zero",
                    ));
                } else if !has_unavailable && !has_surge {
                    errs.push(required(
                        &rp.child("maxUnavailable"),
                        "cannot be 0 when maxSurge is 0",
                    ));
                }
            }
        },
        _ => errs.push(not_supported(
            &sp,
            go_strategy(
                "DaemonSetUpdateStrategy",
                "RollingUpdateDaemonSet",
                strategy,
            ),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    if let Some(r) = int_of(spec, "revisionHistoryLimit") {
        errs.extend(nonnegative(r, &path.child("revisionHistoryLimit")));
    }
    if let Some(old) = old {
        errs.extend(selector_immutable(spec, obj(old, "spec"), &path));
    }
    errs
}

fn validate_stateful_set(object: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(object, old, NameRule::Label);
    let spec = obj(object, "spec");
    let path = Path::new("spec");
    match str_of(spec, "podManagementPolicy") {
        "" => errs.push(required(&path.child("podManagementPolicy"), "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(invalid(
            &path.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = obj(spec, "updateStrategy");
    let sp = path.child("updateStrategy");
    let rolling = field(strategy, "rollingUpdate");
    match str_of(strategy, "type") {
        "" => errs.push(required(&sp, "")),
        "OnDelete" => {
            if let Some(ru) = rolling {
                errs.push(invalid(
                    &sp.child("rollingUpdate"),
                    go_rolling_update_stateful_set(ru),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = rolling {
                let rp = sp.child("rollingUpdate");
                errs.extend(nonnegative(
                    int_of(ru, "partition").unwrap_or(0),
                    &rp.child("partition"),
                ));
                if let Some(mu) = field(ru, "maxUnavailable") {
                    let mp = rp.child("maxUnavailable");
                    errs.extend(validate_positive_int_or_percent(Some(mu), &mp));
                    if int_or_percent_value(Some(mu)) == 0 {
                        errs.push(invalid(&mp, go_int_or_string(mu), "cannot be 0"));
                    }
                    errs.extend(not_more_than_100_percent(Some(mu), &mp));
                }
            }
        }
        _ => errs.push(invalid(
            &sp,
            go_strategy(
                "StatefulSetUpdateStrategy",
                "RollingUpdateStatefulSetStrategy",
                strategy,
            ),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = field(spec, "persistentVolumeClaimRetentionPolicy") {
        let pp = path.child("persistentVolumeClaimRetentionPolicy");
        for key in ["whenDeleted", "whenScaled"] {
            let v = str_of(policy, key);
            if v != "Retain" && v != "Delete" {
                errs.push(not_supported(&pp.child(key), v, &["Retain", "Delete"]));
            }
        }
    }
    errs.extend(nonnegative(
        int_of(spec, "replicas").unwrap_or(0),
        &path.child("replicas"),
    ));
    errs.extend(nonnegative(
        int_of(spec, "minReadySeconds").unwrap_or(0),
        &path.child("minReadySeconds"),
    ));
    if let Some(ordinals) = field(spec, "ordinals") {
        errs.extend(nonnegative(
            int_of(ordinals, "start").unwrap_or(0),
            &path.child("ordinals.start"),
        ));
    }
    let service_name = str_of(spec, "serviceName");
    if !service_name.is_empty() {
        errs.extend(validate_dns1123_label(
            service_name,
            &path.child("serviceName"),
        ));
    }
    let selector = field(spec, "selector");
    match selector {
        None => errs.push(required(&path.child("selector"), "")),
        Some(sel) => {
            errs.extend(validate_label_selector(Some(sel), &path.child("selector")));
            if selector_is_empty(sel) {
                errs.push(invalid(
                    &path.child("selector"),
                    go_label_selector(Some(sel)),
                    "empty selector is invalid for statefulset",
                ));
            }
        }
    }
    let template = obj(spec, "template");
    let tpath = path.child("template");
    if selector_is_invalid(selector) {
        errs.push(invalid(
            &path.child("selector"),
            go_label_selector(selector),
            "",
        ));
    } else {
        // Upstream validates only the template's metadata here, not its pod spec.
        let everything = selector.is_some_and(selector_is_empty);
        let meta = obj(template, "metadata");
        if !everything && !selector_matches(selector, map_of(meta, "labels")) {
            errs.push(selector_mismatch(template, &tpath));
        }
        errs.extend(validate_labels(
            map_of(meta, "labels"),
            &tpath.child("labels"),
        ));
        errs.extend(validate_annotations(
            map_of(meta, "annotations"),
            &tpath.child("annotations"),
        ));
        errs.extend(validate_pod_specific_annotations(
            map_of(meta, "annotations"),
            &tpath.child("annotations"),
        ));
    }
    errs.extend(validate_template_restart_always(
        template,
        &tpath,
        "StatefulSet",
    ));
    if let Some(old) = old {
        let strip = |s: &Value| {
            let mut s = s.clone();
            if let Some(m) = s.as_object_mut() {
                for key in [
                    "replicas",
                    "template",
                    "updateStrategy",
                    "minReadySeconds",
                    "ordinals",
                    "persistentVolumeClaimRetentionPolicy",
                ] {
                    m.remove(key);
                }
            }
            s
        };
        if strip(spec) != strip(obj(old, "spec")) {
            errs.push(forbidden(
                &path,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
    errs
}

fn go_rolling_update_stateful_set(ru: &Value) -> Value {
    let mu = if field(ru, "maxUnavailable").is_some() {
        "(*intstr.IntOrString)(0xc000000000)"
    } else {
        "(*intstr.IntOrString)(nil)"
    };
    go_repr(format!(
        "apps.RollingUpdateStatefulSetStrategy{{Partition:{}, MaxUnavailable:{mu}}}",
        int_of(ru, "partition").unwrap_or(0)
    ))
}

fn validate_controller_revision(object: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(object, old, NameRule::Subdomain);
    if field(object, "data").is_none() {
        errs.push(required(&Path::new("data"), "data is mandatory"));
    }
    errs.extend(nonnegative(
        int_of(object, "revision").unwrap_or(0),
        &Path::new("revision"),
    ));
    if let Some(old) = old {
        errs.extend(immutable(
            field(object, "data"),
            field(old, "data"),
            &Path::new("data"),
            plain_value,
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// batch/v1
// ---------------------------------------------------------------------------------------------

const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const LEGACY_JOB_NAME: &str = "job-name";
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// Upstream `ValidateHasLabel` on the pod template.
fn validate_has_label(template: &Value, key: &str, expected: &str) -> Errs {
    let path = Path::new("spec")
        .child("template")
        .child("metadata")
        .child("labels")
        .key(key);
    let labels = map_of(obj(template, "metadata"), "labels");
    match labels.and_then(|l| l.get(key)).and_then(Value::as_str) {
        None => vec![required(&path, &format!("must be '{expected}'"))],
        Some(actual) if actual != expected => vec![invalid(
            &path,
            go_repr(go_string_map(labels)),
            &format!("must be '{expected}'"),
        )],
        Some(_) => vec![],
    }
}

/// Upstream `validateGeneratedSelector`: an automatic selector must select exactly this Job's pods.
fn validate_generated_selector(job: &Value, require_prefixed: bool) -> Errs {
    let spec = obj(job, "spec");
    if bool_of(spec, "manualSelector") {
        return vec![];
    }
    let Some(selector) = field(spec, "selector") else {
        return vec![];
    };
    let meta = obj(job, "metadata");
    let uid = str_of(meta, "uid");
    let name = str_of(meta, "name");
    let mut errs = vec![];
    if uid.is_empty() {
        errs.push(required(&Path::new("metadata").child("uid"), ""));
    }
    let template = obj(spec, "template");
    errs.extend(validate_has_label(template, LEGACY_CONTROLLER_UID, uid));
    errs.extend(validate_has_label(template, LEGACY_JOB_NAME, name));
    let mut expected = Map::new();
    if require_prefixed {
        errs.extend(validate_has_label(template, CONTROLLER_UID, uid));
        errs.extend(validate_has_label(template, JOB_NAME, name));
        expected.insert(CONTROLLER_UID.into(), json!(uid));
        expected.insert(JOB_NAME.into(), json!(name));
    }
    expected.insert(LEGACY_CONTROLLER_UID.into(), json!(uid));
    expected.insert(LEGACY_JOB_NAME.into(), json!(name));
    if !selector_is_invalid(Some(selector)) && !selector_matches(Some(selector), Some(&expected)) {
        errs.push(invalid(
            &Path::new("spec").child("selector"),
            go_label_selector(Some(selector)),
            "`selector` not auto-generated",
        ));
    }
    errs
}

/// Upstream `validateJobSpec` (shared by Jobs and CronJob job templates).
fn validate_job_spec_common(spec: &Value, path: &Path) -> Errs {
    let mut errs = vec![];
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
    ] {
        if let Some(v) = int_of(spec, key) {
            errs.extend(nonnegative(v, &path.child(key)));
        }
    }
    if let Some(v) = int_of(spec, "maxFailedIndexes") {
        errs.extend(nonnegative(v, &path.child("maxFailedIndexes")));
        if field(spec, "backoffLimitPerIndex").is_none() {
            errs.push(required(
                &path.child("backoffLimitPerIndex"),
                "when maxFailedIndexes is specified",
            ));
        }
    }
    if let Some(m) = opt_str(spec, "managedBy") {
        errs.extend(validate_domain_prefixed_path(m, &path.child("managedBy")));
        if m.len() > 63 {
            errs.push(too_long(&path.child("managedBy"), 63));
        }
    }
    let mode = opt_str(spec, "completionMode");
    if let Some(mode) = mode {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(not_supported(
                &path.child("completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
        if mode == "Indexed" {
            if field(spec, "completions").is_none() {
                errs.push(required(
                    &path.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = int_of(spec, "parallelism")
                && p > 100_000
            {
                errs.push(invalid(
                    &path.child("parallelism"),
                    p,
                    "must be less than or equal to 100000 when completion mode is Indexed",
                ));
            }
            if let (Some(c), Some(m)) = (
                int_of(spec, "completions"),
                int_of(spec, "maxFailedIndexes"),
            ) && m > c
            {
                errs.push(invalid(
                    &path.child("maxFailedIndexes"),
                    m,
                    "must be less than or equal to completions",
                ));
            }
        }
    }
    if mode.is_none_or(|m| m == "NonIndexed") {
        for key in ["backoffLimitPerIndex", "maxFailedIndexes"] {
            if let Some(v) = int_of(spec, key) {
                errs.push(invalid(
                    &path.child(key),
                    v,
                    "requires indexed completion mode",
                ));
            }
        }
    }
    let failure_policy = field(spec, "podFailurePolicy");
    if let Some(fp) = failure_policy {
        errs.extend(validate_pod_failure_policy(
            spec,
            fp,
            &path.child("podFailurePolicy"),
        ));
    }
    if let Some(sp) = field(spec, "successPolicy")
        && mode != Some("Indexed")
    {
        errs.push(invalid(
            &path.child("successPolicy"),
            sp.clone(),
            "requires indexed completion mode",
        ));
    }
    if let Some(rp) = opt_str(spec, "podReplacementPolicy") {
        let pp = path.child("podReplacementPolicy");
        if failure_policy.is_some() {
            if rp != "Failed" {
                errs.push(not_supported(&pp, rp, &["Failed"]));
            }
        } else if rp != "Failed" && rp != "TerminatingOrFailed" {
            errs.push(not_supported(&pp, rp, &["Failed", "TerminatingOrFailed"]));
        }
    }
    let template = obj(spec, "template");
    let tpath = path.child("template");
    errs.extend(validate_pod_template_spec(
        template,
        &tpath,
        PodOpts { is_pod: false },
    ));
    let rp_path = tpath.child("spec").child("restartPolicy");
    match str_of(obj(template, "spec"), "restartPolicy") {
        "Always" | "" => errs.push(required(&rp_path, "valid values: \"OnFailure\", \"Never\"")),
        "OnFailure" | "Never" => {
            let rp = str_of(obj(template, "spec"), "restartPolicy");
            if failure_policy.is_some() && rp != "Never" {
                errs.push(invalid(
                    &rp_path,
                    rp,
                    "only \"Never\" is supported when podFailurePolicy is specified",
                ));
            }
        }
        other => errs.push(not_supported(&rp_path, other, &["OnFailure", "Never"])),
    }
    errs
}

fn validate_domain_prefixed_path(v: &str, path: &Path) -> Errs {
    if v.is_empty() {
        return vec![required(path, "")];
    }
    let Some((host, rest)) = v
        .split_once('/')
        .filter(|(h, r)| !h.is_empty() && !r.is_empty())
    else {
        return vec![invalid(
            path,
            v,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        )];
    };
    let mut errs = invalid_each(path, host, is_dns1123_subdomain(host));
    let ok = rest
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c));
    if !ok {
        errs.push(invalid(
            path,
            rest,
            &regex_error("Invalid path", "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+", &[]),
        ));
    }
    errs
}

fn validate_pod_failure_policy(spec: &Value, fp: &Value, path: &Path) -> Errs {
    let mut errs = vec![];
    let rules = arr_of(fp, "rules");
    let rules_path = path.child("rules");
    if rules.len() > 20 {
        errs.push(too_many(&rules_path, rules.len(), 20));
    }
    let tspec = obj(obj(spec, "template"), "spec");
    let names: HashSet<&str> = arr_of(tspec, "containers")
        .iter()
        .chain(arr_of(tspec, "initContainers"))
        .map(|c| str_of(c, "name"))
        .collect();
    const ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];
    for (i, rule) in rules.iter().enumerate() {
        let rp = rules_path.index(i);
        let action = str_of(rule, "action");
        if action.is_empty() {
            errs.push(required(
                &rp.child("action"),
                "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            ));
        } else if action == "FailIndex" {
            if field(spec, "backoffLimitPerIndex").is_none() {
                errs.push(invalid(
                    &rp.child("action"),
                    action,
                    "requires the backoffLimitPerIndex to be set",
                ));
            }
        } else if !ACTIONS.contains(&action) {
            errs.push(not_supported(&rp.child("action"), action, ACTIONS));
        }
        let on_exit = field(rule, "onExitCodes");
        let on_conditions = arr_of(rule, "onPodConditions");
        if let Some(oe) = on_exit {
            let op = path_of_exit(&rp);
            let operator = str_of(oe, "operator");
            if operator.is_empty() {
                errs.push(required(
                    &op.child("operator"),
                    "valid values: [\"In\" \"NotIn\"]",
                ));
            } else if operator != "In" && operator != "NotIn" {
                errs.push(not_supported(
                    &op.child("operator"),
                    operator,
                    &["In", "NotIn"],
                ));
            }
            if let Some(cn) = opt_str(oe, "containerName")
                && !names.contains(cn)
            {
                errs.push(invalid(
                    &op.child("containerName"),
                    cn,
                    "must be one of the container or initContainer names in the pod template",
                ));
            }
            let values = arr_of(oe, "values");
            let vp = op.child("values");
            if values.is_empty() {
                errs.push(invalid(
                    &vp,
                    go_repr("[]int32(nil)".into()),
                    "at least one value is required",
                ));
            } else if values.len() > 255 {
                errs.push(too_many(&vp, values.len(), 255));
            }
            let mut seen = HashSet::new();
            let mut ordered = true;
            let mut prev = i64::MIN;
            for (j, v) in values.iter().enumerate() {
                let v = v.as_i64().unwrap_or(0);
                if operator == "In" && v == 0 {
                    errs.push(invalid(
                        &vp.index(j),
                        v,
                        "must not be 0 for the In operator",
                    ));
                }
                if !seen.insert(v) {
                    errs.push(duplicate(&vp.index(j), v));
                }
                if j > 0 && prev > v {
                    ordered = false;
                }
                prev = v;
            }
            if !ordered {
                errs.push(invalid(
                    &vp,
                    Value::Array(values.to_vec()),
                    "must be ordered",
                ));
            }
        }
        if !on_conditions.is_empty() {
            let cp = rp.child("onPodConditions");
            if on_conditions.len() > 20 {
                errs.push(too_many(&cp, on_conditions.len(), 20));
            }
            for (j, pattern) in on_conditions.iter().enumerate() {
                let pp = cp.index(j);
                errs.extend(validate_qualified_name(
                    str_of(pattern, "type"),
                    &pp.child("type"),
                ));
                let status = str_of(pattern, "status");
                if status.is_empty() {
                    errs.push(required(
                        &pp.child("status"),
                        "valid values: [\"False\" \"True\" \"Unknown\"]",
                    ));
                } else if !matches!(status, "False" | "True" | "Unknown") {
                    errs.push(not_supported(
                        &pp.child("status"),
                        status,
                        &["False", "True", "Unknown"],
                    ));
                }
            }
        }
        let omit = || err(&rp, ErrorType::Invalid, None, "");
        if on_exit.is_some() && !on_conditions.is_empty() {
            let mut e = omit();
            e.detail = "specifying both OnExitCodes and OnPodConditions is not supported".into();
            errs.push(e);
        }
        if on_exit.is_none() && on_conditions.is_empty() {
            let mut e = omit();
            e.detail = "specifying one of OnExitCodes and OnPodConditions is required".into();
            errs.push(e);
        }
    }
    errs
}

fn path_of_exit(rule_path: &Path) -> Path {
    rule_path.child("onExitCodes")
}

fn validate_job(job: &Value, old: Option<&Value>) -> Errs {
    let spec = obj(job, "spec");
    let path = Path::new("spec");
    let require_prefixed = match old {
        None => true,
        Some(old) => {
            let labels = map_of(obj(obj(obj(old, "spec"), "template"), "metadata"), "labels");
            has_key(labels, JOB_NAME) && has_key(labels, CONTROLLER_UID)
        }
    };
    let mut errs = validate_meta(job, old, NameRule::Subdomain);
    errs.extend(validate_generated_selector(job, require_prefixed));
    errs.extend(validate_job_spec_common(spec, &path));
    let selector = field(spec, "selector");
    match selector {
        None => errs.push(required(&path.child("selector"), "")),
        Some(sel) => errs.extend(validate_label_selector(Some(sel), &path.child("selector"))),
    }
    let template = obj(spec, "template");
    if !selector_is_invalid(selector)
        && !selector_matches(selector, map_of(obj(template, "metadata"), "labels"))
    {
        errs.push(selector_mismatch(template, &path.child("template")));
    }
    if old.is_none()
        && str_of(spec, "completionMode") == "Indexed"
        && let Some(c) = int_of(spec, "completions").filter(|c| *c > 0)
    {
        let name = str_of(obj(job, "metadata"), "name");
        let hostname = format!("{name}-{}", c - 1);
        if !is_dns1123_label(&hostname).is_empty() {
            errs.push(invalid(
                &Path::new("metadata").child("name"),
                name,
                &format!("will not able to create pod with invalid DNS label: {hostname}"),
            ));
        }
    }
    if let Some(old) = old {
        // Suspended jobs that never started may still change where their pods are scheduled.
        let mutable_scheduling = bool_of(obj(old, "spec"), "suspend")
            && field(obj(old, "status"), "startTime").is_none();
        errs.extend(validate_job_spec_update(
            spec,
            obj(old, "spec"),
            &path,
            mutable_scheduling,
        ));
    }
    errs
}

fn validate_job_spec_update(
    spec: &Value,
    old: &Value,
    path: &Path,
    mutable_scheduling: bool,
) -> Errs {
    let mut errs = vec![];
    let completions = field(spec, "completions");
    if completions != field(old, "completions") {
        if str_of(spec, "completionMode") != "Indexed" {
            errs.push(invalid(
                &path.child("completions"),
                plain_value(completions),
                FIELD_IMMUTABLE,
            ));
        } else if let Some(c) = completions
            && c.as_i64() != int_of(spec, "parallelism")
        {
            errs.push(invalid(
                &path.child("completions"),
                c.clone(),
                "can only be modified in tandem with spec.parallelism",
            ));
        }
    }
    errs.extend(selector_immutable(spec, old, path));
    let mut new_template = obj(spec, "template").clone();
    let mut old_template = obj(old, "template").clone();
    if mutable_scheduling {
        for t in [&mut new_template, &mut old_template] {
            if let Some(m) = t.as_object_mut() {
                m.remove("metadata");
                if let Some(Value::Object(s)) = m.get_mut("spec") {
                    for key in ["nodeSelector", "tolerations", "schedulingGates"] {
                        s.remove(key);
                    }
                    if let Some(Value::Object(a)) = s.get_mut("affinity") {
                        a.remove("nodeAffinity");
                        if a.is_empty() {
                            s.remove("affinity");
                        }
                    }
                }
            }
        }
    }
    if new_template != old_template {
        errs.push(invalid(
            &path.child("template"),
            obj(spec, "template").clone(),
            FIELD_IMMUTABLE,
        ));
    }
    for key in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        errs.extend(immutable(
            field(spec, key),
            field(old, key),
            &path.child(key),
            plain_value,
        ));
    }
    errs
}

fn validate_cron_job(cron: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(cron, old, NameRule::Subdomain);
    let spec = obj(cron, "spec");
    let path = Path::new("spec");
    let old_spec = old.map(|o| obj(o, "spec"));
    let schedule = str_of(spec, "schedule");
    if schedule.is_empty() {
        errs.push(required(&path.child("schedule"), ""));
    } else {
        let allow_tz = old_spec.is_some_and(|o| str_of(o, "schedule").contains("TZ"));
        let sp = path.child("schedule");
        if let Err(e) = parse_cron_schedule(schedule) {
            errs.push(invalid(&sp, schedule, &e));
        }
        if allow_tz && schedule.contains("TZ") && field(spec, "timeZone").is_some() {
            errs.push(invalid(
                &sp,
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz && schedule.contains("TZ") {
            errs.push(invalid(
                &sp,
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    if let Some(s) = int_of(spec, "startingDeadlineSeconds") {
        errs.extend(nonnegative(s, &path.child("startingDeadlineSeconds")));
    }
    if old_spec.is_none_or(|o| field(o, "timeZone") != field(spec, "timeZone"))
        && let Some(tz) = opt_str(spec, "timeZone")
    {
        errs.extend(validate_time_zone(tz, &path.child("timeZone")));
    }
    match str_of(spec, "concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(required(&path.child("concurrencyPolicy"), "")),
        other => errs.push(not_supported(
            &path.child("concurrencyPolicy"),
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let jt = obj(spec, "jobTemplate");
    let jp = path.child("jobTemplate").child("spec");
    let jspec = obj(jt, "spec");
    errs.extend(validate_job_spec_common(jspec, &jp));
    if let Some(sel) = field(jspec, "selector") {
        errs.push(invalid(
            &jp.child("selector"),
            go_label_selector(Some(sel)),
            "`selector` will be auto-generated",
        ));
    }
    if bool_of(jspec, "manualSelector") {
        errs.push(not_supported(
            &jp.child("manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
    for key in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        if let Some(v) = int_of(spec, key) {
            errs.extend(nonnegative(v, &path.child(key)));
        }
    }
    if old.is_none() {
        let name = str_of(obj(cron, "metadata"), "name");
        if name.len() > 52 {
            errs.push(invalid(
                &Path::new("metadata").child("name"),
                name,
                "must be no more than 52 characters",
            ));
        }
    }
    errs
}

fn validate_time_zone(tz: &str, path: &Path) -> Errs {
    if tz.is_empty() {
        return vec![invalid(
            path,
            tz,
            "timeZone must be nil or non-empty string",
        )];
    }
    let part_ok = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    };
    if !tz.split('/').all(part_ok) {
        return vec![invalid(path, tz, &format!("unknown time zone {tz}"))];
    }
    let mut errs = vec![];
    if tz.eq_ignore_ascii_case("local") {
        errs.push(invalid(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    if !time_zone_known(tz) {
        errs.push(invalid(path, tz, &format!("unknown time zone {tz}")));
    }
    errs
}

/// Whether Go's `time.LoadLocation` would find the zone; the host's zoneinfo stands in for Go's database.
fn time_zone_known(tz: &str) -> bool {
    if tz == "UTC" || tz.eq_ignore_ascii_case("local") {
        return true;
    }
    let dir = std::path::Path::new("/usr/share/zoneinfo");
    if !dir.is_dir() {
        // Without a zone database every syntactically valid name is accepted.
        return true;
    }
    dir.join(tz).is_file()
}

// --- cron schedules (the standard parser of github.com/robfig/cron/v3) ---------------------

struct CronBounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MONTH_NAMES: &[(&str, u32)] = &[
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("apr", 4),
    ("may", 5),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("oct", 10),
    ("nov", 11),
    ("dec", 12),
];
const DOW_NAMES: &[(&str, u32)] = &[
    ("sun", 0),
    ("mon", 1),
    ("tue", 2),
    ("wed", 3),
    ("thu", 4),
    ("fri", 5),
    ("sat", 6),
];

/// Parses a five-field schedule or a descriptor, returning upstream's error text.
fn parse_cron_schedule(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec.to_string();
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let Some(space) = spec.find(' ') else {
            return Err(format!(
                "provided bad location {}: unknown time zone {}",
                &spec[eq + 1..],
                &spec[eq + 1..]
            ));
        };
        let loc = spec[eq + 1..space].to_string();
        if !time_zone_known(&loc) {
            return Err(format!(
                "provided bad location {loc}: unknown time zone {loc}"
            ));
        }
        spec = spec[space..].trim().to_string();
    }
    if spec.starts_with('@') {
        return match spec.as_str() {
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
            | "@hourly" => Ok(()),
            s => match s.strip_prefix("@every ") {
                Some(d) => {
                    parse_go_duration(d).map_err(|e| format!("failed to parse duration {s}: {e}"))
                }
                None => Err(format!("unrecognized descriptor: {s}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    let bounds = [
        CronBounds {
            min: 0,
            max: 59,
            names: &[],
        },
        CronBounds {
            min: 0,
            max: 23,
            names: &[],
        },
        CronBounds {
            min: 1,
            max: 31,
            names: &[],
        },
        CronBounds {
            min: 1,
            max: 12,
            names: MONTH_NAMES,
        },
        CronBounds {
            min: 0,
            max: 6,
            names: DOW_NAMES,
        },
    ];
    for (f, b) in fields.iter().zip(bounds.iter()) {
        for expr in f.split(',').filter(|e| !e.is_empty()) {
            cron_range(expr, b)?;
        }
    }
    Ok(())
}

fn cron_range(expr: &str, b: &CronBounds) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (b.min, b.max)
    } else {
        let start = cron_int_or_name(low_high[0], b.names)?;
        let end = match low_high.len() {
            1 => start,
            2 => cron_int_or_name(low_high[1], b.names)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = cron_int(range_and_step[1])?;
            if single {
                end = b.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

fn cron_int_or_name(expr: &str, names: &[(&str, u32)]) -> Result<u32, String> {
    let lower = expr.to_lowercase();
    if let Some((_, v)) = names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    cron_int(expr)
}

fn cron_int(expr: &str) -> Result<u32, String> {
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: invalid syntax",
            go_quote(expr)
        ));
    }
    let n: i64 = expr.parse().map_err(|_| {
        format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: value out of range",
            go_quote(expr)
        )
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    u32::try_from(n).map_err(|_| format!("end of range ({n}) above maximum: {expr}"))
}

/// Go's `time.ParseDuration` syntax check, with its error text.
fn parse_go_duration(s: &str) -> Result<(), String> {
    let quoted = go_quote(s);
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body == "0" {
        return Ok(());
    }
    if body.is_empty() {
        return Err(format!("time: invalid duration {quoted}"));
    }
    let mut rest = body;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return Err(format!("time: invalid duration {quoted}"));
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {quoted}"));
        }
        if !["ns", "us", "µs", "μs", "ms", "s", "m", "h"].contains(&unit) {
            return Err(format!(
                "time: unknown unit {} in duration {quoted}",
                go_quote(unit)
            ));
        }
        rest = &rest[unit_end..];
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------

fn is_headless(spec: &Value) -> bool {
    let ips = arr_of(spec, "clusterIPs");
    ips.len() == 1 && ips[0].as_str() == Some("None")
}

fn is_externally_accessible(spec: &Value) -> bool {
    let t = str_of(spec, "type");
    t == "LoadBalancer"
        || t == "NodePort"
        || (t == "ClusterIP" && !arr_of(spec, "externalIPs").is_empty())
}

fn go_service_port_key(protocol: &str, port: i64) -> Value {
    go_repr(format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        go_quote(protocol)
    ))
}

/// Upstream `ValidateService` (create and, with `old`, `ValidateServiceUpdate`).
fn validate_service(svc: &Value, old: Option<&Value>) -> Errs {
    let mut errs = vec![];
    let spec = obj(svc, "spec");
    let path = Path::new("spec");
    if let Some(old) = old {
        errs.extend(validate_object_meta_update(svc, old));
        errs.extend(validate_service_update(spec, obj(old, "spec"), &path));
    }
    errs.extend(validate_object_meta(svc, NameRule::Dns1035));
    let annotations = map_of(obj(svc, "metadata"), "annotations");
    let hints = annotations.and_then(|a| a.get("service.kubernetes.io/topology-aware-hints"));
    let mode = annotations.and_then(|a| a.get("service.kubernetes.io/topology-mode"));
    if let (Some(h), Some(m)) = (hints, mode)
        && h != m
    {
        errs.push(invalid(
            &Path::new("metadata")
                .child("annotations")
                .key("service.kubernetes.io/topology-mode"),
            m.clone(),
            "must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified",
        ));
    }
    let svc_type = str_of(spec, "type");
    let headless = is_headless(spec);
    let ports = arr_of(spec, "ports");
    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        errs.push(required(&path.child("ports"), ""));
    }
    match svc_type {
        "LoadBalancer" | "NodePort" if headless => errs.push(invalid(
            &path.child("clusterIPs").index(0),
            "None",
            &format!("may not be set to 'None' for {svc_type} services"),
        )),
        "ExternalName" => {
            for key in ["clusterIPs", "ipFamilies"] {
                if !arr_of(spec, key).is_empty() {
                    errs.push(forbidden(
                        &path.child(key),
                        "may not be set for ExternalName services",
                    ));
                }
            }
            if field(spec, "ipFamilyPolicy").is_some() {
                errs.push(forbidden(
                    &path.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            let name = str_of(spec, "externalName");
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(required(&path.child("externalName"), ""));
            } else {
                errs.extend(validate_dns1123_subdomain(
                    cname,
                    &path.child("externalName"),
                ));
            }
        }
        _ => {}
    }
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        errs.extend(validate_service_port(
            port,
            ports.len() > 1,
            &mut names,
            &path.child("ports").index(i),
        ));
    }
    if let Some(sel) = map_of(spec, "selector") {
        errs.extend(validate_labels(Some(sel), &path.child("selector")));
    }
    let affinity = str_of(spec, "sessionAffinity");
    match affinity {
        "" => errs.push(required(&path.child("sessionAffinity"), "")),
        "ClientIP" | "None" => {}
        other => errs.push(not_supported(
            &path.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    let cp = path.child("sessionAffinityConfig");
    if affinity == "ClientIP" {
        let timeout = field(spec, "sessionAffinityConfig")
            .and_then(|c| field(c, "clientIP"))
            .and_then(|c| field(c, "timeoutSeconds"));
        let detail = "when session affinity type is ClientIP";
        match (field(spec, "sessionAffinityConfig"), timeout) {
            (None, _) => errs.push(required(&cp, detail)),
            (Some(c), None) if field(c, "clientIP").is_none() => {
                errs.push(required(&cp.child("clientIP"), detail))
            }
            (Some(_), None) => errs.push(required(
                &cp.child("clientIP").child("timeoutSeconds"),
                detail,
            )),
            (Some(_), Some(t)) => {
                let t = t.as_i64().unwrap_or(0);
                if t <= 0 || t > 86400 {
                    errs.push(invalid(
                        &cp.child("clientIP").child("timeoutSeconds"),
                        t,
                        "must be greater than 0 and less than 86400",
                    ));
                }
            }
        }
    } else if affinity == "None" && field(spec, "sessionAffinityConfig").is_some() {
        errs.push(forbidden(
            &cp,
            "must not be set when session affinity is None",
        ));
    }
    errs.extend(validate_cluster_ips(spec, &path));
    for (i, ip) in arr_of(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        let ipp = path.child("externalIPs").index(i);
        let ip_errs = is_valid_ip(&ipp, ip);
        if ip_errs.is_empty() {
            errs.extend(validate_non_special_ip(ip, &ipp));
        } else {
            errs.extend(ip_errs);
        }
    }
    match svc_type {
        "" => errs.push(required(&path.child("type"), "")),
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort" => {}
        other => errs.push(not_supported(
            &path.child("type"),
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if svc_type == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if int_of(port, "nodePort").unwrap_or(0) != 0 {
                errs.push(forbidden(
                    &path.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let np = int_of(port, "nodePort").unwrap_or(0);
        if np != 0 && !node_ports.insert((str_of(port, "protocol"), np)) {
            errs.push(duplicate(
                &path.child("ports").index(i).child("nodePort"),
                np,
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let key = (str_of(port, "protocol"), int_of(port, "port").unwrap_or(0));
        if !seen.insert(key) {
            errs.push(duplicate(
                &path.child("ports").index(i),
                go_service_port_key(key.0, key.1),
            ));
        }
    }
    let ranges = arr_of(spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        let rp = path.child("LoadBalancerSourceRanges");
        if svc_type != "LoadBalancer" {
            errs.push(forbidden(
                &rp,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            errs.extend(is_valid_cidr(&rp.index(i), r.as_str().unwrap_or("").trim()));
        }
    } else if let Some(val) =
        annotations.and_then(|a| a.get("service.beta.kubernetes.io/load-balancer-source-ranges"))
    {
        let ap = Path::new("metadata")
            .child("annotations")
            .key("service.beta.kubernetes.io/load-balancer-source-ranges");
        if svc_type != "LoadBalancer" {
            errs.push(forbidden(
                &ap,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        let val = val.as_str().unwrap_or("").trim();
        if !val.is_empty() {
            for cidr in val.split(',') {
                errs.extend(is_valid_cidr(&ap, cidr.trim()));
            }
        }
    }
    if field(spec, "allocateLoadBalancerNodePorts").is_some() && svc_type != "LoadBalancer" {
        errs.push(forbidden(
            &path.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if svc_type == "LoadBalancer" && field(spec, "allocateLoadBalancerNodePorts").is_none() {
        errs.push(required(&Path::new("allocateLoadBalancerNodePorts"), ""));
    }
    if let Some(class) = opt_str(spec, "loadBalancerClass") {
        if svc_type == "LoadBalancer" {
            errs.extend(validate_qualified_name(
                class,
                &path.child("loadBalancerClass"),
            ));
        } else {
            errs.push(forbidden(
                &path.child("loadBalancerClass"),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
    }
    let etp = str_of(spec, "externalTrafficPolicy");
    if !is_externally_accessible(spec) {
        if !etp.is_empty() {
            errs.push(invalid(
                &path.child("externalTrafficPolicy"),
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(required(&path.child("externalTrafficPolicy"), ""));
    } else if etp != "Cluster" && etp != "Local" {
        errs.push(not_supported(
            &path.child("externalTrafficPolicy"),
            etp,
            &["Cluster", "Local"],
        ));
    }
    let hc = int_of(spec, "healthCheckNodePort").unwrap_or(0);
    let needs_health_check = svc_type == "LoadBalancer" && etp == "Local";
    if !needs_health_check && hc != 0 {
        errs.push(invalid(
            &path.child("healthCheckNodePort"),
            hc,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    } else if needs_health_check && hc != 0 {
        // A missing health-check port is allocated by the caller, like node ports.
        for m in is_valid_port_num(hc) {
            errs.push(invalid(&path.child("healthCheckNodePort"), hc, &m));
        }
    }
    match opt_str(spec, "internalTrafficPolicy") {
        None => {
            if matches!(svc_type, "NodePort" | "LoadBalancer" | "ClusterIP") {
                errs.push(required(&path.child("internalTrafficPolicy"), ""));
            }
        }
        Some("Cluster" | "Local") => {}
        Some(other) => errs.push(not_supported(
            &path.child("internalTrafficPolicy"),
            other,
            &["Cluster", "Local"],
        )),
    }
    if let Some(td) = opt_str(spec, "trafficDistribution")
        && td != "PreferClose"
    {
        errs.push(not_supported(
            &path.child("trafficDistribution"),
            td,
            &["PreferClose"],
        ));
    }
    errs
}

fn validate_service_port(
    port: &Value,
    require_name: bool,
    names: &mut HashSet<String>,
    path: &Path,
) -> Errs {
    let mut errs = vec![];
    let name = str_of(port, "name");
    if require_name && name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    } else if !name.is_empty() {
        errs.extend(validate_dns1123_label(name, &path.child("name")));
        if !names.insert(name.to_string()) {
            errs.push(duplicate(&path.child("name"), name));
        }
    }
    let p = int_of(port, "port").unwrap_or(0);
    for m in is_valid_port_num(p) {
        errs.push(invalid(&path.child("port"), p, &m));
    }
    errs.extend(validate_protocol(
        str_of(port, "protocol"),
        &path.child("protocol"),
    ));
    errs.extend(validate_port_num_or_name(
        field(port, "targetPort"),
        &path.child("targetPort"),
    ));
    if let Some(ap) = opt_str(port, "appProtocol") {
        errs.extend(validate_qualified_name(ap, &path.child("appProtocol")));
    }
    errs
}

fn validate_non_special_ip(ip: &str, path: &Path) -> Errs {
    let Some(addr) = parse_ip_sloppy(ip) else {
        return vec![invalid(path, ip, "must be a valid IP address")];
    };
    let mut errs = vec![];
    if addr.is_unspecified() {
        errs.push(invalid(path, ip, &format!("may not be unspecified ({ip})")));
    }
    if addr.is_loopback() {
        errs.push(invalid(
            path,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let link_local = match addr {
        std::net::IpAddr::V4(a) => a.is_link_local(),
        std::net::IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        errs.push(invalid(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    let link_local_multicast = match addr {
        std::net::IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
        std::net::IpAddr::V6(a) => (a.segments()[0] & 0xff0f) == 0xff02,
    };
    if link_local_multicast {
        errs.push(invalid(
            path,
            ip,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// Upstream `ValidateServiceClusterIPsRelatedFields`.
fn validate_cluster_ips(spec: &Value, path: &Path) -> Errs {
    if str_of(spec, "type") == "ExternalName" {
        return vec![];
    }
    let mut errs = vec![];
    let ips_path = path.child("clusterIPs");
    let cluster_ip = str_of(spec, "clusterIP");
    let ips = arr_of(spec, "clusterIPs");
    let ips_value = || Value::Array(ips.to_vec());
    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            errs.push(required(&ips_path, ""));
        } else if ips[0].as_str() != Some(cluster_ip) {
            errs.push(invalid(
                &ips_path,
                ips_value(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(invalid(
            &ips_path,
            ips_value(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = HashSet::new();
    for (i, fam) in arr_of(spec, "ipFamilies").iter().enumerate() {
        let fam = fam.as_str().unwrap_or("");
        let fp = path.child("ipFamilies").index(i);
        if fam != "IPv4" && fam != "IPv6" {
            errs.push(not_supported(&fp, fam, &["IPv4", "IPv6"]));
        }
        if !seen.insert(fam) {
            errs.push(duplicate(&fp, fam));
        }
    }
    if let Some(policy) = opt_str(spec, "ipFamilyPolicy")
        && !matches!(
            policy,
            "SingleStack" | "PreferDualStack" | "RequireDualStack"
        )
    {
        errs.push(not_supported(
            &path.child("ipFamilyPolicy"),
            policy,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    let mut bad_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                bad_ips = true;
                errs.push(invalid(
                    &ips_path,
                    ips_value(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let e = is_valid_ip(&ips_path.index(i), ip);
        bad_ips |= !e.is_empty();
        errs.extend(e);
    }
    if ips.len() > 2 {
        errs.push(invalid(
            &ips_path,
            ips_value(),
            "may only hold up to 2 values",
        ));
    }
    if bad_ips {
        return errs;
    }
    if ips.len() > 1 {
        let families: Vec<bool> = ips
            .iter()
            .filter_map(|ip| parse_ip_sloppy(ip.as_str().unwrap_or("")))
            .map(|ip| ip.is_ipv4())
            .collect();
        let dual = families.len() == 2 && families[0] != families[1];
        if !dual {
            errs.push(invalid(
                &ips_path,
                ips_value(),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(spec) {
        let families = arr_of(spec, "ipFamilies");
        for (i, ip) in ips.iter().enumerate().take(families.len()) {
            let ip = ip.as_str().unwrap_or("");
            let is_v6 = parse_ip_sloppy(ip).is_some_and(|a| a.is_ipv6());
            match families[i].as_str() {
                Some("IPv4") if is_v6 => errs.push(invalid(
                    &ips_path.index(i),
                    ip,
                    &format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                )),
                Some("IPv6") if !is_v6 => errs.push(invalid(
                    &ips_path.index(i),
                    ip,
                    &format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                )),
                _ => {}
            }
        }
    }
    errs
}

/// The cluster IPs a service keeps on update: an update that omits them keeps the allocated ones.
fn effective_cluster_ips<'a>(spec: &'a Value, old: &'a Value) -> Vec<&'a str> {
    let ips: Vec<&str> = arr_of(spec, "clusterIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let ip = str_of(spec, "clusterIP");
    if !ips.is_empty() {
        return ips;
    }
    if !ip.is_empty() {
        return vec![ip];
    }
    if str_of(spec, "type") == str_of(old, "type") {
        return arr_of(old, "clusterIPs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
    }
    vec![]
}

/// Upstream's update rules for cluster IPs, IP families and the load-balancer class.
fn validate_service_update(spec: &Value, old: &Value, path: &Path) -> Errs {
    let mut errs = vec![];
    let external = |s: &Value| str_of(s, "type") == "ExternalName";
    let both_headless = is_headless(spec) && is_headless(old);
    if !(external(spec) || external(old) || both_headless) {
        let new_ips = effective_cluster_ips(spec, old);
        let old_ips: Vec<&str> = arr_of(old, "clusterIPs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let ips_value = Value::Array(new_ips.iter().map(|s| json!(s)).collect());
        let ip0 = path.child("clusterIPs").index(0);
        if new_ips.len() == old_ips.len() {
            for (i, ip) in old_ips.iter().enumerate() {
                if *ip != new_ips[i] {
                    errs.push(invalid(
                        &path.child("clusterIPs").index(i),
                        ips_value.clone(),
                        "may not change once set",
                    ));
                }
            }
        } else if old_ips.len() > new_ips.len() {
            if new_ips.is_empty() {
                errs.push(invalid(
                    &ip0,
                    ips_value.clone(),
                    "primary clusterIP can not be unset",
                ));
            }
            if !new_ips.is_empty() && !old_ips.is_empty() && new_ips[0] != old_ips[0] {
                errs.push(invalid(&ip0, ips_value.clone(), "may not change once set"));
            }
            if new_ips.len() == 1 && opt_str(spec, "ipFamilyPolicy") != Some("SingleStack") {
                errs.push(invalid(
                    &path.child("ipFamilyPolicy"),
                    plain_value(field(spec, "ipFamilyPolicy")),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
            errs.push(invalid(&ip0, ips_value.clone(), "may not change once set"));
        }
        if is_headless(spec) == is_headless(old) && !is_headless(spec) {
            let new_f = arr_of(spec, "ipFamilies");
            let old_f = arr_of(old, "ipFamilies");
            let fp = path.child("ipFamilies").index(0);
            let changed = if new_f.len() == old_f.len() {
                new_f != old_f
            } else {
                !old_f.is_empty() && new_f.first() != old_f.first()
            };
            if !new_f.is_empty() && changed {
                errs.push(invalid(
                    &fp,
                    Value::Array(new_f.to_vec()),
                    "may not change once set",
                ));
            }
        }
    }
    if str_of(spec, "type") == "LoadBalancer"
        && str_of(old, "type") == "LoadBalancer"
        && field(spec, "loadBalancerClass") != field(old, "loadBalancerClass")
    {
        errs.push(invalid(
            &path.child("loadBalancerClass"),
            plain_value(field(spec, "loadBalancerClass")),
            "may not change once set",
        ));
    }
    let needs = |s: &Value| {
        str_of(s, "type") == "LoadBalancer" && str_of(s, "externalTrafficPolicy") == "Local"
    };
    let hc = int_of(spec, "healthCheckNodePort").unwrap_or(0);
    if needs(spec) && needs(old) && hc != 0 && hc != int_of(old, "healthCheckNodePort").unwrap_or(0)
    {
        errs.push(forbidden(
            &path.child("healthCheckNodePort"),
            FIELD_IMMUTABLE,
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// ConfigMaps, Secrets, Namespaces, PersistentVolumeClaims, Endpoints
// ---------------------------------------------------------------------------------------------

const MAX_SECRET_SIZE: usize = 1024 * 1024;
const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

fn decoded_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(|b| b.len())
        .unwrap_or(s.len())
}

fn validate_config_map(cm: &Value, old: Option<&Value>) -> Errs {
    let mut errs = vec![];
    if let Some(old) = old {
        errs.extend(validate_object_meta_update(cm, old));
        errs.extend(validate_immutable_data(cm, old, &["data", "binaryData"]));
    }
    errs.extend(validate_object_meta(cm, NameRule::Subdomain));
    let mut total = 0;
    let binary = map_of(cm, "binaryData");
    for (k, v) in map_of(cm, "data").into_iter().flatten() {
        let p = Path::new("data").key(k);
        errs.extend(invalid_each(&p, k, is_config_map_key(k)));
        if has_key(binary, k) {
            errs.push(invalid(
                &p,
                k.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        total += v.as_str().map_or(0, str::len);
    }
    for (k, v) in binary.into_iter().flatten() {
        errs.extend(invalid_each(
            &Path::new("binaryData").key(k),
            k,
            is_config_map_key(k),
        ));
        total += decoded_len(v);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(too_long(&Path::new(""), MAX_SECRET_SIZE));
    }
    errs
}

/// Objects marked immutable keep their flag and their data.
fn validate_immutable_data(object: &Value, old: &Value, keys: &[&str]) -> Errs {
    let mut errs = vec![];
    if !bool_of(old, "immutable") {
        return errs;
    }
    if !bool_of(object, "immutable") {
        errs.push(forbidden(&Path::new("immutable"), IMMUTABLE_SET));
    }
    for key in keys {
        // An empty map and an absent one are the same to upstream.
        let norm = |v: &Value| map_of(v, key).filter(|m| !m.is_empty()).cloned();
        if norm(object) != norm(old) {
            errs.push(forbidden(&Path::new(key), IMMUTABLE_SET));
        }
    }
    errs
}

fn validate_secret(secret: &Value, old: Option<&Value>) -> Errs {
    let mut errs = vec![];
    if let Some(old) = old {
        errs.extend(validate_object_meta_update(secret, old));
        let t = str_of(secret, "type");
        if t != str_of(old, "type") {
            errs.push(invalid(&Path::new("type"), t, FIELD_IMMUTABLE));
        }
        errs.extend(validate_immutable_data(secret, old, &["data"]));
    }
    errs.extend(validate_object_meta(secret, NameRule::Subdomain));
    let data_path = Path::new("data");
    let data = map_of(secret, "data");
    let mut total = 0;
    for (k, v) in data.into_iter().flatten() {
        errs.extend(invalid_each(&data_path.key(k), k, is_config_map_key(k)));
        total += decoded_len(v);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(too_long(&data_path, MAX_SECRET_SIZE));
    }
    let require = |errs: &mut Errs, key: &str| {
        if !has_key(data, key) {
            errs.push(required(&data_path.key(key), ""));
            false
        } else {
            true
        }
    };
    match str_of(secret, "type") {
        "kubernetes.io/service-account-token" => {
            let name = map_of(obj(secret, "metadata"), "annotations")
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if name.is_empty() {
                errs.push(required(
                    &Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        t @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let key = if t == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            if require(&mut errs, key) {
                let raw = data
                    .and_then(|d| d.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .unwrap_or_default();
                if let Err(e) = serde_json::from_slice::<Map<String, Value>>(&bytes) {
                    errs.push(invalid(
                        &data_path.key(key),
                        "<secret contents redacted>",
                        &e.to_string(),
                    ));
                }
            }
        }
        "kubernetes.io/basic-auth" if !has_key(data, "username") && !has_key(data, "password") => {
            errs.push(required(&data_path.key("username"), ""));
            errs.push(required(&data_path.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" => {
            let empty = data
                .and_then(|d| d.get("ssh-privatekey"))
                .is_none_or(|v| decoded_len(v) == 0);
            if empty {
                errs.push(required(&data_path.key("ssh-privatekey"), ""));
            }
        }
        "kubernetes.io/tls" => {
            require(&mut errs, "tls.crt");
            require(&mut errs, "tls.key");
        }
        _ => {}
    }
    errs
}

fn validate_namespace(ns: &Value, old: Option<&Value>) -> Errs {
    match old {
        Some(old) => validate_object_meta_update(ns, old),
        None => {
            let mut errs = validate_object_meta(ns, NameRule::Label);
            let fp = Path::new("spec").child("finalizers");
            for f in arr_of(obj(ns, "spec"), "finalizers") {
                let f = f.as_str().unwrap_or("");
                errs.extend(invalid_each(&fp, f, is_qualified_name(f)));
                errs.extend(validate_kube_finalizer_name(f, &fp));
            }
            errs
        }
    }
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn validate_pvc_spec(spec: &Value, path: &Path) -> Errs {
    let mut errs = vec![];
    let modes = arr_of(spec, "accessModes");
    if modes.is_empty() {
        errs.push(required(
            &path.child("accessModes"),
            "at least 1 access mode is required",
        ));
    }
    if let Some(sel) = field(spec, "selector") {
        errs.extend(validate_label_selector(Some(sel), &path.child("selector")));
    }
    let (mut rwop, mut other) = (false, false);
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.push(not_supported(&path.child("accessModes"), m, ACCESS_MODES));
        } else if m == "ReadWriteOncePod" {
            rwop = true;
        } else {
            other = true;
        }
    }
    if rwop && other {
        errs.push(forbidden(
            &path.child("accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    let sp = path.child("resources").key("storage");
    match map_of(obj(spec, "resources"), "requests").and_then(|r| r.get("storage")) {
        None => errs.push(required(&sp, "")),
        Some(q) => {
            if let Some(q) = quantity_of(q)
                && q.nanos <= 0
            {
                errs.push(invalid(&sp, q.to_string(), NOT_POSITIVE));
            }
        }
    }
    if let Some(sc) = opt_str(spec, "storageClassName").filter(|s| !s.is_empty()) {
        errs.extend(validate_dns1123_subdomain(
            sc,
            &path.child("storageClassName"),
        ));
    }
    if let Some(vm) = opt_str(spec, "volumeMode")
        && vm != "Block"
        && vm != "Filesystem"
    {
        errs.push(not_supported(
            &path.child("volumeMode"),
            vm,
            &["Block", "Filesystem"],
        ));
    }
    errs
}

fn validate_pvc(pvc: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(pvc, old, NameRule::Subdomain);
    let spec = obj(pvc, "spec");
    let path = Path::new("spec");
    errs.extend(validate_pvc_spec(spec, &path));
    if let Some(old) = old {
        let old_spec = obj(old, "spec");
        let mut new_clone = spec.clone();
        let mut old_clone = old_spec.clone();
        // The volume name may be set once; requests may change on bound claims.
        if str_of(old_spec, "volumeName").is_empty()
            && let (Some(n), Some(o)) = (new_clone.as_object_mut(), old_clone.as_object_mut())
        {
            match n.get("volumeName") {
                Some(v) => o.insert("volumeName".into(), v.clone()),
                None => o.remove("volumeName"),
            };
        }
        let bound = str_of(obj(pvc, "status"), "phase") == "Bound";
        if bound {
            for c in [&mut new_clone, &mut old_clone] {
                if let Some(Value::Object(r)) = c.get_mut("resources")
                    && let Some(Value::Object(req)) = r.get_mut("requests")
                {
                    req.remove("storage");
                }
                if let Some(m) = c.as_object_mut() {
                    m.remove("volumeAttributesClassName");
                }
            }
        }
        if new_clone != old_clone {
            errs.push(forbidden(
                &path,
                &format!(
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                    spec_diff("core.PersistentVolumeClaimSpec", &old_clone, &new_clone)
                ),
            ));
        }
        let storage = |s: &Value| {
            map_of(obj(s, "resources"), "requests")
                .and_then(|r| r.get("storage"))
                .and_then(quantity_of)
        };
        if let (Some(new_q), Some(old_q)) = (storage(spec), storage(old_spec))
            && new_q.nanos < old_q.nanos
        {
            let status_q = map_of(obj(old, "status"), "capacity")
                .and_then(|c| c.get("storage"))
                .and_then(quantity_of);
            if status_q.is_none_or(|s| new_q.nanos <= s.nanos) {
                errs.push(forbidden(
                    &path.child("resources").child("requests").child("storage"),
                    "field can not be less than status.capacity",
                ));
            }
        }
    }
    errs
}

/// Upstream `ValidateEndpointSlice`, as far as the addresses go: the type is one of the
/// three, fixed once set, and every IPv4 or IPv6 address a valid one of its family and not a
/// special one (unspecified, loopback, link-local), as since CVE-2021-25737.
fn validate_endpoint_slice(slice: &Value, old: Option<&Value>) -> Errs {
    let mut errs = vec![];
    if let Some(old) = old {
        errs.extend(validate_object_meta_update(slice, old));
        if str_of(slice, "addressType") != str_of(old, "addressType") {
            errs.push(invalid(
                &Path::new("addressType"),
                str_of(slice, "addressType"),
                "field is immutable",
            ));
        }
    }
    errs.extend(validate_object_meta(slice, NameRule::Subdomain));
    let address_type = str_of(slice, "addressType");
    match address_type {
        "" => errs.push(required(&Path::new("addressType"), "")),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => errs.push(not_supported(
            &Path::new("addressType"),
            other,
            &["FQDN", "IPv4", "IPv6"],
        )),
    }
    for (i, endpoint) in arr_of(slice, "endpoints").iter().enumerate() {
        let path = Path::new("endpoints").index(i).child("addresses");
        let addresses = arr_of(endpoint, "addresses");
        if addresses.is_empty() {
            errs.push(required(&path, "must contain at least 1 address"));
        }
        for (j, address) in addresses.iter().enumerate() {
            let text = address.as_str().unwrap_or("");
            let at = path.index(j);
            let family_ok = match address_type {
                "IPv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
                "IPv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
                _ => continue,
            };
            if !family_ok {
                errs.push(invalid(
                    &at,
                    text,
                    &format!("must be a valid {address_type} address"),
                ));
                continue;
            }
            errs.extend(validate_non_special_ip(text, &at));
        }
    }
    errs
}

fn validate_endpoints(ep: &Value, old: Option<&Value>) -> Errs {
    let mut errs = vec![];
    if let Some(old) = old {
        errs.extend(validate_object_meta_update(ep, old));
    }
    errs.extend(validate_object_meta(ep, NameRule::Subdomain));
    for (i, ss) in arr_of(ep, "subsets").iter().enumerate() {
        let sp = Path::new("subsets").index(i);
        if arr_of(ss, "addresses").is_empty() && arr_of(ss, "notReadyAddresses").is_empty() {
            errs.push(required(
                &sp,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for key in ["addresses", "notReadyAddresses"] {
            for (j, addr) in arr_of(ss, key).iter().enumerate() {
                let ap = sp.child(key).index(j);
                let ip = str_of(addr, "ip");
                errs.extend(is_valid_ip(&ap.child("ip"), ip));
                let host = str_of(addr, "hostname");
                if !host.is_empty() {
                    errs.extend(validate_dns1123_label(host, &ap.child("hostname")));
                }
                if let Some(node) = opt_str(addr, "nodeName") {
                    errs.extend(validate_dns1123_subdomain(node, &ap.child("nodeName")));
                }
                errs.extend(validate_non_special_ip(ip, &ap.child("ip")));
            }
        }
        let ports = arr_of(ss, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = sp.child("ports").index(j);
            let name = str_of(port, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(required(&pp.child("name"), ""));
            } else if !name.is_empty() {
                errs.extend(validate_dns1123_label(name, &pp.child("name")));
            }
            let p = int_of(port, "port").unwrap_or(0);
            for m in is_valid_port_num(p) {
                errs.push(invalid(&pp.child("port"), p, &m));
            }
            errs.extend(validate_protocol(
                str_of(port, "protocol"),
                &pp.child("protocol"),
            ));
            if let Some(ap) = opt_str(port, "appProtocol") {
                errs.extend(validate_qualified_name(ap, &pp.child("appProtocol")));
            }
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// networking.k8s.io/v1
// ---------------------------------------------------------------------------------------------

fn validate_ingress(ing: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(ing, old, NameRule::Subdomain);
    let spec = obj(ing, "spec");
    let path = Path::new("spec");
    // Updates keep tolerating what the stored object already had.
    let old_spec = old.map(|o| obj(o, "spec"));
    let allow_bad_secret = old_spec.is_some_and(|o| {
        arr_of(o, "tls").iter().any(|t| {
            let s = str_of(t, "secretName");
            !s.is_empty() && !is_dns1123_subdomain(s).is_empty()
        })
    });
    let allow_bad_wildcard = old_spec.is_some_and(|o| {
        arr_of(o, "rules").iter().any(|r| {
            str_of(r, "host").contains('*')
                && !validate_ingress_rule_value(r, &Path::new("")).is_empty()
        })
    });
    let rules = field(spec, "rules").and_then(Value::as_array);
    if rules.is_none_or(Vec::is_empty) && field(spec, "defaultBackend").is_none() {
        let repr = if rules.is_some() {
            "[]networking.IngressRule{}"
        } else {
            "[]networking.IngressRule(nil)"
        };
        errs.push(invalid(
            &path,
            go_repr(repr.into()),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = field(spec, "defaultBackend") {
        errs.extend(validate_ingress_backend(b, &path.child("defaultBackend")));
    }
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        let rp = path.child("rules").index(i);
        let host = str_of(rule, "host");
        let mut wildcard = false;
        if !host.is_empty() {
            if parse_ip_sloppy(host).is_some() {
                errs.push(invalid(
                    &rp.child("host"),
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            if host.contains('*') {
                errs.extend(invalid_each(
                    &rp.child("host"),
                    host,
                    is_wildcard_dns1123_subdomain(host),
                ));
                wildcard = true;
            } else {
                errs.extend(validate_dns1123_subdomain(host, &rp.child("host")));
            }
        }
        if !wildcard || !allow_bad_wildcard {
            errs.extend(validate_ingress_rule_value(rule, &rp));
        }
    }
    for (i, tls) in arr_of(spec, "tls").iter().enumerate() {
        let tp = path.child("tls").index(i);
        for (j, host) in arr_of(tls, "hosts").iter().enumerate() {
            let host = host.as_str().unwrap_or("");
            let hp = tp.child("hosts").index(j);
            if host.contains('*') {
                errs.extend(invalid_each(&hp, host, is_wildcard_dns1123_subdomain(host)));
            } else {
                errs.extend(validate_dns1123_subdomain(host, &hp));
            }
        }
        let secret = str_of(tls, "secretName");
        if !allow_bad_secret && !secret.is_empty() {
            errs.extend(validate_dns1123_subdomain(secret, &tp.child("secretName")));
        }
    }
    if let Some(class) = opt_str(spec, "ingressClassName") {
        errs.extend(validate_dns1123_subdomain(
            class,
            &path.child("ingressClassName"),
        ));
    }
    if old.is_none() {
        let annotation = map_of(obj(ing, "metadata"), "annotations")
            .and_then(|a| a.get("kubernetes.io/ingress.class"))
            .and_then(Value::as_str);
        if let (Some(a), Some(class)) = (annotation, opt_str(spec, "ingressClassName"))
            && a != class
        {
            errs.push(invalid(
                &Path::new("annotations").child("kubernetes.io/ingress.class"),
                a,
                "must match `ingressClassName` when both are specified",
            ));
        }
    }
    errs
}

fn validate_ingress_rule_value(rule: &Value, rp: &Path) -> Errs {
    let Some(http) = field(rule, "http") else {
        return vec![];
    };
    let hp = rp.child("http");
    let paths = arr_of(http, "paths");
    let mut errs = vec![];
    if paths.is_empty() {
        errs.push(required(&hp.child("paths"), ""));
    }
    for (i, p) in paths.iter().enumerate() {
        let pp = hp.child("paths").index(i);
        let Some(path_type) = opt_str(p, "pathType") else {
            errs.push(required(
                &pp.child("pathType"),
                "pathType must be specified",
            ));
            continue;
        };
        let value = str_of(p, "path");
        match path_type {
            "Exact" | "Prefix" => {
                if !value.starts_with('/') {
                    errs.push(invalid(
                        &pp.child("path"),
                        value,
                        "must be an absolute path",
                    ));
                }
                if !value.is_empty() {
                    for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                        if value.contains(seq) {
                            errs.push(invalid(
                                &pp.child("path"),
                                value,
                                &format!("must not contain '{seq}'"),
                            ));
                        }
                    }
                    for suffix in ["/..", "/."] {
                        if value.ends_with(suffix) {
                            errs.push(invalid(
                                &pp.child("path"),
                                value,
                                &format!("cannot end with '{suffix}'"),
                            ));
                        }
                    }
                }
            }
            "ImplementationSpecific" => {
                if !value.is_empty() && !value.starts_with('/') {
                    errs.push(invalid(
                        &pp.child("path"),
                        value,
                        "must be an absolute path",
                    ));
                }
            }
            other => errs.push(not_supported(
                &pp.child("pathType"),
                other,
                &["Exact", "ImplementationSpecific", "Prefix"],
            )),
        }
        errs.extend(validate_ingress_backend(
            obj(p, "backend"),
            &pp.child("backend"),
        ));
    }
    errs
}

fn validate_ingress_backend(backend: &Value, path: &Path) -> Errs {
    let resource = field(backend, "resource");
    let service = field(backend, "service");
    match (resource, service) {
        (Some(_), Some(_)) => vec![invalid(
            path,
            "",
            "cannot set both resource and service backends",
        )],
        (Some(r), None) => validate_typed_local_object_reference(r, &path.child("resource")),
        (None, Some(s)) => {
            let mut errs = vec![];
            let name = str_of(s, "name");
            let np = path.child("service").child("name");
            if name.is_empty() {
                errs.push(required(&np, ""));
            } else {
                errs.extend(invalid_each(&np, name, is_dns1035_label(name)));
            }
            let port = obj(s, "port");
            let port_name = str_of(port, "name");
            let port_number = int_of(port, "number").unwrap_or(0);
            let pp = path.child("service").child("port");
            if !port_name.is_empty() && port_number != 0 {
                errs.push(invalid(path, "", "cannot set both port name & port number"));
            } else if !port_name.is_empty() {
                errs.extend(invalid_each(
                    &pp.child("name"),
                    port_name,
                    is_valid_port_name(port_name),
                ));
            } else if port_number != 0 {
                for m in is_valid_port_num(port_number) {
                    errs.push(invalid(&pp.child("number"), port_number, &m));
                }
            } else {
                errs.push(required(path, "port name or number is required"));
            }
            errs
        }
        (None, None) => vec![invalid(path, "", "resource or service backend is required")],
    }
}

fn path_segment_errors(v: &str) -> Vec<String> {
    name_errors(NameRule::PathSegment, v, false)
}

fn validate_typed_local_object_reference(r: &Value, path: &Path) -> Errs {
    let mut errs = vec![];
    if let Some(group) = opt_str(r, "apiGroup") {
        errs.extend(validate_dns1123_subdomain(group, &path.child("apiGroup")));
    }
    for key in ["kind", "name"] {
        let v = str_of(r, key);
        if v.is_empty() {
            errs.push(required(&path.child(key), &format!("{key} is required")));
        } else {
            errs.extend(invalid_each(&path.child(key), v, path_segment_errors(v)));
        }
    }
    errs
}

fn validate_ingress_class(ic: &Value, old: Option<&Value>) -> Errs {
    let mut errs = vec![];
    let spec = obj(ic, "spec");
    let path = Path::new("spec");
    if let Some(old) = old {
        errs.extend(validate_object_meta_update(ic, old));
        let controller = str_of(spec, "controller");
        if controller != str_of(obj(old, "spec"), "controller") {
            errs.push(invalid(
                &path.child("controller"),
                controller,
                FIELD_IMMUTABLE,
            ));
        }
    }
    errs.extend(validate_object_meta(ic, NameRule::Subdomain));
    let controller = str_of(spec, "controller");
    if controller.len() > 250 {
        errs.push(too_long(&path.child("controller"), 250));
    }
    errs.extend(validate_domain_prefixed_path(
        controller,
        &path.child("controller"),
    ));
    if let Some(params) = field(spec, "parameters") {
        let pp = path.child("parameters");
        errs.extend(validate_typed_local_object_reference(params, &pp));
        match opt_str(params, "scope") {
            None => errs.push(required(&pp.child("scope"), "")),
            Some("Namespace") => match opt_str(params, "namespace") {
                None => errs.push(required(
                    &pp.child("namespace"),
                    "`parameters.scope` is set to 'Namespace'",
                )),
                Some(ns) => errs.extend(validate_dns1123_label(ns, &pp.child("namespace"))),
            },
            Some("Cluster") => {
                if field(params, "namespace").is_some() {
                    errs.push(forbidden(
                        &pp.child("namespace"),
                        "`parameters.scope` is set to 'Cluster'",
                    ));
                }
            }
            Some(other) => errs.push(not_supported(
                &pp.child("scope"),
                other,
                &["Cluster", "Namespace"],
            )),
        }
    }
    errs
}

fn validate_network_policy(np: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(np, old, NameRule::Subdomain);
    let spec = obj(np, "spec");
    let path = Path::new("spec");
    errs.extend(validate_label_selector(
        field(spec, "podSelector"),
        &path.child("podSelector"),
    ));
    for (dir, peers_key) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in arr_of(spec, dir).iter().enumerate() {
            let rp = path.child(dir).index(i);
            for (j, port) in arr_of(rule, "ports").iter().enumerate() {
                errs.extend(validate_network_policy_port(
                    port,
                    &rp.child("ports").index(j),
                ));
            }
            for (j, peer) in arr_of(rule, peers_key).iter().enumerate() {
                errs.extend(validate_network_policy_peer(
                    peer,
                    &rp.child(peers_key).index(j),
                ));
            }
        }
    }
    let types = arr_of(spec, "policyTypes");
    if types.len() > 2 {
        errs.push(invalid(
            &path.child("policyTypes"),
            Value::Array(types.to_vec()),
            "may not specify more than two policyTypes",
        ));
        return errs;
    }
    for (i, t) in types.iter().enumerate() {
        let t = t.as_str().unwrap_or("");
        if t != "Ingress" && t != "Egress" {
            errs.push(not_supported(
                &path.child("policyTypes").index(i),
                t,
                &["Ingress", "Egress"],
            ));
        }
    }
    errs
}

fn validate_network_policy_port(port: &Value, path: &Path) -> Errs {
    let mut errs = vec![];
    if let Some(p) = opt_str(port, "protocol")
        && !PROTOCOLS.contains(&p)
    {
        errs.push(not_supported(
            &path.child("protocol"),
            p,
            &["TCP", "UDP", "SCTP"],
        ));
    }
    match field(port, "port") {
        Some(Value::String(s)) => {
            errs.extend(invalid_each(&path.child("port"), s, is_valid_port_name(s)));
            if field(port, "endPort").is_some() {
                errs.push(invalid(
                    &path.child("endPort"),
                    go_int_or_string(&Value::String(s.clone())),
                    "may not be specified when `port` is non-numeric",
                ));
            }
        }
        Some(v) => {
            let n = v.as_i64().unwrap_or(0);
            for m in is_valid_port_num(n) {
                errs.push(invalid(&path.child("port"), n, &m));
            }
            if let Some(end) = int_of(port, "endPort") {
                if end < n {
                    errs.push(invalid(
                        &path.child("endPort"),
                        end,
                        "must be greater than or equal to `port`",
                    ));
                }
                for m in is_valid_port_num(end) {
                    errs.push(invalid(&path.child("endPort"), end, &m));
                }
            }
        }
        None => {
            if field(port, "endPort").is_some() {
                errs.push(required(&path.child("port"), "when endPort is specified"));
            }
        }
    }
    errs
}

fn validate_network_policy_peer(peer: &Value, path: &Path) -> Errs {
    let mut errs = vec![];
    let mut num = 0;
    for key in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = field(peer, key) {
            num += 1;
            errs.extend(validate_label_selector(Some(sel), &path.child(key)));
        }
    }
    let ip_block = field(peer, "ipBlock");
    if let Some(ipb) = ip_block {
        num += 1;
        let bp = path.child("ipBlock");
        let cidr = str_of(ipb, "cidr");
        if cidr.is_empty() {
            errs.push(required(&bp.child("cidr"), ""));
        } else {
            errs.extend(is_valid_cidr(&bp.child("cidr"), cidr));
            if let Some((net, bits)) = parse_cidr_sloppy(cidr) {
                for (i, except) in arr_of(ipb, "except").iter().enumerate() {
                    let ex = except.as_str().unwrap_or("");
                    let ep = bp.child("except").index(i);
                    let ex_errs = is_valid_cidr(&ep, ex);
                    if !ex_errs.is_empty() {
                        errs.extend(ex_errs);
                        continue;
                    }
                    if let Some((ex_ip, ex_bits)) = parse_cidr_sloppy(ex)
                        && (!cidr_contains(net, bits, ex_ip) || bits >= ex_bits)
                    {
                        errs.push(invalid(&ep, ex, "must be a strict subset of `cidr`"));
                    }
                }
            }
        }
    }
    if num == 0 {
        errs.push(required(path, "must specify a peer"));
    } else if num > 1 && ip_block.is_some() {
        errs.push(forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
    errs
}

fn cidr_contains(net: std::net::IpAddr, bits: u8, ip: std::net::IpAddr) -> bool {
    match (net, ip) {
        (std::net::IpAddr::V4(n), std::net::IpAddr::V4(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (std::net::IpAddr::V6(n), std::net::IpAddr::V6(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// rbac.authorization.k8s.io/v1
// ---------------------------------------------------------------------------------------------

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn validate_rbac(kind: &str, object: &Value, old: Option<&Value>) -> Errs {
    let mut errs = validate_meta(object, old, NameRule::PathSegment);
    let namespaced = kind == "Role" || kind == "RoleBinding";
    match kind {
        "Role" | "ClusterRole" => {
            for (i, rule) in arr_of(object, "rules").iter().enumerate() {
                errs.extend(validate_policy_rule(
                    rule,
                    namespaced,
                    &Path::new("rules").index(i),
                ));
            }
            if let Some(agg) = field(object, "aggregationRule") {
                let ap = Path::new("aggregationRule").child("clusterRoleSelectors");
                let selectors = arr_of(agg, "clusterRoleSelectors");
                if selectors.is_empty() {
                    errs.push(required(
                        &ap,
                        "at least one clusterRoleSelector required if aggregationRule is non-nil",
                    ));
                }
                for (i, sel) in selectors.iter().enumerate() {
                    errs.extend(validate_label_selector(Some(sel), &ap.index(i)));
                }
                if !arr_of(object, "rules").is_empty() {
                    errs.push(invalid(
                        &Path::new("rules"),
                        Value::Array(arr_of(object, "rules").to_vec()),
                        "rules must be empty when aggregationRule is set",
                    ));
                }
            }
        }
        _ => {
            let role_ref = obj(object, "roleRef");
            let rp = Path::new("roleRef");
            let group = str_of(role_ref, "apiGroup");
            if group != RBAC_GROUP {
                errs.push(not_supported(&rp.child("apiGroup"), group, &[RBAC_GROUP]));
            }
            let kind_ref = str_of(role_ref, "kind");
            let allowed: &[&str] = if namespaced {
                &["Role", "ClusterRole"]
            } else {
                &["ClusterRole"]
            };
            if !allowed.contains(&kind_ref) {
                errs.push(not_supported(&rp.child("kind"), kind_ref, allowed));
            }
            let name = str_of(role_ref, "name");
            if name.is_empty() {
                errs.push(required(&rp.child("name"), ""));
            } else {
                errs.extend(invalid_each(
                    &rp.child("name"),
                    name,
                    path_segment_errors(name),
                ));
            }
            for (i, subject) in arr_of(object, "subjects").iter().enumerate() {
                errs.extend(validate_subject(
                    subject,
                    namespaced,
                    &Path::new("subjects").index(i),
                ));
            }
            if let Some(old) = old
                && field(object, "roleRef") != field(old, "roleRef")
            {
                errs.push(invalid(
                    &rp,
                    go_repr(format!(
                        "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
                        go_quote(group),
                        go_quote(kind_ref),
                        go_quote(name)
                    )),
                    "cannot change roleRef",
                ));
            }
        }
    }
    errs
}

fn validate_policy_rule(rule: &Value, namespaced: bool, path: &Path) -> Errs {
    let mut errs = vec![];
    if arr_of(rule, "verbs").is_empty() {
        errs.push(required(
            &path.child("verbs"),
            "verbs must contain at least one value",
        ));
    }
    let urls = arr_of(rule, "nonResourceURLs");
    if !urls.is_empty() {
        let up = path.child("nonResourceURLs");
        if namespaced {
            errs.push(invalid(
                &up,
                Value::Array(urls.to_vec()),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !arr_of(rule, "apiGroups").is_empty()
            || !arr_of(rule, "resources").is_empty()
            || !arr_of(rule, "resourceNames").is_empty()
        {
            errs.push(invalid(
                &up,
                Value::Array(urls.to_vec()),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return errs;
    }
    if arr_of(rule, "apiGroups").is_empty() {
        errs.push(required(
            &path.child("apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if arr_of(rule, "resources").is_empty() {
        errs.push(required(
            &path.child("resources"),
            "resource rules must supply at least one resource",
        ));
    }
    errs
}

fn validate_subject(subject: &Value, namespaced: bool, path: &Path) -> Errs {
    let mut errs = vec![];
    let name = str_of(subject, "name");
    if name.is_empty() {
        errs.push(required(&path.child("name"), ""));
    }
    let group = str_of(subject, "apiGroup");
    match str_of(subject, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                errs.extend(validate_dns1123_subdomain(name, &path.child("name")));
            }
            if !group.is_empty() {
                errs.push(not_supported(&path.child("apiGroup"), group, &[""]));
            }
            if !namespaced && str_of(subject, "namespace").is_empty() {
                errs.push(required(&path.child("namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != RBAC_GROUP {
                errs.push(not_supported(&path.child("apiGroup"), group, &[RBAC_GROUP]));
            }
        }
        other => errs.push(not_supported(
            &path.child("kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{apply_defaults, find};

    fn resource(group: &str, plural: &str) -> &'static Resource {
        let version = match group {
            "autoscaling" => "v2",
            _ => "v1",
        };
        find(group, version, plural).expect("served resource")
    }

    /// Defaults then validates, as the API server does on create.
    fn check(group: &str, plural: &str, mut object: Value) -> Vec<String> {
        let r = resource(group, plural);
        apply_defaults(r, &mut object);
        validate(r, &object, None)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Defaults both sides then validates an update.
    fn check_update(group: &str, plural: &str, mut object: Value, mut old: Value) -> Vec<String> {
        let r = resource(group, plural);
        apply_defaults(r, &mut old);
        apply_defaults(r, &mut object);
        validate(r, &object, Some(&old))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx:1.27",
                        "ports": [{"name": "http", "containerPort": 80}],
                        "env": [{"name": "MODE", "value": "prod"}],
                        "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
                        "readinessProbe": {"httpGet": {"port": "http"}},
                        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]
                    }],
                    "volumes": [{"name": "cache", "emptyDir": {}}]}
                }
            }
        })
    }

    fn service() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "https", "port": 443}]
            }
        })
    }

    fn job() -> Value {
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "6b1c3d0e-0000-4000-8000-000000000001"},
            "spec": {
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "pi", "image": "perl:5.34", "command": ["perl", "-e", "print 1"]}]
                }}
            }
        })
    }

    fn cron_job() -> Value {
        json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {
                "schedule": "*/5 * * * *",
                "timeZone": "UTC",
                "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "hello", "image": "busybox:1.36", "args": ["date"]}]
                }}}}
            }
        })
    }

    fn ingress() -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["example.com"], "secretName": "web-tls"}],
                "rules": [{"host": "example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                    {"path": "/api", "pathType": "Exact", "backend": {"service": {"name": "api", "port": {"name": "http"}}}}
                ]}}]
            }
        })
    }

    #[test]
    fn valid_objects_have_no_errors() {
        let cases = [
            ("apps", "deployments", deployment()),
            ("", "services", service()),
            ("batch", "jobs", job()),
            ("batch", "cronjobs", cron_job()),
            ("networking.k8s.io", "ingresses", ingress()),
            (
                "",
                "configmaps",
                json!({"metadata": {"name": "app-config", "namespace": "default"}, "data": {"app.properties": "a=b", "LOG_LEVEL": "info"}}),
            ),
            (
                "",
                "secrets",
                json!({"metadata": {"name": "creds", "namespace": "default"}, "stringData": {"password": "s3cret"}}),
            ),
            ("", "namespaces", json!({"metadata": {"name": "team-a"}})),
            (
                "",
                "pods",
                json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
            ),
            (
                "apps",
                "statefulsets",
                json!({"metadata": {"name": "db", "namespace": "default"}, "spec": {
                "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
            ),
            (
                "apps",
                "daemonsets",
                json!({"metadata": {"name": "agent", "namespace": "kube-system"}, "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}}}),
            ),
            (
                "",
                "persistentvolumeclaims",
                json!({"metadata": {"name": "data", "namespace": "default"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}),
            ),
            (
                "rbac.authorization.k8s.io",
                "rolebindings",
                json!({"metadata": {"name": "read:pods", "namespace": "default"},
                "roleRef": {"kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "default", "namespace": "default"}]}),
            ),
            (
                "rbac.authorization.k8s.io",
                "clusterroles",
                json!({"metadata": {"name": "system:reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}, {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
            ),
            (
                "networking.k8s.io",
                "networkpolicies",
                json!({"metadata": {"name": "deny", "namespace": "default"}, "spec": {"podSelector": {},
                "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}], "ports": [{"port": 80}]}]}}),
            ),
        ];
        for (group, plural, object) in cases {
            assert_eq!(
                check(group, plural, object),
                Vec::<String>::new(),
                "{group}/{plural}"
            );
        }
    }

    #[test]
    fn controllers_and_templates_in_the_core_group_validate_cleanly() {
        let rc = json!({"metadata": {"name": "rc", "namespace": "default"}, "spec": {
            "template": {"metadata": {"labels": {"app": "rc"}}, "spec": {"containers": [{"name": "c", "image": "c:1"}]}}}});
        assert!(check("", "replicationcontrollers", rc).is_empty());
        let pt = json!({"metadata": {"name": "pt", "namespace": "default"}, "template": {"spec": {"containers": [{"name": "c"}]}}});
        assert_eq!(
            check("", "podtemplates", pt),
            vec!["template.spec.containers[0].image: Required value"]
        );
    }

    #[test]
    fn template_label_errors_use_upstream_paths() {
        let mut d = deployment();
        d["spec"]["template"]["metadata"]["labels"]["bad key"] = json!("x");
        let errs = check("apps", "deployments", d);
        assert_eq!(
            errs,
            vec![
                "spec.template.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            ]
        );
    }

    #[test]
    fn downward_api_env_fields_are_enumerated() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{
            "name": "c", "image": "busybox",
            "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.restartPolicy"}}},
                    {"name": "Y", "value": "v", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}});
        assert_eq!(
            check("", "pods", pod),
            vec![
                "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"spec.restartPolicy\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\"",
                "spec.containers[0].env[1].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
            ]
        );
    }

    #[test]
    fn role_bindings_check_their_role_ref() {
        let crb = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]});
        assert_eq!(
            check("rbac.authorization.k8s.io", "clusterrolebindings", crb),
            vec![
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[0].namespace: Required value",
            ]
        );
    }

    #[test]
    fn container_without_image_is_required_value() {
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("image");
        let errs = check("apps", "deployments", d);
        assert_eq!(
            errs,
            vec!["spec.template.spec.containers[0].image: Required value"]
        );
    }

    #[test]
    fn uppercase_name_is_invalid_with_upstream_message() {
        let errs = check(
            "",
            "configmaps",
            json!({"metadata": {"name": "Web_1", "namespace": "default"}}),
        );
        assert_eq!(
            errs,
            vec![
                "metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
    }

    #[test]
    fn missing_name_is_required_unless_generated() {
        let errs = check(
            "",
            "configmaps",
            json!({"metadata": {"namespace": "default"}}),
        );
        assert_eq!(
            errs,
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        let errs = check(
            "",
            "configmaps",
            json!({"metadata": {"generateName": "cfg-", "namespace": "default"}}),
        );
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn namespace_and_service_names_use_label_rules() {
        let errs = check("", "namespaces", json!({"metadata": {"name": "team.a"}}));
        assert_eq!(
            errs,
            vec!["metadata.name: Invalid value: \"team.a\": must not contain dots"]
        );
        let mut svc = service();
        svc["metadata"]["name"] = json!("1web");
        let errs = check("", "services", svc);
        assert_eq!(
            errs,
            vec![
                "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }

    #[test]
    fn rbac_names_are_path_segments() {
        let errs = check(
            "rbac.authorization.k8s.io",
            "clusterroles",
            json!({"metadata": {"name": "a/b%c"}, "rules": []}),
        );
        assert_eq!(
            errs,
            vec![
                "metadata.name: Invalid value: \"a/b%c\": may not contain '/'",
                "metadata.name: Invalid value: \"a/b%c\": may not contain '%'",
            ]
        );
    }

    #[test]
    fn label_and_annotation_syntax_follows_upstream() {
        let cm = json!({"metadata": {"name": "c", "namespace": "default",
            "labels": {"app": "bad value"}, "annotations": {"example.com/": "x"}}});
        let errs = check("", "configmaps", cm);
        assert_eq!(
            errs,
            vec![
                "metadata.labels: Invalid value: \"bad value\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                "metadata.annotations: Invalid value: \"example.com/\": name part must be non-empty",
                "metadata.annotations: Invalid value: \"example.com/\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ]
        );
    }

    #[test]
    fn oversized_annotations_are_too_long() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let cm =
            json!({"metadata": {"name": "c", "namespace": "default", "annotations": {"a": big}}});
        let errs = check("", "configmaps", cm);
        assert_eq!(
            errs,
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn selector_must_match_template_labels() {
        let mut d = deployment();
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "x"});
        let errs = check("apps", "deployments", d);
        assert_eq!(
            errs,
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn missing_selector_is_required_and_does_not_match() {
        let mut d = deployment();
        d["spec"].as_object_mut().unwrap().remove("selector");
        let errs = check("apps", "deployments", d);
        assert_eq!(
            errs,
            vec![
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ]
        );
    }

    #[test]
    fn empty_selector_is_invalid_for_workloads() {
        let mut d = deployment();
        d["spec"]["selector"] = json!({});
        let errs = check("apps", "deployments", d);
        assert_eq!(
            errs,
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
            ]
        );
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let mut new = deployment();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "tier": "front"}});
        new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("front");
        let errs = check_update("apps", "deployments", new, deployment());
        assert_eq!(
            errs,
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"front\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
            ]
        );
    }

    #[test]
    fn workload_templates_must_restart_always() {
        let mut d = deployment();
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let errs = check("apps", "deployments", d);
        assert_eq!(
            errs,
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
            ]
        );
    }

    #[test]
    fn negative_replicas_are_invalid() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!(-1);
        let errs = check("apps", "deployments", d);
        assert_eq!(
            errs,
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
        );
    }

    #[test]
    fn rolling_update_may_not_be_zero_on_both_sides() {
        let mut d = deployment();
        d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        let errs = check("apps", "deployments", d);
        assert_eq!(
            errs,
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0"
            ]
        );
    }

    #[test]
    fn bad_percentages_and_strategy_types_are_reported() {
        let mut d = deployment();
        d["spec"]["strategy"] =
            json!({"rollingUpdate": {"maxSurge": "abc", "maxUnavailable": "150%"}});
        let errs = check("apps", "deployments", d);
        assert_eq!(
            errs,
            vec![
                "spec.strategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"abc\"}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%",
            ]
        );
        let mut d = deployment();
        d["spec"]["strategy"] = json!({"type": "BlueGreen"});
        let errs = check("apps", "deployments", d);
        assert_eq!(
            errs,
            vec![
                "spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:\"BlueGreen\", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: \"Recreate\", \"RollingUpdate\""
            ]
        );
    }

    #[test]
    fn container_rules_follow_upstream() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
        "containers": [
            {"name": "Web", "image": "nginx", "ports": [
                {"containerPort": 70000, "protocol": "HTTP"},
                {"name": "http", "containerPort": 80},
                {"name": "http", "containerPort": 81}
            ]},
            {"name": "sidecar", "image": "envoy", "env": [{"name": "A=B"}, {"name": ""}],
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            {"name": "sidecar", "image": "envoy"}
        ]}});
        let errs = check("", "pods", pod);
        assert_eq!(
            errs,
            vec![
                "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].ports[2].name: Duplicate value: \"http\"",
                "spec.containers[1].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                "spec.containers[1].env[1].name: Required value",
                "spec.containers[1].volumeMounts[0].name: Not found: \"data\"",
                "spec.containers[2].name: Duplicate value: \"sidecar\"",
            ]
        );
    }

    #[test]
    fn empty_container_list_is_required() {
        let errs = check(
            "",
            "pods",
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {}}),
        );
        assert_eq!(errs, vec!["spec.containers: Required value"]);
    }

    #[test]
    fn volumes_are_unique_and_have_one_source() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
        "containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "b", "mountPath": "/b"}]}],
        "volumes": [
            {"name": "a", "emptyDir": {}},
            {"name": "a", "emptyDir": {}},
            {"name": "b", "emptyDir": {}, "configMap": {"name": "cfg"}}
        ]}});
        let errs = check("", "pods", pod);
        assert_eq!(
            errs,
            vec![
                "spec.volumes[1].name: Duplicate value: \"a\"",
                "spec.volumes[2].configMap: Forbidden: may not specify more than 1 volume type",
                "spec.containers[0].volumeMounts[0].name: Not found: \"b\"",
            ]
        );
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{
            "name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}}}]}});
        let errs = check("", "pods", pod);
        assert_eq!(
            errs,
            vec![
                "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"
            ]
        );
    }

    #[test]
    fn pod_restart_and_dns_policies_are_enumerated() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
            "restartPolicy": "Sometimes", "dnsPolicy": "Google",
            "containers": [{"name": "c", "image": "busybox"}]}});
        let errs = check("", "pods", pod);
        assert_eq!(
            errs,
            vec![
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            ]
        );
    }

    #[test]
    fn init_containers_follow_container_rules() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "initContainers": [{"name": "c", "livenessProbe": {"exec": {"command": ["true"]}}}]}});
        let errs = check("", "pods", pod);
        assert_eq!(
            errs,
            vec![
                "spec.initContainers[0].image: Required value",
                "spec.initContainers[0].name: Duplicate value: \"c\"",
                "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            ]
        );
    }

    #[test]
    fn probes_need_exactly_one_handler() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{
            "name": "c", "image": "busybox",
            "livenessProbe": {"successThreshold": 2},
            "readinessProbe": {"tcpSocket": {"port": 0}}}]}});
        let errs = check("", "pods", pod);
        assert_eq!(
            errs,
            vec![
                "spec.containers[0].livenessProbe: Required value: must specify a handler type",
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.containers[0].readinessProbe.tcpSocket.port: Invalid value: 0: must be between 1 and 65535, inclusive",
            ]
        );
    }

    #[test]
    fn job_restart_policy_must_not_be_always() {
        let mut j = job();
        j["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        let errs = check("batch", "jobs", j);
        assert_eq!(
            errs,
            vec![
                "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
            ]
        );
    }

    #[test]
    fn job_counts_are_nonnegative() {
        let mut j = job();
        j["spec"]["parallelism"] = json!(-1);
        j["spec"]["backoffLimit"] = json!(-2);
        let errs = check("batch", "jobs", j);
        assert_eq!(
            errs,
            vec![
                "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
                "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn job_template_and_selector_are_immutable() {
        let mut new = job();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5.40");
        let mut old = job();
        apply_defaults(resource("batch", "jobs"), &mut old);
        old["metadata"]["resourceVersion"] = json!("7");
        new["metadata"]["resourceVersion"] = json!("7");
        new["spec"]["selector"] = old["spec"]["selector"].clone();
        new["spec"]["template"]["metadata"] = old["spec"]["template"]["metadata"].clone();
        let errs = check_update("batch", "jobs", new, old);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.template: Invalid value: "),
            "{errs:?}"
        );
        assert!(errs[0].ends_with(": field is immutable"), "{errs:?}");
    }

    #[test]
    fn job_without_uid_cannot_get_a_generated_selector() {
        let mut j = job();
        j["metadata"].as_object_mut().unwrap().remove("uid");
        let errs = check("batch", "jobs", j);
        assert_eq!(
            errs,
            vec![
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not match template `labels`",
            ]
        );
    }

    #[test]
    fn cron_schedules_are_parsed_like_upstream() {
        for (schedule, message) in [
            ("foo", "expected exactly 5 fields, found 1: [foo]"),
            ("61 * * * *", "end of range (61) above maximum (59): 61"),
            (
                "* * * * mon-xyz",
                "failed to parse int from xyz: strconv.Atoi: parsing \"xyz\": invalid syntax",
            ),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ] {
            let mut c = cron_job();
            c["spec"]["schedule"] = json!(schedule);
            let errs = check("batch", "cronjobs", c);
            assert_eq!(
                errs,
                vec![format!(
                    "spec.schedule: Invalid value: {}: {message}",
                    go_quote(schedule)
                )]
            );
        }
        for ok in [
            "@hourly",
            "0 0 * * SUN",
            "*/15 9-17 * jan-jun 1-5",
            "@every 1h30m",
        ] {
            let mut c = cron_job();
            c["spec"]["schedule"] = json!(ok);
            assert!(check("batch", "cronjobs", c).is_empty(), "{ok}");
        }
    }

    #[test]
    fn cron_job_policies_and_names_are_checked() {
        let mut c = cron_job();
        c["metadata"]["name"] = json!("a".repeat(53));
        c["spec"]["concurrencyPolicy"] = json!("Sometimes");
        c["spec"]["timeZone"] = json!("Mars/Olympus_Mons_Caldera");
        let errs = check("batch", "cronjobs", c);
        assert_eq!(
            errs,
            vec![
                "spec.timeZone: Invalid value: \"Mars/Olympus_Mons_Caldera\": unknown time zone Mars/Olympus_Mons_Caldera".to_string(),
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"".to_string(),
                format!("metadata.name: Invalid value: \"{}\": must be no more than 52 characters", "a".repeat(53)),
            ]
        );
    }

    #[test]
    fn service_ports_follow_upstream() {
        let mut svc = service();
        svc["spec"]["ports"] = json!([
            {"port": 70000},
            {"name": "http", "port": 80, "targetPort": "Not_A_Port", "protocol": "TCP"},
            {"name": "http", "port": 80}
        ]);
        let errs = check("", "services", svc);
        assert_eq!(
            errs,
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                // The target port defaults to the (invalid) port.
                "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[1].targetPort: Invalid value: \"Not_A_Port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "spec.ports[2].name: Duplicate value: \"http\"",
                "spec.ports[2]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
            ]
        );
    }

    #[test]
    fn service_ports_are_required_unless_headless_or_external() {
        let svc = json!({"metadata": {"name": "s", "namespace": "default"}, "spec": {"selector": {"app": "x"}}});
        assert_eq!(
            check("", "services", svc),
            vec!["spec.ports: Required value"]
        );
        let headless = json!({"metadata": {"name": "s", "namespace": "default"}, "spec": {"clusterIP": "None"}});
        assert!(check("", "services", headless).is_empty());
        let external = json!({"metadata": {"name": "s", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com."}});
        assert!(check("", "services", external).is_empty());
        let bad = json!({"metadata": {"name": "s", "namespace": "default"}, "spec": {"type": "Fancy", "ports": [{"port": 80}]}});
        assert_eq!(
            check("", "services", bad),
            vec![
                "spec.type: Unsupported value: \"Fancy\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
            ]
        );
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let mut old = service();
        old["spec"]["clusterIP"] = json!("10.96.0.10");
        let mut new = service();
        new["spec"]["clusterIP"] = json!("10.96.0.11");
        let errs = check_update("", "services", new, old.clone());
        assert_eq!(
            errs,
            vec![
                "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"
            ]
        );
        // An update that leaves the address out keeps the allocated one.
        assert!(check_update("", "services", service(), old).is_empty());
    }

    #[test]
    fn config_map_keys_and_immutability_follow_upstream() {
        let cm = json!({"metadata": {"name": "c", "namespace": "default"}, "data": {"a b": "x", "..": "y"}});
        let errs = check("", "configmaps", cm);
        assert_eq!(
            errs,
            vec![
                "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                "data[..]: Invalid value: \"..\": must not be '..'",
            ]
        );
        let old = json!({"metadata": {"name": "c", "namespace": "default"}, "immutable": true, "data": {"k": "1"}});
        let new = json!({"metadata": {"name": "c", "namespace": "default"}, "data": {"k": "2"}});
        let errs = check_update("", "configmaps", new, old);
        assert_eq!(
            errs,
            vec![
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set",
            ]
        );
    }

    #[test]
    fn secret_type_is_immutable_and_typed_secrets_need_keys() {
        let tls = json!({"metadata": {"name": "t", "namespace": "default"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA=="}});
        assert_eq!(
            check("", "secrets", tls),
            vec!["data[tls.key]: Required value"]
        );
        let old = json!({"metadata": {"name": "s", "namespace": "default"}, "type": "Opaque"});
        let new = json!({"metadata": {"name": "s", "namespace": "default"}, "type": "example.com/custom"});
        assert_eq!(
            check_update("", "secrets", new, old),
            vec!["type: Invalid value: \"example.com/custom\": field is immutable"]
        );
    }

    #[test]
    fn ingress_paths_need_a_type_and_a_backend_port() {
        let mut ing = ingress();
        ing["spec"]["rules"][0]["http"]["paths"] = json!([
            {"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            {"path": "/a", "pathType": "Regex", "backend": {"service": {"name": "web"}}},
            {"path": "b", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 70000}}}}
        ]);
        let errs = check("networking.k8s.io", "ingresses", ing);
        assert_eq!(
            errs,
            vec![
                "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[1].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
                "spec.rules[0].http.paths[1].backend: Required value: port name or number is required",
                "spec.rules[0].http.paths[2].path: Invalid value: \"b\": must be an absolute path",
                "spec.rules[0].http.paths[2].backend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ]
        );
        let empty = json!({"metadata": {"name": "i", "namespace": "default"}, "spec": {}});
        assert_eq!(
            check("networking.k8s.io", "ingresses", empty),
            vec![
                "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"
            ]
        );
    }

    #[test]
    fn stateful_set_spec_changes_are_forbidden_outside_the_allowed_fields() {
        let sts = json!({"metadata": {"name": "db", "namespace": "default", "resourceVersion": "3"}, "spec": {
            "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}}});
        let mut new = sts.clone();
        new["spec"]["replicas"] = json!(5);
        assert!(check_update("apps", "statefulsets", new, sts.clone()).is_empty());
        let mut new = sts.clone();
        new["spec"]["serviceName"] = json!("other");
        assert_eq!(
            check_update("apps", "statefulsets", new, sts),
            vec![
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
            ]
        );
    }

    #[test]
    fn daemon_set_rolling_update_needs_exactly_one_budget() {
        let ds = json!({"metadata": {"name": "a", "namespace": "default"}, "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "a", "image": "a"}]}}}});
        assert_eq!(
            check("apps", "daemonsets", ds),
            vec![
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
            ]
        );
    }

    #[test]
    fn pod_updates_may_only_change_images() {
        let old = json!({"metadata": {"name": "p", "namespace": "default", "resourceVersion": "1"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}});
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("busybox:2");
        assert!(check_update("", "pods", new, old.clone()).is_empty());
        let mut new = old.clone();
        new["spec"]["dnsPolicy"] = json!("Default");
        let errs = check_update("", "pods", new, old);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"));
    }

    #[test]
    fn a_nodes_pod_range_is_set_once() {
        let unset = json!({"metadata": {"name": "edge", "resourceVersion": "1"}, "spec": {}});
        let mut set = unset.clone();
        set["spec"] = json!({"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"]});
        assert!(check_update("", "nodes", set.clone(), unset).is_empty());
        let mut moved = set.clone();
        moved["spec"] = json!({"podCIDR": "10.42.0.0/16", "podCIDRs": ["10.42.0.0/16"]});
        assert_eq!(
            check_update("", "nodes", moved, set.clone()),
            vec![
                "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"
            ]
        );
        let mut labelled = set.clone();
        labelled["metadata"]["labels"] = json!({"zone": "a"});
        assert!(check_update("", "nodes", labelled, set).is_empty());
    }

    #[test]
    fn metadata_name_is_immutable_on_update() {
        let old = json!({"metadata": {"name": "a", "namespace": "default"}});
        let new = json!({"metadata": {"name": "b", "namespace": "default"}});
        assert_eq!(
            check_update("", "configmaps", new, old),
            vec!["metadata.name: Invalid value: \"b\": field is immutable"]
        );
    }

    #[test]
    fn error_reasons_and_bodies_follow_upstream() {
        let e = not_supported(&Path::new("spec").child("type"), "x", &["A", "B"]);
        assert_eq!(e.reason(), "FieldValueNotSupported");
        assert_eq!(
            e.body(),
            "Unsupported value: \"x\": supported values: \"A\", \"B\""
        );
        let e = required(&Path::new("spec").child("selector"), "");
        assert_eq!(e.reason(), "FieldValueRequired");
        assert_eq!(e.to_string(), "spec.selector: Required value");
        assert_eq!(
            too_many(&Path::new("rules"), 25, 20).to_string(),
            "rules: Too many: 25: must have at most 20 items"
        );
        assert_eq!(
            forbidden(&Path::new("a"), "no").reason(),
            "FieldValueForbidden"
        );
        assert_eq!(
            duplicate(&Path::new("a"), 1).reason(),
            "FieldValueDuplicate"
        );
        assert_eq!(
            not_found(&Path::new("a"), "b").reason(),
            "FieldValueNotFound"
        );
        assert_eq!(too_long(&Path::new("a"), 1).reason(), "FieldValueTooLong");
        assert_eq!(
            invalid(&Path::new("a"), "b", "c").reason(),
            "FieldValueInvalid"
        );
        assert_eq!(go_quote("a\"b\n\u{1}"), "\"a\\\"b\\n\\x01\"");
    }

    #[test]
    fn quantities_print_in_canonical_form() {
        for (input, canonical) in [
            ("0.5", "500m"),
            ("1000m", "1"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1000", "1k"),
            ("1e3", "1e3"),
            ("100m", "100m"),
            ("512", "512"),
            ("0", "0"),
            ("1.5Gi", "1536Mi"),
        ] {
            let q = Quantity::parse(input).expect(input);
            assert_eq!(q.round_up_milli().to_string(), canonical, "{input}");
        }
        assert!(Quantity::parse("abc").is_none());
        assert!(Quantity::parse("1.2.3").is_none());
        assert_eq!(
            Quantity::parse("0.0001")
                .unwrap()
                .round_up_milli()
                .to_string(),
            "1m"
        );
    }

    #[test]
    fn odd_input_never_panics() {
        for r in crate::registry::RESOURCES {
            for object in [
                json!({}),
                json!({"metadata": null, "spec": null}),
                json!({"spec": {"template": {"spec": {"containers": [{}]}}}}),
                json!({"spec": {"containers": [null, 1, "x"], "volumes": [{}]}}),
            ] {
                let mut object = object;
                apply_defaults(r, &mut object);
                let _ = validate(r, &object, None);
                let _ = validate(r, &object, Some(&json!({})));
            }
        }
    }
}
