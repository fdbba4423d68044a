//! `lantern.yaml`: parse, defaults, validation.
//!
//! Parsing is strict (`deny_unknown_fields`) and places serde errors at their
//! line and column; [`Config::validate`] then checks what serde cannot
//! (files exist, listeners differ, the client allow-list is not empty) and
//! reports every problem at once. `lantern check` and `lantern run` run the
//! same code.
//!
//! Relative paths are resolved against the directory of the config file (or
//! the working directory when running on embedded defaults).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::diag::{Problem, Problems, Source};

/// The whole configuration, with every default filled in.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Proxy listener. Default `127.0.0.1:3128`.
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`, `/ca.pem`). Default `127.0.0.1:9464`.
    pub admin_listen: SocketAddr,
    /// Where the CA and other state live. Default `./lantern-data`.
    pub data_dir: PathBuf,
    /// CA certificate and key. Default `<data_dir>/ca.pem` and `<data_dir>/ca.key`.
    pub ca: Option<CaConfig>,
    /// Directory holding `apps.yaml` and `detectors/`. Default: bundled rules.
    pub rules_dir: Option<PathBuf>,
    /// Policy file. Default: bundled policy.
    pub policy: Option<PathBuf>,
    /// HMAC key for acknowledgement tokens; shared by replicas. Created
    /// (32 random bytes, mode 0600) if absent. Default `<data_dir>/ack.key`.
    pub ack_key: Option<PathBuf>,
    /// Audit log settings.
    pub audit: AuditConfig,
    /// Which clients may use the proxy.
    pub clients: ClientsConfig,
    /// How lantern reaches upstream servers.
    pub upstream: UpstreamConfig,
    /// Listener limits and timeouts.
    pub proxy: ProxyConfig,
    /// Body inspection limits.
    pub inspect: InspectConfig,
    /// Who is asking: Basic auth, trusted header, network map.
    pub identity: crate::identity::IdentityConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 3128)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            data_dir: PathBuf::from("./lantern-data"),
            ca: None,
            rules_dir: None,
            policy: None,
            ack_key: None,
            audit: AuditConfig::default(),
            clients: ClientsConfig::default(),
            upstream: UpstreamConfig::default(),
            proxy: ProxyConfig::default(),
            inspect: InspectConfig::default(),
            identity: crate::identity::IdentityConfig::default(),
        }
    }
}

/// Paths of the CA certificate and private key (PEM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Audit log destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// JSON-lines file; `-` for stdout. Default `<data_dir>/audit.jsonl`.
    pub path: Option<PathBuf>,
    /// Rotate the file before it passes this size (`100MiB`). Default: never
    /// (leave rotation to logrotate and SIGHUP).
    #[serde(deserialize_with = "optional_byte_size")]
    pub max_bytes: Option<u64>,
    /// Rotated files kept (`audit.jsonl.1` …). Default 5.
    pub keep: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: None,
            max_bytes: None,
            keep: 5,
        }
    }
}

/// Client access control: lantern is never an open proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientsConfig {
    /// Client networks allowed to use the proxy. Default loopback only.
    pub allow: Vec<IpNet>,
}

impl Default for ClientsConfig {
    fn default() -> Self {
        ClientsConfig {
            allow: vec![
                "127.0.0.0/8".parse().expect("valid literal"),
                "::1/128".parse().expect("valid literal"),
            ],
        }
    }
}

/// Upstream connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Extra PEM roots trusted for upstream TLS, besides the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// `host:port` → `ip:port` overrides, like `curl --resolve`. Applies to
    /// every upstream connection: intercepted, tunnelled and plain HTTP.
    pub resolve: BTreeMap<String, SocketAddr>,
    /// TCP connect timeout. Default 10s.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Time to wait for upstream response headers. Default 300s (models think slowly).
    #[serde(deserialize_with = "duration")]
    pub response_timeout: Duration,
    /// Idle pooled connections kept per upstream host. Default 256: below
    /// the number of concurrent requests to one AI API, returned connections
    /// are dropped and every new request pays a TLS handshake.
    pub pool_max_idle_per_host: usize,
    /// Offer h2 to upstreams (ALPN). Default false: a pool of keep-alive
    /// HTTP/1.1 connections measured faster per request through lantern
    /// than one multiplexed h2 connection (benches/README.md).
    pub http2: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            ca_file: None,
            resolve: BTreeMap::new(),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(300),
            pool_max_idle_per_host: 256,
            http2: false,
        }
    }
}

/// Listener limits and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Ports `CONNECT` may reach. Default `[443]`.
    pub connect_ports: Vec<u16>,
    /// Concurrent client connections; more are refused with 503. Default 10000.
    pub max_connections: usize,
    /// Largest request head (request line + headers) accepted. Default 64 KiB.
    #[serde(deserialize_with = "byte_size")]
    pub max_header_bytes: u64,
    /// Time a client has to send a complete request head. Default 30s.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// Time a client has to finish the TLS handshake with lantern. Default 10s.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// A tunnel with no bytes in either direction for this long is closed. Default 10m.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish. Default 30s.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_ports: vec![443],
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// What to do when a body cannot be inspected (over the cap, undecodable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Forward uninspected (counted and logged).
    Open,
    /// Refuse the request (413 for bodies over the cap).
    Closed,
}

impl FailMode {
    /// The config spelling, also the `mode` label of metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Open => "open",
            FailMode::Closed => "closed",
        }
    }
}

/// Body inspection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InspectConfig {
    /// Largest request body buffered for inspection. Default 4 MiB.
    #[serde(deserialize_with = "byte_size")]
    pub max_body_bytes: u64,
    /// Over the cap: `open` forwards uninspected, `closed` refuses. Default `closed`.
    pub on_oversize: FailMode,
    /// Bodies buffered for inspection at once, over all connections. A
    /// request that would exceed it waits for room, then gets 503. Default
    /// 256 MiB.
    #[serde(deserialize_with = "byte_size")]
    pub max_buffered_bytes: u64,
}

impl Default for InspectConfig {
    fn default() -> Self {
        InspectConfig {
            max_body_bytes: 4 * 1024 * 1024,
            on_oversize: FailMode::Closed,
            max_buffered_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                file: path.to_path_buf(),
                line: 1,
                col: 1,
                message: format!("cannot read config: {e}"),
            }])
        })?;
        Config::from_yaml(path, &text)
    }

    /// Parses and validates config text that came from `path`.
    pub fn from_yaml(path: &Path, text: &str) -> Result<Config, Problems> {
        let src = Source { file: path, text };
        // An empty file is a valid config: every key defaults.
        let mut config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| Problems(vec![src.yaml_error(&e)]))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        let problems = config.validate(&src);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Problems(problems))
        }
    }

    /// The embedded defaults, as `lantern run` without `--config` uses them.
    pub fn embedded_defaults() -> Config {
        Config::default()
    }

    /// CA certificate and key paths, defaulting into the data dir.
    pub fn ca_paths(&self) -> CaConfig {
        self.ca.clone().unwrap_or_else(|| CaConfig {
            cert: self.data_dir.join("ca.pem"),
            key: self.data_dir.join("ca.key"),
        })
    }

    /// The acknowledgement key file, defaulting into the data dir.
    pub fn ack_key_path(&self) -> PathBuf {
        self.ack_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join("ack.key"))
    }

    /// Audit destination path (`-` for stdout), defaulting into the data dir.
    pub fn audit_path(&self) -> PathBuf {
        self.audit
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit.jsonl"))
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() && p.as_os_str() != "-" {
                *p = base.join(&*p);
            }
        };
        join(&mut self.data_dir);
        if let Some(ca) = &mut self.ca {
            join(&mut ca.cert);
            join(&mut ca.key);
        }
        for p in [
            &mut self.rules_dir,
            &mut self.policy,
            &mut self.ack_key,
            &mut self.audit.path,
            &mut self.upstream.ca_file,
            &mut self.identity.credentials,
        ]
        .into_iter()
        .flatten()
        {
            join(p);
        }
    }

    /// Checks what the types cannot; returns every problem found.
    fn validate(&self, src: &Source<'_>) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            problems.push(src.at_key(
                &["admin_listen"],
                format!("admin_listen must differ from listen ({})", self.listen),
            ));
        }
        if self.clients.allow.is_empty() {
            problems.push(src.at_key(
                &["clients", "allow"],
                "clients.allow is empty: no client could use the proxy",
            ));
        }
        if let Some(ca) = &self.ca {
            if ca.cert.exists() != ca.key.exists() {
                problems.push(src.at_key(
                    &["ca"],
                    format!(
                        "only one of ca.cert ({}) and ca.key ({}) exists: provide both, or neither to have lantern create them",
                        ca.cert.display(),
                        ca.key.display()
                    ),
                ));
            }
        }
        if let Some(file) = &self.upstream.ca_file {
            if let Err(e) = crate::tls::read_certs(file) {
                problems.push(src.at_key(&["upstream", "ca_file"], e.to_string()));
            }
        }
        for key in self.upstream.resolve.keys() {
            if crate::proxy::Target::parse_authority(key).is_none() {
                problems.push(src.at_key(
                    &["upstream", "resolve", key],
                    format!("upstream.resolve key {key:?} must be host:port"),
                ));
            }
        }
        for (key, path) in [("rules_dir", &self.rules_dir), ("policy", &self.policy)] {
            if let Some(p) = path {
                if !p.exists() {
                    problems
                        .push(src.at_key(&[key], format!("{key} {} does not exist", p.display())));
                }
            }
        }
        if self.proxy.connect_ports.is_empty() {
            problems.push(src.at_key(
                &["proxy", "connect_ports"],
                "proxy.connect_ports is empty: no CONNECT could succeed",
            ));
        }
        if self.proxy.max_connections == 0 {
            problems.push(src.at_key(
                &["proxy", "max_connections"],
                "proxy.max_connections must be at least 1",
            ));
        }
        if self.proxy.max_header_bytes < 8192 {
            problems.push(src.at_key(
                &["proxy", "max_header_bytes"],
                "proxy.max_header_bytes must be at least 8 KiB",
            ));
        }
        if self.inspect.max_body_bytes == 0 {
            problems.push(src.at_key(
                &["inspect", "max_body_bytes"],
                "inspect.max_body_bytes must be greater than 0",
            ));
        }
        if self.inspect.max_buffered_bytes < self.inspect.max_body_bytes {
            problems.push(src.at_key(
                &["inspect", "max_buffered_bytes"],
                "inspect.max_buffered_bytes must be at least inspect.max_body_bytes",
            ));
        }
        problems
    }
}

/// Durations as `500ms`, `10s`, `5m`, `8h`.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {s:?}: {e} (use e.g. 500ms, 10s, 5m)"
        ))
    })
}

/// Byte sizes as a number or a string with a unit: `65536`, `64KiB`, `4 MiB`, `1GB`.
fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Num(n) => Ok(n),
        Raw::Text(s) => parse_byte_size(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("invalid size {s:?} (use e.g. 65536, 64KiB, 4MiB)"))
        }),
    }
}

fn optional_byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    byte_size(d).map(Some)
}

fn parse_byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Problems> {
        Config::from_yaml(Path::new("/etc/lantern/lantern.yaml"), text)
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.port(), 3128);
        assert_eq!(c.admin_listen.port(), 9464);
        assert_eq!(c.proxy.connect_ports, vec![443]);
        assert_eq!(c.inspect.max_body_bytes, 4 << 20);
        assert_eq!(
            c.ca_paths().key,
            Path::new("/etc/lantern/./lantern-data/ca.key")
        );
    }

    #[test]
    fn unknown_key_is_located() {
        let err = parse("listen: 127.0.0.1:1\nlisten_typo: 3\n").unwrap_err();
        let s = err.to_string();
        assert!(
            s.starts_with("/etc/lantern/lantern.yaml:2:1: unknown field `listen_typo`"),
            "{s}"
        );
    }

    #[test]
    fn bad_value_is_located() {
        let err = parse("upstream:\n  connect_timeout: soon\n").unwrap_err();
        let s = err.to_string();
        assert!(s.contains("lantern.yaml:2:"), "{s}");
        assert!(s.contains("invalid duration"), "{s}");
        let err = parse("clients:\n  allow: [10.0.0.0/33]\n").unwrap_err();
        assert!(err.to_string().contains("lantern.yaml:2:"), "{err}");
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let err = parse(
            "listen: 127.0.0.1:5000\nadmin_listen: 127.0.0.1:5000\nclients:\n  allow: []\nupstream:\n  resolve: {\"nohost\": \"127.0.0.1:1\"}\n",
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert_eq!((err.0[0].line, err.0[0].col), (2, 1));
        assert_eq!((err.0[1].line, err.0[1].col), (4, 3));
        assert_eq!(err.0[2].line, 6);
    }

    #[test]
    fn sizes_and_durations() {
        let c = parse(
            "inspect: {max_body_bytes: 8MiB, on_oversize: open}\nproxy: {idle_timeout: 90s}\n",
        )
        .unwrap();
        assert_eq!(c.inspect.max_body_bytes, 8 << 20);
        assert_eq!(c.inspect.on_oversize, FailMode::Open);
        assert_eq!(c.proxy.idle_timeout, Duration::from_secs(90));
        assert_eq!(parse_byte_size("4 MiB"), Some(4 << 20));
        assert_eq!(parse_byte_size("lots"), None);
        assert_eq!(parse_byte_size("99999999999999999999GiB"), None);
    }

    #[test]
    fn the_buffer_budget_must_hold_one_body() {
        let err =
            parse("inspect:\n  max_body_bytes: 8MiB\n  max_buffered_bytes: 4MiB\n").unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(err.0[0].message.contains("max_buffered_bytes"), "{err}");
        assert_eq!(err.0[0].line, 3);
        let c = parse("inspect: {max_buffered_bytes: 1GiB}\n").unwrap();
        assert_eq!(c.inspect.max_buffered_bytes, 1 << 30);
    }
}
