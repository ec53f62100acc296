//! The Kubernetes spawner (`spawner_class = "kubernetes"`) behind the hub's [`Spawner`] trait.
//!
//! `spawner-k8s` knows nothing of the hub: this adapter turns a [`SpawnRequest`] into its
//! `PodRequest` (the profile is `user_options.profile`, already checked by the hub), its
//! progress reports into the spawn's progress log, and its errors into [`SpawnError`]s whose
//! messages end up on the user's error page.

use std::sync::Arc;

use serde_json::Value;
use spawner_k8s::{KubeSpawner, PodPoll, PodRequest};

use super::{BoxFuture, PollStatus, Profile, SpawnError, SpawnRequest, Spawner, SpawnerState, Started};
use crate::progress::{ProgressEvent, ProgressSink};

pub struct KubernetesSpawner {
    pods: Arc<KubeSpawner>,
    profiles: Vec<Profile>,
}

impl KubernetesSpawner {
    /// Connects to the cluster (caches synced, warm pools started; refilled from the start with
    /// `refill`, else once [`Spawner::set_background`] says so).
    pub async fn connect(
        config: &config::kubernetes::KubernetesConfig,
        refill: bool,
    ) -> anyhow::Result<KubernetesSpawner> {
        Ok(KubernetesSpawner::new(
            KubeSpawner::connect_refilling(config, refill).await?,
        ))
    }

    pub fn new(pods: Arc<KubeSpawner>) -> KubernetesSpawner {
        let profiles = pods
            .profiles()
            .iter()
            .map(|p| Profile {
                slug: p.slug.clone(),
                display_name: p.title().to_owned(),
                description: p.description.clone(),
                default: p.default,
            })
            .collect();
        KubernetesSpawner { pods, profiles }
    }

    pub fn describe(&self) -> String {
        self.pods.describe()
    }
}

impl Spawner for KubernetesSpawner {
    fn set_background(&self, held: bool) {
        self.pods.set_pool_refill(held);
    }

    fn start(&self, request: SpawnRequest, progress: ProgressSink) -> BoxFuture<'static, Result<Started, SpawnError>> {
        let pods = self.pods.clone();
        Box::pin(async move {
            let report: spawner_k8s::ProgressFn =
                Arc::new(move |percent, message| progress.push(ProgressEvent::message(percent, message)));
            let profile = request
                .user_options
                .get("profile")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let pod = PodRequest {
                user: request.user,
                server_name: request.server_name,
                prefix: request.prefix,
                env: request.env,
                profile,
            };
            let started = pods
                .start(pod, report)
                .await
                .map_err(|e| SpawnError::Failed(e.to_string()))?;
            Ok(Started {
                url: started.url,
                state: started.state,
            })
        })
    }

    fn stop(&self, state: SpawnerState) -> BoxFuture<'static, Result<(), SpawnError>> {
        let pods = self.pods.clone();
        Box::pin(async move { pods.stop(&state).await.map_err(|e| SpawnError::Failed(e.to_string())) })
    }

    fn poll(&self, state: SpawnerState) -> BoxFuture<'static, PollStatus> {
        let pods = self.pods.clone();
        Box::pin(async move {
            match pods.poll(&state).await {
                PodPoll::Running { url } => PollStatus::Running { url },
                PodPoll::Gone { code } => PollStatus::Exited { code },
            }
        })
    }

    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn profiles(&self) -> &[Profile] {
        &self.profiles
    }
}
