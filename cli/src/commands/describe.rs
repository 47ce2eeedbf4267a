//! `skiff describe`: an object's metadata, spec and status in readable form, then the events
//! that name it.

use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;

use super::get::parse_targets;
use crate::kubeconfig::{Cluster, ClusterArgs};

/// Flags of `skiff describe`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Resource type and names, or `type/name`.
    #[arg(required = true)]
    targets: Vec<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

fn title(key: &str) -> String {
    let mut out = String::new();
    for (i, c) in key.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else if c.is_uppercase() {
            out.push(' ');
            out.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

fn print_value(value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(_) | Value::Array(_) => {
                        println!("{pad}{}:", title(k));
                        print_value(v, indent + 2);
                    }
                    _ => println!("{pad}{}:  {}", title(k), scalar(v)),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        println!("{pad}-");
                        print_value(item, indent + 2);
                    }
                    _ => println!("{pad}{}", scalar(item)),
                }
            }
        }
        other => println!("{pad}{}", scalar(other)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

fn pairs(map: &Value) -> String {
    match map.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", scalar(v)))
            .collect::<Vec<_>>()
            .join("\n              "),
        _ => "<none>".into(),
    }
}

/// Runs `skiff describe`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut cluster = Cluster::connect(&args.cluster).await?;
    let events_api = cluster.resolve("events").await?;
    for (word, names) in parse_targets(&args.targets) {
        let served = cluster.resolve(&word).await?;
        let api = cluster.api(&served, false);
        let objects = if names.is_empty() {
            api.list(&ListParams::default()).await?.items
        } else {
            let mut out = Vec::new();
            for n in &names {
                out.push(api.get(n).await?);
            }
            out
        };
        for object in objects {
            let value = serde_json::to_value(&object)?;
            let meta = &value["metadata"];
            println!("Name:         {}", scalar(&meta["name"]));
            if served.namespaced {
                println!("Namespace:    {}", scalar(&meta["namespace"]));
            }
            println!("Labels:       {}", pairs(&meta["labels"]));
            println!("Annotations:  {}", pairs(&meta["annotations"]));
            println!("API Version:  {}", served.api.api_version);
            println!("Kind:         {}", served.api.kind);
            println!("Created:      {}", scalar(&meta["creationTimestamp"]));
            for section in ["spec", "data", "status"] {
                if let Some(v) = value.get(section).filter(|v| !v.is_null()) {
                    println!("{}:", title(section));
                    print_value(v, 2);
                }
            }
            let events: Api<DynamicObject> = Api::namespaced_with(
                cluster.client.clone(),
                meta["namespace"].as_str().unwrap_or("default"),
                &events_api.api,
            );
            let uid = meta["uid"].as_str().unwrap_or("");
            let list = events
                .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            if list.is_empty() {
                println!("Events:       <none>");
            } else {
                println!("Events:\n  Type    Reason    From    Message");
                for e in list {
                    let e = serde_json::to_value(&e)?;
                    println!(
                        "  {}  {}  {}  {}",
                        scalar(&e["type"]),
                        scalar(&e["reason"]),
                        scalar(&e["source"]["component"]),
                        scalar(&e["message"])
                    );
                }
            }
            println!();
        }
    }
    Ok(())
}
