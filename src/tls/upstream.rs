//! rustls client configuration for upstream connections: the webpki roots
//! plus any extra roots from `upstream.ca_file`. Certificates are always
//! verified; there is no "insecure" switch.

use rustls::{ClientConfig, RootCertStore};
use std::path::Path;

use super::{provider, read_certs, Error};

/// A client config trusting webpki roots and `extra_ca`, offering `alpn`.
pub fn client_config(extra_ca: Option<&Path>, alpn: &[&[u8]]) -> Result<ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|e| Error::BadPem {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
