//! `skiff get`: objects as the server's tables (`-o wide` adds priority columns), or as YAML,
//! JSON or names; `-w` follows changes.

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use serde_json::Value;

use crate::kubeconfig::{Cluster, ClusterArgs, Served};

/// Flags of `skiff get`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Resource types (comma separated, or `all`), optionally followed by names; `type/name` works too.
    #[arg(required = true)]
    targets: Vec<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector (`app=web`, `tier in (a,b)`, `!legacy`).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Output format: wide, yaml, json or name.
    #[arg(short = 'o', long)]
    output: Option<String>,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    watch: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Splits `deploy,svc web` or `deploy/web svc/db` into (resource word, names).
pub fn parse_targets(targets: &[String]) -> Vec<(String, Vec<String>)> {
    if targets.iter().all(|t| t.contains('/')) {
        return targets
            .iter()
            .filter_map(|t| t.split_once('/'))
            .map(|(r, n)| (r.to_string(), vec![n.to_string()]))
            .collect();
    }
    let names: Vec<String> = targets[1..].to_vec();
    targets[0]
        .split(',')
        .map(|r| (r.to_string(), names.clone()))
        .collect()
}

fn api_for(cluster: &Cluster, served: &Served, all_namespaces: bool) -> Api<DynamicObject> {
    if served.namespaced && !all_namespaces {
        Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &served.api)
    } else {
        Api::all_with(cluster.client.clone(), &served.api)
    }
}

/// Runs `skiff get`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.cluster).await?;
    let mut printed_any = false;
    let several =
        parse_targets(&args.targets).len() > 1 || args.targets.first().is_some_and(|t| t == "all");
    for (word, names) in parse_targets(&args.targets) {
        let resources = if word == "all" {
            cluster.category("all").await?
        } else {
            vec![cluster.resolve(&word).await?]
        };
        for served in resources {
            let api = api_for(&cluster, &served, args.all_namespaces);
            let mut objects = Vec::new();
            if names.is_empty() {
                let mut params = ListParams::default();
                if let Some(selector) = &args.selector {
                    params = params.labels(selector);
                }
                objects.extend(api.list(&params).await?.items);
            } else {
                for name in &names {
                    objects.push(
                        api.get(name).await.with_context(|| {
                            format!("{} \"{name}\" not found", served.api.plural)
                        })?,
                    );
                }
            }
            if objects.is_empty() && several {
                continue;
            }
            printed_any |= !objects.is_empty();
            print_objects(&cluster, &served, &objects, &args, several).await?;
            if args.watch {
                return watch(&api, &served, &args).await;
            }
        }
    }
    if !printed_any && args.output.is_none() {
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {} namespace.", cluster.namespace);
        }
    }
    Ok(())
}

async fn print_objects(
    cluster: &Cluster,
    served: &Served,
    objects: &[DynamicObject],
    args: &Args,
    prefix_kind: bool,
) -> anyhow::Result<()> {
    let values: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut v = serde_json::to_value(o).unwrap_or_default();
            v["apiVersion"] = served.api.api_version.clone().into();
            v["kind"] = served.api.kind.clone().into();
            v
        })
        .collect();
    match args.output.as_deref() {
        Some("yaml") | Some("json") => {
            let doc = if values.len() == 1 {
                values[0].clone()
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": values, "metadata": {"resourceVersion": ""}})
            };
            if args.output.as_deref() == Some("yaml") {
                print!("{}", serde_yaml::to_string(&doc)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            }
        }
        Some("name") => {
            for v in &values {
                let group = if served.api.group.is_empty() {
                    String::new()
                } else {
                    format!(".{}", served.api.group)
                };
                println!(
                    "{}{group}/{}",
                    served.api.kind.to_ascii_lowercase(),
                    v["metadata"]["name"].as_str().unwrap_or("")
                );
            }
        }
        Some("wide") | None => {
            let table = fetch_table(cluster, served, objects, args).await?;
            print_table(&table, args, prefix_kind.then_some(served));
        }
        Some(other) => anyhow::bail!(
            "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,wide,yaml"
        ),
    }
    Ok(())
}

