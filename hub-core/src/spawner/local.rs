//! The local-process spawner: each server is a child process of the hub on this machine,
//! listening on a free port of 127.0.0.1.
//!
//! Invariants:
//! - A server runs in its own process group: a Ctrl-C in the hub's terminal does not reach it, it
//!   outlives a hub restart (the next hub finds it again from the recorded state), and `stop`
//!   signals the whole group, so whatever the server started (kernels) goes with it.
//! - A pid is signalled only after its start time (from `/proc`) matched the one recorded at
//!   spawn: after a hub restart the pid may name some other process.
//! - Every child is waited for by a reaper task, so none is left a zombie.
//! - Server output never reaches the hub's own stdout/stderr: it goes to a log file per server,
//!   or nowhere. Never to a pipe read by the hub: the pipe would close when the hub exits and the
//!   server's next write would kill it (SIGPIPE), breaking the restart invariant above.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{Answering, BoxFuture, PollStatus, SpawnError, SpawnRequest, Spawner, SpawnerState, Started};
use crate::progress::{ProgressEvent, ProgressSink};

/// How long a fresh process is watched before `start` returns. A wrong command usually dies at
/// once (unknown flag, missing module, port taken); saying so now, with its output, beats a
/// readiness timeout later.
const EARLY_EXIT_WINDOW: Duration = Duration::from_millis(100);
/// How often `stop` looks whether the process is gone.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How long `stop` waits after SIGKILL before giving up (a process stuck in uninterruptible
/// sleep cannot be killed, and a stop must not hang).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How much of a server's log an early exit quotes.
const LOG_TAIL_BYTES: u64 = 2048;

/// What servers inherit from the hub's environment; the rest is dropped so that the hub's own
/// secrets (the proxy's token, signing keys) do not show up in every notebook's `os.environ`.
/// JupyterHub's `Spawner.env_keep`, plus the login basics it sets from the user's passwd entry.
const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "CONDA_ROOT",
    "CONDA_DEFAULT_ENV",
    "CONDA_PREFIX",
    "VIRTUAL_ENV",
    "JUPYTERHUB_SINGLEUSER_APP",
];

/// Starts servers as local processes. Cheap to clone.
#[derive(Clone)]
pub struct LocalSpawner {
    inner: Arc<Settings>,
}

#[derive(Clone)]
struct Settings {
    origin: CommandOrigin,
    /// argv with `{port}`, `{base_url}` and `{user}` still in it.
    template: Vec<String>,
    environment: BTreeMap<String, String>,
    working_dir: Option<PathBuf>,
    stop_grace: Duration,
    log_dir: Option<PathBuf>,
}

/// Where the command came from, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommandOrigin {
    Configured,
    JupyterhubSingleuser,
    JupyterServer,
    Builtin,
}

impl LocalSpawner {
    /// `singleuser_exe` is the edgehub binary, run as `edgehub singleuser` when neither
    /// `config.command` nor a Jupyter server on `PATH` is there. The choice is made here, once.
    pub fn new(config: &config::LocalSpawnerConfig, singleuser_exe: PathBuf) -> LocalSpawner {
        let (origin, template) = choose_command(config.command.as_deref(), find_on_path, &singleuser_exe);
        LocalSpawner {
            inner: Arc::new(Settings {
                origin,
                template,
                environment: config.environment.clone(),
                working_dir: config.working_dir.clone(),
                stop_grace: Duration::from_secs(config.stop_grace_secs),
                log_dir: None,
            }),
        }
    }

    /// Appends each server's output to `<log_dir>/<user>[-<server>].log` (created if missing).
    /// Default: output is discarded.
    pub fn with_log_dir(self, log_dir: PathBuf) -> LocalSpawner {
        let mut settings = Arc::unwrap_or_clone(self.inner);
        settings.log_dir = Some(log_dir);
        LocalSpawner {
            inner: Arc::new(settings),
        }
    }

    /// The argv a server for `request` on `port` runs: the command with its placeholders filled.
    pub fn command_for(&self, request: &SpawnRequest, port: u16) -> Vec<String> {
        let port = port.to_string();
        let values = [
            ("{port}", port.as_str()),
            ("{base_url}", request.prefix.as_str()),
            ("{user}", request.user.as_str()),
        ];
        self.inner
            .template
            .iter()
            .map(|arg| fill_placeholders(arg, &values))
            .collect()
    }

    /// The chosen program, for the hub's start-up log.
    pub fn describe(&self) -> String {
        let program = self.inner.template.first().map(String::as_str).unwrap_or("");
        match self.inner.origin {
            CommandOrigin::Configured => format!("`{}` (spawner.command)", self.inner.template.join(" ")),
            CommandOrigin::JupyterhubSingleuser => format!("jupyterhub-singleuser ({program})"),
            CommandOrigin::JupyterServer => format!("jupyter-server ({program}), no jupyterhub-singleuser on PATH"),
            CommandOrigin::Builtin => format!(
                "the built-in server (`{program} singleuser`), no jupyterhub-singleuser or jupyter-server on PATH"
            ),
        }
    }
}

