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
