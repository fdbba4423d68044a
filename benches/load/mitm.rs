//! mitmproxy as the comparison: `mitmdump` in a child process with
//! `benches/mitm_addon.py`, which sends every upstream connection to the
//! mock upstream and answers 403 when the body matches a credential regex.
//!
//! Found at `LOAD_MITMDUMP`, else `target/mitm-venv/bin/mitmdump`; when it
//! is not there (or `LOAD_MITM=0`), the mitm paths are skipped with a note.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::BoxError;

/// How long mitmdump may take to listen and write its CA.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Mitm {
    pub addr: SocketAddr,
    /// mitmproxy's CA, generated into its confdir at first start.
    pub ca_pem: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Mitm {
    /// Where mitmdump should be, and why it is not used when it is not.
    pub fn locate() -> Result<PathBuf, String> {
        if std::env::var("LOAD_MITM").is_ok_and(|v| v == "0") {
            return Err("LOAD_MITM=0".into());
        }
        let path = match std::env::var_os("LOAD_MITMDUMP") {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mitm-venv/bin/mitmdump"),
        };
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "no mitmdump at {} (python3 -m venv target/mitm-venv && target/mitm-venv/bin/pip install mitmproxy)",
                path.display()
            ))
        }
    }

    /// Starts mitmdump on a free loopback port, trusting `upstream_ca`
    /// (a PEM file) for its upstream connections, which all go to `upstream`.
    pub async fn start(
        mitmdump: &Path,
        upstream: SocketAddr,
        upstream_ca: &Path,
    ) -> Result<Mitm, BoxError> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let addon = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/mitm_addon.py");
        let log = std::fs::File::create(dir.path().join("mitmdump.log"))?;
        let child = Command::new(mitmdump)
            .args(["--listen-host", "127.0.0.1", "--listen-port"])
            .arg(port.to_string())
            .arg("--set")
            .arg(format!("confdir={}", dir.path().display()))
            .arg("--set")
            .arg(format!(
                "ssl_verify_upstream_trusted_ca={}",
                upstream_ca.display()
            ))
            .args(["--set", "connection_strategy=lazy"])
            .args(["--set", "flow_detail=0", "--set", "termlog_verbosity=warn"])
            .arg("--set")
            .arg(format!("bench_upstream={upstream}"))
            .arg("-s")
            .arg(&addon)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", mitmdump.display()))?;
        let mut mitm = Mitm {
            addr,
            ca_pem: String::new(),
            child,
            dir,
        };
        let ca_file = mitm.dir.path().join("mitmproxy-ca-cert.pem");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = mitm.child.try_wait()? {
                return Err(format!("mitmdump exited ({status}): {}", mitm.log_tail()).into());
            }
            if ca_file.is_file() && TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "mitmdump did not listen within {START_TIMEOUT:?}: {}",
                    mitm.log_tail()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        mitm.ca_pem = std::fs::read_to_string(&ca_file)?;
        Ok(mitm)
    }

    /// The end of mitmdump's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("mitmdump.log")).unwrap_or_default();
        let start = log.len().saturating_sub(1500);
        log.get(start..).unwrap_or_default().trim().to_string()
    }

    /// Stops mitmdump (it is ours: the child we spawned).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.child.wait()).await;
    }
}
