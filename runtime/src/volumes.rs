//! A pod's volumes as host directories that its containers get preopened at their mount paths:
//! emptyDir (shared by all the pod's containers), configMap, secret, downwardAPI and projected
//! (files written by the node, kept up to date while the pod runs, as the kubelet does, except
//! for immutable objects and subPath mounts), hostPath, and persistentVolumeClaim (see
//! [`crate::storage`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};
use kube::api::Api;

/// A volume the pod could not set up, in the kubelet's FailedMount words.
#[derive(Debug, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume \"{volume}\" : {reason}")]
pub struct MountError {
    pub volume: String,
    pub reason: String,
}

/// A volume ready to mount: where it is on the host, and whether the kubelet would mount it
/// read-only whatever the mount says.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub host: PathBuf,
    pub always_read_only: bool,
    /// Written from API objects, and rewritten when they change.
    pub projected: bool,
}

/// Files of one projected volume: relative path to content and mode.
type Files = BTreeMap<String, (Vec<u8>, i32)>;

/// Sets up every volume of `pod` under `dir` (`dir/NAME`).
pub async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    dir: &Path,
    storage: &crate::storage::LocalStorage<'_>,
) -> Result<BTreeMap<String, Prepared>, MountError> {
    let mut prepared = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let fail = |reason: String| MountError {
            volume: volume.name.clone(),
            reason,
        };
        let host = dir.join(&volume.name);
        let entry = if let Some(host_path) = &volume.host_path {
            let path = PathBuf::from(&host_path.path);
            match host_path.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" => {
                    std::fs::create_dir_all(&path).map_err(|e| fail(e.to_string()))?;
                }
                "Directory" if !path.is_dir() => {
                    return Err(fail(format!(
                        "hostPath type check failed: {} is not a directory",
                        host_path.path
                    )));
                }
                _ if !path.exists() && host_path.type_.as_deref().unwrap_or("").is_empty() => {
                    std::fs::create_dir_all(&path).map_err(|e| fail(e.to_string()))?;
                }
                _ => {}
            }
            Prepared {
                host: path,
                always_read_only: false,
                projected: false,
            }
        } else if let Some(claim) = &volume.persistent_volume_claim {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let host = crate::storage::claim_path(client, namespace, &claim.claim_name, storage)
                .await
                .map_err(fail)?;
            Prepared {
                host,
                always_read_only: claim.read_only == Some(true),
                projected: false,
            }
        } else if volume.empty_dir.is_some() {
            std::fs::create_dir_all(&host).map_err(|e| fail(e.to_string()))?;
            Prepared {
                host,
                always_read_only: false,
                projected: false,
            }
        } else if let Some(files) = projected_files(client, pod, volume).await.map_err(fail)? {
            write_files(&host, &files).map_err(|e| fail(e.to_string()))?;
            Prepared {
                host,
                always_read_only: true,
                projected: true,
            }
        } else {
            return Err(fail(
                "this node does not support the volume's type yet".to_string(),
            ));
        };
        prepared.insert(volume.name.clone(), entry);
    }
    Ok(prepared)
}

/// Rewrites the projected volumes whose sources changed.
pub async fn refresh(client: &kube::Client, pod: &Pod, prepared: &BTreeMap<String, Prepared>) {
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(entry) = prepared.get(&volume.name).filter(|p| p.projected) else {
            continue;
        };
        match projected_files(client, pod, volume).await {
            Ok(Some(files)) => {
                if let Err(e) = write_files(&entry.host, &files) {
                    tracing::warn!(volume = %volume.name, error = %e, "updating a volume failed");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(volume = %volume.name, error = %e, "volume source unavailable")
            }
        }
    }
}

/// The files a configMap, secret, downwardAPI or projected volume holds now; None for other
/// kinds of volume.
async fn projected_files(
    client: &kube::Client,
    pod: &Pod,
    volume: &Volume,
) -> Result<Option<Files>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut files = Files::new();
    let mut objects = Vec::new();
    if let Some(source) = &volume.config_map {
        let mode = source.default_mode.unwrap_or(0o644);
        objects.push((
            Source::ConfigMap(&source.name),
            source.items.clone(),
            source.optional,
            mode,
        ));
    } else if let Some(source) = &volume.secret {
        let mode = source.default_mode.unwrap_or(0o644);
        let name = source.secret_name.as_deref().unwrap_or_default();
        objects.push((
            Source::Secret(name),
            source.items.clone(),
            source.optional,
            mode,
        ));
    } else if let Some(source) = &volume.downward_api {
        let mode = source.default_mode.unwrap_or(0o644);
        downward_files(
            pod,
            source.items.as_deref().unwrap_or_default(),
            mode,
            &mut files,
        )?;
    } else if let Some(projected) = &volume.projected {
        let mode = projected.default_mode.unwrap_or(0o644);
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                objects.push((
                    Source::ConfigMap(&cm.name),
                    cm.items.clone(),
                    cm.optional,
                    mode,
                ));
            }
            if let Some(secret) = &source.secret {
                objects.push((
                    Source::Secret(&secret.name),
                    secret.items.clone(),
                    secret.optional,
                    mode,
                ));
            }
            if let Some(downward) = &source.downward_api {
                downward_files(
                    pod,
                    downward.items.as_deref().unwrap_or_default(),
                    mode,
                    &mut files,
                )?;
            }
        }
    } else {
        return Ok(None);
    }
    for (source, items, optional, mode) in objects {
        object_files(
            client,
            namespace,
            source,
            items.as_deref(),
            optional,
            mode,
            &mut files,
        )
        .await?;
    }
    Ok(Some(files))
}

