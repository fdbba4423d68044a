//! Loading and reloading what lantern enforces: config, app catalog,
//! detector rules and policy. Start-up, `lantern check` and every reload
//! run the same [`load_all`], so a file that passes `check` loads, and a
//! reload that fails leaves the previous set in force.

use std::path::Path;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::detect::Engine;
use crate::diag::Problems;
use crate::inspect::PolicyInspector;
use crate::policy::{Known, Policy};
use crate::proxy::Proxy;

pub fn load_config(path: Option<&Path>) -> Result<Config, Problems> {
    match path {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded_defaults()),
    }
}

/// What `run` loads at start and on reload; `check` validates the same.
pub struct Loaded {
    pub config: Config,
    pub catalog: Catalog,
    pub engine: Engine,
    pub policy: Policy,
}

/// Loads config, catalog and detection rules, collecting every problem.
pub fn load_all(path: Option<&Path>) -> Result<Loaded, Problems> {
    let config = load_config(path)?;
    let mut problems = Vec::new();
    let catalog = Catalog::load(config.rules_dir.as_deref()).map_err(|p| problems.extend(p.0));
    let engine = load_engine(config.rules_dir.as_deref()).map_err(|p| problems.extend(p.0));
    if let Err(p) = crate::identity::Identities::load(&config.identity) {
        problems.extend(p.0);
    }
    let (Ok(catalog), Ok(engine)) = (catalog, engine) else {
        return Err(Problems(problems));
    };
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let detectors: Vec<String> = engine.detector_ids().map(String::from).collect();
    let known = Known {
        app: &|id: &str| catalog.apps().iter().any(|a| a.id == id),
        detectors: &detectors,
    };
    let policy = Policy::load(config.policy.as_deref(), &known)?;
    Ok(Loaded {
        config,
        catalog,
        engine,
        policy,
    })
}

/// Detection rules from `<rules_dir>/detectors/`, or the bundled packs.
pub fn load_engine(rules_dir: Option<&Path>) -> Result<Engine, Problems> {
    let dir = rules_dir
        .map(|d| d.join("detectors"))
        .filter(|d| d.is_dir());
    match &dir {
        Some(dir) => Engine::from_dir(dir),
        None => Engine::bundled(),
    }
    .map_err(|errors| {
        Problems(
            errors
                .into_iter()
                .map(|e| crate::diag::Problem {
                    file: e.file.into(),
                    line: e.line.max(1),
                    col: e.col.max(1),
                    message: e.message,
                })
                .collect(),
        )
    })
}

/// How often loaded files are checked for changes.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reloads catalog, detector rules and policy on SIGHUP and whenever one
/// of the loaded files changes: validated as `check` does, then swapped in
/// atomically; on any problem the old set stays in force. Listener
/// addresses and limits are read at start-up only.
pub async fn watch(
    proxy: Arc<Proxy>,
    path: Option<std::path::PathBuf>,
    ack_base: String,
    mut seen: Fingerprint,
) {
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(_) => {
            tracing::warn!("cannot listen for SIGHUP; reloading on file change only");
            None
        }
    };
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<Option<()>>();
        let reason = tokio::select! {
            _ = hup => "SIGHUP",
            _ = tick.tick() => {
                let now = fingerprint(&proxy.config, path.as_deref());
                if now == seen {
                    continue;
                }
                seen = now;
                "file change"
            }
        };
        if reason == "SIGHUP" {
            // logrotate moved the file: write to a fresh one at the path.
            proxy.audit.reopen();
        }
        reload(&proxy, path.as_deref(), &ack_base, reason);
    }
}

/// Puts `catalog`, `engine` and `policy` in force behind `proxy`, inspecting
/// with the limits of `inspect`: what start-up and every reload install.
/// Coaching links point at `ack_base` (the admin listener's public URL).
pub fn install(
    proxy: &Proxy,
    catalog: Arc<Catalog>,
    engine: Engine,
    policy: Policy,
    inspect: &crate::config::InspectConfig,
    ack_base: &str,
) {
    let inspector = PolicyInspector::new(
        Arc::new(engine),
        Arc::new(policy),
        proxy.acks.clone(),
        ack_base,
    )
    .with_limits(inspect);
    proxy.swap_rules(catalog, Arc::new(inspector));
}

pub fn reload(proxy: &Arc<Proxy>, path: Option<&Path>, ack_base: &str, reason: &str) {
    let reloads = &proxy.metrics.policy_reloads;
    match load_all(path) {
        Ok(loaded) => {
            let apps = loaded.catalog.apps().len();
            install(
                proxy,
                Arc::new(loaded.catalog),
                loaded.engine,
                loaded.policy,
                &loaded.config.inspect,
                ack_base,
            );
            reloads.with_label_values(&["ok"]).inc();
            tracing::info!(apps, reason, "reloaded rules and policy");
        }
        Err(problems) => {
            reloads.with_label_values(&["error"]).inc();
            for problem in &problems.0 {
                tracing::error!(%problem, reason, "reload failed; the previous rules stay in force");
            }
        }
    }
}

/// Modification time and length of every file a reload reads.
pub type Fingerprint = Vec<(std::path::PathBuf, Option<(std::time::SystemTime, u64)>)>;

pub fn fingerprint(
    config: &Config,
    path: Option<&Path>,
) -> Vec<(std::path::PathBuf, Option<(std::time::SystemTime, u64)>)> {
    let mut files: Vec<std::path::PathBuf> = path.map(Path::to_path_buf).into_iter().collect();
    files.extend(config.policy.clone());
    if let Some(dir) = &config.rules_dir {
        files.push(dir.join("apps.yaml"));
        for sub in [dir.join("detectors"), dir.join("detectors/words")] {
            if let Ok(entries) = std::fs::read_dir(&sub) {
                let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
                names.sort();
                files.extend(names);
            }
        }
    }
    files
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (f, meta)
        })
        .collect()
}
