//! The Kubernetes spawner: start, stop and poll user servers as pods.
//!
//! Start, in order: re-attach a pod this server already has (found by label, confirmed by the raw
//! names in its annotations); else claim a warm pod of the profile's pool; else ensure the claim,
//! create the pod and, if configured, its Service; then wait on the pod cache until the pod runs
//! or fails for good, turning its events into progress.
//!
//! Invariants:
//! - No polling reads: every wait is on the watch caches' change signal; the API is called only
//!   to write. A cold spawn writes the pod, plus the volume claim and the Service when configured
//!   (at most 3 writes); a warm spawn writes one patch.
//! - One pod per server: an existing pod of the server is adopted, never duplicated; a 409 on
//!   create is resolved by looking at who holds the name.
//! - A failed start leaves no pod behind (deleted at once, no grace period).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::kubernetes::{KubernetesConfig, PodConfig, Profile};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Service};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::api::ApiGate;
use crate::cache::{self, Cache};
use crate::error::KubeSpawnError;
use crate::liveness::{Liveness, LivenessLayer};
use crate::names;
use crate::pool::Pool;
use crate::render::{self, Owner, PodInput};
use crate::status;
use crate::writes::AbandonGuard;

/// What the hub asks for.
#[derive(Debug, Clone)]
pub struct PodRequest {
    pub user: String,
    /// `""` for the default server.
    pub server_name: String,
    /// The server's URL prefix, e.g. `/user/alice/`.
    pub prefix: String,
    /// JupyterHub's environment contract (`JUPYTERHUB_API_TOKEN`, …).
    pub env: BTreeMap<String, String>,
    /// The profile's slug (`user_options.profile`); `None` for the default profile.
    pub profile: Option<String>,
}

/// A running pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodStarted {
    /// `http://<podIP>:<port>` (or the Service's DNS name with `service_per_pod`).
    pub url: String,
    /// `{"namespace", "pod", "uid", "port", "url", …}`, to be kept by the hub.
    pub state: Value,
}

/// What `poll` found.
#[derive(Debug, Clone, PartialEq)]
pub enum PodPoll {
    Running { url: String },
    Gone { code: Option<i32> },
}

/// A server found running in the cluster (for re-adoption without hub state).
#[derive(Debug, Clone, PartialEq)]
pub struct FoundServer {
    pub user: String,
    pub server_name: String,
    pub url: String,
    pub state: Value,
}

/// Progress reports: percent (0–100, the hub keeps 100 for itself) and a message.
pub type ProgressFn = Arc<dyn Fn(u8, String) + Send + Sync>;

/// How long a stop waits beyond the grace period for the pod to leave the cache.
const STOP_SLACK: Duration = Duration::from_secs(30);
/// How long the caches may take to list at start-up.
const SYNC_WITHIN: Duration = Duration::from_secs(60);

/// Runs servers as pods. Shared as `Arc<KubeSpawner>`.
pub struct KubeSpawner {
    pub(crate) config: KubernetesConfig,
    pub(crate) pods_api: Api<Pod>,
    pub(crate) claims_api: Api<PersistentVolumeClaim>,
    pub(crate) services_api: Api<Service>,
    pub(crate) gate: ApiGate,
    pub(crate) pods: Cache<Pod>,
    pub(crate) events: Cache<Event>,
    pools: HashMap<String, Arc<Pool>>,
    /// Whether this process keeps the warm pools full: with several hubs on one cluster, only
    /// the one running the background work does ([`KubeSpawner::set_pool_refill`]).
    pub(crate) refill: tokio::sync::watch::Sender<bool>,
}

impl KubeSpawner {
    /// Turns the warm pools' refill on or off (claims work either way). Several hub replicas
    /// share the pools; one refilling them is enough, and two would overfill them.
    pub fn set_pool_refill(&self, on: bool) {
        self.refill.send_replace(on);
    }

    /// A client from `config.kubeconfig` (or inferred as kubectl does), the caches synced, the
    /// warm pools started.
    pub async fn connect(config: &KubernetesConfig) -> anyhow::Result<Arc<KubeSpawner>> {
        KubeSpawner::connect_refilling(config, true).await
    }

