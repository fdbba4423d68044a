//! The `lantern` binary: parses the command line and calls the library.
//! Exit codes: 0 success, 1 runtime failure, 2 invalid config or usage.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use lantern::catalog::Catalog;
use lantern::config::Config;
use lantern::diag::Problems;
use lantern::inspect::AllowAll;
use lantern::proxy::{self, Listeners, Proxy};
use lantern::tls::CertificateAuthority;

mod cli;

use cli::{CaAction, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Run { config } => run(config.as_deref()),
        Command::Check { config } => check(config.as_deref()),
        Command::Ca { action, config } => ca(action, config.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if let Some(problems) = err.downcast_ref::<Problems>() {
                eprintln!("{problems}");
                return ExitCode::from(2);
            }
            eprintln!("lantern: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("lantern=info,warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn load_config(path: Option<&Path>) -> Result<Config, Problems> {
    match path {
        Some(path) => Config::load(path),
        None => Ok(Config::embedded_defaults()),
    }
}

/// Loads everything `run` and a reload load, collecting every problem.
fn load_all(path: Option<&Path>) -> Result<(Config, Catalog), Problems> {
    let config = load_config(path)?;
    let catalog = Catalog::load(config.rules_dir.as_deref())?;
    Ok((config, catalog))
}

fn check(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (_, catalog) = load_all(path)?;
    println!("ok: config valid, {} apps in catalog", catalog.apps().len());
    Ok(ExitCode::SUCCESS)
}

fn ca(action: CaAction, path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = load_config(path)?;
    let paths = config.ca_paths();
    let (ca, loaded) = CertificateAuthority::load_or_create(&paths.cert, &paths.key)?;
    match action {
        CaAction::Init => {
            let verb = match loaded {
                lantern::tls::Loaded::Created => "created",
                lantern::tls::Loaded::Existing => "exists",
            };
            eprintln!("lantern CA {verb}: {}", paths.cert.display());
            print_trust_hint(&paths.cert);
        }
        CaAction::Export => print!("{}", ca.cert_pem()),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_trust_hint(cert: &Path) {
    let cert = cert.display();
    eprintln!("Trust it with: curl --cacert {cert} …   |   SSL_CERT_FILE={cert} (Python, OpenSSL)   |   NODE_EXTRA_CA_CERTS={cert} (Node)");
    eprintln!("System-wide (Debian/Ubuntu): sudo cp {cert} /usr/local/share/ca-certificates/lantern.crt && sudo update-ca-certificates");
}

fn run(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (config, catalog) = load_all(path)?;
    let paths = config.ca_paths();
    let (ca, loaded) = CertificateAuthority::load_or_create(&paths.cert, &paths.key)
        .context("loading the lantern CA")?;
    if matches!(loaded, lantern::tls::Loaded::Created) {
        eprintln!("lantern: created a new CA at {}", paths.cert.display());
    } else {
        eprintln!("lantern: using CA {}", paths.cert.display());
    }
    print_trust_hint(&paths.cert);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listeners = Listeners {
            proxy: tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding proxy listener {}", config.listen))?,
            admin: tokio::net::TcpListener::bind(config.admin_listen)
                .await
                .with_context(|| format!("binding admin listener {}", config.admin_listen))?,
        };
        tracing::info!(
            proxy = %listeners.proxy.local_addr()?,
            admin = %listeners.admin.local_addr()?,
            apps = catalog.apps().len(),
            "lantern listening"
        );
        let proxy = Proxy::new(config, Arc::new(catalog), Arc::new(ca), Arc::new(AllowAll))?;
        tokio::spawn(reload_on_sighup(proxy.clone(), path.map(Path::to_path_buf)));
        proxy::run(proxy, listeners, shutdown_signal()).await?;
        tracing::info!("lantern stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// On SIGHUP, reloads catalog (and rules) as `check` validates them and
/// swaps them in atomically; on any problem the old set stays in force.
/// Listener addresses and limits are read at start-up only.
async fn reload_on_sighup(proxy: Arc<Proxy>, path: Option<std::path::PathBuf>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload disabled");
            return;
        };
        while hangup.recv().await.is_some() {
            let reloads = &proxy.metrics.policy_reloads;
            match load_all(path.as_deref()) {
                Ok((_, catalog)) => {
                    let apps = catalog.apps().len();
                    proxy.swap_rules(Arc::new(catalog), Arc::new(AllowAll));
                    reloads.with_label_values(&["ok"]).inc();
                    tracing::info!(apps, "reloaded rules");
                }
                Err(problems) => {
                    reloads.with_label_values(&["error"]).inc();
                    for problem in &problems.0 {
                        tracing::error!(%problem, "reload failed; the previous rules stay in force");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (proxy, path);
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
