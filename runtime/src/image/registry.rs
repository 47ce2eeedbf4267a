//! Pulling components from OCI registries into the node's store, and pushing them.
//!
//! Two layouts are accepted:
//! - the CNCF Wasm artifact (config `application/vnd.wasm.config.v0+json`, one
//!   `application/wasm` layer), as `wkg oci push` and `skiff push` write it;
//! - a classic container image whose tar layers hold the `.wasm` file its entrypoint names, as
//!   runwasi and crun images do.
//!
//! Registries are reached over HTTPS but for those the node was told are insecure
//! (`--insecure-registry HOST:PORT`). A pull tries each matching credential of the
//! [`Keyring`] in turn, and is anonymous when none matches. A client is made for each pull,
//! so that credentials never pass from one pod's pull to another's.

use std::io::Read;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{ImageIndexEntry, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_wasm::{
    ToConfig, WASM_LAYER_MEDIA_TYPE, WASM_MANIFEST_CONFIG_MEDIA_TYPE, WasmClient, WasmConfig,
};

use super::credentials::Keyring;
use super::store::{Image, ImageError, ImageStore, normalize};

/// What can go wrong when pulling or pushing.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] ImageError),
    /// The registry's answer, or why it could not be reached.
    #[error("{0}")]
    Registry(String),
    /// The image holds no component Skiff can run.
    #[error("{0}")]
    Content(String),
}

/// An image pulled into the store.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: Image,
    /// Whether its content was downloaded (false when the store had the manifest's content).
    pub downloaded: bool,
}

/// How the node reaches registries.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// `HOST:PORT`s reached over plain HTTP.
    insecure: Vec<String>,
}

/// An error with its causes, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Picks the Wasm entry of an image index.
fn wasm_platform(entries: &[ImageIndexEntry]) -> Option<String> {
    let is_wasm = |entry: &&ImageIndexEntry| {
        entry.platform.as_ref().is_some_and(|p| {
            p.architecture.to_string() == "wasm"
                || ["wasi", "wasip1", "wasip2"].contains(&p.os.to_string().as_str())
        })
    };
    entries
        .iter()
        .find(is_wasm)
        .or(if entries.len() == 1 {
            entries.first()
        } else {
            None
        })
        .map(|entry| entry.digest.clone())
}

/// Whether the registry of a normalized reference is Docker Hub.
fn registry_of(reference: &Reference) -> String {
    reference.resolve_registry().to_string()
}

impl Registries {
    /// `insecure`: the `HOST:PORT`s to reach over plain HTTP.
    pub fn new(insecure: Vec<String>) -> Self {
        Registries { insecure }
    }

    fn client(&self) -> Client {
        Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure.clone()),
            platform_resolver: Some(Box::new(wasm_platform)),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("skiff/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        })
    }

    fn reference(reference: &str) -> Result<(String, Reference), RegistryError> {
        let normalized = normalize(reference)?;
        let parsed = normalized
            .parse::<Reference>()
            .map_err(|_| ImageError::InvalidReference(reference.to_string()))?;
        Ok((normalized, parsed))
    }

    /// The ways to authenticate to the registry of `reference`: each matching credential,
    /// or anonymously when none matches.
    fn auths(keyring: &Keyring, reference: &str) -> Vec<RegistryAuth> {
        let auths: Vec<RegistryAuth> = keyring
            .lookup(reference)
            .into_iter()
            .map(|c| RegistryAuth::Basic(c.username, c.password))
            .collect();
        if auths.is_empty() {
            vec![RegistryAuth::Anonymous]
        } else {
            auths
        }
    }

