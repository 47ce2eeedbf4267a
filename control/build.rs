//! Derives the protobuf message table behind `api::protobuf` from the source of the `k8s-pb` crate.
//!
//! Kubernetes' `.proto` files are not part of this repository; `k8s-pb` carries the same messages
//! as prost structs whose `#[prost(..)]` attributes name every field's tag and wire type. This
//! script finds that crate's source through `cargo metadata` (which also downloads it when only the
//! tests would otherwise have needed it), parses it with `syn` and writes
//! `$OUT_DIR/k8s_pb_messages.rs`: one static table of messages sorted by proto name, each field
//! pointing at its message by index.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let (source, lockfile) = k8s_pb_source();
    println!("cargo::rerun-if-changed={}", source.display());
    println!("cargo::rerun-if-changed={}", lockfile.display());

    let mut messages = Vec::new();
    collect_dir(&source, &mut Vec::new(), &mut messages);
    messages.sort_by(|a, b| a.name.cmp(&b.name));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("k8s_pb_messages.rs"), render(&messages))
        .expect("writing the message table into OUT_DIR");
}

/// The `src` folder of the `k8s-pb` package in the resolved graph, and the workspace's lockfile.
fn k8s_pb_source() -> (PathBuf, PathBuf) {
    let cargo = std::env::var_os("CARGO").expect("cargo sets CARGO for build scripts");
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let target = std::env::var("TARGET").expect("cargo sets TARGET for build scripts");
    // Filtered to the target so that a fresh machine downloads no other platform's crates.
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &target,
        ])
        .current_dir(&manifest_dir)
        .output()
        .expect("running `cargo metadata` to find the k8s-pb source");
    assert!(
        output.status.success(),
        "`cargo metadata` failed while looking for the k8s-pb source: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("`cargo metadata` prints JSON");
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "k8s-pb")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("k8s-pb is a dev-dependency of skiff-control, so `cargo metadata` lists it");
    let root = Path::new(manifest)
        .parent()
        .expect("a manifest path has a parent");
    let workspace = metadata["workspace_root"]
        .as_str()
        .expect("`cargo metadata` names the workspace root");
    (root.join("src"), Path::new(workspace).join("Cargo.lock"))
}

/// A message as read from one prost struct.
struct Message {
    /// Full proto name, e.g. `k8s.io.api.apps.v1.Deployment`.
    name: String,
    fields: Vec<Field>,
}

struct Field {
    tag: u32,
    name: String,
    repeated: bool,
    kind: Kind,
}

enum Kind {
    Scalar(&'static str),
    /// A message, by full proto name until rendering turns it into an index.
    Message(String),
    Map(MapValue),
}

enum MapValue {
    String,
    Bytes,
    Message(String),
}

/// Walks the crate's module tree: each folder is a module with its items in `mod.rs` (or `lib.rs`).
fn collect_dir(dir: &Path, module: &mut Vec<String>, out: &mut Vec<Message>) {
    for file in ["lib.rs", "mod.rs"] {
        let path = dir.join(file);
        if path.is_file() {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            // Doc comments are most of the text; dropping them before parsing halves the time.
            let text: String = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("///"))
                .flat_map(|line| [line, "\n"])
                .collect();
            let parsed = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
            collect_items(&parsed.items, module, out);
        }
    }
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    children.sort_by_key(|e| e.file_name());
    for child in children {
        module.push(child.file_name().to_string_lossy().into_owned());
        collect_dir(&child.path(), module, out);
        module.pop();
    }
}

fn collect_items(items: &[syn::Item], module: &mut Vec<String>, out: &mut Vec<Message>) {
    for item in items {
        match item {
            syn::Item::Struct(s) => {
                if let Some(message) = message(s, module) {
                    out.push(message);
                }
            }
            syn::Item::Mod(m) => {
                if let Some((_, inner)) = &m.content {
                    module.push(m.ident.to_string());
                    collect_items(inner, module, out);
                    module.pop();
                }
            }
            _ => {}
        }
    }
}

/// Reads one struct; `None` for structs that are not prost messages.
fn message(s: &syn::ItemStruct, module: &[String]) -> Option<Message> {
    if !derives_message(&s.attrs) {
        return None;
    }
    let mut fields = Vec::new();
    for field in &s.fields {
        let Some(attr) = field.attrs.iter().find(|a| a.path().is_ident("prost")) else {
            continue;
        };
        let ident = field
            .ident
            .as_ref()
            .expect("named fields have names")
            .to_string();
        let name = ident.trim_start_matches("r#").to_string();
        let context = format!("{}::{}.{name}", module.join("::"), s.ident);
        fields.push(read_field(attr, &field.ty, name, module, &context));
    }
    fields.sort_by_key(|f| f.tag);
    Some(Message {
        name: proto_name(module, &s.ident.to_string()),
        fields,
    })
}

fn derives_message(attrs: &[syn::Attribute]) -> bool {
    let mut found = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("derive")) {
        // Other derives (Clone, PartialEq, ..) carry no arguments, so the walk never fails.
        let _ = attr.parse_nested_meta(|meta| {
            found |= meta
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Message");
            Ok(())
        });
    }
    found
}

