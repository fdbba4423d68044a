//! The `lantern` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// lantern: a forward proxy that brings shadow AI into the light.
#[derive(Debug, Parser)]
#[command(name = "lantern", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the proxy (embedded defaults without --config).
    Run {
        /// Path to lantern.yaml.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate config, catalog and rules; print every problem as file:line:col.
    Check {
        /// Path to lantern.yaml.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the detection engine on a file or stdin. Exit 0 clean, 1 findings, 2 error.
    Scan {
        /// File to scan (`-` or absent: stdin).
        input: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Every input line is its own document.
        #[arg(long)]
        lines: bool,
        /// Directory of detector rule files instead of the bundled packs.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Shadow-AI usage summary from audit logs: apps, people, detectors, decisions, trend.
    Report {
        /// Audit files (plain or gzip'd); default: the configured audit log.
        #[arg(long, num_args = 1..)]
        audit: Vec<PathBuf>,
        /// Only events newer than this (e.g. 7d, 24h).
        #[arg(long)]
        since: Option<humantime::Duration>,
        /// Output format.
        #[arg(long, default_value = "text", value_parser = ["text", "json", "csv", "html"])]
        format: String,
        /// Path to lantern.yaml (to find the audit log).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the argon2id hash of a password read from stdin (for identity.credentials).
    HashPassword,
    /// Manage the lantern CA.
    Ca {
        #[command(subcommand)]
        action: CaAction,
        /// Path to lantern.yaml.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaAction {
    /// Create the CA certificate and key if they do not exist.
    Init,
    /// Print the CA certificate (PEM) to stdout.
    Export,
}

/// Output format of `lantern scan`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}
