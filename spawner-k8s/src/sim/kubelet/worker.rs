//! One pod's life on its node, as a state machine driven by time, its process and updates of
//! its object:
//!
//! ```text
//! bound → sandbox (pod IP, dirs) → pull image ─(does-not-exist)→ ErrImagePull ⇄ ImagePullBackOff
//!       → Created → Started (Running; Ready once the first containerPort accepts connections)
//!       → exit → restartPolicy: restart after CrashLoopBackOff, or Succeeded / Failed
//! any time: deletionTimestamp → SIGTERM, SIGKILL after the grace period, object removed;
//!           object gone (or simulator shutdown) → SIGKILL at once
//! ```
//!
//! The worker owns the pod's status: it keeps the container state here and renders the whole
//! status from it on each change (one write per transition).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use super::super::events::{self, EventType};
use super::super::object;
use super::super::paths;
use super::super::resources;
use super::process::{ContainerProcess, Launch};
use super::{KubeletShared, env, volumes};

const READINESS_PERIOD: Duration = Duration::from_millis(50);

/// Why the lifecycle stopped early.
enum Interrupt {
    /// `deletionTimestamp` set: terminate gracefully within this period.
    Deleted { grace: Duration },
    /// The object is gone (or the simulator is shutting down): kill now.
    Gone,
}

#[derive(Debug, Clone)]
enum ContainerState {
    Waiting {
        reason: &'static str,
        message: Option<String>,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        reason: &'static str,
        started_at: String,
        finished_at: String,
    },
}

impl ContainerState {
    fn to_json(&self) -> Value {
        match self {
            ContainerState::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({"waiting": w})
            }
            ContainerState::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            ContainerState::Terminated {
                exit_code,
                reason,
                started_at,
                finished_at,
            } => json!({"terminated": {
                "exitCode": exit_code, "reason": reason, "startedAt": started_at, "finishedAt": finished_at,
            }}),
        }
    }
}

pub struct PodWorker {
    shared: Arc<KubeletShared>,
    updates: watch::Receiver<Option<Arc<Value>>>,
    pod: Arc<Value>,
    namespace: String,
    name: String,
    uid: String,
    node: String,
    ip: Option<Ipv4Addr>,
    phase: &'static str,
    state: ContainerState,
    last_state: Option<ContainerState>,
    ready: bool,
    restart_count: u32,
    start_time: String,
    /// `sim://<pid>` of the current (or last) process, as the runtime's container id.
    container_id: Option<String>,
    process: Option<ContainerProcess>,
}

impl PodWorker {
    pub fn new(shared: Arc<KubeletShared>, pod: Arc<Value>, updates: watch::Receiver<Option<Arc<Value>>>) -> Self {
        let (namespace, name) = object::key(&pod);
        Self {
            shared,
            updates,
            namespace,
            name,
            uid: object::uid(&pod).to_string(),
            node: object::str_at(&pod, "/spec/nodeName").to_string(),
            pod,
            ip: None,
            phase: "Pending",
            state: ContainerState::Waiting {
                reason: "ContainerCreating",
                message: None,
            },
            last_state: None,
            ready: false,
            restart_count: 0,
            start_time: object::now(),
            container_id: None,
            process: None,
        }
    }

    pub async fn run(mut self) {
        let interrupt = match self.check_update() {
            Err(interrupt) => interrupt,
            Ok(()) => match self.lifecycle().await {
                Err(interrupt) => interrupt,
                Ok(never) => match never {},
            },
        };
        match interrupt {
            Interrupt::Gone => {
                if let Some(process) = self.process.take() {
                    process.kill().await;
                }
            }
            Interrupt::Deleted { grace } => {
                self.terminate(grace).await;
                self.shared
                    .registry
                    .remove(resources::PODS, &self.namespace, &self.name, &self.uid, false);
            }
        }
        self.shared.recorder.forget(&self.uid);
    }

    /// SIGTERM, then SIGKILL if the process outlives the grace period.
    async fn terminate(&mut self, grace: Duration) {
        let Some(mut process) = self.process.take() else { return };
        let container = self.container_name();
        self.event(EventType::Normal, "Killing", &format!("Stopping container {container}"));
        process.signal(libc::SIGTERM);
        if tokio::time::timeout(grace, process.wait()).await.is_err() {
            process.kill().await;
        }
    }

