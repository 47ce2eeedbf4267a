//! `skiff apply -f`: creates or updates every object in files, directories (`-R` to recurse) or
//! standard input (`-`), by server-side apply, printing `created`, `configured` or `unchanged`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde::Deserialize;
use serde_json::Value;

use crate::kubeconfig::{Cluster, ClusterArgs};

/// Flags of `skiff apply`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories of YAML or JSON manifests; `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// Read directories recursively.
    #[arg(short = 'R', long)]
    recursive: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Every manifest file under `path` (YAML and JSON), recursing when asked.
fn manifest_files(path: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            if entry.is_dir() {
                if recursive {
                    manifest_files(&entry, recursive, out)?;
                }
            } else if entry
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                out.push(entry);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// The objects in a YAML (multi-document) or JSON text; `List` kinds are flattened.
pub fn parse_documents(text: &str, source: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document)
            .with_context(|| format!("error parsing {source}: document {}", i + 1))?;
        match value {
            Value::Null => {}
            Value::Object(ref o) if o.get("kind").and_then(Value::as_str) == Some("List") => {
                out.extend(
                    o.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            Value::Object(_) => out.push(value),
            _ => anyhow::bail!(
                "error parsing {source}: document {} is not an object",
                i + 1
            ),
        }
    }
    Ok(out)
}

/// Reads the objects that `-f` arguments name.
pub fn read_objects(files: &[String], recursive: bool) -> anyhow::Result<Vec<(String, Value)>> {
    let mut objects = Vec::new();
    for file in files {
        if file == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            objects.extend(
                parse_documents(&text, "STDIN")?
                    .into_iter()
                    .map(|o| ("STDIN".to_string(), o)),
            );
            continue;
        }
        let mut paths = Vec::new();
        manifest_files(Path::new(file), recursive, &mut paths)?;
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let source = path.display().to_string();
            objects.extend(
                parse_documents(&text, &source)?
                    .into_iter()
                    .map(|o| (source.clone(), o)),
            );
        }
    }
    Ok(objects)
}

/// The API for an object's kind and namespace.
pub async fn api_for_object(
    cluster: &mut Cluster,
    object: &Value,
) -> anyhow::Result<(Api<DynamicObject>, String, String)> {
    let api_version = object["apiVersion"]
        .as_str()
        .context("object has no apiVersion")?;
    let kind = object["kind"].as_str().context("object has no kind")?;
    let served = cluster.resolve_kind(api_version, kind).await?;
    let name = object["metadata"]["name"]
        .as_str()
        .context("object has no metadata.name")?
        .to_string();
    let api = if served.namespaced {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&cluster.namespace)
            .to_string();
        Api::namespaced_with(cluster.client.clone(), &ns, &served.api)
    } else {
        Api::all_with(cluster.client.clone(), &served.api)
    };
    Ok((api, name, served.qualified_kind()))
}

/// Runs `skiff apply`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.cluster).await?;
    let mut failed = false;
    for (source, object) in read_objects(&args.files, args.recursive)? {
        let (api, name, kind) = api_for_object(&mut cluster, &object).await?;
        let before = api.get_opt(&name).await?;
        let params = PatchParams::apply("skiff").force();
        match api.patch(&name, &params, &Patch::Apply(&object)).await {
            Ok(after) => {
                let verb = match before {
                    None => "created",
                    Some(b) if b.metadata.resource_version == after.metadata.resource_version => {
                        "unchanged"
                    }
                    Some(_) => "configured",
                };
                println!("{kind}/{name} {verb}");
            }
            Err(e) => {
                failed = true;
                eprintln!("error: applying {kind}/{name} from {source}: {e}");
            }
        }
    }
    if failed {
        anyhow::bail!("some objects were not applied");
    }
    Ok(())
}
