//! Registry credentials found as the kubelet finds them: in the pod's imagePullSecrets
//! (`kubernetes.io/dockerconfigjson` and the older `kubernetes.io/dockercfg`) and in the node's
//! docker `config.json`.
//!
//! A key (`registry.local:5000`, `https://registry.local/v2/team`, `*.example.com`) matches an
//! image whose registry has the same host (each `*` standing for one label) and port and whose
//! repository starts with the key's path. Every matching credential is tried, the most specific
//! key first and the pod's secrets before the node's; with none, the pull is anonymous.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    host: String,
    port: Option<String>,
    path: String,
    credential: Credential,
}

/// The credentials a pull may use.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    entries: Vec<Entry>,
}

/// Docker Hub's names, which all stand for one registry.
const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

fn split_key(key: &str) -> Option<(String, Option<String>, String)> {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, path.trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            (host, Some(port.to_string()))
        }
        _ => (authority, None),
    };
    let mut host = host.to_ascii_lowercase();
    let mut path = path.to_string();
    if DOCKER_HUB.contains(&host.as_str()) {
        host = "docker.io".to_string();
        // `https://index.docker.io/v1/` is the key docker login writes for the Hub.
        if path == "v1" || path == "v2" {
            path.clear();
        }
    }
    Some((host, port, path))
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let host: Vec<&str> = host.split('.').collect();
    pattern.len() == host.len() && pattern.iter().zip(&host).all(|(p, h)| *p == "*" || p == h)
}

