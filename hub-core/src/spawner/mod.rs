//! The `Spawner`: how a user's server is started, found again and stopped. The hub owns the
//! lifecycle (limits, timeouts, readiness, routes); a spawner only runs servers somewhere.
//!
//! Two implementations: [`local::LocalSpawner`] (processes on this machine) and
//! [`kube::KubernetesSpawner`] (pods, through `spawner-k8s`). A spawner keeps nothing the hub cannot rebuild: what it needs to find a
//! server again after a hub restart is the [`SpawnerState`] it returns, which the hub persists.

pub mod kube;
pub mod local;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::progress::ProgressSink;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Spawner-private state, persisted by the hub (a JSON object; for local processes the pid).
pub type SpawnerState = Value;

/// What a spawner is asked to start.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    pub user: String,
    /// `""` for the default server.
    pub server_name: String,
    /// The server's URL prefix, e.g. `/user/alice/` or `/user/alice/lab2/`.
    pub prefix: String,
    /// JupyterHub's environment contract (`JUPYTERHUB_API_TOKEN`, `JUPYTERHUB_USER`, …).
    pub env: BTreeMap<String, String>,
    /// Options chosen by the user (JupyterHub's `user_options`).
    pub user_options: Value,
}

/// A server that is running (its process or pod exists); the hub checks HTTP readiness next.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// Where the proxy sends the server's traffic, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    pub state: SpawnerState,
}

/// What `poll` found.
#[derive(Debug, Clone, PartialEq)]
pub enum PollStatus {
    /// Still running, at this URL (it may have moved).
    Running { url: String },
    /// Gone; the exit code when known.
    Exited { code: Option<i32> },
}

/// Who answered a started server's URL ([`Spawner::answering`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answering {
    /// The server itself.
    Itself,
    /// Some other process, holding the port the server was given (picked free, taken meanwhile):
    /// the server has not bound it (yet).
    Another,
    /// The server has exited.
    Exited,
    /// The spawner cannot tell (a pod's address is its own): taken as the server.
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("the server command could not be started: {0}")]
    Launch(String),
    #[error("the server exited during start-up{}: {detail}", code.map(|c| format!(" with status {c}")).unwrap_or_default())]
    ExitedEarly { code: Option<i32>, detail: String },
    #[error("{0}")]
    Failed(String),
}

pub trait Spawner: Send + Sync + 'static {
    /// Starts a server and returns once it runs (not necessarily answering HTTP yet). Progress
    /// messages go to `progress`; the hub adds its own around them. The hub bounds the call with
    /// its start timeout and calls `stop` with whatever state was recorded if it gives up.
    fn start(&self, request: SpawnRequest, progress: ProgressSink) -> BoxFuture<'static, Result<Started, SpawnError>>;

    /// Stops a server and returns once it is gone.
    fn stop(&self, state: SpawnerState) -> BoxFuture<'static, Result<(), SpawnError>>;

    /// Is the server still there? Used at hub start-up (re-adoption) and periodically.
    fn poll(&self, state: SpawnerState) -> BoxFuture<'static, PollStatus>;

    /// A name for logs and `/hub/api/info`.
    fn kind(&self) -> &'static str;

    /// The kinds of server users choose from (KubeSpawner's profile list); empty when there is
    /// no choice. `user_options.profile` names one; the hub fills in the default when it is
    /// missing, so `start` sees a valid slug whenever this is not empty.
    fn profiles(&self) -> &[Profile] {
        &[]
    }

    /// Whether this hub runs the background work (one of several replicas on a shared state
    /// database holds it at a time): spawners with upkeep of their own (warm pools) do it only
    /// then.
    fn set_background(&self, held: bool) {
        let _ = held;
    }

    /// After the server's URL answered HTTP: whether the server itself holds its address. A
    /// local server's port is picked free and can be taken by another process before the server
    /// binds it; that process's answer must not pass for the server's (the route would send the
    /// user to someone else's server).
    fn answering(&self, state: SpawnerState) -> BoxFuture<'static, Answering> {
        let _ = state;
        Box::pin(async { Answering::Unknown })
    }

    /// Stops servers of `user`'s `server` that nobody recorded: a hub killed between starting
    /// one and writing down its state leaves one behind. They are known by their API token,
    /// given at spawn (`token_hashes`: the SHA-256 of each, as the hub keeps them). Returns how
    /// many were stopped. Spawners that name servers deterministically (pods) find them by name
    /// in `stop` and need nothing here.
    fn stop_strays(&self, user: &str, server: &str, token_hashes: &[String]) -> BoxFuture<'static, usize> {
        let _ = (user, server, token_hashes);
        Box::pin(async { 0 })
    }
}

/// One choice on the spawn page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    /// The value of `user_options.profile`, e.g. `gpu`.
    pub slug: String,
    pub display_name: String,
    pub description: String,
    /// Chosen when a start names no profile (the first profile if none is marked).
    pub default: bool,
}

/// The profile a start asked for, or the default one filled in; `Err` names a profile that does
/// not exist. With no profiles, the options pass through untouched.
pub fn choose_profile(profiles: &[Profile], mut options: Value) -> Result<Value, String> {
    if profiles.is_empty() {
        return Ok(options);
    }
    let Some(map) = options.as_object_mut() else {
        return Err("user options must be a JSON object".into());
    };
    match map.get("profile") {
        Some(Value::String(slug)) if profiles.iter().any(|p| &p.slug == slug) => {}
        Some(other) => {
            let known: Vec<&str> = profiles.iter().map(|p| p.slug.as_str()).collect();
            return Err(format!("unknown profile {other}; choose one of {}", known.join(", ")));
        }
        None => {
            let default = profiles.iter().find(|p| p.default).unwrap_or(&profiles[0]);
            map.insert("profile".into(), Value::String(default.slug.clone()));
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile(slug: &str, default: bool) -> Profile {
        Profile {
            slug: slug.into(),
            display_name: slug.to_uppercase(),
            description: String::new(),
            default,
        }
    }

    #[test]
    fn a_start_gets_the_profile_it_names_or_the_default() {
        let profiles = [profile("small", false), profile("gpu", true)];
        let cases = [
            (json!({}), Ok(json!({"profile": "gpu"}))),
            (json!({"profile": "small"}), Ok(json!({"profile": "small"}))),
            (
                json!({"profile": "small", "x": 1}),
                Ok(json!({"profile": "small", "x": 1})),
            ),
            (
                json!({"profile": "huge"}),
                Err("unknown profile \"huge\"; choose one of small, gpu"),
            ),
            (
                json!({"profile": 3}),
                Err("unknown profile 3; choose one of small, gpu"),
            ),
            (json!([]), Err("user options must be a JSON object")),
        ];
        for (options, want) in cases {
            let got = choose_profile(&profiles, options.clone());
            assert_eq!(got, want.map_err(String::from), "{options}");
        }
        let first_is_default = [profile("a", false), profile("b", false)];
        assert_eq!(
            choose_profile(&first_is_default, json!({})),
            Ok(json!({"profile": "a"}))
        );
        assert_eq!(
            choose_profile(&[], json!({"profile": "any"})),
            Ok(json!({"profile": "any"}))
        );
    }
}