    /// Pulls `reference` into `store`. When the store already holds the content of the
    /// manifest the registry names, only the manifest is fetched.
    pub async fn pull(
        &self,
        store: &ImageStore,
        reference: &str,
        keyring: &Keyring,
    ) -> Result<Pulled, RegistryError> {
        let (normalized, parsed) = Self::reference(reference)?;
        let mut last = None;
        for auth in Self::auths(keyring, &normalized) {
            match self.pull_with(store, &normalized, &parsed, &auth).await {
                Ok(pulled) => return Ok(pulled),
                Err(e @ RegistryError::Registry(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Registry("no credentials to try".into())))
    }

    async fn pull_with(
        &self,
        store: &ImageStore,
        normalized: &str,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<Pulled, RegistryError> {
        let client = self.client();
        let (manifest, digest, config) = client
            .pull_manifest_and_config(reference, auth)
            .await
            .map_err(|e| RegistryError::Registry(chain(&e)))?;
        let repository = super::store::repository(normalized);
        if let Some(image) = store.resolve(&format!("{repository}@{digest}"))?
            && image.manifest.as_deref() == Some(digest.as_str())
        {
            let image = store.tag(&image, normalized)?;
            return Ok(Pulled {
                image,
                downloaded: false,
            });
        }
        let bytes = if is_wasm_artifact(&manifest) {
            let layer = wasm_layer(&manifest, normalized)?;
            fetch(&client, reference, layer).await?
        } else {
            classic_component(&client, reference, normalized, &manifest, &config).await?
        };
        let image = store.store(&bytes, normalized, Some(&digest))?;
        Ok(Pulled {
            image,
            downloaded: true,
        })
    }

    /// Pushes a component as a Wasm artifact, as `wkg oci push` does. Returns the manifest's
    /// digest.
    pub async fn push(
        &self,
        component: Vec<u8>,
        reference: &str,
        keyring: &Keyring,
    ) -> Result<String, RegistryError> {
        let (normalized, parsed) = Self::reference(reference)?;
        let (config, mut layer) = WasmConfig::from_raw_component(component, None)
            .map_err(|e| RegistryError::Content(format!("not a WebAssembly component: {e:#}")))?;
        let title = format!(
            "{}.wasm",
            parsed
                .repository()
                .rsplit('/')
                .next()
                .unwrap_or("component")
        );
        layer.annotations = Some(
            [("org.opencontainers.image.title".to_string(), title)]
                .into_iter()
                .collect(),
        );
        let mut last = None;
        for auth in Self::auths(keyring, &normalized) {
            let client = WasmClient::new(self.client());
            match client
                .push(&parsed, &auth, layer.clone(), Borrowed(&config), None)
                .await
            {
                Ok(response) => {
                    let digest = response
                        .manifest_url
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    return Ok(digest);
                }
                Err(e) => last = Some(RegistryError::Registry(chain(e.as_ref()))),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Registry("no credentials to try".into())))
    }

    /// The registry host of a reference, as `--insecure-registry` names it.
    pub fn registry(reference: &str) -> Result<String, RegistryError> {
        Ok(registry_of(&Self::reference(reference)?.1))
    }
}

/// A config pushed once per credential tried.
struct Borrowed<'a>(&'a WasmConfig);

impl ToConfig for Borrowed<'_> {
    fn to_config(&self) -> anyhow::Result<oci_client::client::Config> {
        self.0.to_config()
    }
}

fn is_wasm_artifact(manifest: &OciImageManifest) -> bool {
    manifest.config.media_type == WASM_MANIFEST_CONFIG_MEDIA_TYPE
        || manifest
            .layers
            .iter()
            .any(|l| l.media_type == WASM_LAYER_MEDIA_TYPE)
}

fn wasm_layer<'a>(
    manifest: &'a OciImageManifest,
    reference: &str,
) -> Result<&'a OciDescriptor, RegistryError> {
    let mut layers = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == WASM_LAYER_MEDIA_TYPE);
    match (layers.next(), layers.next()) {
        (Some(layer), None) => Ok(layer),
        _ => Err(RegistryError::Content(format!(
            "image {reference} is a Wasm artifact but has {} {WASM_LAYER_MEDIA_TYPE} layers, not one",
            manifest
                .layers
                .iter()
                .filter(|l| l.media_type == WASM_LAYER_MEDIA_TYPE)
                .count()
        ))),
    }
}

async fn fetch(
    client: &Client,
    reference: &Reference,
    layer: &OciDescriptor,
) -> Result<Vec<u8>, RegistryError> {
    let mut bytes = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0).min(64 << 20));
    client
        .pull_blob(reference, layer, &mut bytes)
        .await
        .map_err(|e| RegistryError::Registry(chain(&e)))?;
    Ok(bytes)
}

