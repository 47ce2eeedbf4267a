//! The node's image store: Wasm components kept as blobs named by their sha256 digest, references
//! (`registry.local/web:1`) pointing at digests, and each component's compiled form kept beside
//! its blob so that only the first start compiles.
//!
//! Layout under the store's root:
//! - `blobs/sha256/HEX`: the component bytes;
//! - `refs/ESCAPED-REFERENCE`: the digest of the component a reference names, then, for an
//!   image pulled from a registry, the digest of its manifest (one file per reference, replaced
//!   by rename, so that a `skiff image import` beside a running node never corrupts the store).
//!   A pulled image is also named by `REPOSITORY@MANIFEST-DIGEST`, so that a pod naming it by
//!   digest finds it;
//! - `compiled/HEX-ENGINE.cwasm`: the component compiled by an engine with that compatibility
//!   hash.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What can go wrong with the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {0:?}")]
    InvalidReference(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a WebAssembly component")]
    NotAComponent(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An image the store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The normalized reference, e.g. `docker.io/library/hello:latest`.
    pub reference: String,
    /// The component's digest, `sha256:HEX`.
    pub digest: String,
    /// The digest of the manifest the image was pulled by, when it came from a registry.
    pub manifest: Option<String>,
    pub size: u64,
}

impl Image {
    /// The reference without its tag or digest: `registry.local/web`.
    pub fn repository(&self) -> &str {
        repository(&self.reference)
    }

    /// What the kubelet reports as a container's imageID: the repository at the manifest's
    /// digest for a pulled image, at the component's for an imported one.
    pub fn id(&self) -> String {
        format!(
            "{}@{}",
            self.repository(),
            self.manifest.as_deref().unwrap_or(&self.digest)
        )
    }
}

/// The repository of a normalized reference.
pub(crate) fn repository(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

/// Normalizes a reference as Docker and the kubelet do: a first component without a dot, a
/// colon or `localhost` is a Docker Hub repository (`hello` is `docker.io/library/hello`), and a
/// reference without tag or digest means `:latest`.
pub fn normalize(reference: &str) -> Result<String, ImageError> {
    let invalid = || ImageError::InvalidReference(reference.to_string());
    if reference.is_empty() || reference.chars().any(char::is_whitespace) {
        return Err(invalid());
    }
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => {
            let hex = digest.strip_prefix("sha256:").ok_or_else(invalid)?;
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            (name, Some(digest))
        }
        None => (reference, None),
    };
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        Some(_) => ("docker.io".to_string(), name.to_string()),
        None => ("docker.io".to_string(), format!("library/{name}")),
    };
    let last = rest.rsplit('/').next().unwrap_or("");
    let (repository, tag) = match last.split_once(':') {
        Some((_, tag)) => (
            rest[..rest.len() - tag.len() - 1].to_string(),
            Some(tag.to_string()),
        ),
        None => (rest, None),
    };
    if repository.is_empty()
        || repository.split('/').any(|part| {
            part.is_empty()
                || !part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        })
        || tag.as_deref().is_some_and(|t| {
            t.is_empty()
                || t.len() > 128
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
    {
        return Err(invalid());
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => format!("{domain}/{repository}:{tag}@{digest}"),
        (None, Some(digest)) => format!("{domain}/{repository}@{digest}"),
        (Some(tag), None) => format!("{domain}/{repository}:{tag}"),
        (None, None) => format!("{domain}/{repository}:latest"),
    })
}

/// File name for a reference: everything but `[a-z0-9._-]` percent-encoded.
fn escape(reference: &str) -> String {
    let mut out = String::new();
    for b in reference.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(name: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let mut rest = name.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// A component's layer starts with the Wasm magic and the component-model version/layer word.
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]
}

/// The image store of one node.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        for dir in ["blobs/sha256", "refs", "compiled", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        Ok(ImageStore { root })
    }

    /// Writes `bytes` to `path` through a temporary file and a rename.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}.{}", std::process::id(), uuid_like()));
        let mut file = std::fs::File::create(&tmp).map_err(io_error(&tmp))?;
        file.write_all(bytes).map_err(io_error(&tmp))?;
        file.sync_all().map_err(io_error(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_error(path))
    }

    /// Stores a component under `reference` (replacing what the reference named before).
    pub fn import(&self, bytes: &[u8], reference: &str) -> Result<Image, ImageError> {
        self.store(bytes, reference, None)
    }

    /// Stores a component pulled from a registry by `reference`, whose manifest had the digest
    /// `manifest`; the image is then also found as `REPOSITORY@MANIFEST`.
    pub fn store(
        &self,
        bytes: &[u8],
        reference: &str,
        manifest: Option<&str>,
    ) -> Result<Image, ImageError> {
        let reference = normalize(reference)?;
        if !is_component(bytes) {
            return Err(ImageError::NotAComponent(reference));
        }
        let hex = format!("{:x}", Sha256::digest(bytes));
        let blob = self.blob_path(&hex);
        if !blob.exists() {
            self.write_atomically(&blob, bytes)?;
        }
        let image = Image {
            digest: format!("sha256:{hex}"),
            manifest: manifest.map(str::to_string),
            size: bytes.len() as u64,
            reference,
        };
        self.link(&image)?;
        Ok(image)
    }

    /// Names an image the store holds by another reference.
    pub fn tag(&self, image: &Image, reference: &str) -> Result<Image, ImageError> {
        let image = Image {
            reference: normalize(reference)?,
            ..image.clone()
        };
        self.link(&image)?;
        Ok(image)
    }

    /// Writes the reference files of an image: its own and, for a pulled one, its
    /// repository at its manifest's digest.
    fn link(&self, image: &Image) -> Result<(), ImageError> {
        let mut content = image.digest.clone();
        if let Some(manifest) = &image.manifest {
            content.push('\n');
            content.push_str(manifest);
            let by_digest = format!("{}@{manifest}", image.repository());
            if by_digest != image.reference {
                let link = self.root.join("refs").join(escape(&by_digest));
                self.write_atomically(&link, content.as_bytes())?;
            }
        }
        let link = self.root.join("refs").join(escape(&image.reference));
        self.write_atomically(&link, content.as_bytes())
    }

    fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex)
    }

    /// The image a reference names, if the store holds it. A reference by digest is found by
    /// its digest alone, as the kubelet resolves `name@sha256:...`.
    pub fn resolve(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        let reference = normalize(reference)?;
        let link = self.root.join("refs").join(escape(&reference));
        let (digest, manifest) = match std::fs::read_to_string(&link) {
            Ok(content) => {
                let mut lines = content.lines().map(str::trim);
                let digest = lines.next().unwrap_or_default().to_string();
                (digest, lines.next().map(str::to_string))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match reference.split_once('@') {
                Some((_, digest)) => (digest.to_string(), None),
                None => return Ok(None),
            },
            Err(e) => return Err(io_error(&link)(e)),
        };
        let hex = digest.trim_start_matches("sha256:");
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let blob = self.blob_path(hex);
        match std::fs::metadata(&blob) {
            Ok(meta) => Ok(Some(Image {
                reference,
                digest,
                manifest,
                size: meta.len(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&blob)(e)),
        }
    }

    /// Every reference the store holds, sorted, but for the `REPOSITORY@MANIFEST` names of
    /// images that a tag names too.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let mut all = self.list_all()?;
        let tagged: Vec<(String, String)> = all
            .iter()
            .filter(|image| !image.reference.contains('@'))
            .map(|image| (image.repository().to_string(), image.digest.clone()))
            .collect();
        all.retain(|image| {
            !image.reference.contains('@')
                || !tagged
                    .iter()
                    .any(|(repo, digest)| repo == image.repository() && *digest == image.digest)
        });
        Ok(all)
    }

    fn list_all(&self) -> Result<Vec<Image>, ImageError> {
        let refs = self.root.join("refs");
        let mut images = Vec::new();
        for entry in std::fs::read_dir(&refs).map_err(io_error(&refs))? {
            let entry = entry.map_err(io_error(&refs))?;
            let Some(reference) = entry.file_name().to_str().and_then(unescape) else {
                continue;
            };
            if let Some(image) = self.resolve(&reference)? {
                images.push(image);
            }
        }
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(images)
    }

    /// Removes a reference, and its blob and compiled forms when no other reference names it
    /// (a pulled image's `REPOSITORY@MANIFEST` name goes with its last tag).
    /// Returns whether the reference existed.
    pub fn remove(&self, reference: &str) -> Result<bool, ImageError> {
        let Some(image) = self.resolve(reference)? else {
            return Ok(false);
        };
        let unlink = |reference: &str| {
            let link = self.root.join("refs").join(escape(reference));
            match std::fs::remove_file(&link) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_error(&link)(e)),
            }
        };
        unlink(&image.reference)?;
        let rest = self.list_all()?;
        if !rest
            .iter()
            .any(|other| other.digest == image.digest && !other.reference.contains('@'))
        {
            for other in rest.iter().filter(|other| other.digest == image.digest) {
                unlink(&other.reference)?;
            }
            let hex = image.digest.trim_start_matches("sha256:").to_string();
            let _ = std::fs::remove_file(self.blob_path(&hex));
            let compiled = self.root.join("compiled");
            for entry in std::fs::read_dir(&compiled)
                .map_err(io_error(&compiled))?
                .flatten()
            {
                if entry.file_name().to_string_lossy().starts_with(&hex) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(true)
    }

    /// The component bytes of an image.
    pub fn read(&self, image: &Image) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(image.digest.trim_start_matches("sha256:"));
        std::fs::read(&path).map_err(io_error(&path))
    }

    /// Where the compiled form of `image` for an engine with compatibility hash `engine` goes.
    pub fn compiled_path(&self, image: &Image, engine: &str) -> PathBuf {
        let hex = image.digest.trim_start_matches("sha256:");
        self.root
            .join("compiled")
            .join(format!("{hex}-{engine}.cwasm"))
    }

    /// Stores a compiled form (see [`ImageStore::compiled_path`]).
    pub fn store_compiled(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        self.write_atomically(path, bytes)
    }
}

