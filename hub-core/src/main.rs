//! `edgehub`: the hub. `edgehub up` runs the whole front door in one process; `edgehub
//! singleuser` is the built-in notebook-less server the local spawner falls back to;
//! `edgehub hash-password` makes entries for a users file.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::HubConfig;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "edgehub", version, about = "The lean hub of a multi-user notebook platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy, the hub and the local spawner on one public port.
    Up(UpArgs),
    /// The built-in single-user server (started by the local spawner; needs no Python).
    Singleuser {
        /// Port to listen on [default: the one in JUPYTERHUB_SERVICE_URL]
        #[arg(long)]
        port: Option<u16>,
        /// Address to listen on [default: the host in JUPYTERHUB_SERVICE_URL (a pod's IP on
        /// Kubernetes), else 127.0.0.1]
        #[arg(long)]
        ip: Option<String>,
    },
    /// Read a password on standard input, print its argon2 hash for a users file.
    HashPassword,
}

#[derive(clap::Args)]
struct UpArgs {
    /// TOML configuration file (every key and default: docs/configuration.md#edgehub).
    #[arg(long, short, env = "EDGEHUB_CONFIG")]
    config: Option<PathBuf>,
    /// Public address [default: 127.0.0.1:8000].
    #[arg(long)]
    bind: Option<String>,
    /// State database [default: edgehub.sqlite].
    #[arg(long)]
    db: Option<PathBuf>,
    /// PostgreSQL state shared by several active hubs, `postgres://user:password@host/db`
    /// [default: none, SQLite at --db].
    #[arg(long, env = "EDGEHUB_STATE_URL", hide_env_values = true)]
    state_url: Option<String>,
    /// Base URL prefix [default: /].
    #[arg(long)]
    base_url: Option<String>,
    /// Admin API token for services (also EDGEHUB_API_TOKEN).
    #[arg(long)]
    api_token: Option<String>,
    /// Users who are admins (repeatable).
    #[arg(long = "admin")]
    admins: Vec<String>,
    /// Log verbosity: error, warn, info (sign-ins, spawns, stops, repairs, errors) or debug
    /// (also the routine: route table reads, reconcile passes).
    #[arg(long, env = "EDGEHUB_LOG_LEVEL", default_value = "info")]
    log_level: tracing::Level,
}

fn hub_config(args: UpArgs) -> anyhow::Result<HubConfig> {
    let mut config = match &args.config {
        Some(path) => HubConfig::from_file(path)?,
        None => HubConfig::default(),
    };
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    if let Some(db) = args.db {
        config.db = db;
    }
    if let Some(url) = args.state_url.filter(|u| !u.is_empty()) {
        config.state.url = Some(url);
    }
    if let Some(base) = args.base_url {
        config.base_url = base;
    }
    config.api_tokens.extend(args.api_token);
    config.auth.admin_users.extend(args.admins);
    config.validate()?;
    Ok(config)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The built-in server is one per user: one thread each keeps a thousand of them light.
    let runtime = match cli.command {
        Command::Singleuser { .. } => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
    };
    match cli.command {
        Command::Singleuser { port, ip } => {
            // JupyterHub's spawners pass --port; the contract also carries it in the service URL.
            let service_url = std::env::var("JUPYTERHUB_SERVICE_URL").unwrap_or_default();
            let authority = service_url
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|authority| authority.rsplit_once(':'));
            let Some(port) = port.or_else(|| authority?.1.parse().ok()) else {
                anyhow::bail!("no --port and no port in JUPYTERHUB_SERVICE_URL ({service_url:?})");
            };
            let ip = ip
                .or_else(|| Some(authority?.0.trim_matches(['[', ']']).to_owned()))
                .filter(|host| !host.is_empty())
                .unwrap_or_else(|| "127.0.0.1".to_owned());
            let args = hub_core::builtin_server::BuiltinArgs { port, ip };
            runtime.block_on(hub_core::builtin_server::run(args))
        }
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password")?;
            let password = password.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                anyhow::bail!("no password on standard input (echo -n 'secret' | edgehub hash-password)");
            }
            println!(
                "{}",
                hub_core::login::hash_password(password).map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
        Command::Up(args) => {
            tracing_subscriber::fmt()
                .with_target(false)
                .with_max_level(args.log_level)
                .init();
            let config = hub_config(args)?;
            // The embedded proxy holds two descriptors a user connection, the hub more for
            // each local server: the soft limit goes up to the hard one.
            proxy::open_files::raise_and_report(config::ProxyConfig::default().max_connections);
            runtime.block_on(async {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let mut running = hub_core::up::start(config, Default::default(), async {
                    let _ = rx.await;
                })
                .await?;
                println!("\n  edgehub is up: open {}\n  Ctrl-C stops the hub and proxy; user servers keep running and are adopted at the next start.\n", running.public_url);
                let asked = tokio::select! {
                    _ = shutdown_signal() => None,
                    asked = running.hub.shutdown.requested() => Some(asked),
                };
                let _ = tx.send(());
                let servers = running.hub.counts().running;
                if servers > 0 {
                    println!("edgehub stopped; {servers} user server(s) left running for the next start.");
                }
                let Some(asked) = asked else {
                    return Ok(());
                };
                running.closed().await;
                if asked.failed {
                    // Exit status 1: the supervisor's cue to start the hub afresh.
                    return Err(anyhow::anyhow!(asked.why));
                }
                println!("edgehub stopped: {}", asked.why);
                Ok(())
            })
        }
    }
}
