//! The lantern certificate authority: loaded from disk or created on first
//! start (ECDSA P-256, key file mode 0600), and the minting of per-host leaf
//! certificates, cached in a bounded LRU with a time-to-live.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use time::OffsetDateTime;

use super::{provider, Error};

/// How many leaf configs the cache holds by default.
pub const DEFAULT_LEAF_CACHE: usize = 1024;
/// Leafs are re-minted after this long (they are valid for 30 days).
const LEAF_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Leaf validity starts this far in the past, for clients with skewed clocks.
const BACKDATE: time::Duration = time::Duration::seconds(60);
const LEAF_VALIDITY: time::Duration = time::Duration::days(30);

/// The CA plus the leaf key and cache used to intercept TLS.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    /// One key for every leaf: minting then costs a signature, not a keygen.
    leaf_key: KeyPair,
    cache: LeafCache,
}

/// Outcome of [`CertificateAuthority::load_or_create`].
pub enum Loaded {
    Existing,
    Created,
}

impl CertificateAuthority {
    /// Loads the CA at `cert`/`key`, or creates both if neither exists.
    pub fn load_or_create(cert: &Path, key: &Path) -> Result<(Self, Loaded), Error> {
        if cert.exists() || key.exists() {
            return Ok((Self::load(cert, key)?, Loaded::Existing));
        }
        let (cert_pem, key_pem) = generate_ca()?;
        if let Some(dir) = cert.parent() {
            create_dir(dir)?;
        }
        if let Some(dir) = key.parent() {
            create_dir(dir)?;
        }
        write_private(key, key_pem.as_bytes())?;
        std::fs::write(cert, cert_pem.as_bytes()).map_err(|source| Error::Io {
            path: cert.to_path_buf(),
            source,
        })?;
        Ok((Self::from_pem(&cert_pem, &key_pem, cert)?, Loaded::Created))
    }

    /// Loads an existing CA certificate and key (PEM).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, Error> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        Self::from_pem(&read(cert)?, &read(key)?, cert)
    }

    /// A fresh in-memory CA (tests and benches).
    pub fn generate() -> Result<Self, Error> {
        let (cert_pem, key_pem) = generate_ca()?;
        Self::from_pem(&cert_pem, &key_pem, Path::new("<memory>"))
    }

    fn from_pem(cert_pem: &str, key_pem: &str, origin: &Path) -> Result<Self, Error> {
        let bad = |message: String| Error::BadPem {
            path: origin.to_path_buf(),
            message,
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| bad(format!("CA key: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| bad(format!("CA certificate: {e}")))?;
        let cert_der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .ok_or_else(|| bad("no certificate in CA file".into()))?
            .map_err(|e| bad(e.to_string()))?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.to_string(),
            cert_der,
            issuer,
            leaf_key: KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            cache: LeafCache::new(DEFAULT_LEAF_CACHE),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A rustls server config presenting a leaf for `host` (ALPN h2 and
    /// http/1.1), from the cache when fresh.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, Error> {
        if let Some(hit) = self.cache.get(host) {
            return Ok(hit);
        }
        let config = Arc::new(self.mint(host)?);
        self.cache.put(host, config.clone());
        Ok(config)
    }

    /// Mints a leaf for `host` without touching the cache.
    pub fn mint(&self, host: &str) -> Result<ServerConfig, Error> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into()?),
        }];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let leaf = params.signed_by(&self.leaf_key, &self.issuer)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), self.cert_der.clone()], key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// A bounded LRU of leaf server configs with a time-to-live.
pub struct LeafCache {
    inner: Mutex<lru::LruCache<String, (Instant, Arc<ServerConfig>)>>,
}

impl LeafCache {
    /// A cache holding at most `capacity` hosts.
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        LeafCache {
            inner: Mutex::new(lru::LruCache::new(capacity)),
        }
    }

    fn get(&self, host: &str) -> Option<Arc<ServerConfig>> {
        let mut cache = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(host) {
            Some((at, config)) if at.elapsed() < LEAF_CACHE_TTL => Some(config.clone()),
            Some(_) => {
                cache.pop(host);
                None
            }
            None => None,
        }
    }

    fn put(&self, host: &str, config: Arc<ServerConfig>) {
        let mut cache = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        cache.put(host.to_string(), (Instant::now(), config));
    }

    /// Number of cached hosts.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn generate_ca() -> Result<(String, String), Error> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "lantern CA");
    dn.push(DnType::OrganizationName, "lantern");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a secret file readable by the owner only.
fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(data).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_ca_with_private_key_mode_and_reloads_it() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("sub/ca.pem");
        let key = dir.path().join("sub/ca.key");
        let (ca, loaded) = CertificateAuthority::load_or_create(&cert, &key).unwrap();
        assert!(matches!(loaded, Loaded::Created));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, loaded) = CertificateAuthority::load_or_create(&cert, &key).unwrap();
        assert!(matches!(loaded, Loaded::Existing));
        assert_eq!(ca.cert_pem(), again.cert_pem());
    }

    #[test]
    fn leaf_configs_are_cached_and_bounded() {
        let ca = CertificateAuthority::generate().unwrap();
        let a = ca.server_config("api.openai.com").unwrap();
        let b = ca.server_config("api.openai.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        let small = LeafCache::new(2);
        for host in ["a.test", "b.test", "c.test"] {
            small.put(host, a.clone());
        }
        assert_eq!(small.len(), 2);
        assert!(small.get("a.test").is_none());
    }

    #[test]
    fn garbage_ca_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("ca.pem");
        let key = dir.path().join("ca.key");
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem either").unwrap();
        let err = CertificateAuthority::load_or_create(&cert, &key)
            .err()
            .unwrap();
        assert!(err.to_string().contains("CA key"), "{err}");
    }
}
