//! The `lantern` binary: parses the command line and calls the library.
//! Exit codes: 0 success, 1 runtime failure, 2 invalid config or usage.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use lantern::diag::Problems;
use lantern::inspect::AllowAll;
use lantern::proxy::{self, Listeners, Proxy};
use lantern::rules::{load_all, load_config, Loaded};
use lantern::scan::{ScanFormat, ScanOptions};
use lantern::tls::CertificateAuthority;

mod cli;

use cli::{CaAction, Cli, Command};

/// Panics are logged with their location only: a panic message can quote
/// the data being processed (slicing a prompt quotes the prompt), and
/// prompts carry the secrets lantern must never write out.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic (its message is withheld: it may quote request data)");
    }));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    quiet_panics();
    let result = match cli.command {
        Command::Run { config } => run(config.as_deref()),
        Command::Check { config } => check(config.as_deref()),
        Command::Ca { action, config } => ca(action, config.as_deref()),
        Command::Scan {
            input,
            format,
            lines,
            rules,
        } => scan(ScanOptions {
            input,
            format: match format {
                cli::Format::Text => ScanFormat::Text,
                cli::Format::Json => ScanFormat::Json,
            },
            lines,
            rules,
        }),
        Command::HashPassword => hash_password(),
        Command::Report {
            audit,
            since,
            format,
            config,
        } => report(audit, since.map(Into::into), &format, config.as_deref()),
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

fn check(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = load_all(path)?;
    println!(
        "ok: config valid, {} apps in catalog, {} detectors, {} policy rules",
        loaded.catalog.apps().len(),
        loaded.engine.detector_ids().count(),
        loaded.policy.rules.len()
    );
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

fn scan(opts: ScanOptions) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match lantern::scan::run(&opts, &mut out) {
        Ok(found) => {
            std::io::Write::flush(&mut out)?;
            Ok(if found {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(err) => {
            let _ = std::io::Write::flush(&mut out);
            eprintln!("lantern scan: {err:#}");
            Ok(ExitCode::from(2))
        }
    }
}

fn report(
    mut audit: Vec<std::path::PathBuf>,
    since: Option<std::time::Duration>,
    format: &str,
    config: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    if audit.is_empty() {
        audit.push(load_config(config)?.audit_path());
    }
    let opts = lantern::report::ReportOptions {
        audit,
        since,
        format: format.parse().map_err(|e: String| anyhow::anyhow!(e))?,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    lantern::report::run(&opts, &mut out)?;
    std::io::Write::flush(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a password from the first line of stdin and prints its argon2id hash.
fn hash_password() -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    let hash = lantern::identity::hash_password(password).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}

fn print_trust_hint(cert: &Path) {
    let cert = cert.display();
    eprintln!("Trust it with: curl --cacert {cert} …   |   SSL_CERT_FILE={cert} (Python, OpenSSL)   |   NODE_EXTRA_CA_CERTS={cert} (Node)");
    eprintln!("System-wide (Debian/Ubuntu): sudo cp {cert} /usr/local/share/ca-certificates/lantern.crt && sudo update-ca-certificates");
}

fn run(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let Loaded {
        config,
        catalog,
        engine,
        policy,
    } = load_all(path)?;
    // Taken before serving: a change from here on triggers a reload.
    let files = lantern::rules::fingerprint(&config, path);
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
        let ack_base = format!("http://{}", listeners.admin.local_addr()?);
        let catalog = Arc::new(catalog);
        let proxy = Proxy::new(config, catalog.clone(), Arc::new(ca), Arc::new(AllowAll))?;
        let inspect = &proxy.config.inspect;
        lantern::rules::install(&proxy, catalog, engine, policy, inspect, &ack_base);
        tokio::spawn(lantern::rules::watch(
            proxy.clone(),
            path.map(Path::to_path_buf),
            ack_base,
            files,
        ));
        proxy::run(proxy, listeners, shutdown_signal()).await?;
        tracing::info!("lantern stopped");
        Ok(ExitCode::SUCCESS)
    })
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
