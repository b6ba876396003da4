//! The `portcullis` command: parse arguments, load the config before binding anything, bind,
//! serve until SIGTERM/SIGINT, exit.
//!
//! Exit codes: 0 clean exit; 1 `check-config` found a problem, a listener could not bind, a
//! `user`/`token` command failed, `explain` could not answer, a `doctor` check failed, or
//! `health` got no healthy answer; 64 `serve` was given a bad config.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use portcullis::config::{Config, CONFIG_ENV};
use portcullis::http::echo;
use portcullis::server::{self, Listeners};
use portcullis::{logging, signal, App};

mod cli;
mod health;

/// `portcullis --version`: `portcullis 0.1.0`, or `portcullis 0.1.0 (commit abc123…)` when the
/// build named its commit (see [`portcullis::COMMIT`]).
static VERSION: LazyLock<String> = LazyLock::new(|| match portcullis::COMMIT {
    Some(commit) => format!("{} (commit {commit})", portcullis::VERSION),
    None => portcullis::VERSION.to_owned(),
});

#[derive(Parser)]
#[command(
    name = "portcullis",
    about = "A reverse-proxy authorization sidecar",
    version = VERSION.as_str()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy, the API and the admin listener.
    Serve {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
    },
    /// Parse and validate a config file; exit 0, or 1 with the key path and the reason.
    CheckConfig {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
    },
    /// Manage users on the store the config names.
    User {
        #[command(subcommand)]
        command: cli::UserCommand,
    },
    /// Create API tokens on the store the config names.
    Token {
        #[command(subcommand)]
        command: cli::TokenCommand,
    },
    /// List and create organizations on the store the config names.
    Org {
        #[command(subcommand)]
        command: cli::OrgCommand,
    },
    /// Show what Portcullis would do with a request (rule, subject, RBAC, upstream headers),
    /// sending nothing upstream.
    Explain(cli::ExplainArgs),
    /// Check a live deployment for header leaks, a reachable upstream, an exposed admin
    /// listener and weak TLS; exit 1 on a failure.
    Doctor(portcullis::doctor::Args),
    /// Run a small upstream that answers every request with a JSON description of it.
    Echo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: std::net::SocketAddr,
    },
    /// Ask a running Portcullis's admin listener for /healthz (or /readyz); exit 0 on 2xx, 1
    /// otherwise. For a container HEALTHCHECK or an exec probe, where there is no curl.
    Health {
        /// The admin listener to ask [default: server.admin_listen of the config if one is
        /// given, on loopback when it listens on all addresses; else 127.0.0.1:9901].
        #[arg(long, value_name = "ADDR")]
        admin: Option<std::net::SocketAddr>,
        /// The config file whose server.admin_listen to ask.
        #[arg(long, env = CONFIG_ENV)]
        config: Option<PathBuf>,
        /// Ask /readyz (serving, and the store answers) instead of /healthz (alive).
        #[arg(long)]
        ready: bool,
        /// The whole check, connect included, must finish within this.
        #[arg(long, default_value = "2s", value_parser = positive_duration)]
        timeout: Duration,
    },
    /// Print a shell completion script: `portcullis completions bash > /etc/bash_completion.d/portcullis`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// A duration written as in the config ("2s", "500ms"), more than zero.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than zero".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check_config(config),
        Command::User { command } => cli::user(command),
        Command::Token { command } => cli::token(command),
        Command::Org { command } => cli::org(command),
        Command::Explain(args) => cli::explain(args),
        Command::Doctor(args) => doctor(args),
        Command::Echo { listen } => echo(listen),
        Command::Health {
            admin,
            config,
            ready,
            timeout,
        } => health::run(admin, config.as_deref(), ready, timeout),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "portcullis",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
    }
}

fn doctor(args: portcullis::doctor::Args) -> ExitCode {
    let config = match load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("config error: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime(1) {
        Ok(rt) => rt.block_on(portcullis::doctor::run(&config, &args)),
        Err(e) => {
            eprintln!("doctor: {e}");
            ExitCode::from(1)
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config, String> {
    Config::load(path, std::env::vars()).map_err(|e| e.to_string())
}

fn check_config(path: PathBuf) -> ExitCode {
    // The store and TLS material are opened too, as `serve` would, but nothing binds.
    let checked = load(&path).and_then(|config| {
        for warning in config.policy.routes.warnings() {
            eprintln!("warning: {warning}");
        }
        runtime(1)?.block_on(async {
            let app = App::new(config).map_err(|e| e.to_string())?;
            if let Some(warning) = app.store.eviction_warning().await {
                eprintln!("warning: {warning}");
            }
            Ok(())
        })
    });
    match checked {
        Ok(()) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn serve(path: PathBuf) -> ExitCode {
    let config = match load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("config error: {e}");
            return ExitCode::from(64);
        }
    };
    logging::init(&config.log);
    for warning in config.policy.routes.warnings() {
        tracing::warn!(%warning, "config");
    }
    let rt = match runtime(config.server.workers) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "could not start");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
        let app = match App::new(config.clone()) {
            Ok(app) => app,
            Err(e) => {
                eprintln!("config error: {e}");
                return ExitCode::from(64);
            }
        };
        let listeners = match Listeners::bind(config.server.listen, config.server.admin_listen).await {
            Ok(l) => l,
            Err(error) => {
                tracing::error!(%error, "could not bind the listeners");
                return ExitCode::from(1);
            }
        };
        for (name, l) in [("main", &listeners.main), ("admin", &listeners.admin)] {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(listener = name, %addr, tls = name == "main" && app.tls.is_some(), "listening");
            }
        }
        let store = app.store.clone();
        tokio::spawn(async move {
            if let Some(warning) = store.eviction_warning().await {
                tracing::warn!(%warning, "store");
            }
        });
        server::run(app, listeners, signal::shutdown()).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

fn echo(listen: std::net::SocketAddr) -> ExitCode {
    logging::init(&portcullis::config::LogConfig {
        format: portcullis::config::LogFormat::Plain,
        filter: portcullis::config::DEFAULT_LOG_FILTER.to_owned(),
        access: false,
    });
    let rt = match runtime(1) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(error) => {
                tracing::error!(%error, %listen, "echo: could not bind");
                return ExitCode::from(1);
            }
        };
        tracing::info!(listener = "echo", addr = %listen, "listening");
        echo::run(listener, signal::shutdown()).await;
        ExitCode::SUCCESS
    })
}

/// One worker: a single-threaded runtime (no work stealing, no cross-thread wake-ups), the
/// fastest way to use one core. More: the multi-threaded runtime with that many workers.
fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the runtime: {e}"))
}
