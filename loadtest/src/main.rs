//! `edgeload`: parse the command line, run the subcommand, print and write reports.
//!
//! Exit codes: 0 after a run (whatever the server answered: read the report), 1 when the run
//! could not take place or a report could not be written, 2 for bad usage, 99 when a
//! `--threshold` failed (the reports are written first).

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use loadtest::cli::{Cli, Command, CompareArgs, HttpArgs, ServeArgs, parse_target};
use loadtest::compare::{self, Target};
use loadtest::http_load::{self, LoadModel};
use loadtest::progress::Progress;
use loadtest::report::{LoadModelKind, text};
use loadtest::serve;

// The generator allocates per request (hyper's request and response objects); mimalloc's
// thread-local free lists keep that cheap, as in edgeproxy.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // Thousands of sockets need thousands of descriptors; the soft limit is often 1024.
    let _ = loadtest::ws::fd_limit::raise_open_file_limit();
    let result = match cli.command {
        Command::Http(args) => http(args),
        Command::Compare(args) => compare(args),
        Command::Serve(args) => serve(args),
        Command::Journey(args) => loadtest::journey::command(args),
        Command::Ws(args) => loadtest::ws::command(args),
        Command::Admin(args) => loadtest::admin::command(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgeload: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Parses the command line and, with `--scenario FILE`, parses it again with the file's
/// arguments added (the flags already there win: [`loadtest::scenario`]). Errors are printed;
/// the exit code is 2 for bad usage, 0 for `--help` and `--version`.
fn parse(mut argv: Vec<std::ffi::OsString>) -> Result<Cli, ExitCode> {
    let printed = |e: clap::Error| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }
    };
    let command = Cli::command();
    let matches = command.clone().try_get_matches_from(&argv).map_err(printed)?;
    let from_file = match matches.subcommand() {
        Some((name, sub)) => command
            .find_subcommand(name)
            .map_or(Ok(Vec::new()), |c| loadtest::scenario::file_arguments(c, sub)),
        None => Ok(Vec::new()),
    };
    let from_file = from_file.map_err(|e| {
        eprintln!("edgeload: {e}");
        ExitCode::from(2)
    })?;
    if from_file.is_empty() {
        return Cli::from_arg_matches(&matches).map_err(printed);
    }
    // Before a `--` of the command line's own, after which everything is a URL.
    let end_of_flags = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    argv.splice(end_of_flags..end_of_flags, from_file);
    command
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m))
        .map_err(|e| {
            // The command line alone parsed, so what is wrong came from the file.
            let path = matches
                .subcommand()
                .and_then(|(_, m)| loadtest::scenario::file_path(m))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            eprintln!("edgeload: --scenario {path}: {}", first.trim_start_matches("error: "));
            ExitCode::from(2)
        })
}

/// 2 for a value refused before the run, 99 for failed thresholds, 1 otherwise.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.is::<loadtest::cli::ConfigError>()
        || e.is::<loadtest::threshold::ThresholdError>()
        || e.is::<loadtest::scenario::ScenarioError>()
    {
        2
    } else if e.is::<loadtest::threshold::ThresholdsFailed>() {
        loadtest::threshold::EXIT_CODE
    } else {
        1
    }
}

fn model_kind(model: &LoadModel) -> LoadModelKind {
    match model {
        LoadModel::Closed { .. } => LoadModelKind::Closed,
        LoadModel::Open { .. } => LoadModelKind::Open,
    }
}

fn http(args: HttpArgs) -> anyhow::Result<()> {
    let urls = args.all_urls()?;
    let plan = args.load.to_plan(urls)?;
    let layout = plan.layout();
    for t in &args.output.thresholds {
        t.check_layout(layout)?;
    }
    let progress = Progress::new(!args.load.quiet, model_kind(&plan.model));
    let mut report = http_load::run(&plan, progress).context("load run failed")?;
    args.output.check(&mut report);
    print!("{}", text::render(&report));
    args.output.files().write(&report)?;
    Ok(loadtest::threshold::verdict(&report)?)
}

fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let mut targets = Vec::new();
    for t in &args.targets {
        let (name, url) = parse_target(t)?;
        let plan = args.load.to_plan(vec![url.clone()])?;
        targets.push(Target { name, url, plan });
    }
    if args.rounds == 0 {
        return Err(loadtest::cli::ConfigError::Invalid {
            flag: "--rounds",
            value: "0".into(),
            expected: "expected at least 1",
        }
        .into());
    }
    let comparison = compare::run(&targets, args.rounds, !args.load.quiet).context("comparison failed")?;
    print!("{}", comparison.render_text());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&comparison.to_json())?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = std::sync::Arc::new(args.config()?);
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("cannot start the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        println!("edgeload serve: listening on {scheme}://{}", listener.local_addr()?);
        let counters = std::sync::Arc::new(serve::ServerCounters::default());
        serve::serve(listener, config, counters.clone(), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
        println!(
            "edgeload serve: {} requests on {} connections, {} WebSockets ({} messages echoed)",
            counters.requests(),
            counters.connections(),
            counters.websockets(),
            counters.ws_messages()
        );
        anyhow::Ok(())
    })
}
