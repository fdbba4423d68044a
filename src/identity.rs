//! Who is making a request: a user authenticated with Proxy-Authorization
//! Basic (argon2 hashes), a user named by a trusted header from an upstream
//! proxy, a user mapped from the client network, or — when none applies —
//! the client address with the group `unknown`, which policy can match.
//!
//! ```yaml
//! identity:
//!   require_auth: false                 # true: 407 without valid credentials
//!   credentials: ./users.yaml           # users: {alice: {password: "$argon2id$…", groups: [finance]}}
//!   trusted_header: {name: x-authenticated-user, groups_name: x-authenticated-groups, from: [10.0.0.0/8]}
//!   networks: [{cidr: 10.1.0.0/16, user: branch-office, groups: [sales]}]
//!   groups: {finance: [bob]}
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http::header::{HeaderMap, PROXY_AUTHORIZATION};
use ipnet::IpNet;
use serde::Deserialize;

use crate::diag::{Problem, Problems, Source};

/// Group of requests nobody could be identified for.
pub const UNKNOWN_GROUP: &str = "unknown";
/// Verified credentials are remembered this long (argon2 is slow on purpose).
const VERIFIED_TTL: Duration = Duration::from_secs(300);
/// Most remembered credentials.
const VERIFIED_MAX: usize = 10_000;

/// `identity:` in lantern.yaml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Refuse (407) requests without valid Proxy-Authorization.
    pub require_auth: bool,
    /// YAML file of users with argon2 password hashes and groups.
    pub credentials: Option<PathBuf>,
    /// A header naming the user, trusted only from these networks.
    pub trusted_header: Option<TrustedHeader>,
    /// Client networks mapped to a user and groups.
    pub networks: Vec<NetworkIdentity>,
    /// Extra group membership: group → users.
    pub groups: BTreeMap<String, Vec<String>>,
}

/// A user header set by an upstream proxy that already authenticated people.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedHeader {
    pub name: String,
    /// Optional header with comma-separated groups.
    pub groups_name: Option<String>,
    /// Only connections from these networks may set it.
    pub from: Vec<IpNet>,
}

/// A network whose clients count as one user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkIdentity {
    pub cidr: IpNet,
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    users: BTreeMap<String, UserEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    password: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    /// True when the user proved who they are (Basic auth or trusted header).
    pub authenticated: bool,
}

/// Why a request must be challenged (407).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("proxy authentication required")]
    Missing,
    #[error("wrong user name or password")]
    Invalid,
}

/// Compiled identity sources.
pub struct Identities {
    config: IdentityConfig,
    users: HashMap<String, (String, Vec<String>)>,
    verified: Mutex<HashMap<String, (Identity, Instant)>>,
}

impl Identities {
    /// Loads the credentials file (if any) and checks the hashes parse.
    pub fn load(config: &IdentityConfig) -> Result<Identities, Problems> {
        let mut users = HashMap::new();
        if let Some(path) = &config.credentials {
            users = load_credentials(path)?;
        }
        if config.require_auth && users.is_empty() {
            return Err(Problems(vec![Problem {
                file: config
                    .credentials
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("lantern.yaml")),
                line: 1,
                col: 1,
                message: "identity.require_auth needs identity.credentials with at least one user"
                    .into(),
            }]));
        }
        Ok(Identities {
            config: config.clone(),
            users,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Resolves the identity of a request from `client` with `headers`.
    pub async fn resolve(
        self: &Arc<Self>,
        client: IpAddr,
        headers: &HeaderMap,
    ) -> Result<Identity, AuthError> {
        let client = client.to_canonical();
        if let Some(value) = headers
            .get(PROXY_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            if !self.users.is_empty() {
                let this = self.clone();
                let value = value.to_string();
                return tokio::task::spawn_blocking(move || this.verify_basic(&value))
                    .await
                    .unwrap_or(Err(AuthError::Invalid));
            }
        }
        if self.config.require_auth {
            return Err(AuthError::Missing);
        }
        if let Some(trusted) = &self.config.trusted_header {
            if trusted.from.iter().any(|n| n.contains(&client)) {
                if let Some(user) = headers
                    .get(trusted.name.as_str())
                    .and_then(|v| v.to_str().ok())
                {
                    let mut groups: Vec<String> = trusted
                        .groups_name
                        .as_deref()
                        .and_then(|g| headers.get(g))
                        .and_then(|v| v.to_str().ok())
                        .map(|v| {
                            v.split(',')
                                .map(|g| g.trim().to_string())
                                .filter(|g| !g.is_empty())
                                .collect()
                        })
                        .unwrap_or_default();
                    groups.extend(self.groups_of(user));
                    return Ok(self.finish(user.trim().to_string(), groups, true));
                }
            }
        }
        if let Some(net) = self
            .config
            .networks
            .iter()
            .find(|n| n.cidr.contains(&client))
        {
            let mut groups = net.groups.clone();
            groups.extend(self.groups_of(&net.user));
            return Ok(self.finish(net.user.clone(), groups, false));
        }
        Ok(Identity {
            user: client.to_string(),
            groups: vec![UNKNOWN_GROUP.to_string()],
            authenticated: false,
        })
    }

    fn finish(&self, user: String, mut groups: Vec<String>, authenticated: bool) -> Identity {
        groups.sort_unstable();
        groups.dedup();
        Identity {
            user,
            groups,
            authenticated,
        }
    }

    fn groups_of(&self, user: &str) -> impl Iterator<Item = String> + '_ {
        let user = user.to_string();
        self.config
            .groups
            .iter()
            .filter(move |(_, members)| members.contains(&user))
            .map(|(g, _)| g.clone())
    }

    /// Checks `Basic base64(user:password)` against the argon2 hash.
    fn verify_basic(&self, header: &str) -> Result<Identity, AuthError> {
        if let Some((identity, at)) = self.lock_verified().get(header) {
            if at.elapsed() < VERIFIED_TTL {
                return Ok(identity.clone());
            }
        }
        let encoded = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
            .ok_or(AuthError::Invalid)?;
        let decoded = B64.decode(encoded.trim()).map_err(|_| AuthError::Invalid)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Invalid)?;
        let (user, password) = decoded.split_once(':').ok_or(AuthError::Invalid)?;
        let (hash, groups) = self.users.get(user).ok_or(AuthError::Invalid)?;
        let parsed = PasswordHash::new(hash).map_err(|_| AuthError::Invalid)?;
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .map_err(|_| AuthError::Invalid)?;
        let mut all = groups.clone();
        all.extend(self.groups_of(user));
        let identity = self.finish(user.to_string(), all, true);
        let mut verified = self.lock_verified();
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(header.to_string(), (identity.clone(), Instant::now()));
        Ok(identity)
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Identity, Instant)>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn load_credentials(path: &Path) -> Result<HashMap<String, (String, Vec<String>)>, Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![Problem {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read credentials: {e}"),
        }])
    })?;
    let src = Source {
        file: path,
        text: &text,
    };
    let file: CredentialsFile =
        serde_yaml::from_str(&text).map_err(|e| Problems(vec![src.yaml_error(&e)]))?;
    let mut problems = Vec::new();
    let mut users = HashMap::new();
    for (name, entry) in file.users {
        if PasswordHash::new(&entry.password).is_err() {
            problems.push(src.at_key(
                &["users", &name, "password"],
                format!(
                    "user {name:?}: password must be an argon2 PHC hash (lantern hash-password)"
                ),
            ));
        }
        users.insert(name, (entry.password, entry.groups));
    }
    if problems.is_empty() {
        Ok(users)
    } else {
        Err(Problems(problems))
    }
}