/// The component a classic image holds: the file its entrypoint (or command) names, or else its
/// only `.wasm` file, looked for from the top layer down.
async fn classic_component(
    client: &Client,
    reference: &Reference,
    normalized: &str,
    manifest: &OciImageManifest,
    config: &str,
) -> Result<Vec<u8>, RegistryError> {
    let config: serde_json::Value = serde_json::from_str(config).map_err(|e| {
        RegistryError::Content(format!("image {normalized} has an unreadable config: {e}"))
    })?;
    let first = |key: &str| {
        config["config"][key]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let wanted = first("Entrypoint").or_else(|| first("Cmd"));
    let wanted = wanted.as_deref().map(clean_path);
    let mut found: Vec<(String, Vec<u8>)> = Vec::new();
    let mut hidden: Vec<String> = Vec::new();
    for layer in manifest.layers.iter().rev() {
        if layer.media_type.contains("zstd") {
            return Err(RegistryError::Content(format!(
                "image {normalized} has a zstd-compressed layer, which Skiff does not read"
            )));
        }
        let blob = fetch(client, reference, layer).await?;
        let looking_for = wanted.clone();
        let (files, whiteouts) =
            tokio::task::spawn_blocking(move || wasm_files(&blob, looking_for.as_deref()))
                .await
                .map_err(|e| RegistryError::Content(e.to_string()))?
                .map_err(|e| {
                    RegistryError::Content(format!(
                        "image {normalized}: layer {} is not a tar archive: {e}",
                        layer.digest
                    ))
                })?;
        for (path, bytes) in files {
            if !hidden.contains(&path) && !found.iter().any(|(p, _)| *p == path) {
                found.push((path, bytes));
            }
        }
        hidden.extend(whiteouts);
        if let Some(wanted) = &wanted
            && let Some(at) = found.iter().position(|(p, _)| p == wanted)
        {
            return Ok(found.swap_remove(at).1);
        }
    }
    match (wanted, found.len()) {
        (Some(wanted), _) => Err(RegistryError::Content(format!(
            "image {normalized} has no file /{wanted}, which its entrypoint names"
        ))),
        (None, 1) => Ok(found.remove(0).1),
        (None, n) => Err(RegistryError::Content(format!(
            "image {normalized} names no entrypoint and holds {n} .wasm files, so which to run \
             is not known"
        ))),
    }
}

fn clean_path(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// The `.wasm` files of one (possibly gzipped) tar layer (only `wanted` when it is given),
/// and the paths the layer deletes.
type LayerFiles = (Vec<(String, Vec<u8>)>, Vec<String>);

fn wasm_files(blob: &[u8], wanted: Option<&str>) -> std::io::Result<LayerFiles> {
    let reader: Box<dyn Read> = if blob.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(blob))
    } else {
        Box::new(blob)
    };
    let mut archive = tar::Archive::new(reader);
    let (mut files, mut whiteouts) = (Vec::new(), Vec::new());
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = clean_path(&entry.path()?.to_string_lossy());
        if let Some((dir, name)) = path.rsplit_once('/').or(Some(("", path.as_str())))
            && let Some(deleted) = name.strip_prefix(".wh.")
        {
            whiteouts.push(if dir.is_empty() {
                deleted.to_string()
            } else {
                format!("{dir}/{deleted}")
            });
            continue;
        }
        let take = match wanted {
            Some(wanted) => path == wanted,
            None => path.ends_with(".wasm"),
        };
        if take && entry.header().entry_type().is_file() {
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes)?;
            files.push((path, bytes));
        }
    }
    Ok((files, whiteouts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(files: &[(&str, &[u8])], gzip: bool) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *bytes).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        if !gzip {
            return tar;
        }
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), Default::default());
        std::io::Write::write_all(&mut encoder, &tar).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn layers_yield_their_wasm_files_and_whiteouts() {
        let blob = layer(
            &[
                ("./app/main.wasm", b"main"),
                ("app/other.wasm", b"other"),
                ("etc/.wh.gone.wasm", b""),
                ("README", b"text"),
            ],
            true,
        );
        let (files, whiteouts) = wasm_files(&blob, None).unwrap();
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["app/main.wasm", "app/other.wasm"]);
        assert_eq!(whiteouts, ["etc/gone.wasm"]);
        let (files, _) = wasm_files(
            &layer(&[("app/main.wasm", b"m")], false),
            Some("app/main.wasm"),
        )
        .unwrap();
        assert_eq!(files, [("app/main.wasm".to_string(), b"m".to_vec())]);
        assert!(wasm_files(b"not a tar archive at all, not even close to one....", None).is_err());
    }

    #[test]
    fn index_entries_for_wasm_are_chosen() {
        let entry = |arch: &str, os: &str, digest: &str| -> ImageIndexEntry {
            serde_json::from_value(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest, "size": 1,
                "platform": {"architecture": arch, "os": os}
            }))
            .unwrap()
        };
        let entries = [
            entry("amd64", "linux", "sha256:a"),
            entry("wasm", "wasip2", "sha256:b"),
        ];
        assert_eq!(wasm_platform(&entries).as_deref(), Some("sha256:b"));
        assert_eq!(wasm_platform(&entries[..1]).as_deref(), Some("sha256:a"));
        let two = [
            entry("amd64", "linux", "sha256:a"),
            entry("arm64", "linux", "sha256:c"),
        ];
        assert_eq!(wasm_platform(&two), None);
    }

    #[test]
    fn errors_read_as_one_line_with_their_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(chain(&Outer(refused)), "error sending request: refused");
    }
}