impl Spawner for LocalSpawner {
    fn start(&self, request: SpawnRequest, progress: ProgressSink) -> BoxFuture<'static, Result<Started, SpawnError>> {
        let spawner = self.clone();
        Box::pin(async move {
            // The port is picked by binding one and letting it go; another process can take it in
            // between (once in a 1,000-user storm). A server that exits saying so is started
            // again on another port, twice at most.
            let mut retries = 0;
            loop {
                match spawner.start_process(request.clone(), progress.clone()).await {
                    Err(SpawnError::ExitedEarly { detail, .. })
                        if retries < 2 && detail.contains("Address already in use") =>
                    {
                        retries += 1;
                        progress.push(ProgressEvent::message(
                            10,
                            "The port was taken meanwhile; trying another",
                        ));
                    }
                    other => return other,
                }
            }
        })
    }

    fn stop(&self, state: SpawnerState) -> BoxFuture<'static, Result<(), SpawnError>> {
        let grace = self.inner.stop_grace;
        Box::pin(async move {
            if state.is_null() || state.as_object().is_some_and(|o| o.is_empty()) {
                return Ok(());
            }
            match ProcessRecord::from_state(&state) {
                Ok(record) => stop_process(record, grace).await,
                Err(e) => {
                    // Nothing this spawner started can be found from it, so there is nothing to stop.
                    tracing::warn!(%state, error = %e, "stop: not a local server's state; nothing to stop");
                    Ok(())
                }
            }
        })
    }

    fn poll(&self, state: SpawnerState) -> BoxFuture<'static, PollStatus> {
        Box::pin(async move {
            match ProcessRecord::from_state(&state) {
                Ok(record) if process::probe(&record) == process::Probe::Running => {
                    PollStatus::Running { url: record.url() }
                }
                _ => PollStatus::Exited { code: None },
            }
        })
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    fn answering(&self, state: SpawnerState) -> BoxFuture<'static, Answering> {
        Box::pin(async move {
            let Ok(record) = ProcessRecord::from_state(&state) else {
                return Answering::Unknown;
            };
            tokio::task::spawn_blocking(move || {
                if process::probe(&record) != process::Probe::Running {
                    return Answering::Exited;
                }
                match process::listening(record.pid, record.port) {
                    Some(true) => Answering::Itself,
                    Some(false) => Answering::Another,
                    None => Answering::Unknown,
                }
            })
            .await
            .unwrap_or(Answering::Unknown)
        })
    }

    fn stop_strays(&self, _user: &str, _server: &str, token_hashes: &[String]) -> BoxFuture<'static, usize> {
        let hashes = token_hashes.to_vec();
        let grace = self.inner.stop_grace;
        Box::pin(async move {
            if hashes.is_empty() {
                return 0;
            }
            let strays = tokio::task::spawn_blocking(move || process::holding_tokens(&hashes))
                .await
                .unwrap_or_default();
            let mut stopped = 0;
            for record in strays {
                tracing::warn!(pid = record.pid, "stopping a server process no hub recorded");
                if stop_process(record, grace).await.is_ok() {
                    stopped += 1;
                }
            }
            stopped
        })
    }
}

impl LocalSpawner {
    async fn start_process(&self, request: SpawnRequest, progress: ProgressSink) -> Result<Started, SpawnError> {
        let port = free_port()?;
        let argv = self.command_for(&request, port);
        let Some(program) = argv.first() else {
            return Err(SpawnError::Launch(
                "the command is empty; set spawner.command".to_owned(),
            ));
        };
        let program_name = Path::new(program)
            .file_name()
            .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned());
        if let Some(dir) = &self.inner.working_dir {
            // Checked here because spawn's own error would blame the program ("No such file").
            if let Err(e) = tokio::fs::metadata(dir).await {
                return Err(SpawnError::Launch(format!(
                    "working directory {}: {e}; check spawner.working_dir",
                    dir.display()
                )));
            }
        }
        let log = match &self.inner.log_dir {
            Some(dir) => Some(ServerLog::open(dir, &request, &argv).await?),
            None => None,
        };

