//! The cluster's certificates: a CA made on first start and kept in the data directory, the API
//! server's serving certificate (re-issued when its names change) and client certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A failure reading or making certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("making certificate {what}: {source}")]
    Certificate { what: String, source: rcgen::Error },
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster CA, loaded from or written to `<dir>/ca.crt` and `<dir>/ca.key`.
pub struct Authority {
    dir: PathBuf,
    pub ca: CertifiedKey,
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes a file readable by its owner only when it holds a key.
fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

fn validity(params: &mut CertificateParams, years: i32) {
    use chrono::Datelike;
    let now = chrono::Utc::now();
    // A day of slack absorbs clock skew between server and clients.
    let start = now - chrono::Duration::days(1);
    params.not_before = rcgen::date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
    params.not_after = rcgen::date_time_ymd(now.year() + years, now.month() as u8, 1);
}

fn cert_error(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Certificate {
        what: what.to_string(),
        source,
    }
}

impl Authority {
    /// Loads the CA in `dir`, making one on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?) {
            return Ok(Authority {
                dir: dir.to_path_buf(),
                ca: CertifiedKey { cert_pem, key_pem },
            });
        }
        let key = KeyPair::generate().map_err(cert_error("CA key"))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            format!("skiff-ca@{}", chrono::Utc::now().timestamp()),
        );
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 10);
        let cert = params.self_signed(&key).map_err(cert_error("CA"))?;
        let ca = CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        write(&key_path, &ca.key_pem)?;
        write(&cert_path, &ca.cert_pem)?;
        Ok(Authority {
            dir: dir.to_path_buf(),
            ca,
        })
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let key = KeyPair::from_pem(&self.ca.key_pem).map_err(cert_error("CA key"))?;
        Issuer::from_ca_cert_pem(&self.ca.cert_pem, key).map_err(cert_error("CA"))
    }

    /// The serving certificate for `names` (DNS names or IP addresses), reused while they match.
    pub fn serving(&self, names: &[String]) -> Result<CertifiedKey, PkiError> {
        let (cert_path, key_path, names_path) = (
            self.dir.join("serving.crt"),
            self.dir.join("serving.key"),
            self.dir.join("serving.names"),
        );
        let wanted = names.join(",");
        if read(&names_path)?.as_deref() == Some(wanted.as_str())
            && let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?)
        {
            return Ok(CertifiedKey { cert_pem, key_pem });
        }
        let key = KeyPair::generate().map_err(cert_error("serving key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "skiff-apiserver");
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(cert_error("serving"))?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, 1);
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(cert_error("serving"))?;
        let out = CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        write(&key_path, &out.key_pem)?;
        write(&cert_path, &out.cert_pem)?;
        write(&names_path, &wanted)?;
        Ok(out)
    }

    /// A client certificate naming `user` (CommonName) in `groups` (Organization), as Kubernetes reads them.
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<CertifiedKey, PkiError> {
        let key = KeyPair::generate().map_err(cert_error(user))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        for group in groups {
            dn.push(DnType::OrganizationName, *group);
        }
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, 1);
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(cert_error(user))?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Authority::load_or_create(dir.path()).unwrap();
        let second = Authority::load_or_create(dir.path()).unwrap();
        assert_eq!(first.ca.cert_pem, second.ca.cert_pem);
    }

    #[test]
    fn serving_certificate_is_reissued_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::load_or_create(dir.path()).unwrap();
        let a = ca
            .serving(&["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let b = ca
            .serving(&["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let c = ca
            .serving(&["localhost".into(), "example.test".into()])
            .unwrap();
        assert_eq!(a.cert_pem, b.cert_pem);
        assert_ne!(a.cert_pem, c.cert_pem);
    }
}
