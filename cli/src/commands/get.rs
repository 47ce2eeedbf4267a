//! `skiff get`: objects as the server's tables (`-o wide` adds priority columns), or as YAML,
//! JSON or names; `-w` follows changes.

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use kube::api::{DynamicObject, ListParams, WatchEvent, WatchParams};
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
            let api = cluster.api(&served, args.all_namespaces);
            let mut objects = Vec::new();
            let mut list_version = String::new();
            if names.is_empty() {
                let mut params = ListParams::default();
                if let Some(selector) = &args.selector {
                    params = params.labels(selector);
                }
                let list = api.list(&params).await?;
                list_version = list.metadata.resource_version.unwrap_or_default();
                objects.extend(list.items);
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
                return watch(&cluster, &served, &args, &list_version).await;
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
                println!(
                    "{}/{}",
                    served.qualified_kind(),
                    v["metadata"]["name"].as_str().unwrap_or("")
                );
            }
        }
        Some("wide") | None => {
            let table = fetch_table(cluster, served, objects).await?;
            print_table(&table, args, prefix_kind.then_some(served));
        }
        Some(other) => anyhow::bail!(
            "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json,name,wide,yaml"
        ),
    }
    Ok(())
}

/// The API path of `served`'s collection, in `namespace` when given.
fn collection_path(served: &Served, namespace: Option<&str>) -> String {
    let base = if served.api.group.is_empty() {
        format!("/api/{}", served.api.version)
    } else {
        format!("/apis/{}/{}", served.api.group, served.api.version)
    };
    match namespace.filter(|_| served.namespaced) {
        Some(ns) => format!("{base}/namespaces/{ns}/{}", served.api.plural),
        None => format!("{base}/{}", served.api.plural),
    }
}

const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// Asks the server for the table of these objects (its columns are the upstream ones).
async fn fetch_table(
    cluster: &Cluster,
    served: &Served,
    objects: &[DynamicObject],
) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    let mut columns = Value::Null;
    // One request per object keeps the table exactly the objects already chosen.
    for object in objects {
        let path = format!(
            "{}/{}",
            collection_path(served, object.metadata.namespace.as_deref()),
            object.metadata.name.as_deref().unwrap_or("")
        );
        let request = http::Request::get(path)
            .header(http::header::ACCEPT, TABLE_ACCEPT)
            .body(Vec::new())?;
        let table: Value = cluster.client.request(request).await?;
        if columns.is_null() {
            columns = table["columnDefinitions"].clone();
        }
        if let Some(r) = table["rows"].as_array() {
            rows.extend(r.iter().cloned());
        }
    }
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
    print_rows(table, args, kind_prefix, true);
}

/// Prints a table's rows, with the header line when asked.
fn print_rows(table: &Value, args: &Args, kind_prefix: Option<&Served>, header_line: bool) {
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
                text = format!("{}/{text}", served.qualified_kind());
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
    // Without the header line, rows still align to the header's widths.
    for line in lines.into_iter().skip(usize::from(!header_line)) {
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

/// Follows changes after the list, printing each as a table row (the server renders it).
async fn watch(
    cluster: &Cluster,
    served: &Served,
    args: &Args,
    version: &str,
) -> anyhow::Result<()> {
    let namespace = (!args.all_namespaces).then_some(cluster.namespace.as_str());
    let mut params = WatchParams::default();
    if let Some(selector) = &args.selector {
        params = params.labels(selector);
    }
    let mut request =
        kube::core::Request::new(collection_path(served, namespace)).watch(&params, version)?;
    request.headers_mut().insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static(TABLE_ACCEPT),
    );
    let mut columns = Value::Null;
    let mut events = cluster
        .client
        .request_events::<Value>(request)
        .await?
        .boxed();
    while let Some(event) = events.try_next().await? {
        let table = match event {
            WatchEvent::Added(t) | WatchEvent::Modified(t) | WatchEvent::Deleted(t) => t,
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => anyhow::bail!("watch failed: {}", e.message),
        };
        if table["columnDefinitions"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            columns = table["columnDefinitions"].clone();
        }
        let rows = serde_json::json!({"columnDefinitions": columns, "rows": table["rows"]});
        print_rows(&rows, args, None, false);
    }
    Ok(())
}