fn proto_name(module: &[String], ident: &str) -> String {
    let mut name = String::from("k8s.io");
    for part in module {
        name.push('.');
        name.push_str(part);
    }
    name.push('.');
    name.push_str(ident);
    name
}

fn read_field(
    attr: &syn::Attribute,
    ty: &syn::Type,
    name: String,
    module: &[String],
    context: &str,
) -> Field {
    let mut tag = None;
    let mut repeated = false;
    let mut kind = None;
    attr.parse_nested_meta(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match key.as_str() {
            "tag" => {
                let lit: syn::LitStr = meta.value()?.parse()?;
                tag = Some(lit.value().parse::<u32>().map_err(|e| meta.error(e))?);
            }
            "repeated" => repeated = true,
            "optional" | "required" | "boxed" => {}
            "packed" => {
                let _: syn::LitStr = meta.value()?.parse()?;
            }
            "bytes" => {
                // `bytes = "vec"` picks the Rust type only.
                if meta.input.peek(syn::Token![=]) {
                    let _: syn::LitStr = meta.value()?.parse()?;
                }
                kind = Some(Kind::Scalar("Bytes"));
            }
            "string" => kind = Some(Kind::Scalar("String")),
            "bool" => kind = Some(Kind::Scalar("Bool")),
            "int32" => kind = Some(Kind::Scalar("Int32")),
            "int64" => kind = Some(Kind::Scalar("Int64")),
            "double" => kind = Some(Kind::Scalar("Double")),
            "message" => kind = Some(Kind::Message(message_type(ty, module, context))),
            "btree_map" | "map" => {
                let lit: syn::LitStr = meta.value()?.parse()?;
                let spec = lit.value();
                let value = match spec.split(',').map(str::trim).collect::<Vec<_>>()[..] {
                    ["string", "string"] => MapValue::String,
                    ["string", "bytes"] => MapValue::Bytes,
                    ["string", "message"] => MapValue::Message(message_type(ty, module, context)),
                    _ => return Err(meta.error(format!("unsupported map type {spec:?}"))),
                };
                kind = Some(Kind::Map(value));
            }
            other => return Err(meta.error(format!("unsupported prost attribute {other:?}"))),
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{context}: {e}"));
    Field {
        tag: tag.unwrap_or_else(|| panic!("{context}: no tag")),
        name,
        repeated,
        kind: kind.unwrap_or_else(|| panic!("{context}: no wire type")),
    }
}

/// The full proto name of the message inside `Option<..>`, `Vec<..>`, `Box<..>` or a map's value.
fn message_type(ty: &syn::Type, module: &[String], context: &str) -> String {
    let syn::Type::Path(path) = ty else {
        panic!("{context}: unexpected field type");
    };
    let last = path
        .path
        .segments
        .last()
        .expect("a type path has a segment");
    if let syn::PathArguments::AngleBracketed(args) = &last.arguments
        && let Some(syn::GenericArgument::Type(inner)) = args.args.last()
    {
        return message_type(inner, module, context);
    }
    let mut resolved: Vec<String> = module.to_vec();
    let mut segments = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .peekable();
    if segments.peek().is_some_and(|s| s == "crate") {
        resolved.clear();
        segments.next();
    }
    while segments.peek().is_some_and(|s| s == "super") {
        resolved.pop();
        segments.next();
    }
    resolved.extend(segments);
    let ident = resolved.pop().expect("a type path names a type");
    proto_name(&resolved, &ident)
}

fn render(messages: &[Message]) -> String {
    let index: BTreeMap<&str, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    let lookup = |name: &str, context: &str| -> usize {
        *index
            .get(name)
            .unwrap_or_else(|| panic!("{context} refers to {name}, which k8s-pb does not define"))
    };
    let mut out =
        String::from("// Generated by control/build.rs from the k8s-pb crate's prost structs.\n");
    out.push_str("static MESSAGES: &[Message] = &[\n");
    for m in messages {
        writeln!(out, "    Message {{ name: {:?}, fields: &[", m.name).unwrap();
        for f in &m.fields {
            let context = format!("{}.{}", m.name, f.name);
            let kind = match &f.kind {
                Kind::Scalar(s) => format!("Kind::{s}"),
                Kind::Message(name) => format!("Kind::Message({})", lookup(name, &context)),
                Kind::Map(MapValue::String) => "Kind::Map(MapValue::String)".to_string(),
                Kind::Map(MapValue::Bytes) => "Kind::Map(MapValue::Bytes)".to_string(),
                Kind::Map(MapValue::Message(name)) => {
                    format!("Kind::Map(MapValue::Message({}))", lookup(name, &context))
                }
            };
            writeln!(
                out,
                "        Field {{ tag: {}, name: {:?}, repeated: {}, kind: {kind} }},",
                f.tag, f.name, f.repeated
            )
            .unwrap();
        }
        out.push_str("    ] },\n");
    }
    out.push_str("];\n");
    out
}
