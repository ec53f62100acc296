//! `edgeproxy`: parse the command line, start logging and the runtime, serve until a signal.
//!
//! Exit codes follow configurable-http-proxy: 1 for a configuration or start-up error (including
//! a port that cannot be bound), 2 after SIGTERM or SIGINT (once in-flight requests drained).

use std::process::ExitCode;

use clap::Parser;
use config::LogLevel;
use proxy::cli::Cli;
use proxy::{Proxy, server};

// Requests allocate and free many small objects across tasks; mimalloc's per-thread free lists
// make that markedly cheaper than glibc's malloc on the hot path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let token = std::env::var("CONFIGPROXY_AUTH_TOKEN").ok().filter(|t| !t.is_empty());
    let parsed = match cli.into_config(token) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("edgeproxy: {msg}");
            return ExitCode::from(1);
        }
    };
    init_logging(parsed.config.log_level);
    for w in &parsed.warnings {
        tracing::warn!("{w}");
    }
    let mut config = parsed.config;
    proxy::open_files::raise_and_report(config.max_connections);
    // One event loop per worker, this thread's first (`proxy::workers`): measured against
    // tokio's work-stealing runtime with the same threads, it served more requests per second
    // with less CPU per request (docs/benchmarks.md, issue 19).
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    config.workers = Some(workers);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        // Bound first, so that the proxy is built with the real ports when one is 0 (the redirect
        // listener names the HTTPS port).
        let bound = server::bind(&config).await?;
        let proxy = Proxy::new(bound.config())?;
        bound.serve(proxy, signal()).await
    });
    match result {
        Ok(()) => ExitCode::from(2),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("edgeproxy: {e}");
            ExitCode::from(1)
        }
    }
}

async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop edgeproxy with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::warn!("Terminated"),
        _ = int.recv() => tracing::warn!("Interrupted"),
    }
}

fn init_logging(level: LogLevel) {
    let level = match level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stdout)
        .init();
}