        progress.push(ProgressEvent::message(
            20,
            format!("Starting {program_name} on port {port}"),
        ));
        let mut command = tokio::process::Command::new(program);
        command
            .args(&argv[1..])
            .env_clear()
            .envs(server_env(std::env::vars(), &self.inner.environment, &request, port))
            .stdin(Stdio::null())
            .process_group(0);
        match &log {
            Some(log) => {
                command.stdout(log.stdio()?).stderr(log.stdio()?);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        if let Some(dir) = &self.inner.working_dir {
            command.current_dir(dir);
        }
        let child = command.spawn().map_err(|e| launch_error(program, &e))?;
        let Some(pid) = child.id() else {
            return Err(SpawnError::Failed(format!(
                "{program_name} has no pid right after spawn"
            )));
        };
        // Read while the child cannot have been reaped yet (the reaper does not exist yet), so
        // even a process that died at once still has its /proc entry.
        let record = ProcessRecord {
            pid,
            port,
            start_time: process::start_time(pid),
        };
        let exit = reap(child, request.user.clone(), pid);
        let unclaimed = Unclaimed(Some(record));
        progress.push(ProgressEvent::message(40, format!("Process started (pid {pid})")));

        if let Ok(Ok(status)) = tokio::time::timeout(EARLY_EXIT_WINDOW, exit).await {
            unclaimed.claim();
            let detail = match &log {
                Some(log) => log.tail().await,
                None => String::new(),
            };
            return Err(early_exit(status, detail, log.is_some()));
        }
        unclaimed.claim();
        tracing::info!(
            user = %request.user,
            server = %request.server_name,
            pid,
            port,
            program = %program_name,
            "server process started"
        );
        Ok(Started {
            url: record.url(),
            state: record.to_state(),
        })
    }
}

/// A server whose state the hub does not have yet. If `start` is dropped before handing the
/// state over (the hub's start timeout), nobody could ever stop the server, so it is killed.
struct Unclaimed(Option<ProcessRecord>);

impl Unclaimed {
    fn claim(mut self) {
        self.0 = None;
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        let Some(record) = self.0.take() else { return };
        if process::probe(&record) != process::Probe::Gone {
            tracing::warn!(
                pid = record.pid,
                "start was abandoned; killing the server it had started"
            );
            if let Err(e) = process::signal_group(record.pid, libc::SIGKILL) {
                tracing::warn!(pid = record.pid, error = %e, "could not kill an abandoned server");
            }
        }
    }
}

/// Waits for the child in a task of its own, so that it is reaped whenever it exits; the
/// receiver learns how it ended (dropped if the runtime goes away first).
fn reap(mut child: tokio::process::Child, user: String, pid: u32) -> oneshot::Receiver<ExitStatus> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        match child.wait().await {
            Ok(status) => {
                tracing::info!(%user, pid, %status, "server process exited");
                let _ = tx.send(status);
            }
            Err(e) => tracing::warn!(%user, pid, error = %e, "could not wait for a server process"),
        }
    });
    rx
}

fn early_exit(status: ExitStatus, output: String, logged: bool) -> SpawnError {
    let mut detail = match status.signal() {
        Some(signal) => format!("killed by signal {signal}"),
        None => String::new(),
    };
    let output = output.trim();
    let note = if !output.is_empty() {
        output
    } else if logged {
        "it printed nothing"
    } else {
        "its output was discarded (no log directory is set)"
    };
    if !detail.is_empty() {
        detail.push_str("; ");
    }
    detail.push_str(note);
    SpawnError::ExitedEarly {
        code: status.code(),
        detail,
    }
}

fn launch_error(program: &str, e: &std::io::Error) -> SpawnError {
    let hint = match e.kind() {
        std::io::ErrorKind::NotFound => "; is it installed and on PATH? (spawner.command)",
        std::io::ErrorKind::PermissionDenied => "; is it executable?",
        _ => "",
    };
    SpawnError::Launch(format!("`{program}`: {e}{hint}"))
}

/// A port that was free a moment ago. The server binds it itself, so another process can take
/// it in between; the server then fails to bind and exits, which `start` reports.
fn free_port() -> Result<u16, SpawnError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| SpawnError::Failed(format!("no free port on 127.0.0.1: {e}")))
}

async fn stop_process(record: ProcessRecord, grace: Duration) -> Result<(), SpawnError> {
    use process::Probe;
    if process::probe(&record) != Probe::Running {
        return Ok(());
    }
    process::signal_group(record.pid, libc::SIGTERM).map_err(|e| signal_error(&record, "SIGTERM", &e))?;
    if wait_until_gone(&record, grace).await == Probe::Gone {
        return Ok(());
    }
    // Still running, or dead but not yet reaped: either way its pid is taken, so the group id
    // still names this server's group and SIGKILL reaches nothing else.
    tracing::warn!(
        pid = record.pid,
        grace_secs = grace.as_secs(),
        "server ignored SIGTERM; sending SIGKILL"
    );
    process::signal_group(record.pid, libc::SIGKILL).map_err(|e| signal_error(&record, "SIGKILL", &e))?;
    match wait_until_gone(&record, KILL_WAIT).await {
        Probe::Running => Err(SpawnError::Failed(format!(
            "pid {} is still running {}s after SIGKILL",
            record.pid,
            KILL_WAIT.as_secs()
        ))),
        // A zombie nobody reaps is dead all the same.
        Probe::Gone | Probe::Unreaped => Ok(()),
    }
}