    /// As [`KubeSpawner::connect`], the warm pools refilled from the start or only once
    /// [`KubeSpawner::set_pool_refill`] says so (a hub replica that may not hold the background
    /// work must not create a single pod before it knows).
    pub async fn connect_refilling(config: &KubernetesConfig, refill: bool) -> anyhow::Result<Arc<KubeSpawner>> {
        let options = kube::config::KubeConfigOptions {
            context: config.context.clone(),
            ..Default::default()
        };
        let kube_config = match &config.kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| anyhow::anyhow!("kubernetes.kubeconfig {}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &options).await?
            }
            None if config.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
            None => kube::Config::infer().await?,
        };
        KubeSpawner::connect_inner(config, kube_config, refill).await
    }

    /// As [`KubeSpawner::connect`], with the cluster's client settings made elsewhere.
    pub async fn connect_with(
        config: &KubernetesConfig,
        kube_config: kube::Config,
    ) -> anyhow::Result<Arc<KubeSpawner>> {
        KubeSpawner::connect_inner(config, kube_config, true).await
    }

    async fn connect_inner(
        config: &KubernetesConfig,
        mut kube_config: kube::Config,
        refill: bool,
    ) -> anyhow::Result<Arc<KubeSpawner>> {
        config.validate()?;
        // Retries are the gate's (`api_retries`, honouring `retryAfterSeconds`) and the watcher's
        // backoff; kube's own layer would retry inside each of those attempts, multiplying them.
        kube_config.default_retry = false;
        render::check_config(config).map_err(anyhow::Error::msg)?;
        let ns = config.namespace.as_str();
        let stale = Duration::from_secs(config.watch_stale_secs);
        let client = Client::try_from(kube_config.clone())?;
        // Each watch has a client of its own, whose liveness layer tells the watchdog what that
        // watch alone received.
        let watch_client = |liveness: &Arc<Liveness>| -> anyhow::Result<Client> {
            Ok(kube::client::ClientBuilder::try_from(kube_config.clone())?
                .with_layer(&LivenessLayer(liveness.clone()))
                .build())
        };
        let (pod_liveness, event_liveness) = (Liveness::new(), Liveness::new());
        let pod_client = watch_client(&pod_liveness)?;
        let event_client = watch_client(&event_liveness)?;
        let pods = Cache::start(
            "pod",
            Api::namespaced(pod_client, ns),
            cache::pod_watch(stale),
            stale,
            pod_liveness,
        );
        let events = Cache::start(
            "event",
            Api::namespaced(event_client, ns),
            cache::event_watch(stale),
            stale,
            event_liveness,
        );
        pods.synced(SYNC_WITHIN).await.map_err(anyhow::Error::msg)?;
        events.synced(SYNC_WITHIN).await.map_err(anyhow::Error::msg)?;
        let pools = config
            .profiles
            .iter()
            .filter(|p| p.warm_pool > 0)
            .map(|p| (p.slug.clone(), Arc::new(Pool::new(config, p))))
            .collect();
        let spawner = Arc::new(KubeSpawner {
            config: config.clone(),
            pods_api: Api::namespaced(client.clone(), ns),
            claims_api: Api::namespaced(client.clone(), ns),
            services_api: Api::namespaced(client.clone(), ns),
            gate: ApiGate::new(config.api_concurrency, config.api_retries),
            pods,
            events,
            pools,
            refill: tokio::sync::watch::channel(refill).0,
        });
        for pool in spawner.pools.values() {
            pool.start(Arc::downgrade(&spawner));
        }
        Ok(spawner)
    }

    /// The profiles offered on the spawn page and the API.
    pub fn profiles(&self) -> &[Profile] {
        &self.config.profiles
    }

    /// For logs and `/hub/api/info`.
    pub fn describe(&self) -> String {
        let pools: Vec<String> = self
            .config
            .profiles
            .iter()
            .filter(|p| p.warm_pool > 0)
            .map(|p| format!("{}={}", p.slug, p.warm_pool))
            .collect();
        format!(
            "kubernetes (namespace {}, {} profiles{})",
            self.config.namespace,
            self.config.profiles.len(),
            if pools.is_empty() {
                String::new()
            } else {
                format!(", warm pools {}", pools.join(" "))
            }
        )
    }

    /// Watch restarts so far, pods and events (1 each after start-up).
    pub fn watch_starts(&self) -> (u64, u64) {
        (self.pods.watch_starts(), self.events.watch_starts())
    }

    /// Time since each watch (pods, events) last delivered something: the caches' age, for a
    /// metric or a health check.
    pub fn watch_ages(&self) -> (Duration, Duration) {
        (self.pods.age(), self.events.age())
    }

    /// Unclaimed warm pods of `profile` that are running, from the cache.
    pub fn pool_ready(&self, profile: &str) -> usize {
        self.pools.get(profile).map_or(0, |p| p.ready_count(&self.pods))
    }

    /// Starts `request`'s server and returns once its pod runs.
    pub async fn start(&self, request: PodRequest, progress: ProgressFn) -> Result<PodStarted, KubeSpawnError> {
        let began = Instant::now();
        let deadline = began + Duration::from_secs(self.config.start_timeout_secs);
        let profile = self
            .config
            .profile(request.profile.as_deref())
            .map_err(KubeSpawnError::Profile)?;
        let pod_config = match profile {
            Some(p) => self.config.pod.overlaid(&p.pod),
            None => self.config.pod.clone(),
        };
        let slug = profile.map(|p| p.slug.as_str());
        let owner = Owner {
            user: request.user.clone(),
            server: request.server_name.clone(),
        };

        if let Some(found) = self.wait_existing_settled(&owner, deadline).await? {
            progress(10, format!("Re-attaching to the running pod {}", found.name_any()));
            return self.wait_running(&found, slug, &progress, deadline, false).await;
        }

        if let Some(pool) = slug.and_then(|s| self.pools.get(s)) {
            let env = render::user_env(&request.env, &request.prefix, port_of(&pod_config));
            if let Some(pod) = pool.claim(self, &owner, &env).await? {
                progress(60, format!("Claimed the warm pod {}", pod.name_any()));
                let url = self
                    .url_of(&pod)
                    .ok_or_else(|| KubeSpawnError::Deleted { pod: pod.name_any() })?;
                return Ok(self.started(&pod, &url, slug));
            }
            progress(5, "No warm pod free; starting a new one".into());
        }

        let pod_name = names::object_name(&self.config.pod_name_template, &owner.user, &owner.server);
        let claim_name = match &pod_config.storage {
            Some(storage) if storage.enabled => {
                let name = names::object_name(&storage.name_template, &owner.user, &owner.server);
                self.ensure_claim(&name, &owner, &pod_config).await?;
                Some(name)
            }
            _ => None,
        };
        let input = PodInput {
            namespace: &self.config.namespace,
            name: pod_name.clone(),
            owner: Some(owner.clone()),
            profile: slug,
            pod: &pod_config,
            hub_env: &request.env,
            prefix: &request.prefix,
            claim: claim_name.clone(),
            grace_secs: self.config.stop_grace_secs,
            launcher: None,
        };
        let manifest = render::pod(&input).map_err(|e| KubeSpawnError::Config(e.to_string()))?;
        progress(10, format!("Creating the pod {pod_name}"));
        let pod = self.create_pod(&manifest, &owner, deadline).await?;
        // If the caller gives up on this start (drops the future, e.g. at the hub's own start
        // timeout), the pod must not outlive it.
        let guard = AbandonGuard::new(self.pods_api.clone(), &pod);
        if self.config.service_per_pod
            && let Err(e) = self.ensure_service(&pod, &owner, input.port()).await
        {
            self.discard(&pod).await;
            guard.disarm();
            return Err(e);
        }
        let outcome = self.wait_running(&pod, slug, &progress, deadline, true).await;
        guard.disarm();
        let mut started = outcome?;
        if let (Some(claim), Some(obj)) = (claim_name, started.state.as_object_mut()) {
            obj.insert("pvc".into(), json!(claim));
        }
        Ok(started)
    }

    /// Stops the server in `state` and returns once its pod is gone (grace period honoured).
    pub async fn stop(&self, state: &Value) -> Result<(), KubeSpawnError> {
        let Some(target) = Target::from_state(state) else {
            if state.is_null() || state.as_object().is_some_and(|o| o.is_empty()) {
                return Ok(());
            }
            return Err(KubeSpawnError::State(state.to_string()));
        };
        let Some(pod) = self.cached(&target.pod) else {
            return Ok(());
        };
        if target.uid.as_deref().is_some_and(|u| pod.uid().as_deref() != Some(u)) {
            return Ok(()); // the pod of that name is another one: ours is gone
        }
        let uid = pod.uid();
        let grace = self.config.stop_grace_secs;
        if pod.metadata.deletion_timestamp.is_none() {
            self.delete_pod(&target.pod, uid.clone(), grace).await?;
        }
        let limit = Duration::from_secs(grace) + STOP_SLACK;
        self.wait_gone(&target.pod, uid.as_deref(), Instant::now() + limit)
            .await
            .map_err(|()| KubeSpawnError::StopTimeout {
                pod: target.pod.clone(),
                secs: limit.as_secs(),
            })
    }

    /// Is the server in `state` still running? Answered from the cache.
    pub async fn poll(&self, state: &Value) -> PodPoll {
        let Some(target) = Target::from_state(state) else {
            return PodPoll::Gone { code: None };
        };
        let Some(pod) = self.cached(&target.pod) else {
            return PodPoll::Gone { code: None };
        };
        if target.uid.as_deref().is_some_and(|u| pod.uid().as_deref() != Some(u)) {
            return PodPoll::Gone { code: None };
        }
        if status::is_finished(&pod) {
            return PodPoll::Gone {
                code: status::exit_code(&pod),
            };
        }
        if pod.metadata.deletion_timestamp.is_some() {
            return PodPoll::Gone { code: None };
        }
        if let Some(code) = status::server_down(&pod) {
            // The hub stops it (deleting the pod) on hearing so.
            return PodPoll::Gone { code };
        }
        match self.url_of(&pod) {
            Some(url) => PodPoll::Running { url },
            None => PodPoll::Running {
                url: target.url.unwrap_or_default(),
            },
        }
    }

    /// Every user server running in the namespace, found by label (for a hub that lost its state).
    pub fn found_servers(&self) -> Vec<FoundServer> {
        self.pods
            .store()
            .state()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && !status::is_finished(p))
            .filter_map(|pod| {
                let owner = owner_of(&pod)?;
                let url = self.url_of(&pod)?;
                let state = self.state_of(&pod, &url, pod.labels().get(render::PROFILE).map(String::as_str));
                Some(FoundServer {
                    user: owner.user,
                    server_name: owner.server,
                    url,
                    state,
                })
            })
            .collect()
    }
}

