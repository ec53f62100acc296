//! Scenario files: `--scenario FILE` on `http`, `ws`, `admin` and `journey` reads a run's options
//! and thresholds from TOML, so that a CI job keeps them beside its code. Keys are the long flag
//! names of the subcommand (`max-connections`, `late-after`); `thresholds`, `headers` and `urls`
//! are lists (the repeatable `--threshold`, `--header` and the URLs):
//!
//! ```toml
//! urls = ["http://127.0.0.1:8080/"]
//! rate = 2000
//! requests = 20000
//! thresholds = ["p99<50ms", "errors<0.1%"]
//! ```
//!
//! The file becomes command-line arguments, read by the same parser as the flags, so every key
//! means exactly what its flag means and is checked the same way. A flag on the command line wins
//! over the file, and flags that choose between alternatives win as a group: a file key is left
//! out when its flag is on the command line or conflicts with one there, so a file's `rate`
//! cannot turn `-c 50` into an open run, and `-n` on the command line replaces a file's
//! `duration`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command};

/// The `--scenario FILE` flag, on every subcommand that runs load.
#[derive(Args, Debug, Clone)]
pub struct ScenarioArg {
    /// Read the options and thresholds from a TOML file (keys: the long flag names; lists for
    /// thresholds, headers and urls); flags on the command line win
    #[arg(long = "scenario", id = SCENARIO_ID, value_name = "FILE")]
    pub path: Option<PathBuf>,
}

const SCENARIO_ID: &str = "scenario_file";

/// File keys named after the flag they stand for, where the list's name differs from the flag's.
const LIST_KEYS: &[(&str, &str)] = &[("thresholds", "threshold"), ("headers", "header")];

/// Flags that replace each other's values as a group although they do not conflict: URLs on the
/// command line, given either way, replace the file's.
const TOGETHER: &[&[&str]] = &[&["urls", "urls_file"]];

/// A scenario file that cannot be used; the message names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read --scenario {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("--scenario {path}: {error}")]
    Parse { path: String, error: String },
}

/// The arguments `FILE` adds to a command line whose subcommand `sub` parsed as `matches`: every
/// key whose flag the command line does not set or overrule, as `--flag=value`, then any URLs
/// after `--`. Empty without `--scenario`.
pub fn file_arguments(sub: &Command, matches: &ArgMatches) -> Result<Vec<OsString>, ScenarioError> {
    let Some(path) = file_path(matches) else {
        return Ok(Vec::new());
    };
    let shown = path.display().to_string();
    let bad = |error: String| ScenarioError::Parse {
        path: shown.clone(),
        error,
    };
    let table = read(path)?;
    let on_cli = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let overruled = |arg: &Arg| {
        let id = arg.get_id().as_str();
        on_cli(id)
            || sub
                .get_arg_conflicts_with(arg)
                .iter()
                .any(|c| on_cli(c.get_id().as_str()))
            || sub
                .get_arguments()
                .filter(|other| on_cli(other.get_id().as_str()))
                .any(|other| {
                    sub.get_arg_conflicts_with(other)
                        .iter()
                        .any(|c| c.get_id() == arg.get_id())
                })
            || TOGETHER
                .iter()
                .any(|group| group.contains(&id) && group.iter().any(|member| on_cli(member)))
    };

    let mut flags = Vec::new();
    let mut positionals = Vec::new();
    for (key, value) in &table {
        let Some(arg) = arg_for(sub, key) else {
            return Err(bad(format!(
                "unknown field `{key}`, expected one of {}",
                keys(sub).join(", ")
            )));
        };
        if overruled(arg) {
            continue;
        }
        let values = values_of(value).ok_or_else(|| {
            bad(format!(
                "{key} = {value:?}: expected a string, number, boolean or a list of them"
            ))
        })?;
        match arg.get_long() {
            None => positionals.extend(values.into_iter().map(OsString::from)),
            Some(long) if matches!(arg.get_action(), ArgAction::SetTrue) => match value.as_bool() {
                Some(true) => flags.push(format!("--{long}").into()),
                Some(false) => {}
                None => return Err(bad(format!("{key} = {value:?}: expected true or false"))),
            },
            Some(long) => flags.extend(values.into_iter().map(|v| OsString::from(format!("--{long}={v}")))),
        }
    }
    if !positionals.is_empty() {
        flags.push("--".into());
        flags.extend(positionals);
    }
    Ok(flags)
}

/// The `--scenario` file of a parsed subcommand, if it has the flag and it was given.
pub fn file_path(matches: &ArgMatches) -> Option<&PathBuf> {
    matches.try_get_one::<PathBuf>(SCENARIO_ID).ok().flatten()
}

fn read(path: &Path) -> Result<toml::Table, ScenarioError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Read {
        path: shown.clone(),
        error,
    })?;
    text.parse::<toml::Table>().map_err(|e| ScenarioError::Parse {
        path: shown,
        error: e.to_string(),
    })
}

/// The flag a file key stands for: a long flag by its name (or its list's name), or a
/// positional that the command line may leave out (http's URLs), by its id.
fn arg_for<'a>(sub: &'a Command, key: &str) -> Option<&'a Arg> {
    let long = LIST_KEYS
        .iter()
        .find(|(list, _)| *list == key)
        .map_or(key, |(_, flag)| flag);
    sub.get_arguments().find(|a| {
        let id = a.get_id().as_str();
        id != SCENARIO_ID
            && takes_a_value_or_switch(a)
            && match a.get_long() {
                Some(l) => l == long,
                None => a.is_positional() && !a.is_required_set() && id == key,
            }
    })
}