/// Polls until the process is gone or `limit` has passed; returns the last probe.
async fn wait_until_gone(record: &ProcessRecord, limit: Duration) -> process::Probe {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let probe = process::probe(record);
        if probe == process::Probe::Gone || tokio::time::Instant::now() >= deadline {
            return probe;
        }
        tokio::time::sleep(STOP_POLL).await;
    }
}

fn signal_error(record: &ProcessRecord, signal: &str, e: &std::io::Error) -> SpawnError {
    SpawnError::Failed(format!("could not send {signal} to pid {}: {e}", record.pid))
}

/// Picks the command: the configured one, else the first Jupyter server found on `PATH`, else
/// the built-in server. `find` looks a program up on `PATH`.
fn choose_command(
    configured: Option<&[String]>,
    find: impl Fn(&str) -> Option<PathBuf>,
    singleuser_exe: &Path,
) -> (CommandOrigin, Vec<String>) {
    // Jupyter refuses to run as root without being told (containers often are root).
    let as_root = unsafe { libc::geteuid() } == 0;
    let argv = |program: &Path, args: &[&str]| -> Vec<String> {
        let program = program.to_string_lossy().into_owned();
        let jupyter = args.first().is_none_or(|a| *a != "singleuser");
        std::iter::once(program)
            .chain(args.iter().map(|a| (*a).to_owned()))
            .chain((jupyter && as_root).then(|| "--allow-root".to_owned()))
            .collect()
    };
    if let Some(command) = configured {
        return (CommandOrigin::Configured, command.to_vec());
    }
    if let Some(path) = find("jupyterhub-singleuser") {
        // It reads its prefix, and everything else, from the JUPYTERHUB_* environment.
        return (
            CommandOrigin::JupyterhubSingleuser,
            argv(&path, &["--ip=127.0.0.1", "--port={port}"]),
        );
    }
    if let Some(path) = find("jupyter-server") {
        // jupyter_server 2's names. No token or password: the proxy is the way in, and the
        // browser has no token to give. Without `port_retries=0` a taken port would be silently
        // replaced by another one, which the hub would never find.
        let args = [
            "--no-browser",
            "--ip=127.0.0.1",
            "--port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.base_url={base_url}",
            "--IdentityProvider.token=",
            "--PasswordIdentityProvider.hashed_password=",
            "--ServerApp.disable_check_xsrf=False",
        ];
        return (CommandOrigin::JupyterServer, argv(&path, &args));
    }
    (
        CommandOrigin::Builtin,
        argv(singleuser_exe, &["singleuser", "--port", "{port}"]),
    )
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Replaces each `{name}` of `values` in one pass, so a value that itself contains `{port}` is
/// left as it is. Unknown `{…}` stay as written.
fn fill_placeholders(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        match values.iter().find(|(name, _)| rest.starts_with(name)) {
            Some((name, value)) => {
                out.push_str(value);
                rest = &rest[name.len()..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A server's environment, later entries winning: what it keeps of the hub's (`KEPT_ENV`), the
/// configured `environment`, the hub's `JUPYTERHUB_*` contract from the request (set last, as
/// JupyterHub does, so configuration cannot break it), and the URL only the spawner knows.
fn server_env(
    inherited: impl Iterator<Item = (String, String)>,
    configured: &BTreeMap<String, String>,
    request: &SpawnRequest,
    port: u16,
) -> BTreeMap<String, String> {
    let mut env = kept_env(inherited);
    env.extend(configured.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(request.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    // The hub sets these; filled in from the request if it did not, since servers need them.
    env.entry("JUPYTERHUB_USER".to_owned())
        .or_insert_with(|| request.user.clone());
    env.entry("JUPYTERHUB_SERVER_NAME".to_owned())
        .or_insert_with(|| request.server_name.clone());
    let prefix = env
        .entry("JUPYTERHUB_SERVICE_PREFIX".to_owned())
        .or_insert_with(|| request.prefix.clone())
        .clone();
    env.insert(
        "JUPYTERHUB_SERVICE_URL".to_owned(),
        format!("http://127.0.0.1:{port}{prefix}"),
    );
    env
}

/// What a process the hub starts (a server, a managed service) keeps of the hub's environment.
pub(crate) fn kept_env(inherited: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    inherited.filter(|(k, _)| KEPT_ENV.contains(&k.as_str())).collect()
}

/// The line a log file gets before each run of the process writing to it.
pub(crate) fn run_header(argv: &[String]) -> String {
    format!(
        "[edgehub {}] starting: {}\n",
        proxy::timestamp::format_iso(proxy::timestamp::now_ms()),
        argv.join(" ")
    )
}

/// One server's log file, appended to across its runs.
struct ServerLog {
    path: PathBuf,
    file: std::fs::File,
    /// Where this run's output starts (after the header line).
    start: u64,
}

impl ServerLog {
    async fn open(dir: &Path, request: &SpawnRequest, argv: &[String]) -> Result<ServerLog, SpawnError> {
        let path = dir.join(log_file_name(&request.user, &request.server_name));
        let failed = |e: std::io::Error| SpawnError::Failed(format!("server log {}: {e}", path.display()));
        tokio::fs::create_dir_all(dir).await.map_err(failed)?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(failed)?;
        file.write_all(run_header(argv).as_bytes()).await.map_err(failed)?;
        // tokio writes in the background; the length below must include the header.
        file.flush().await.map_err(failed)?;
        let start = file.metadata().await.map_err(failed)?.len();
        let file = file.into_std().await;
        Ok(ServerLog { path, file, start })
    }

    fn stdio(&self) -> Result<Stdio, SpawnError> {
        self.file
            .try_clone()
            .map(Stdio::from)
            .map_err(|e| SpawnError::Failed(format!("server log {}: {e}", self.path.display())))
    }

    /// The end of this run's output (at most `LOG_TAIL_BYTES`), or `""` if it cannot be read.
    async fn tail(&self) -> String {
        let read = async {
            let mut file = tokio::fs::File::open(&self.path).await?;
            let len = file.metadata().await?.len();
            let from = self.start.max(len.saturating_sub(LOG_TAIL_BYTES));
            file.seek(SeekFrom::Start(from)).await?;
            let mut bytes = Vec::new();
            file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes).await?;
            std::io::Result::Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        read.await.unwrap_or_default()
    }
}

/// `<user>[-<server>].log`, with anything that could leave the directory or upset a shell
/// replaced by `_`.
fn log_file_name(user: &str, server_name: &str) -> String {
    fn clean(part: &str, out: &mut String) {
        if part.is_empty() || part.starts_with('.') {
            out.push('_');
        }
        out.extend(part.chars().map(|c| {
            if c.is_ascii_alphanumeric() || "._@+-".contains(c) {
                c
            } else {
                '_'
            }
        }));
    }
    let mut name = String::new();
    clean(user, &mut name);
    if !server_name.is_empty() {
        name.push('-');
        clean(server_name, &mut name);
    }
    name.push_str(".log");
    name
}

/// What the hub persists for a local server: enough to find it again after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct ProcessRecord {
    pid: u32,
    port: u16,
    /// Field 22 of `/proc/PID/stat`, in clock ticks since boot; `None` where there is no `/proc`.
    start_time: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
enum StateError {
    #[error("expected {{\"pid\", \"port\", \"start_time\"}}: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A pid that must never be signalled as a server's: 0 and negative numbers address groups
    /// or everything, 1 is init, and the hub's own pid or group would take the hub down.
    #[error("pid {0} cannot be a server's")]
    UnsafePid(u32),
}

impl ProcessRecord {
    fn from_state(state: &SpawnerState) -> Result<ProcessRecord, StateError> {
        let record = ProcessRecord::deserialize(state)?;
        let pid = record.pid;
        let own = std::process::id();
        // SAFETY: getpgrp has no preconditions and cannot fail.
        let own_group = unsafe { libc::getpgrp() };
        if pid <= 1 || i32::try_from(pid).is_err() || pid == own || pid as i32 == own_group {
            return Err(StateError::UnsafePid(pid));
        }
        Ok(record)
    }

    fn to_state(self) -> SpawnerState {
        serde_json::json!({"pid": self.pid, "port": self.port, "start_time": self.start_time})
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

pub(crate) use process::signal_group;

/// Asking the kernel about a pid. Linux's `/proc` gives the start time that tells a server from
/// a later process with the same pid; without `/proc` (macOS) the pid alone is trusted.
mod process {
    use super::ProcessRecord;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Probe {
        /// The recorded process is running.
        Running,
        /// It has exited but is still a zombie of this process, so the reaper will collect it
        /// soon. Its pid, and so its group id, cannot be reused until then.
        Unreaped,
        /// It is gone (or the pid now names another process).
        Gone,
    }

    pub(super) fn probe(record: &ProcessRecord) -> Probe {
        if !exists(record.pid) {
            return Probe::Gone;
        }
        let Some(stat) = read_stat(record.pid) else {
            // No /proc entry for a pid that exists: no /proc at all. Trust the pid only if no
            // start time was recorded either; a recorded one that cannot be checked fails closed.
            return if record.start_time.is_none() {
                Probe::Running
            } else {
                Probe::Gone
            };
        };
        if record.start_time.is_some_and(|t| t != stat.start_time) {
            return Probe::Gone;
        }
        match stat.state {
            'Z' | 'X' if stat.ppid == std::process::id() => Probe::Unreaped,
            // Someone else's zombie (the hub restarted; init reaps it): dead, nothing to wait for.
            'Z' | 'X' => Probe::Gone,
            _ => Probe::Running,
        }
    }

    /// Whether the process `pid` (or one of its process group) has a socket listening on `port`;
    /// `None` where the kernel will not say (no `pidfd_getfd`, or not allowed to look).
    ///
    /// Each of the process's sockets is borrowed with `pidfd_getfd` and asked for its address
    /// (`getsockname`) and whether it listens (`SO_ACCEPTCONN`): a few system calls for a server's
    /// dozen descriptors, where reading `/proc/net/tcp` would have the kernel print every socket
    /// of the machine (a thousand servers' worth during a storm).
    pub(super) fn listening(pid: u32, port: u16) -> Option<bool> {
        if holds_listener(pid, port)? {
            return Some(true);
        }
        // A wrapper (`sh -c …` without exec) leaves the listening to a child in its group.
        let group: Vec<u32> = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| *p != pid && process_group(*p) == Some(pid))
            .collect();
        Some(group.into_iter().any(|p| holds_listener(p, port) == Some(true)))
    }

    fn holds_listener(pid: u32, port: u16) -> Option<bool> {
        use std::os::fd::{FromRawFd, OwnedFd};
        // SAFETY: plain syscalls; every descriptor they return is owned (and closed) below.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
        if pidfd < 0 {
            return None;
        }
        // SAFETY: a new descriptor from pidfd_open, owned from here on.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as libc::c_int) };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        for entry in fds.flatten() {
            let is_socket = std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
            let Some(target) = entry.file_name().to_str().and_then(|n| n.parse::<libc::c_int>().ok()) else {
                continue;
            };
            if !is_socket {
                continue;
            }
            // SAFETY: as above.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_getfd,
                    std::os::fd::AsRawFd::as_raw_fd(&pidfd),
                    target,
                    0,
                )
            };
            if fd < 0 {
                let denied = std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
                if denied {
                    return None;
                }
                continue; // closed meanwhile
            }
            // SAFETY: a new descriptor from pidfd_getfd, owned from here on.
            let socket = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
            if listens_on(&socket, port) {
                return Some(true);
            }
        }
        Some(false)
    }

    /// Whether `socket` is a TCP socket listening on `port`.
    fn listens_on(socket: &std::os::fd::OwnedFd, port: u16) -> bool {
        use std::os::fd::AsRawFd;
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: the buffer and its length are ours and match.
        let named = unsafe { libc::getsockname(socket.as_raw_fd(), (&raw mut addr).cast(), &mut len) } == 0;
        let bound = match addr.ss_family as libc::c_int {
            // SAFETY: the family says which address the storage holds.
            libc::AF_INET => u16::from_be(unsafe { (*(&raw const addr).cast::<libc::sockaddr_in>()).sin_port }),
            libc::AF_INET6 => u16::from_be(unsafe { (*(&raw const addr).cast::<libc::sockaddr_in6>()).sin6_port }),
            _ => return false,
        };
        if !named || bound != port {
            return false;
        }
        let mut accepting: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: as above.
        let asked = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                (&raw mut accepting).cast(),
                &mut len,
            )
        } == 0;
        asked && accepting != 0
    }

    fn process_group(pid: u32) -> Option<u32> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        text[text.rfind(')')? + 1..]
            .split_ascii_whitespace()
            .nth(2)?
            .parse()
            .ok()
    }

    /// Processes (this user's, readable in `/proc`) whose environment holds a
    /// `JUPYTERHUB_API_TOKEN` hashing to one of `hashes`.
    pub(super) fn holding_tokens(hashes: &[String]) -> Vec<ProcessRecord> {
        const VAR: &[u8] = b"JUPYTERHUB_API_TOKEN=";
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != std::process::id())
            .filter_map(|pid| {
                let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
                let token = environ.split(|b| *b == 0).find_map(|kv| kv.strip_prefix(VAR))?;
                let token = std::str::from_utf8(token).ok()?;
                hashes.contains(&crate::tokens::hash(token)).then(|| ProcessRecord {
                    pid,
                    port: 0,
                    start_time: start_time(pid),
                })
            })
            .filter(|record| ProcessRecord::from_state(&record.to_state()).is_ok())
            .collect()
    }

    /// `kill(pid, 0)`: the pid exists (EPERM: it exists but is not ours to signal).
    fn exists(pid: u32) -> bool {
        let Ok(pid) = i32::try_from(pid) else { return false };
        // SAFETY: signal 0 only checks; pid > 0 was checked when the record was parsed.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }

    /// Sends `signal` to the process group the server leads; to the process alone if it left
    /// that group. The caller has just checked the pid with `probe`.
    pub(crate) fn signal_group(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
        let pid = i32::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: plain syscalls; pid > 1 and not the hub's own pid or group (ProcessRecord).
        let rc = unsafe { libc::kill(-pid, signal) };
        if rc == 0 {
            return Ok(());
        }
        let group_error = std::io::Error::last_os_error();
        if group_error.raw_os_error() != Some(libc::ESRCH) {
            return Err(group_error);
        }
        // SAFETY: as above.
        match unsafe { libc::kill(pid, signal) } {
            0 => Ok(()),
            _ => match std::io::Error::last_os_error() {
                // Exited in between: what the caller wanted.
                e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                e => Err(e),
            },
        }
    }

    pub(super) fn start_time(pid: u32) -> Option<u64> {
        read_stat(pid).map(|s| s.start_time)
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Stat {
        pub state: char,
        pub ppid: u32,
        pub start_time: u64,
    }

    fn read_stat(pid: u32) -> Option<Stat> {
        // A read of /proc never blocks on I/O, so it is fine on a runtime thread.
        parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Parses `/proc/PID/stat` (proc(5)): `pid (comm) state ppid … starttime(22) …`. The command
    /// name may hold spaces and parentheses, so fields are counted from the last `)`.
    pub(super) fn parse_stat(text: &str) -> Option<Stat> {
        let after_comm = &text[text.rfind(')')? + 1..];
        let mut fields = after_comm.split_ascii_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        // Fields 5..=21 lie between ppid (4) and starttime (22).
        let start_time = fields.nth(22 - 5)?.parse().ok()?;
        Some(Stat {
            state,
            ppid,
            start_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(user: &str, server: &str, prefix: &str) -> SpawnRequest {
        SpawnRequest {
            user: user.to_owned(),
            server_name: server.to_owned(),
            prefix: prefix.to_owned(),
            env: BTreeMap::new(),
            user_options: json!({}),
        }
    }

    fn spawner_with(command: &[&str]) -> LocalSpawner {
        let config = config::LocalSpawnerConfig {
            command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
            ..Default::default()
        };
        LocalSpawner::new(&config, PathBuf::from("/opt/edgehub"))
    }

    #[test]
    fn placeholders_are_filled_once_and_unknown_ones_kept() {
        let values = [("{port}", "8888"), ("{base_url}", "/user/a/"), ("{user}", "{port}")];
        let cases = [
            ("--port={port}", "--port=8888"),
            ("{base_url}lab", "/user/a/lab"),
            ("{user}", "{port}"),
            ("{port}{port}", "88888888"),
            ("{nope} {port", "{nope} {port"),
            ("{{port}}", "{8888}"),
            ("plain", "plain"),
            ("", ""),
            ("é{user}é", "é{port}é"),
        ];
        for (template, want) in cases {
            assert_eq!(fill_placeholders(template, &values), want, "{template}");
        }
    }

    #[test]
    fn command_for_fills_the_configured_command() {
        let spawner = spawner_with(&["/venvs/{user}/bin/serve", "--port", "{port}", "--prefix={base_url}"]);
        let argv = spawner.command_for(&request("alice", "lab2", "/user/alice/lab2/"), 41234);
        assert_eq!(
            argv,
            [
                "/venvs/alice/bin/serve",
                "--port",
                "41234",
                "--prefix=/user/alice/lab2/"
            ]
        );
        assert!(spawner.describe().contains("spawner.command"), "{}", spawner.describe());
    }

    #[test]
    fn default_command_prefers_singleuser_then_jupyter_server_then_builtin() {
        let exe = Path::new("/opt/edgehub");
        let on_path = |names: &'static [&'static str]| {
            move |name: &str| names.contains(&name).then(|| PathBuf::from(format!("/usr/bin/{name}")))
        };

        let (origin, argv) = choose_command(None, on_path(&["jupyterhub-singleuser", "jupyter-server"]), exe);
        assert_eq!(origin, CommandOrigin::JupyterhubSingleuser);
        assert_eq!(
            argv[..3],
            ["/usr/bin/jupyterhub-singleuser", "--ip=127.0.0.1", "--port={port}"]
        );
        let as_root = unsafe { libc::geteuid() } == 0;
        assert_eq!(
            argv.contains(&"--allow-root".to_owned()),
            as_root,
            "--allow-root only as root"
        );

        let (origin, argv) = choose_command(None, on_path(&["jupyter-server"]), exe);
        assert_eq!(origin, CommandOrigin::JupyterServer);
        assert_eq!(argv[0], "/usr/bin/jupyter-server");
        assert!(argv.contains(&"--ServerApp.base_url={base_url}".to_owned()));
        assert!(argv.contains(&"--ServerApp.port_retries=0".to_owned()));

        let (origin, argv) = choose_command(None, on_path(&[]), exe);
        assert_eq!(origin, CommandOrigin::Builtin);
        assert_eq!(argv, ["/opt/edgehub", "singleuser", "--port", "{port}"]);

        let configured = ["x".to_owned()];
        let (origin, _) = choose_command(Some(&configured), on_path(&["jupyterhub-singleuser"]), exe);
        assert_eq!(origin, CommandOrigin::Configured);
    }

    #[test]
    fn environment_keeps_little_of_the_hub_and_the_contract_wins() {
        let inherited = [
            ("PATH", "/usr/bin"),
            ("CONFIGPROXY_AUTH_TOKEN", "secret"),
            ("HOME", "/home/hub"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let configured = BTreeMap::from([
            ("EXTRA".to_owned(), "1".to_owned()),
            ("HOME".to_owned(), "/srv/home".to_owned()),
            ("JUPYTERHUB_API_TOKEN".to_owned(), "from-config".to_owned()),
        ]);
        let mut req = request("alice", "", "/user/alice/");
        req.env.insert("JUPYTERHUB_API_TOKEN".to_owned(), "tok".to_owned());
        let env = server_env(inherited.into_iter(), &configured, &req, 5000);
        assert_eq!(env.get("PATH").map(String::as_str), Some("/usr/bin"));
        assert_eq!(env.get("CONFIGPROXY_AUTH_TOKEN"), None);
        assert_eq!(env["HOME"], "/srv/home");
        assert_eq!(env["EXTRA"], "1");
        assert_eq!(env["JUPYTERHUB_API_TOKEN"], "tok");
        assert_eq!(env["JUPYTERHUB_USER"], "alice");
        assert_eq!(env["JUPYTERHUB_SERVER_NAME"], "");
        assert_eq!(env["JUPYTERHUB_SERVICE_PREFIX"], "/user/alice/");
        assert_eq!(env["JUPYTERHUB_SERVICE_URL"], "http://127.0.0.1:5000/user/alice/");
    }

    #[test]
    fn a_listening_socket_is_found_by_its_port_and_a_connected_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let me = std::process::id();
        assert_eq!(process::listening(me, port), Some(true));
        let (accepted, _) = listener.accept().unwrap();
        drop(listener);
        // The accepted connection has the same local port, but does not listen.
        assert_eq!(process::listening(me, port), Some(false));
        drop((client, accepted));
    }

    #[test]
    fn log_file_names_stay_in_their_directory() {
        let cases = [
            ("alice", "", "alice.log"),
            ("alice", "lab2", "alice-lab2.log"),
            ("a.b@example.org", "", "a.b@example.org.log"),
            ("../etc", "x/y", "_.._etc-x_y.log"),
            (".hidden", "", "_.hidden.log"),
            ("", "", "_.log"),
            ("jürgen", "", "j_rgen.log"),
        ];
        for (user, server, want) in cases {
            assert_eq!(log_file_name(user, server), want, "{user:?} {server:?}");
        }
    }

    #[test]
    fn state_round_trips_and_bad_states_are_refused() {
        let record = ProcessRecord {
            pid: 4242,
            port: 8888,
            start_time: Some(123),
        };
        assert_eq!(ProcessRecord::from_state(&record.to_state()).unwrap(), record);
        let no_proc = json!({"pid": 4242, "port": 8888, "start_time": null});
        assert_eq!(ProcessRecord::from_state(&no_proc).unwrap().start_time, None);

        let own = std::process::id();
        let bad = [
            json!(null),
            json!({}),
            json!({"pid": "4242", "port": 1}),
            json!({"pid": 4242}),
            json!({"pid": -5, "port": 1}),
            json!({"pid": 4242, "port": 70000}),
            json!({"pid": 0, "port": 1}),
            json!({"pid": 1, "port": 1}),
            json!({"pid": 3_000_000_000u64, "port": 1}),
            json!({"pid": own, "port": 1}),
        ];
        for state in bad {
            assert!(ProcessRecord::from_state(&state).is_err(), "{state}");
        }
    }

    #[test]
    fn proc_stat_is_parsed_from_the_last_parenthesis() {
        let line = "1234 (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000000 200 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let stat = process::parse_stat(line).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.start_time, 987654);
        assert_eq!(process::parse_stat("1234 (x) S 1 2"), None);
        assert_eq!(process::parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_a_start_time() {
        let own = process::start_time(std::process::id());
        if Path::new("/proc/self/stat").exists() {
            assert!(own.is_some_and(|t| t > 0));
        }
    }

    #[test]
    fn early_exit_says_what_is_known() {
        let err = early_exit(ExitStatus::from_raw(3 << 8), "boom\n".to_owned(), true);
        assert!(matches!(&err, SpawnError::ExitedEarly { code: Some(3), detail } if detail == "boom"));
        let err = early_exit(ExitStatus::from_raw(libc::SIGKILL), String::new(), false);
        let SpawnError::ExitedEarly { code: None, detail } = err else {
            panic!("{err}")
        };
        assert!(
            detail.starts_with("killed by signal 9; its output was discarded"),
            "{detail}"
        );
    }
}