/// What a state names.
struct Target {
    pod: String,
    uid: Option<String>,
    url: Option<String>,
}

impl Target {
    fn from_state(state: &Value) -> Option<Target> {
        let text = |k: &str| state.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Target {
            pod: text("pod")?,
            uid: text("uid"),
            url: text("url"),
        })
    }
}

/// The owner written on a pod (raw names in the annotations), if it is a user's server.
pub(crate) fn owner_of(pod: &Pod) -> Option<Owner> {
    if pod.labels().get(render::CLAIMED).is_some_and(|c| c == "false") {
        return None;
    }
    let a = pod.annotations();
    Some(Owner {
        user: a.get(render::USERNAME)?.clone(),
        server: a.get(render::SERVERNAME)?.clone(),
    })
}

fn port_of(pod: &PodConfig) -> u16 {
    pod.port.unwrap_or(render::DEFAULT_PORT)
}

impl KubeSpawner {
    pub(crate) fn cached(&self, name: &str) -> Option<Arc<Pod>> {
        self.pods
            .store()
            .get(&ObjectRef::new(name).within(&self.config.namespace))
    }

    /// The pods of `owner`'s server in the cache: labels select, annotations confirm.
    pub(crate) fn owned_pods(&self, owner: &Owner) -> Vec<Arc<Pod>> {
        let user = names::label_value(&owner.user);
        let server = names::label_value(&owner.server);
        self.pods.store().state_filter(|p| {
            let labels = p.labels();
            labels.get(render::USERNAME) == Some(&user)
                && labels.get(render::SERVERNAME) == Some(&server)
                && owner_of(p).as_ref() == Some(owner)
        })
    }

