//! Acknowledgement tokens and the grants they unlock.
//!
//! A coach message links to `/ack/<token>`. The token is a claim (user,
//! app, detector families, incident, expiry) signed with HMAC-SHA256, so any
//! replica holding the key accepts it and nobody can forge one for another
//! user or app. Submitting a justification records a grant: the same
//! user × app × family is allowed until the grant expires. Grants live in
//! the replica's memory (bounded); pin users to a replica (Service
//! `sessionAffinity: ClientIP`) when running several.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Most grants held at once; beyond it expired ones are pruned, then the
/// oldest are dropped (people get coached again, nothing is let through).
pub const MAX_GRANTS: usize = 100_000;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub user: String,
    pub app: String,
    /// Detector families the acknowledgement covers (`secret`, `pii`, or `app` for app-level rules).
    pub families: Vec<String>,
    /// Detector ids and counts, for the acknowledgement page.
    pub detectors: Vec<(String, u32)>,
    pub incident: String,
    /// Unix seconds after which the token is refused.
    pub expires: u64,
    /// How long the grant lasts once acknowledged, seconds.
    pub ttl: u64,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

/// The HMAC key shared by replicas.
pub struct AckKey {
    key: hmac::Key,
}

impl AckKey {
    pub fn from_bytes(secret: &[u8]) -> AckKey {
        AckKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// Loads the key file (its bytes, trimmed), or creates one with 32
    /// random bytes, mode 0600.
    pub fn load_or_create(path: &Path) -> std::io::Result<AckKey> {
        if let Ok(bytes) = std::fs::read(path) {
            let trimmed = bytes.trim_ascii();
            if trimmed.len() < 16 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: the acknowledgement key needs at least 16 bytes",
                        path.display()
                    ),
                ));
            }
            return Ok(AckKey::from_bytes(trimmed));
        }
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| std::io::Error::other("no system randomness"))?;
        let encoded = B64.encode(secret);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(path)?.write_all(encoded.as_bytes())?;
        Ok(AckKey::from_bytes(encoded.as_bytes()))
    }

    /// Signs a claim into a URL-safe token.
    pub fn issue(&self, claim: &Claim) -> String {
        let payload = serde_json::to_vec(claim).unwrap_or_default();
        let tag = hmac::sign(&self.key, &payload);
        format!("{}.{}", B64.encode(&payload), B64.encode(tag.as_ref()))
    }

    /// Checks signature and expiry.
    pub fn verify(&self, token: &str) -> Result<Claim, TokenError> {
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, &payload, &tag).map_err(|_| TokenError::BadSignature)?;
        let claim: Claim = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claim.expires < unix_now() {
            return Err(TokenError::Expired);
        }
        Ok(claim)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Acknowledged user × app × family triples and when they lapse.
#[derive(Default)]
pub struct Grants {
    inner: Mutex<HashMap<(String, String, String), Instant>>,
}

impl Grants {
    /// Records an acknowledgement for every family in the claim.
    pub fn grant(&self, claim: &Claim) {
        let until = Instant::now() + Duration::from_secs(claim.ttl);
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() + claim.families.len() > MAX_GRANTS {
            let now = Instant::now();
            map.retain(|_, t| *t > now);
            while map.len() + claim.families.len() > MAX_GRANTS {
                let Some(oldest) = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone())
                else {
                    break;
                };
                map.remove(&oldest);
            }
        }
        for family in &claim.families {
            map.insert(
                (claim.user.clone(), claim.app.clone(), family.clone()),
                until,
            );
        }
    }

    /// True when every family is acknowledged and unexpired for user × app.
    pub fn allows<'a>(
        &self,
        user: &str,
        app: &str,
        mut families: impl Iterator<Item = &'a str>,
    ) -> bool {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        families.all(|f| {
            map.get(&(user.to_string(), app.to_string(), f.to_string()))
                .is_some_and(|t| *t > now)
        })
    }
}

/// Key and grants together: what issuing and honouring acknowledgements needs.
pub struct Acks {
    pub key: AckKey,
    pub grants: Grants,
}

impl Acks {
    pub fn new(key: AckKey) -> Acks {
        Acks {
            key,
            grants: Grants::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(user: &str, expires: u64) -> Claim {
        Claim {
            user: user.into(),
            app: "chatgpt".into(),
            families: vec!["pii".into()],
            detectors: vec![("pii.email".into(), 2)],
            incident: "abc".into(),
            expires,
            ttl: 3600,
        }
    }

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let key = AckKey::from_bytes(b"0123456789abcdef0123");
        let token = key.issue(&claim("ann", unix_now() + 60));
        assert_eq!(key.verify(&token).unwrap().user, "ann");
        // Another user's claim with ann's signature.
        let forged_payload =
            B64.encode(serde_json::to_vec(&claim("bob", unix_now() + 60)).unwrap());
        let tag = token.split_once('.').unwrap().1;
        assert_eq!(
            key.verify(&format!("{forged_payload}.{tag}")),
            Err(TokenError::BadSignature)
        );
        let other = AckKey::from_bytes(b"another key entirely!");
        assert_eq!(other.verify(&token), Err(TokenError::BadSignature));
        assert_eq!(key.verify("garbage"), Err(TokenError::Malformed));
        assert_eq!(key.verify("a.b.c"), Err(TokenError::Malformed));
        let expired = key.issue(&claim("ann", unix_now() - 1));
        assert_eq!(key.verify(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn grants_cover_user_app_and_family_only() {
        let grants = Grants::default();
        grants.grant(&claim("ann", 0));
        assert!(grants.allows("ann", "chatgpt", ["pii"].into_iter()));
        assert!(!grants.allows("bob", "chatgpt", ["pii"].into_iter()));
        assert!(!grants.allows("ann", "claude", ["pii"].into_iter()));
        assert!(!grants.allows("ann", "chatgpt", ["pii", "secret"].into_iter()));
        let mut short = claim("cy", 0);
        short.ttl = 0;
        grants.grant(&short);
        assert!(!grants.allows("cy", "chatgpt", ["pii"].into_iter()));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ack.key");
        let a = AckKey::load_or_create(&path).unwrap();
        let b = AckKey::load_or_create(&path).unwrap();
        let token = a.issue(&claim("ann", unix_now() + 60));
        assert!(b.verify(&token).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::write(&path, "short").unwrap();
        assert!(AckKey::load_or_create(&path).is_err());
    }
}
