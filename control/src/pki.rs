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
    #[error("setting up TLS: {0}")]
    Tls(String),
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

/// Writes a file only its owner can read, atomically: it holds keys or credentials.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Private from the first byte, not chmod-ed after.
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Makes a directory only its owner can enter (and tightens an existing one).
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_private(path, contents).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Whether a PEM certificate was issued by `ca_pem`'s subject and stays valid for 30 more days.
fn still_good(cert_pem: &str, ca_pem: &str) -> bool {
    use x509_parser::pem::parse_x509_pem;
    let parse = |pem: &str| parse_x509_pem(pem.as_bytes()).ok().map(|(_, p)| p);
    let (Some(cert), Some(ca)) = (parse(cert_pem), parse(ca_pem)) else {
        return false;
    };
    let (Ok(cert), Ok(ca)) = (cert.parse_x509(), ca.parse_x509()) else {
        return false;
    };
    let renew_at = chrono::Utc::now().timestamp() + 30 * 24 * 3600;
    cert.issuer() == ca.subject()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
        && cert.validity().not_after.timestamp() > renew_at
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
    /// Loads the cluster CA in `dir`, making one on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        Self::load_or_create_named(dir, "skiff-ca")
    }

    /// Loads the CA in `dir`, making one named `name` (with its time of making) on first use.
    pub fn load_or_create_named(dir: &Path, name: &str) -> Result<Self, PkiError> {
        private_dir(dir).map_err(|source| PkiError::Io {
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
        let mut subject = DistinguishedName::new();
        subject.push(
            DnType::CommonName,
            format!("{name}@{}", chrono::Utc::now().timestamp()),
        );
        params.distinguished_name = subject;
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
            && still_good(&cert_pem, &self.ca.cert_pem)
        {
            return Ok(CertifiedKey { cert_pem, key_pem });
        }
        let out = self.issue_serving("skiff-apiserver", names)?;
        write(&key_path, &out.key_pem)?;
        write(&cert_path, &out.cert_pem)?;
        write(&names_path, &wanted)?;
        Ok(out)
    }

    /// A new serving certificate for `names` (DNS names or IP addresses), kept nowhere.
    pub fn issue_serving(
        &self,
        common_name: &str,
        names: &[String],
    ) -> Result<CertifiedKey, PkiError> {
        let key = KeyPair::generate().map_err(cert_error("serving key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
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
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
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

    #[test]
    fn a_serving_certificate_from_another_ca_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let first = Authority::load_or_create(dir.path()).unwrap();
        let names = vec!["localhost".to_string()];
        let old = first.serving(&names).unwrap();
        std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
        std::fs::remove_file(dir.path().join("ca.key")).unwrap();
        let second = Authority::load_or_create(dir.path()).unwrap();
        let new = second.serving(&names).unwrap();
        assert_ne!(old.cert_pem, new.cert_pem);
        assert!(still_good(&new.cert_pem, &second.ca.cert_pem));
        assert!(!still_good(&old.cert_pem, &second.ca.cert_pem));
    }

    #[cfg(unix)]
    #[test]
    fn keys_and_their_directory_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        Authority::load_or_create(&tls).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tls), 0o700);
        assert_eq!(mode(&tls.join("ca.key")), 0o600);
    }
}