/// Asks the server for the table of these objects (its columns are the upstream ones).
async fn fetch_table(
    cluster: &Cluster,
    served: &Served,
    objects: &[DynamicObject],
    args: &Args,
) -> anyhow::Result<Value> {
    let base = if served.api.group.is_empty() {
        format!("/api/{}", served.api.version)
    } else {
        format!("/apis/{}/{}", served.api.group, served.api.version)
    };
    let mut rows = Vec::new();
    let mut columns = Value::Null;
    // One request per namespace/name keeps the table exactly the objects already chosen.
    for object in objects {
        let ns = object
            .metadata
            .namespace
            .as_deref()
            .filter(|_| served.namespaced);
        let path = match ns {
            Some(ns) => format!(
                "{base}/namespaces/{ns}/{}/{}",
                served.api.plural,
                object.metadata.name.as_deref().unwrap_or("")
            ),
            None => format!(
                "{base}/{}/{}",
                served.api.plural,
                object.metadata.name.as_deref().unwrap_or("")
            ),
        };
        let request = http::Request::get(path)
            .header(
                http::header::ACCEPT,
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )
            .body(Vec::new())?;
        let table: Value = cluster.client.request(request).await?;
        if columns.is_null() {
            columns = table["columnDefinitions"].clone();
        }
        if let Some(r) = table["rows"].as_array() {
            rows.extend(r.iter().cloned());
        }
    }
    let _ = args;
    Ok(serde_json::json!({"columnDefinitions": columns, "rows": rows}))
}

fn cell_text(cell: &Value) -> String {
    match cell {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

/// Prints a server table as kubectl does: upper-case headers, columns three spaces apart.
fn print_table(table: &Value, args: &Args, kind_prefix: Option<&Served>) {
    let wide = args.output.as_deref() == Some("wide");
    let columns: Vec<&Value> = table["columnDefinitions"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let shown: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<String> = Vec::new();
    if args.all_namespaces {
        header.push("NAMESPACE".into());
    }
    header.extend(shown.iter().map(|&i| {
        columns[i]["name"]
            .as_str()
            .unwrap_or("")
            .to_ascii_uppercase()
    }));
    lines.push(header);
    for row in table["rows"].as_array().into_iter().flatten() {
        let cells = row["cells"].as_array().cloned().unwrap_or_default();
        let mut line = Vec::new();
        if args.all_namespaces {
            line.push(
                row["object"]["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
        for &i in &shown {
            let mut text = cells.get(i).map(cell_text).unwrap_or_default();
            if let (Some(served), "name") =
                (kind_prefix, columns[i]["format"].as_str().unwrap_or(""))
            {
                let group = if served.api.group.is_empty() {
                    String::new()
                } else {
                    format!(".{}", served.api.group)
                };
                text = format!("{}{group}/{text}", served.api.kind.to_ascii_lowercase());
            }
            line.push(text);
        }
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l.get(i).map_or(0, |c| c.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in lines {
        let mut out = String::new();
        for (i, cell) in line.iter().enumerate() {
            if i + 1 == line.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    }
}

async fn watch(api: &Api<DynamicObject>, served: &Served, args: &Args) -> anyhow::Result<()> {
    let mut params = WatchParams::default();
    if let Some(selector) = &args.selector {
        params = params.labels(selector);
    }
    let mut stream = api.watch(&params, "0").await?.boxed();
    while let Some(event) = stream.try_next().await? {
        let (verb, object) = match event {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => anyhow::bail!("watch failed: {}", e.message),
        };
        let _ = served;
        println!("{verb}\t{}", object.metadata.name.as_deref().unwrap_or(""));
    }
    Ok(())
}
