//! The `lantern` binary as a user runs it: config errors, first start on
//! defaults, graceful shutdown.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::Upstream;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_lantern");

fn lantern(args: &[&str], dir: &Path) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn broken_config_exits_2_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lantern.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\nupstream:\n  resolv: {}\n").unwrap();
    for cmd in ["check", "run"] {
        let out = lantern(&[cmd, "--config", config.to_str().unwrap()], dir.path());
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!("{}:3:3: ", config.display());
        assert!(stderr.starts_with(&expected), "{cmd}: {stderr}");
        assert!(stderr.contains("unknown field `resolv`"), "{cmd}: {stderr}");
    }
    // Semantic problems are all reported, each placed.
    std::fs::write(
        &config,
        "listen: 127.0.0.1:7000\nadmin_listen: 127.0.0.1:7000\nclients:\n  allow: []\nupstream:\n  ca_file: missing.pem\n",
    )
    .unwrap();
    let out = lantern(&["check", "--config", config.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    assert!(
        stderr.contains("lantern.yaml:2:1: admin_listen must differ"),
        "{stderr}"
    );
    assert!(
        stderr.contains("lantern.yaml:4:3: clients.allow is empty"),
        "{stderr}"
    );
    assert!(stderr.contains("lantern.yaml:6:3: "), "{stderr}");
}

#[test]
fn check_accepts_a_valid_config_and_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = lantern(&["check"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("apps in catalog"));
    let config = dir.path().join("lantern.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ninspect: {max_body_bytes: 8MiB, on_oversize: open}\n").unwrap();
    let out = lantern(&["check", "--config", config.to_str().unwrap()], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ca_init_and_export_print_the_same_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = lantern(&["ca", "init"], dir.path());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Trust it with"));
    let pem = std::fs::read_to_string(dir.path().join("lantern-data/ca.pem")).unwrap();
    let out = lantern(&["ca", "export"], dir.path());
    assert_eq!(String::from_utf8_lossy(&out.stdout), pem);
}

/// A running `lantern run` child, its stderr lines, and its listeners.
struct Running {
    child: Child,
    /// stderr up to and including the "listening" line.
    startup: Vec<String>,
    proxy: SocketAddr,
    admin: SocketAddr,
}

impl Running {
    async fn start(dir: &Path, config: &str) -> Running {
        let path = dir.join("lantern.yaml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(BIN)
            .args(["run", "--config", path.to_str().unwrap()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (tx, mut lines) = mpsc::unbounded_channel();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        let listening = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.recv().await {
                seen.push(line.clone());
                if line.contains("lantern listening") {
                    return (line, seen);
                }
            }
            panic!("lantern exited before listening: {seen:#?}");
        })
        .await
        .expect("lantern did not start listening");
        let (listening, startup) = listening;
        // Keep draining stderr so the child never blocks on a full pipe.
        tokio::spawn(async move { while lines.recv().await.is_some() {} });
        let field = |name: &str| -> SocketAddr {
            let start = listening.find(&format!("{name}=")).unwrap() + name.len() + 1;
            listening[start..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        Running {
            proxy: field("proxy"),
            admin: field("admin"),
            child,
            startup,
        }
    }

    fn terminate(&self) {
        self.signal("-TERM");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn scrape(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `lantern_requests_total` for `app` with decision `error`.
    async fn errors_for(&self, app: &str) -> f64 {
        let series = format!("lantern_requests_total{{app=\"{app}\",decision=\"error\"}}");
        common::metric(&self.scrape().await, &series)
    }

    /// Polls /metrics until `series` reaches `value` (bounded).
    async fn wait_for_metric(&self, series: &str, value: f64) {
        let reached = tokio::time::timeout(Duration::from_secs(20), async {
            while common::metric(&self.scrape().await, series) < value {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(reached.is_ok(), "{series} never reached {value}");
    }
}

#[tokio::test]
async fn first_start_creates_a_private_ca_and_tells_how_to_trust_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Running::start(
        dir.path(),
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n",
    )
    .await;
    let key = dir.path().join("lantern-data/ca.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let pem = std::fs::read_to_string(dir.path().join("lantern-data/ca.pem")).unwrap();
    let served = reqwest::get(format!("http://{}/ca.pem", run.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, pem);
    let startup = run.startup.join("\n");
    assert!(startup.contains("created a new CA at"), "{startup}");
    assert!(
        startup.contains("Trust it with: curl --cacert"),
        "{startup}"
    );
    // The proxy answers on its listener.
    let resp = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", run.proxy)).unwrap())
        .build()
        .unwrap()
        .get("http://127.0.0.1:9/")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    run.terminate();
    let status = tokio::time::timeout(Duration::from_secs(30), run.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let out = lantern(&["ca", "init"], dir.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
}

#[tokio::test]
async fn sigterm_drains_an_in_flight_request() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  ca_file: {}\n  resolve: {{\"api.openai.com:443\": \"{}\"}}\n",
        upstream.ca_file.display(),
        upstream.tls_addr
    );
    let mut run = Running::start(dir.path(), &config).await;
    let ca_pem = reqwest::get(format!("http://{}/ca.pem", run.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", run.proxy)).unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let in_flight = tokio::spawn(async move {
        let resp = client
            .post("https://api.openai.com/slow")
            .body("{}")
            .send()
            .await?;
        let status = resp.status();
        resp.text().await.map(|t| (status, t))
    });
    upstream.state.slow_arrived.notified().await;
    run.terminate();
    // Wait until lantern has stopped accepting new connections.
    let refused = tokio::time::timeout(Duration::from_secs(20), async {
        while tokio::net::TcpStream::connect(run.proxy).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "lantern kept accepting after SIGTERM");
    upstream.state.slow_release.notify_one();
    let (status, text) = in_flight.await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(text, "done");
    let exit = tokio::time::timeout(Duration::from_secs(30), run.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

fn app_yaml(id: &str) -> String {
    format!(
        "apps:\n  - {{id: {id}, name: Demo, vendor: Test, category: chat, hosts: [reload.test]}}\n"
    )
}

#[tokio::test]
async fn sighup_reloads_the_catalog_and_keeps_it_when_the_new_one_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let apps = dir.path().join("rules/apps.yaml");
    std::fs::write(&apps, app_yaml("demo")).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nrules_dir: rules\nupstream:\n  resolve: {{\"reload.test:80\": \"{closed}\"}}\n"
    );
    let mut run = Running::start(dir.path(), &config).await;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{}", run.proxy)).unwrap())
        .build()
        .unwrap();
    let request = || async {
        client
            .get("http://reload.test/")
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(request().await, 502);
    assert_eq!(run.errors_for("demo").await, 1.0);

    std::fs::write(&apps, app_yaml("demo2")).unwrap();
    run.signal("-HUP");
    run.wait_for_metric("lantern_policy_reloads_total{result=\"ok\"}", 1.0)
        .await;
    request().await;
    assert_eq!(run.errors_for("demo2").await, 1.0);

    std::fs::write(&apps, "apps:\n  - {id: Bad Id, hosts: []}\n").unwrap();
    run.signal("-HUP");
    run.wait_for_metric("lantern_policy_reloads_total{result=\"error\"}", 1.0)
        .await;
    request().await;
    assert_eq!(run.errors_for("demo2").await, 2.0);
    run.terminate();
    let status = tokio::time::timeout(Duration::from_secs(30), run.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn changing_a_loaded_file_reloads_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let apps = dir.path().join("rules/apps.yaml");
    std::fs::write(&apps, app_yaml("before")).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "default: log\n").unwrap();
    let config =
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nrules_dir: rules\npolicy: policy.yaml\n";
    let mut run = Running::start(dir.path(), config).await;
    std::fs::write(&apps, app_yaml("after-the-change")).unwrap();
    run.wait_for_metric("lantern_policy_reloads_total{result=\"ok\"}", 1.0)
        .await;
    // A policy naming an app that does not exist is refused and counted.
    std::fs::write(
        &policy,
        "rules:\n  - {name: x, when: {apps: {ids: [no-such-app]}}, action: block}\n",
    )
    .unwrap();
    run.wait_for_metric("lantern_policy_reloads_total{result=\"error\"}", 1.0)
        .await;
    run.terminate();
    let status = tokio::time::timeout(Duration::from_secs(30), run.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[test]
fn report_summarises_audit_logs_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/audit");
    let plain = format!("{fixtures}/small.jsonl");
    let gz = format!("{fixtures}/small-2.jsonl.gz");
    let out = lantern(
        &["report", "--audit", &plain, &gz, "--format", "json"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json.is_object());
    let out = lantern(
        &["report", "--audit", &plain, "--format", "html"],
        dir.path(),
    );
    let html = String::from_utf8_lossy(&out.stdout);
    assert!(
        html.contains("<svg") && !html.contains("<script"),
        "self-contained HTML with charts"
    );
    let out = lantern(&["report", "--audit", "missing.jsonl"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.jsonl"));
}

/// Peak and current resident memory of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// 200 connections each POST a body of `BURST_BODY_MIB` MiB (default 1;
/// the README's figure uses 4) to an inspected app at once, with
/// `max_buffered_bytes` at 16 MiB per body MiB.
async fn a_burst_of_large_bodies_stays_within_the_buffer_budget() {
    const CONNS: usize = 200;
    let mib: usize = std::env::var("BURST_BODY_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (body_len, budget_mib) = (mib << 20, 16 * mib as u64);
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ninspect: {{max_buffered_bytes: {budget_mib}MiB}}\nupstream:\n  resolve: {{\"api.openai.com:80\": \"{}\"}}\n",
        upstream.plain_addr
    );
    let run = Running::start(dir.path(), &config).await;
    let pid = run.child.id().unwrap();
    let Some((_, idle)) = rss_kib(pid) else {
        eprintln!("skipped: no /proc on this system");
        return;
    };
    let body = bytes::Bytes::from(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\""
            .bytes()
            .chain(std::iter::repeat_n(b'a', body_len - 64))
            .chain("\"}]}".bytes())
            .collect::<Vec<u8>>(),
    );
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", run.proxy)).unwrap())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let requests = (0..CONNS).map(|_| {
        let (client, body) = (client.clone(), body.clone());
        tokio::spawn(async move {
            let resp = client
                .post("http://api.openai.com/sink")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    });
    let (mut ok, mut busy) = (0, 0);
    for request in requests.collect::<Vec<_>>() {
        let (status, text) = request.await.unwrap();
        match status {
            200 => {
                assert!(text.starts_with(&format!("{} ", body.len())), "{text}");
                ok += 1;
            }
            503 => busy += 1,
            other => panic!("unexpected {other}: {text}"),
        }
    }
    let (peak, end) = rss_kib(pid).unwrap();
    eprintln!(
        "{CONNS} x {mib} MiB (budget {budget_mib} MiB) in {:?}: {ok} forwarded, {busy} told to retry; RSS idle {} MiB, peak {} MiB, after {} MiB",
        started.elapsed(),
        idle / 1024,
        peak / 1024,
        end / 1024
    );
    assert!(ok > 0, "nothing got through");
    // The documented bound (README, "Memory"): idle + 3 x max_buffered_bytes
    // (each body, the prompt text extracted from it, and what the allocator
    // keeps after freeing them) + 128 KiB per connection (read and write
    // buffers, TLS state).
    let bound = idle + 3 * budget_mib * 1024 + 128 * CONNS as u64;
    assert!(
        peak <= bound,
        "peak RSS {peak} KiB over the bound {bound} KiB"
    );
}
