//! Persistent volumes from the node's own disk, as k3s's local-path provisioner gives them:
//! a claim of the `local-path` StorageClass (the cluster's default, which a claim without a
//! class also gets) is provisioned by the node that first runs a pod using it. The node makes a
//! directory under its data directory, creates a PersistentVolume for it that only this node
//! can use (node affinity on its hostname), binds the claim to it, and records the
//! ProvisioningSucceeded event. A claim bound to a volume of another node cannot be mounted
//! here, and says so.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// The StorageClass this node provisions, and the name it provisions as.
pub const LOCAL_PATH: &str = "local-path";
pub const PROVISIONER: &str = "skiff.dev/local-path";

/// Where the node keeps the volumes it provisions.
pub struct LocalStorage<'a> {
    pub node: &'a str,
    pub dir: &'a Path,
}

fn api_error(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

/// The nodes a volume's required node affinity allows (by hostname); None when it has none.
fn allowed_nodes(pv: &PersistentVolume) -> Option<Vec<String>> {
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    Some(
        terms
            .iter()
            .flat_map(|t| t.match_expressions.iter().flatten())
            .filter(|e| e.key == "kubernetes.io/hostname" && e.operator == "In")
            .flat_map(|e| e.values.iter().flatten().cloned())
            .collect(),
    )
}

/// The host directory of claim `claim` in `namespace`, provisioned here if it is not bound yet.
pub async fn claim_path(
    client: &kube::Client,
    namespace: &str,
    claim: &str,
    storage: &LocalStorage<'_>,
) -> Result<PathBuf, String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(api_error)?
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let spec = pvc.spec.clone().unwrap_or_default();
    if let Some(bound) = spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
        let pv = volumes
            .get_opt(bound)
            .await
            .map_err(api_error)?
            .ok_or_else(|| format!("persistentvolume \"{bound}\" not found"))?;
        if let Some(nodes) = allowed_nodes(&pv)
            && !nodes.iter().any(|n| n == storage.node)
        {
            return Err(format!(
                "volume \"{bound}\" is kept on node(s) {}, not on {}",
                nodes.join(", "),
                storage.node
            ));
        }
        let pv_spec = pv.spec.unwrap_or_default();
        return pv_spec
            .host_path
            .map(|h| h.path)
            .or(pv_spec.local.map(|l| l.path))
            .map(PathBuf::from)
            .ok_or_else(|| {
                format!("volume \"{bound}\" is neither a hostPath nor a local volume, which this node cannot mount")
            });
    }
    let class = spec.storage_class_name.as_deref().unwrap_or(LOCAL_PATH);
    if class != LOCAL_PATH {
        return Err(format!(
            "persistentvolumeclaim \"{claim}\" is not bound, and this node provisions only class {LOCAL_PATH}, not {class}"
        ));
    }
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let path = storage.dir.join(format!("{name}_{namespace}_{claim}"));
    std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "1Gi".into());
    let access_modes = spec
        .access_modes
        .clone()
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": request},
            "accessModes": access_modes,
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": LOCAL_PATH,
            "volumeMode": "Filesystem",
            "hostPath": {"path": path.to_string_lossy(), "type": "DirectoryOrCreate"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": namespace, "name": claim, "uid": uid},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [storage.node]}
            ]}]}},
        },
    }))
    .map_err(|e| e.to_string())?;
    match volumes.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(format!("provisioning volume {name}: {}", api_error(e))),
    }
    let params = PatchParams::default();
    volumes
        .patch_status(
            &name,
            &params,
            &Patch::Merge(json!({"status": {"phase": "Bound"}})),
        )
        .await
        .map_err(api_error)?;
    let bind = json!({
        "metadata": {"annotations": {
            "pv.kubernetes.io/bind-completed": "yes",
            "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.kubernetes.io/selected-node": storage.node,
            "volume.kubernetes.io/storage-provisioner": PROVISIONER,
        }},
        "spec": {"volumeName": name},
    });
    claims
        .patch(claim, &params, &Patch::Merge(bind))
        .await
        .map_err(|e| format!("binding claim {claim}: {}", api_error(e)))?;
    let bound = json!({"status": {"phase": "Bound", "accessModes": access_modes,
                                  "capacity": {"storage": request}}});
    claims
        .patch_status(claim, &params, &Patch::Merge(bound))
        .await
        .map_err(api_error)?;
    record_provisioned(client, &pvc, &name, storage.node).await;
    Ok(path)
}

async fn record_provisioned(
    client: &kube::Client,
    pvc: &PersistentVolumeClaim,
    volume: &str,
    node: &str,
) {
    let namespace = pvc.metadata.namespace.as_deref().unwrap_or("default");
    let claim = pvc.metadata.name.as_deref().unwrap_or_default();
    let now = chrono::Utc::now();
    let event = json!({
        "metadata": {"name": format!("{claim}.{:x}", now.timestamp_nanos_opt().unwrap_or(0)),
                     "namespace": namespace},
        "involvedObject": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                           "namespace": namespace, "name": claim, "uid": pvc.metadata.uid},
        "reason": "ProvisioningSucceeded",
        "message": format!("Successfully provisioned volume {volume}"),
        "type": "Normal",
        "source": {"component": format!("{PROVISIONER}_{node}")},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    if let Ok(event) = serde_json::from_value::<Event>(event) {
        let events: Api<Event> = Api::namespaced(client.clone(), namespace);
        let _ = events.create(&PostParams::default(), &event).await;
    }
}