/// A name unique enough for temporary files within one process.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    #[test]
    fn references_normalize_as_docker_does() {
        assert_eq!(
            normalize("hello").unwrap(),
            "docker.io/library/hello:latest"
        );
        assert_eq!(normalize("me/app:2").unwrap(), "docker.io/me/app:2");
        assert_eq!(
            normalize("registry.local/web:1").unwrap(),
            "registry.local/web:1"
        );
        assert_eq!(
            normalize("localhost:5000/a/b").unwrap(),
            "localhost:5000/a/b:latest"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("web@{digest}")).unwrap(),
            format!("docker.io/library/web@{digest}")
        );
        for bad in ["", "Web:1", "web:", "a//b", "web@sha256:12", "web: 1"] {
            assert!(normalize(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn imported_images_resolve_list_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let image = store.import(COMPONENT, "registry.local/web:1").unwrap();
        assert!(image.digest.starts_with("sha256:"));
        assert_eq!(
            store.resolve("registry.local/web:1").unwrap(),
            Some(image.clone())
        );
        let by_digest = store
            .resolve(&format!("registry.local/other@{}", image.digest))
            .unwrap()
            .unwrap();
        assert_eq!(by_digest.digest, image.digest);
        store.import(COMPONENT, "hello").unwrap();
        let names: Vec<String> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|i| i.reference)
            .collect();
        assert_eq!(
            names,
            ["docker.io/library/hello:latest", "registry.local/web:1"]
        );
        assert!(store.remove("registry.local/web:1").unwrap());
        assert!(!store.remove("registry.local/web:1").unwrap());
        // The blob stays while another reference names it.
        assert_eq!(store.read(&by_digest).unwrap(), COMPONENT);
        assert!(store.remove("hello").unwrap());
        assert!(store.read(&by_digest).is_err());
    }

    #[test]
    fn only_components_are_imported() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let core_module = b"\0asm\x01\x00\x00\x00";
        assert!(matches!(
            store.import(core_module, "core:1"),
            Err(ImageError::NotAComponent(_))
        ));
        assert!(store.list().unwrap().is_empty());
    }
}
