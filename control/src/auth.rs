//! Authentication: who a request comes from. Client certificates signed by the cluster CA name a
//! user (CommonName) and groups (Organization), as in Kubernetes; in-process clients carry their
//! identity in the request extensions.

use x509_parser::prelude::{FromDer, X509Certificate};

/// An authenticated user, as Kubernetes' `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group with every permission.
pub const MASTERS: &str = "system:masters";

impl UserInfo {
    /// A user named `name` in `groups` (plus `system:authenticated`).
    pub fn new(name: &str, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_string());
        }
        UserInfo {
            name: name.to_string(),
            groups,
        }
    }

    /// The user a verified client certificate names, if it names one.
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = cert.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?;
        let groups: Vec<&str> = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .collect();
        Some(UserInfo::new(name, &groups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn client_certificate_names_user_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::pki::Authority::load_or_create(dir.path()).unwrap();
        let client = ca.client("admin", &[MASTERS]).unwrap();
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
        let user = UserInfo::from_certificate(&der).unwrap();
        assert_eq!(user.name, "admin");
        assert_eq!(
            user.groups,
            vec![MASTERS.to_string(), AUTHENTICATED.to_string()]
        );
    }
}