    /// Runs until the pod is deleted or gone: it only ever returns an interrupt.
    async fn lifecycle(&mut self) -> Result<Infallible, Interrupt> {
        self.ip = Some(self.shared.allocate_ip(&self.pod));
        self.publish();
        let container = self.container().clone();
        let mounts = match volumes::prepare(&self.shared.config.root_dir, &self.pod, &container) {
            Ok(mounts) => mounts,
            Err(e) => {
                let message = format!("MountVolume.SetUp failed: {e}");
                self.event(EventType::Warning, "FailedMount", &message);
                return self.idle().await;
            }
        };
        self.pull_image(&container).await?;
        let mut backoff_exponent = 0u32;
        loop {
            let started = self.start_container(&container, &mounts).await?;
            let exit_code = match started {
                Some(started_at) => self.supervise(&container, started_at.clone()).await?,
                None => 128,
            };
            let restart = match object::str_at(&self.pod, "/spec/restartPolicy") {
                "Never" => false,
                "OnFailure" => exit_code != 0,
                _ => true,
            };
            if !restart {
                self.phase = if exit_code == 0 { "Succeeded" } else { "Failed" };
                self.publish();
                return self.idle().await;
            }
            self.restart_count += 1;
            let backoff = self
                .shared
                .config
                .crash_backoff
                .saturating_mul(1 << backoff_exponent.min(5));
            backoff_exponent += 1;
            let container_name = self.container_name();
            self.last_state = Some(self.state.clone());
            self.state = ContainerState::Waiting {
                reason: "CrashLoopBackOff",
                message: Some(format!(
                    "back-off {}s restarting failed container={container_name} pod={}_{}({})",
                    backoff.as_secs(),
                    self.name,
                    self.namespace,
                    self.uid
                )),
            };
            self.publish();
            let message = format!(
                "Back-off restarting failed container {container_name} in pod {}_{}({})",
                self.name, self.namespace, self.uid
            );
            self.event(EventType::Warning, "BackOff", &message);
            self.pause(backoff).await?;
        }
    }

    /// Pulls the container's image (a node caches what it pulled); images whose name says
    /// `does-not-exist` fail forever with ErrImagePull / ImagePullBackOff.
    async fn pull_image(&mut self, container: &Value) -> Result<(), Interrupt> {
        let image = object::str_at(container, "/image").to_string();
        if self.shared.image_cached(&self.node, &image) {
            self.event(
                EventType::Normal,
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
            );
            return Ok(());
        }
        let mut attempt = 0u32;
        loop {
            self.event(EventType::Normal, "Pulling", &format!("Pulling image \"{image}\""));
            let began = Instant::now();
            self.pause(self.shared.config.image_pull).await?;
            if !image.contains("does-not-exist") {
                self.shared.cache_image(&self.node, &image);
                let took = began.elapsed().as_secs_f64();
                self.event(
                    EventType::Normal,
                    "Pulled",
                    &format!("Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting)"),
                );
                return Ok(());
            }
            let reason = format!(
                "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": not found"
            );
            self.event(
                EventType::Warning,
                "Failed",
                &format!("Failed to pull image \"{image}\": {reason}"),
            );
            self.event(EventType::Warning, "Failed", "Error: ErrImagePull");
            self.state = ContainerState::Waiting {
                reason: "ErrImagePull",
                message: Some(reason),
            };
            self.publish();
            let backoff = self.shared.config.crash_backoff.saturating_mul(1 << attempt.min(5));
            attempt += 1;
            self.pause(backoff.max(Duration::from_millis(50))).await?;
            let message = format!("Back-off pulling image \"{image}\"");
            self.event(EventType::Normal, "BackOff", &message);
            self.event(EventType::Warning, "Failed", "Error: ImagePullBackOff");
            self.state = ContainerState::Waiting {
                reason: "ImagePullBackOff",
                message: Some(message),
            };
            self.publish();
            self.pause(backoff).await?;
        }
    }