/// An argon2id PHC hash of `password`, for credentials files.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", B64.encode(format!("{user}:{password}")))
    }

    fn identities(require_auth: bool) -> (Arc<Identities>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("users.yaml");
        let hash = hash_password("s3cret").unwrap();
        std::fs::write(
            &creds,
            format!("users:\n  alice:\n    password: \"{hash}\"\n    groups: [finance]\n"),
        )
        .unwrap();
        let config = IdentityConfig {
            require_auth,
            credentials: Some(creds),
            trusted_header: Some(TrustedHeader {
                name: "x-user".into(),
                groups_name: Some("x-groups".into()),
                from: vec!["10.0.0.0/8".parse().unwrap()],
            }),
            networks: vec![NetworkIdentity {
                cidr: "192.168.1.0/24".parse().unwrap(),
                user: "lab".into(),
                groups: vec!["research".into()],
            }],
            groups: BTreeMap::from([("admins".to_string(), vec!["carol".to_string()])]),
        };
        (Arc::new(Identities::load(&config).unwrap()), dir)
    }

    #[tokio::test]
    async fn basic_auth_verifies_argon2_and_caches() {
        let (ids, _dir) = identities(true);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ok = ids
            .resolve(
                ip,
                &headers(&[("proxy-authorization", &basic("alice", "s3cret"))]),
            )
            .await
            .unwrap();
        assert_eq!(
            (ok.user.as_str(), ok.groups.clone(), ok.authenticated),
            ("alice", vec!["finance".to_string()], true)
        );
        let again = ids
            .resolve(
                ip,
                &headers(&[("proxy-authorization", &basic("alice", "s3cret"))]),
            )
            .await;
        assert_eq!(again.unwrap(), ok);
        for bad in [
            basic("alice", "wrong"),
            basic("mallory", "s3cret"),
            "Basic !!!".into(),
            "Bearer x".into(),
        ] {
            assert_eq!(
                ids.resolve(ip, &headers(&[("proxy-authorization", &bad)]))
                    .await,
                Err(AuthError::Invalid),
                "{bad}"
            );
        }
        assert_eq!(
            ids.resolve(ip, &HeaderMap::new()).await,
            Err(AuthError::Missing)
        );
    }

    #[tokio::test]
    async fn trusted_header_only_from_trusted_networks() {
        let (ids, _dir) = identities(false);
        let h = headers(&[("x-user", "carol"), ("x-groups", "eng, ops")]);
        let trusted = ids.resolve("10.1.2.3".parse().unwrap(), &h).await.unwrap();
        assert_eq!(trusted.user, "carol");
        assert_eq!(trusted.groups, vec!["admins", "eng", "ops"]);
        let spoofed = ids
            .resolve("172.16.0.9".parse().unwrap(), &h)
            .await
            .unwrap();
        assert_eq!(spoofed.user, "172.16.0.9");
        assert_eq!(spoofed.groups, vec![UNKNOWN_GROUP]);
        let lab = ids
            .resolve("192.168.1.20".parse().unwrap(), &h)
            .await
            .unwrap();
        assert_eq!((lab.user.as_str(), lab.authenticated), ("lab", false));
    }

    #[test]
    fn bad_hashes_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("users.yaml");
        std::fs::write(&creds, "users:\n  bob:\n    password: plaintext\n").unwrap();
        let config = IdentityConfig {
            credentials: Some(creds),
            ..Default::default()
        };
        let err = Identities::load(&config).err().unwrap();
        assert!(
            err.to_string().contains("users.yaml:3:5: user \"bob\""),
            "{err}"
        );
    }
}