impl Keyring {
    /// Adds the entries of a docker `config.json` (`{"auths": {KEY: {...}}}`) or of a legacy
    /// `.dockercfg` (`{KEY: {...}}`).
    pub fn add_docker_config(&mut self, text: &[u8]) -> Result<(), String> {
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| format!("not a docker config: {e}"))?;
        let auths = match value.get("auths") {
            Some(auths) => auths,
            None => &value,
        };
        let Some(auths) = auths.as_object() else {
            return Err("not a docker config: expected an object of registries".to_string());
        };
        for (key, entry) in auths {
            let Some((host, port, path)) = split_key(key) else {
                continue;
            };
            let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).unwrap_or("");
            let (mut username, mut password) = (field("username"), field("password"));
            let decoded;
            if username.is_empty() && !field("auth").is_empty() {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(field("auth"))
                    .map_err(|e| format!("the auth of {key:?} is not base64: {e}"))?;
                decoded = String::from_utf8(bytes)
                    .map_err(|_| format!("the auth of {key:?} is not UTF-8"))?;
                (username, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| format!("the auth of {key:?} is not USER:PASSWORD"))?;
            }
            if username.is_empty() {
                continue;
            }
            self.entries.push(Entry {
                host,
                port,
                path,
                credential: Credential {
                    username: username.to_string(),
                    password: password.to_string(),
                },
            });
        }
        Ok(())
    }

    /// Adds the docker config a pull Secret holds.
    pub fn add_secret(&mut self, secret: &Secret) -> Result<(), String> {
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let data = secret.data.as_ref();
        let config = [".dockerconfigjson", ".dockercfg"]
            .iter()
            .find_map(|key| data.and_then(|d| d.get(*key)));
        match config {
            Some(bytes) => self
                .add_docker_config(&bytes.0)
                .map_err(|e| format!("secret {name}: {e}")),
            None => Err(format!(
                "secret {name} holds neither .dockerconfigjson nor .dockercfg"
            )),
        }
    }

    /// Adds the docker config at `path`, if there is one.
    pub fn add_file(&mut self, path: &std::path::Path) -> Result<(), String> {
        match std::fs::read(path) {
            Ok(text) => self
                .add_docker_config(&text)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Appends another keyring's entries after this one's.
    pub fn extend(&mut self, other: Keyring) {
        self.entries.extend(other.entries);
    }

    /// The credentials for a normalized reference (`registry.local:5000/team/web:1`), most
    /// specific first.
    pub fn lookup(&self, reference: &str) -> Vec<Credential> {
        let Some((host, port, repository)) = split_key(reference) else {
            return Vec::new();
        };
        let mut matches: Vec<(usize, usize, &Credential)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.port == port
                    && host_matches(&e.host, &host)
                    && (e.path.is_empty()
                        || repository == e.path
                        || repository.starts_with(&format!("{}/", e.path))
                        || repository.starts_with(&format!("{}:", e.path))
                        || repository.starts_with(&format!("{}@", e.path)))
            })
            .map(|(i, e)| (e.host.len() + e.path.len(), i, &e.credential))
            .collect();
        matches.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<Credential> = Vec::new();
        for (_, _, credential) in matches {
            if !out.contains(credential) {
                out.push(credential.clone());
            }
        }
        out
    }

    /// The node's own keyring: `DATA_DIR/config.json`, as the kubelet reads one in its root
    /// directory, then the docker config of the user running the node.
    pub fn for_node(data_dir: &std::path::Path) -> Keyring {
        let mut keyring = Keyring::default();
        if let Err(e) = keyring.add_file(&data_dir.join("config.json")) {
            tracing::warn!("ignoring registry credentials: {e}");
        }
        keyring.extend(Keyring::for_user());
        keyring
    }

    /// The docker config of the user: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`.
    pub fn for_user() -> Keyring {
        let mut keyring = Keyring::default();
        let file = match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => Some(std::path::PathBuf::from(dir).join("config.json")),
            None => std::env::var_os("HOME")
                .map(|home| std::path::PathBuf::from(home).join(".docker/config.json")),
        };
        if let Some(file) = file
            && let Err(e) = keyring.add_file(&file)
        {
            tracing::warn!("ignoring registry credentials: {e}");
        }
        keyring
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(config: serde_json::Value) -> Keyring {
        let mut keyring = Keyring::default();
        keyring
            .add_docker_config(config.to_string().as_bytes())
            .unwrap();
        keyring
    }

    fn users(keyring: &Keyring, reference: &str) -> Vec<String> {
        keyring
            .lookup(reference)
            .into_iter()
            .map(|c| c.username)
            .collect()
    }

    #[test]
    fn keys_match_host_port_and_path() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:secret");
        let ring = keyring(serde_json::json!({"auths": {
            "registry.local:5000": {"auth": auth},
            "https://registry.local:5000/team": {"username": "team", "password": "pw"},
            "*.example.com": {"username": "wild", "password": "pw"},
            "https://index.docker.io/v1/": {"username": "hub", "password": "pw"},
        }}));
        assert_eq!(
            users(&ring, "registry.local:5000/team/web:1"),
            ["team", "bob"]
        );
        assert_eq!(users(&ring, "registry.local:5000/teamster:1"), ["bob"]);
        assert_eq!(
            ring.lookup("registry.local:5000/web:1")[0].password,
            "secret"
        );
        assert!(users(&ring, "registry.local/web:1").is_empty());
        assert_eq!(users(&ring, "eu.example.com/app:1"), ["wild"]);
        assert!(users(&ring, "a.eu.example.com/app:1").is_empty());
        assert_eq!(users(&ring, "docker.io/library/hello:latest"), ["hub"]);
    }

    #[test]
    fn legacy_dockercfg_and_bad_configs() {
        let ring = keyring(serde_json::json!({
            "registry.local": {"username": "old", "password": "pw"}
        }));
        assert_eq!(users(&ring, "registry.local/web:1"), ["old"]);
        let mut ring = Keyring::default();
        assert!(ring.add_docker_config(b"[1]").is_err());
        assert!(
            ring.add_docker_config(br#"{"auths": {"r": {"auth": "!!"}}}"#)
                .unwrap_err()
                .contains("not base64")
        );
    }

    #[test]
    fn secrets_hold_docker_configs() {
        let config =
            serde_json::json!({"auths": {"registry.local": {"username": "u", "password": "p"}}});
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pull"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config.to_string())}
        }))
        .unwrap();
        let mut ring = Keyring::default();
        ring.add_secret(&secret).unwrap();
        assert_eq!(users(&ring, "registry.local/web:1"), ["u"]);
        let empty: Secret =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).unwrap();
        assert!(ring.add_secret(&empty).unwrap_err().contains("secret x"));
    }
}