    /// Created → (container_start) → process started. `None` if the process could not start
    /// (reported as a terminated StartError, which the restart policy then handles).
    async fn start_container(
        &mut self,
        container: &Value,
        mounts: &[volumes::Mount],
    ) -> Result<Option<String>, Interrupt> {
        let container_name = self.container_name();
        self.event(
            EventType::Normal,
            "Created",
            &format!("Created container: {container_name}"),
        );
        self.pause(self.shared.config.container_start).await?;
        let root = self.shared.config.root_dir.clone();
        let pod_dir = paths::pod_dir(&root, &self.namespace, &self.name);
        let log_file = paths::log_file(&root, &self.namespace, &self.name, &container_name);
        let env = self.environment(container, mounts, &pod_dir);
        let mut argv: Vec<String> = env::command_line(container, &env)
            .iter()
            .map(|a| volumes::rewrite(a, mounts))
            .collect();
        if argv.is_empty() {
            // No command and no args: the image's entrypoint is unknown; idle like a pause
            // container.
            argv = vec!["sleep".into(), "2147483647".into()];
        }
        let working_dir = match container.get("workingDir").and_then(Value::as_str) {
            Some(dir) => {
                let mapped = PathBuf::from(volumes::rewrite(dir, mounts));
                if mapped.is_dir() { mapped } else { pod_dir.clone() }
            }
            None => pod_dir.clone(),
        };
        let launch = Launch {
            argv: &argv,
            env: &env,
            working_dir: &working_dir,
            log_file: &log_file,
        };
        let started_at = object::now();
        match std::fs::create_dir_all(&pod_dir).and_then(|()| ContainerProcess::spawn(&launch, &self.shared.processes))
        {
            Ok(process) => {
                tracing::debug!(pod = %self.name, pid = process.pid(), ?argv, "simulated container started");
                self.container_id = Some(format!("sim://{}", process.pid()));
                self.process = Some(process);
                self.event(
                    EventType::Normal,
                    "Started",
                    &format!("Started container {container_name}"),
                );
                self.phase = "Running";
                self.state = ContainerState::Running {
                    started_at: started_at.clone(),
                };
                self.ready = readiness_port(container).is_none();
                self.publish();
                Ok(Some(started_at))
            }
            Err(e) => {
                let message = format!(
                    "Error: failed to start container \"{container_name}\": exec: {:?}: {e}",
                    argv[0]
                );
                self.event(EventType::Warning, "Failed", &message);
                self.state = ContainerState::Terminated {
                    exit_code: 128,
                    reason: "StartError",
                    started_at: started_at.clone(),
                    finished_at: object::now(),
                };
                self.ready = false;
                self.publish();
                Ok(None)
            }
        }
    }

    /// While the process runs: readiness probing and object updates. Returns the exit code.
    async fn supervise(&mut self, container: &Value, started_at: String) -> Result<i32, Interrupt> {
        let probe = readiness_port(container)
            .zip(self.ip)
            .map(|(port, ip)| SocketAddr::from((ip, port)));
        let Some(mut process) = self.process.take() else {
            return Ok(128);
        };
        let exit_code = loop {
            let probing = !self.ready && probe.is_some();
            tokio::select! {
                code = process.wait() => break code,
                _ = tokio::time::sleep(READINESS_PERIOD), if probing => {
                    if let Some(addr) = probe
                        && tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await.is_ok_and(|c| c.is_ok())
                    {
                        self.ready = true;
                        self.publish();
                    }
                }
                changed = self.updates.changed() => {
                    if changed.is_err() {
                        self.process = Some(process);
                        return Err(Interrupt::Gone);
                    }
                    if let Err(interrupt) = self.check_update() {
                        self.process = Some(process);
                        return Err(interrupt);
                    }
                }
            }
        };
        drop(process);
        self.ready = false;
        self.state = ContainerState::Terminated {
            exit_code,
            reason: if exit_code == 0 { "Completed" } else { "Error" },
            started_at,
            finished_at: object::now(),
        };
        self.publish();
        Ok(exit_code)
    }

    /// Nothing left to run: wait for the object to be deleted.
    async fn idle(&mut self) -> Result<Infallible, Interrupt> {
        loop {
            if self.updates.changed().await.is_err() {
                return Err(Interrupt::Gone);
            }
            self.check_update()?;
        }
    }

