//! Why a spawn or a stop failed, in words a user can act on (the hub shows them on its error page).

/// A failed start or stop.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KubeSpawnError {
    /// `user_options.profile` names no configured profile.
    #[error("{0}")]
    Profile(String),
    /// The configuration renders an object Kubernetes would refuse.
    #[error("{0}")]
    Config(String),
    /// ErrImagePull, ImagePullBackOff, InvalidImageName.
    #[error(
        "the image {image:?} could not be pulled ({reason}): {message}. Check the image name and tag in the profile, and the registry's pull secrets"
    )]
    ImagePull {
        image: String,
        reason: String,
        message: String,
    },
    /// The container keeps exiting (CrashLoopBackOff).
    #[error("the server keeps crashing on start-up (CrashLoopBackOff{}){}", code.map(|c| format!(", last exit status {c}")).unwrap_or_default(), if message.is_empty() { String::new() } else { format!(": {message}") })]
    CrashLoop { code: Option<i32>, message: String },
    /// The container could not be created (a missing Secret or ConfigMap, a bad command).
    #[error("the server's container could not be created ({reason}): {message}")]
    Container { reason: String, message: String },
    /// No node can take the pod.
    #[error("no node can run the server now: {message}")]
    Unschedulable { message: String },
    /// The pod ended before it ran.
    #[error("the server exited during start-up{}{}", code.map(|c| format!(" with status {c}")).unwrap_or_default(), if message.is_empty() { String::new() } else { format!(": {message}") })]
    Exited { code: Option<i32>, message: String },
    /// The pod disappeared while starting (deleted by someone else, or evicted).
    #[error("the server's pod {pod} was deleted while it was starting")]
    Deleted { pod: String },
    /// The start timeout ran out.
    #[error("the server did not start within {secs} s; last status: {last}")]
    Timeout { secs: u64, last: String },
    /// A pod of that name exists and is not this server's.
    #[error(
        "a pod named {pod} already exists and does not belong to this server; delete it or change kubernetes.pod_name_template"
    )]
    NameTaken { pod: String },
    /// The Kubernetes API refused or failed a call (after retries).
    #[error("Kubernetes API: {action} failed: {message}")]
    Api { action: String, message: String },
    /// A stop did not see the pod go.
    #[error("the pod {pod} was still there {secs} s after its deletion")]
    StopTimeout { pod: String, secs: u64 },
    /// The spawner's state cannot name a pod.
    #[error("not a Kubernetes server's state: {0}")]
    State(String),
}

impl KubeSpawnError {
    pub(crate) fn api(action: impl Into<String>, error: &kube::Error) -> KubeSpawnError {
        let message = match error {
            kube::Error::Api(status) if !status.message.is_empty() => {
                format!("{} ({})", status.message, status.code)
            }
            other => other.to_string(),
        };
        KubeSpawnError::Api {
            action: action.into(),
            message,
        }
    }
}
