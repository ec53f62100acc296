//! A container as a local process: its own process group (so a signal reaches everything it
//! started), stdout and stderr appended to the container's log file, and a registry of live
//! process groups so the simulator can kill them all synchronously when it is dropped.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// Process groups of running containers.
#[derive(Default, Clone)]
pub struct ProcessGroups(Arc<Mutex<HashSet<i32>>>);

impl ProcessGroups {
    fn insert(&self, pgid: i32) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(pgid);
    }

    fn remove(&self, pgid: i32) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&pgid);
    }

    /// SIGKILLs every group, now (no waiting: this runs in `Drop`).
    pub fn kill_all(&self) {
        let groups: Vec<i32> = self.0.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        for pgid in groups {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// What to run.
pub struct Launch<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub working_dir: &'a Path,
    pub log_file: &'a Path,
}

pub struct ContainerProcess {
    child: tokio::process::Child,
    pgid: i32,
    groups: ProcessGroups,
}

impl ContainerProcess {
    pub fn spawn(launch: &Launch<'_>, groups: &ProcessGroups) -> std::io::Result<Self> {
        let (program, args) = launch
            .argv
            .split_first()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command to run"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.log_file)?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(launch.working_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn()?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok()).unwrap_or(0);
        groups.insert(pgid);
        Ok(Self {
            child,
            pgid,
            groups: groups.clone(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// Signals the whole process group.
    pub fn signal(&self, signal: i32) {
        signal_group(self.pgid, signal);
    }

    /// Waits for the main process to exit: its exit code, or 128 + the signal that killed it.
    pub async fn wait(&mut self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        match self.child.wait().await {
            Ok(status) => status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1),
            Err(_) => 1,
        }
    }

    /// SIGKILLs the group and reaps the main process.
    pub async fn kill(mut self) -> i32 {
        self.signal(libc::SIGKILL);
        self.wait().await
    }
}

impl Drop for ContainerProcess {
    fn drop(&mut self) {
        // Whatever the main process left behind in its group goes with it.
        signal_group(self.pgid, libc::SIGKILL);
        self.groups.remove(self.pgid);
    }
}