    pub(crate) fn started(&self, pod: &Pod, url: &str, profile: Option<&str>) -> PodStarted {
        PodStarted {
            url: url.to_owned(),
            state: self.state_of(pod, url, profile),
        }
    }

    pub(crate) fn state_of(&self, pod: &Pod, url: &str, profile: Option<&str>) -> Value {
        let mut state = json!({
            "namespace": self.config.namespace,
            "pod": pod.name_any(),
            "uid": pod.uid(),
            "url": url,
        });
        if let (Some(p), Some(obj)) = (profile, state.as_object_mut()) {
            obj.insert("profile".into(), json!(p));
        }
        state
    }

    /// Where the server of a running pod is reached: its IP (or Service) and the port it declares.
    pub(crate) fn url_of(&self, pod: &Pod) -> Option<String> {
        let port = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(render::PORT_NAME)))
            .map_or(render::DEFAULT_PORT as i32, |p| p.container_port);
        if self.config.service_per_pod && owner_of(pod).is_some() && pod.labels().get(render::POOL).is_none() {
            return Some(format!(
                "http://{}.{}.svc:{port}",
                pod.name_any(),
                self.config.namespace
            ));
        }
        let ip = pod.status.as_ref()?.pod_ip.as_ref().filter(|ip| !ip.is_empty())?;
        Some(if ip.contains(':') {
            format!("http://[{ip}]:{port}")
        } else {
            format!("http://{ip}:{port}")
        })
    }
}