    /// Sleeps for `duration` while following updates of the object.
    async fn pause(&mut self, duration: Duration) -> Result<(), Interrupt> {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
                changed = self.updates.changed() => {
                    if changed.is_err() {
                        return Err(Interrupt::Gone);
                    }
                    self.check_update()?;
                }
            }
        }
    }

    /// Takes in the latest object: deletion interrupts, label/annotation changes refresh the
    /// downward API files.
    fn check_update(&mut self) -> Result<(), Interrupt> {
        let latest = self.updates.borrow_and_update().clone();
        let Some(pod) = latest.filter(|p| object::uid(p) == self.uid) else {
            return Err(Interrupt::Gone);
        };
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            let grace = pod
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(30);
            self.pod = pod;
            return Err(Interrupt::Deleted {
                grace: Duration::from_secs(grace),
            });
        }
        let metadata_changed = pod.pointer("/metadata/labels") != self.pod.pointer("/metadata/labels")
            || pod.pointer("/metadata/annotations") != self.pod.pointer("/metadata/annotations");
        self.pod = pod;
        if metadata_changed && let Err(e) = volumes::refresh_downward_api(&self.shared.config.root_dir, &self.pod) {
            tracing::warn!(pod = %self.name, error = %e, "refreshing downward API files failed");
        }
        Ok(())
    }

    fn container(&self) -> &Value {
        self.pod.pointer("/spec/containers/0").unwrap_or(&Value::Null)
    }

    fn container_name(&self) -> String {
        object::str_at(&self.pod, "/spec/containers/0/name").to_string()
    }

    /// The process environment: a few host variables a program needs to run at all (PATH,
    /// locale), `HOME` and `HOSTNAME` as a container has them, then the container's own env with
    /// the mount rule applied.
    fn environment(
        &self,
        container: &Value,
        mounts: &[volumes::Mount],
        pod_dir: &std::path::Path,
    ) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = ["PATH", "LANG", "LC_ALL", "TZ"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        env.push(("HOME".into(), pod_dir.display().to_string()));
        env.push(("HOSTNAME".into(), self.name.clone()));
        // `self.pod` may predate the status this worker just published: the pod IP comes from
        // the worker itself, or `status.podIP` would read as "" and the server bind 0.0.0.0.
        let mut pod = (*self.pod).clone();
        if let Some(ip) = self.ip {
            pod["status"]["podIP"] = json!(ip.to_string());
        }
        for (k, v) in env::container_env(&pod, container) {
            env.retain(|(name, _)| *name != k);
            env.push((k, volumes::rewrite(&v, mounts)));
        }
        env
    }

    fn event(&self, event_type: EventType, reason: &str, message: &str) {
        let field_path = format!("spec.containers{{{}}}", self.container_name());
        let field_path = (!matches!(reason, "FailedMount")).then_some(field_path.as_str());
        self.shared.recorder.record(
            &self.pod,
            field_path,
            event_type,
            reason,
            message,
            events::kubelet(&self.node),
        );
    }

    /// Renders the status from the worker's state and writes it (nothing if unchanged).
    fn publish(&mut self) {
        let ip = self.ip.map(|ip| ip.to_string()).unwrap_or_default();
        let containers = self
            .pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let statuses: Vec<Value> = containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Only the first container runs; the others mirror it.
                let mut status = json!({
                    "name": object::str_at(c, "/name"),
                    "image": object::str_at(c, "/image"),
                    "imageID": "",
                    "ready": self.ready,
                    "started": matches!(self.state, ContainerState::Running { .. }),
                    "restartCount": if i == 0 { self.restart_count } else { 0 },
                    "state": self.state.to_json(),
                });
                if let Some(id) = &self.container_id {
                    status["containerID"] = json!(id);
                }
                if let (0, Some(last)) = (i, &self.last_state) {
                    status["lastState"] = last.to_json();
                }
                status
            })
            .collect();
        let (phase, ready, uid) = (self.phase, self.ready, self.uid.clone());
        let host_ip = "127.0.0.1";
        let start_time = self.start_time.clone();
        let _ = self
            .shared
            .registry
            .store
            .update(resources::PODS.plural, &self.namespace, &self.name, |current| {
                if object::uid(current) != uid {
                    return Ok(None);
                }
                let mut next = current.clone();
                let status = &mut next["status"];
                status["phase"] = json!(phase);
                status["hostIP"] = json!(host_ip);
                status["hostIPs"] = json!([{"ip": host_ip}]);
                if !ip.is_empty() {
                    status["podIP"] = json!(ip);
                    status["podIPs"] = json!([{"ip": ip}]);
                }
                status["startTime"] = json!(start_time);
                status["containerStatuses"] = json!(statuses);
                let not_ready = (!ready).then_some("ContainersNotReady");
                let message = (!ready).then(|| {
                    let names: Vec<&str> = containers.iter().map(|c| object::str_at(c, "/name")).collect();
                    format!("containers with unready status: [{}]", names.join(" "))
                });
                object::set_condition(&mut next, "PodReadyToStartContainers", true, None, None);
                object::set_condition(&mut next, "Initialized", true, None, None);
                object::set_condition(&mut next, "Ready", ready, not_ready, message.as_deref());
                object::set_condition(&mut next, "ContainersReady", ready, not_ready, message.as_deref());
                object::set_condition(&mut next, "PodScheduled", true, None, None);
                Ok(Some(next))
            });
    }
}

/// The port readiness waits for: the first declared TCP containerPort.
fn readiness_port(container: &Value) -> Option<u16> {
    container
        .get("ports")?
        .as_array()?
        .iter()
        .find(|p| matches!(p.get("protocol").and_then(Value::as_str), None | Some("TCP")))
        .and_then(|p| p.get("containerPort")?.as_u64())
        .and_then(|p| u16::try_from(p).ok())
}
