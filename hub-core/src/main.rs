//! `edgehub`. For now only `edgehub singleuser --port N [--ip ADDR]`, the built-in single-user
//! server; the full command line (clap) replaces this.

use std::io::IsTerminal as _;

use hub_core::builtin_server::{self, BuiltinArgs};

const USAGE: &str = "usage: edgehub singleuser --port N [--ip ADDR]";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let builtin = match singleuser_args(&args) {
        Ok(builtin) => builtin,
        Err(message) => {
            eprintln!("edgehub: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    // Logs go to stderr, which the local spawner sends to the server's log file.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(builtin_server::run(builtin))
}

/// `singleuser --port N [--ip ADDR]`, also as `--port=N` and `--ip=ADDR`.
fn singleuser_args(args: &[String]) -> Result<BuiltinArgs, String> {
    let mut rest = args.iter();
    if rest.next().map(String::as_str) != Some("singleuser") {
        return Err("expected the `singleuser` command".to_owned());
    }
    let (mut port, mut ip) = (None, "127.0.0.1".to_owned());
    while let Some(arg) = rest.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or(format!("{name} needs a value"))
        };
        match name {
            "--port" => {
                let text = value()?;
                port = Some(
                    text.parse::<u16>()
                        .map_err(|_| format!("--port {text:?} is not a port"))?,
                );
            }
            "--ip" => ip = value()?,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    let port = port.ok_or("--port is required")?;
    Ok(BuiltinArgs { port, ip })
}