/// Keys to files: every key, or the listed items (each must exist unless optional).
fn select(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    what: &str,
    files: &mut Files,
) -> Result<(), String> {
    match items {
        None => {
            for (key, value) in data {
                files.insert(key, (value, default_mode));
            }
        }
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    return Err(format!("{what} does not contain the key {}", item.key));
                };
                files.insert(
                    item.path.clone(),
                    (value.clone(), item.mode.unwrap_or(default_mode)),
                );
            }
        }
    }
    Ok(())
}

/// A ConfigMap's data and binaryData as bytes, if it exists.
async fn config_map_data(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .map(|cm| {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            data.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            data
        }))
}

/// A Secret's data (and stringData) as bytes, if it exists.
async fn secret_data(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .map(|secret| {
            let mut data: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            data.extend(
                secret
                    .string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            data
        }))
}

/// Which object a configMap or secret source names.
enum Source<'a> {
    ConfigMap(&'a str),
    Secret(&'a str),
}

/// The files of a configMap or secret source; a missing object is an error unless optional.
async fn object_files(
    client: &kube::Client,
    namespace: &str,
    source: Source<'_>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: i32,
    files: &mut Files,
) -> Result<(), String> {
    let (data, what) = match source {
        Source::ConfigMap(name) => (
            config_map_data(client, namespace, name).await?,
            format!("configmap \"{name}\""),
        ),
        Source::Secret(name) => (
            secret_data(client, namespace, name).await?,
            format!("secret \"{name}\""),
        ),
    };
    match data {
        Some(data) => select(data, items, mode, &what, files),
        None if optional == Some(true) => Ok(()),
        None => Err(format!("{what} not found")),
    }
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    mode: i32,
    files: &mut Files,
) -> Result<(), String> {
    for item in items {
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), _) => match field.field_path.as_str() {
                "metadata.labels" => labels_file(pod.metadata.labels.as_ref()),
                "metadata.annotations" => labels_file(pod.metadata.annotations.as_ref()),
                path => crate::pods::field(pod, path)?,
            },
            (None, Some(resource)) => {
                let container = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .find(|c| Some(&c.name) == resource.container_name.as_ref())
                    .ok_or_else(|| format!("no container for resource {}", resource.resource))?;
                crate::pods::resource_field(container, &resource.resource)?
            }
            (None, None) => String::new(),
        };
        files.insert(
            item.path.clone(),
            (value.into_bytes(), item.mode.unwrap_or(mode)),
        );
    }
    Ok(())
}

/// Labels or annotations as the downward API writes them: `key="value"` lines, sorted.
fn labels_file(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect()
}

/// Brings `dir` to hold exactly `files`: each changed file is written beside and renamed into
/// place, so a reader sees the old or the new content, never half of one.
fn write_files(dir: &Path, files: &Files) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    for (relative, (content, mode)) in files {
        if relative
            .split('/')
            .any(|part| part == ".." || part.is_empty())
        {
            continue;
        }
        let path = dir.join(relative);
        if std::fs::read(&path).is_ok_and(|current| &current == content) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_file_name(format!(
            ".{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
        ));
        std::fs::write(&tmp, content)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode as u32 & 0o777))?;
        std::fs::rename(&tmp, &path)?;
    }
    // Keys that went away go too.
    remove_stale(dir, dir, files)
}

fn remove_stale(root: &Path, dir: &Path, files: &Files) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if entry.file_type()?.is_dir() {
            remove_stale(root, &path, files)?;
        } else if !files.contains_key(&relative) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_updated_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vol");
        let mut files = Files::new();
        files.insert("a".into(), (b"1".to_vec(), 0o644));
        files.insert("sub/b".into(), (b"2".to_vec(), 0o600));
        write_files(&target, &files).unwrap();
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(target.join("sub/b")).unwrap(), b"2");
        files.insert("a".into(), (b"changed".to_vec(), 0o644));
        files.remove("sub/b");
        write_files(&target, &files).unwrap();
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"changed");
        assert!(!target.join("sub/b").exists());
    }

    #[test]
    fn listed_items_must_exist() {
        let data: BTreeMap<String, Vec<u8>> = [("k".to_string(), b"v".to_vec())].into();
        let items = [KeyToPath {
            key: "missing".into(),
            path: "p".into(),
            mode: None,
        }];
        let mut files = Files::new();
        let err = select(data, Some(&items), 0o644, "configmap \"c\"", &mut files).unwrap_err();
        assert_eq!(err, "configmap \"c\" does not contain the key missing");
    }
}