/// Every key a file for `sub` may hold, for the message about one it may not.
fn keys(sub: &Command) -> Vec<String> {
    sub.get_arguments()
        .filter(|a| a.get_id().as_str() != SCENARIO_ID && takes_a_value_or_switch(a))
        .filter_map(|a| match a.get_long() {
            Some(long) => Some(
                LIST_KEYS
                    .iter()
                    .find(|(_, flag)| *flag == long)
                    .map_or(long, |(list, _)| list)
                    .to_owned(),
            ),
            None => (a.is_positional() && !a.is_required_set()).then(|| a.get_id().to_string()),
        })
        .collect()
}

/// Not `--help` or `--version`: a file sets options, it does not ask for help.
fn takes_a_value_or_switch(arg: &Arg) -> bool {
    !matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    )
}

/// A TOML value as the command line would spell it: a scalar is one value, a list one per item.
fn values_of(value: &toml::Value) -> Option<Vec<String>> {
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    };
    match value {
        toml::Value::Array(items) => items.iter().map(scalar).collect(),
        other => scalar(other).map(|s| vec![s]),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::cli::{Cli, Command as Sub};

    /// Parses `argv` with the file's arguments added, as `edgeload` does.
    fn parse_with(file: &str, argv: &[&str]) -> Result<Cli, String> {
        let dir = std::env::temp_dir().join(format!("edgeload-scenario-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.toml", argv.join("_").replace(['/', ':'], "")));
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
        argv.extend(["--scenario".into(), path.clone().into_os_string()]);
        let command = Cli::command();
        let matches = command.clone().try_get_matches_from(&argv).map_err(|e| e.to_string())?;
        let (name, sub_matches) = matches.subcommand().unwrap();
        let extra = file_arguments(command.find_subcommand(name).unwrap(), sub_matches).map_err(|e| e.to_string())?;
        argv.extend(extra);
        let matches = command.try_get_matches_from(&argv).map_err(|e| e.to_string())?;
        Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_fills_what_the_command_line_leaves_open() {
        let file = "urls = [\"http://a/\", \"http://b/\"]\nrate = 50\nrequests = 10\nheaders = [\"X-A: 1\"]\n\
                    no-keepalive = true\nthresholds = [\"p99<5ms\"]\n";
        let Sub::Http(args) = parse_with(file, &["edgeload", "http"]).unwrap().command else {
            panic!("not http")
        };
        assert_eq!(args.urls, ["http://a/", "http://b/"]);
        assert_eq!((args.load.rate, args.load.requests), (Some(50.0), Some(10)));
        assert_eq!(args.load.headers, ["X-A: 1"]);
        assert!(args.load.no_keepalive);
        assert_eq!(args.output.thresholds.len(), 1);

        // The command line's model, length, URLs and thresholds win as groups.
        let Sub::Http(args) = parse_with(
            file,
            &[
                "edgeload",
                "http",
                "-c",
                "3",
                "-d",
                "1s",
                "http://c/",
                "--threshold",
                "rps>1",
            ],
        )
        .unwrap()
        .command
        else {
            panic!("not http")
        };
        assert_eq!((args.load.connections, args.load.rate), (Some(3), None));
        assert_eq!(args.load.requests, None, "-d replaces the file's requests");
        assert_eq!(args.urls, ["http://c/"]);
        assert_eq!(args.output.thresholds.len(), 1);
        assert_eq!(args.load.headers, ["X-A: 1"], "what the command line leaves open stays");
    }

    #[test]
    fn every_load_subcommand_reads_one() {
        let Sub::Ws(args) = parse_with(
            "rate = 5\nhold = \"2s\"\nthresholds = [\"errors<1%\"]\n",
            &["edgeload", "ws", "churn", "ws://x/"],
        )
        .unwrap()
        .command
        else {
            panic!("not ws")
        };
        assert_eq!((args.rate, args.hold.as_secs()), (Some(5.0), 2));
        assert_eq!(args.output.thresholds.len(), 1);
        let Sub::Admin(args) = parse_with(
            "concurrency = \"1,2\"\nroutes = 7\n",
            &["edgeload", "admin", "methods", "http://x"],
        )
        .unwrap()
        .command
        else {
            panic!("not admin")
        };
        assert_eq!(args.concurrency, [1, 2]);
        let Sub::Journey(args) = parse_with("users = 3\n", &["edgeload", "journey", "http://hub/"])
            .unwrap()
            .command
        else {
            panic!("not journey")
        };
        assert_eq!(args.users, Some(3));
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_file_and_the_key() {
        let e = parse_with("rat = 5\n", &["edgeload", "http"]).err().unwrap();
        assert!(e.contains("unknown field `rat`") && e.contains(".toml"), "{e}");
        let e = parse_with("scenario = \"x.toml\"\n", &["edgeload", "http"])
            .err()
            .unwrap();
        assert!(e.contains("unknown field `scenario`"), "{e}");
        let e = parse_with("duration = \"ten\"\n", &["edgeload", "http", "http://a/"])
            .err()
            .unwrap();
        assert!(e.contains("--duration"), "{e}");
        let e = parse_with("rate = 5\nconnections = 2\n", &["edgeload", "http", "http://a/"])
            .err()
            .unwrap();
        assert!(e.contains("cannot be used with"), "{e}");
        let e = parse_with("no-keepalive = \"yes\"\n", &["edgeload", "http"])
            .err()
            .unwrap();
        assert!(e.contains("expected true or false"), "{e}");
        let e = parse_with("rate = [", &["edgeload", "http"]).err().unwrap();
        assert!(e.contains("--scenario"), "{e}");
    }
}
