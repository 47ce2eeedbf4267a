//! Finding the cluster (`--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`, then the local server's
//! `admin.kubeconfig`) and resolving resource names the way kubectl does (plural, singular, kind,
//! short name, `plural.group`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use kube::api::{Api, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};

/// Flags every client command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file to use.
    #[arg(long, env = "KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The namespace to work in.
    #[arg(short = 'n', long, env = "SKIFF_NAMESPACE", global = true)]
    pub namespace: Option<String>,
    /// The local server's data directory, used when no kubeconfig is found.
    #[arg(long, env = "SKIFF_DATA_DIR", global = true, hide = true)]
    pub data_dir: Option<PathBuf>,
}

/// A connected client and the namespace commands default to.
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
    resources: Vec<Served>,
}

/// A served resource as discovery lists it.
#[derive(Debug, Clone)]
pub struct Served {
    pub api: ApiResource,
    pub namespaced: bool,
    pub singular: String,
    pub short_names: Vec<String>,
}

fn kubeconfig_path(args: &ClusterArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.kubeconfig {
        // $KUBECONFIG may list several files; the first one that exists wins.
        let first = std::env::split_paths(path).find(|p| p.exists());
        return first.with_context(|| format!("kubeconfig {} does not exist", path.display()));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(home) = &home {
        let user = home.join(".kube/config");
        if user.exists() {
            return Ok(user);
        }
    }
    let local = crate::commands::server::data_dir(args.data_dir.clone())?.join("admin.kubeconfig");
    if local.exists() {
        return Ok(local);
    }
    bail!("no cluster found: pass --kubeconfig, set KUBECONFIG, or start one with `skiff server`")
}

/// The object a command's words name: `TYPE/NAME` or `TYPE NAME`, and the words after it.
pub fn target(words: &[String]) -> anyhow::Result<(String, String, &[String])> {
    match words.first().and_then(|w| w.split_once('/')) {
        Some((t, n)) => Ok((t.to_string(), n.to_string(), &words[1..])),
        None if words.len() >= 2 => Ok((words[0].clone(), words[1].clone(), &words[2..])),
        None => bail!("you must specify a type and a name"),
    }
}

impl Served {
    /// `deployment.apps`, or `pod` for the core group, as kubectl names objects it changed.
    pub fn qualified_kind(&self) -> String {
        let kind = self.api.kind.to_ascii_lowercase();
        if self.api.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.api.group)
        }
    }
}

impl Cluster {
    /// A dynamic API for `served`: in the current namespace, or everywhere when cluster-scoped or
    /// when `all_namespaces`.
    pub fn api(&self, served: &Served, all_namespaces: bool) -> Api<DynamicObject> {
        if served.namespaced && !all_namespaces {
            Api::namespaced_with(self.client.clone(), &self.namespace, &served.api)
        } else {
            Api::all_with(self.client.clone(), &served.api)
        }
    }

    /// Connects as the kubeconfig says.
    pub async fn connect(args: &ClusterArgs) -> anyhow::Result<Self> {
        let path = kubeconfig_path(args)?;
        let kubeconfig = Kubeconfig::read_from(&path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading kubeconfig {}", path.display()))?;
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).context("building the API client")?;
        Ok(Cluster {
            client,
            namespace,
            resources: Vec::new(),
        })
    }

    async fn discover(&mut self) -> anyhow::Result<()> {
        if !self.resources.is_empty() {
            return Ok(());
        }
        let mut lists = vec![self.client.list_core_api_resources("v1").await?];
        for group in self.client.list_api_groups().await?.groups {
            let Some(version) = group
                .preferred_version
                .or_else(|| group.versions.first().cloned())
            else {
                continue;
            };
            lists.push(
                self.client
                    .list_api_group_resources(&version.group_version)
                    .await?,
            );
        }
        for list in lists {
            let (group, version) = list
                .group_version
                .split_once('/')
                .map(|(g, v)| (g.to_string(), v.to_string()))
                .unwrap_or_else(|| (String::new(), list.group_version.clone()));
            for r in list.resources {
                if r.name.contains('/') {
                    continue;
                }
                let gvk = GroupVersionKind::gvk(&group, &version, &r.kind);
                self.resources.push(Served {
                    api: ApiResource::from_gvk_with_plural(&gvk, &r.name),
                    namespaced: r.namespaced,
                    singular: r.singular_name,
                    short_names: r.short_names.unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    /// The resource a user's word names (`deploy`, `deployments`, `deployment.apps`, `Deployment`).
    pub async fn resolve(&mut self, word: &str) -> anyhow::Result<Served> {
        self.discover().await?;
        let lower = word.to_ascii_lowercase();
        let (name, group) = match lower.split_once('.') {
            Some((n, g)) => (n.to_string(), Some(g.to_string())),
            None => (lower.clone(), None),
        };
        let matches = |s: &&Served| {
            group.as_ref().is_none_or(|g| *g == s.api.group)
                && (s.api.plural == name
                    || s.singular == name
                    || s.api.kind.to_ascii_lowercase() == name
                    || s.short_names.contains(&name))
        };
        // Core and apps first, as kubectl prefers them when names collide (events).
        self.resources
            .iter()
            .find(matches)
            .cloned()
            .with_context(|| format!("the server doesn't have a resource type \"{word}\""))
    }

    /// The resource for an object's apiVersion and kind.
    pub async fn resolve_kind(&mut self, api_version: &str, kind: &str) -> anyhow::Result<Served> {
        self.discover().await?;
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.resources
            .iter()
            .find(|s| s.api.group == group && s.api.version == version && s.api.kind == kind)
            .cloned()
            .with_context(|| format!("no matches for kind \"{kind}\" in version \"{api_version}\""))
    }

    /// Every resource in a category (`all`).
    pub async fn category(&mut self, category: &str) -> anyhow::Result<Vec<Served>> {
        self.discover().await?;
        // Discovery lists carry categories only in the raw lists; `all` is the upstream set.
        let all = [
            "pods",
            "services",
            "daemonsets",
            "deployments",
            "replicasets",
            "statefulsets",
            "jobs",
            "cronjobs",
            "horizontalpodautoscalers",
            "replicationcontrollers",
        ];
        if category != "all" {
            bail!("unknown category \"{category}\"");
        }
        let mut out = Vec::new();
        for plural in all {
            if let Some(s) = self.resources.iter().find(|s| s.api.plural == plural) {
                out.push(s.clone());
            }
        }
        Ok(out)
    }
}
