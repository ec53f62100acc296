//! `edgehub up`: the wiring. The state database, the session store, the proxy (embedded, or an
//! external edgeproxy / configurable-http-proxy reached over its admin API), the spawner and the
//! hub's listener, started in that order; then servers left by the last run are re-adopted and
//! the proxy's table reconciled before the URL is printed.
//!
//! Stopping the hub (Ctrl-C, SIGTERM) leaves user servers running: the next start adopts them
//! (JupyterHub's `cleanup_servers = False`, as z2jh runs it), so a hub restart loses no one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use config::{HubConfig, Listen, ProxyConfig, ProxyReplicas, SpawnerClass};
use tokio::net::TcpListener;

use crate::hub::{Hub, HubParts};
use crate::login::Authenticator;
use crate::proxy_api::{ProxyApi, Resolver, dns_resolver};
use crate::session::{RecordStore, Sessions};
use crate::spawner::Spawner;
use crate::spawner::kube::KubernetesSpawner;
use crate::spawner::local::LocalSpawner;
use crate::store::{StateLock, StateStore};

/// What a running `up` exposes to its caller (tests, the binary).
pub struct Running {
    pub hub: Arc<Hub>,
    /// The URL to open, with the port actually bound (`bind = "127.0.0.1:0"` is any free port).
    pub public_url: String,
    pub hub_addr: SocketAddr,
    /// The embedded proxy's admin API, if embedded.
    pub proxy_api_url: Option<String>,
    /// The tasks that own the listeners: the hub's, and the embedded proxy's.
    listeners: Vec<tokio::task::JoinHandle<()>>,
    /// Held while this hub runs: no other hub starts on its state database meanwhile.
    _state_lock: Option<StateLock>,
}

impl Running {
    /// Resolves once `stop` has completed and the hub and the embedded proxy have closed their
    /// listeners (the proxy after its in-flight requests drained).
    pub async fn closed(&mut self) {
        for task in self.listeners.drain(..) {
            let _ = task.await;
        }
    }
}

/// Parts `start` would otherwise build itself; tests give stand-ins.
#[derive(Default)]
pub struct Overrides {
    /// Default: the local-process spawner.
    pub spawner: Option<Arc<dyn Spawner>>,
    /// Finds the proxy's replicas with `replicas = "dns"`. Default: the system's resolver.
    pub resolver: Option<Resolver>,
    /// The embedded proxy's public listener, bound by the caller instead of `bind`: a caller that
    /// stops and starts the hub keeps the port across the restart, never free in between (a
    /// clone of a listener it holds, `TcpListener::try_clone`).
    pub public_listener: Option<std::net::TcpListener>,
}

/// The key login sessions are signed with, as text (the proxy takes the text as the key):
/// `EDGEHUB_SESSION_SECRET` when set, so external proxies can be given the same value, else one
/// generated at the first start and kept in the database.
///
/// A set variable is used as it is, or refused: falling back to a generated key would sign
/// sessions that the external proxies, given the variable, refuse; and a key shorter than the
/// hash output (RFC 7518 §3.2) can be guessed.
fn session_signing_key(store: &dyn StateStore) -> anyhow::Result<String> {
    const VAR: &str = "EDGEHUB_SESSION_SECRET";
    match std::env::var(VAR) {
        Ok(shared) => {
            let needed = crate::session::KEY_BYTES;
            if shared.len() < needed {
                bail!(
                    "{VAR} is {} bytes; login sessions are signed with {:?}, which needs a key of at least {needed} bytes (RFC 7518 §3.2). Set it to a random value such as `openssl rand -hex 32`, or unset it to let the hub generate one",
                    shared.len(),
                    crate::session::ALGORITHM,
                );
            }
            Ok(shared)
        }
        Err(std::env::VarError::NotUnicode(_)) => bail!("{VAR} is not valid UTF-8"),
        Err(std::env::VarError::NotPresent) => {
            let secret = store.secret("session-signing-key", &mut || {
                crate::tokens::random_bytes::<32>().to_vec()
            })?;
            Ok(crate::tokens::hex(&secret))
        }
    }
}

fn state_dir(db: &Path) -> PathBuf {
    db.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Starts everything and returns once the hub serves and the proxy's table is reconciled. The
/// tasks run until `stop` completes.
pub async fn start(
    config: HubConfig,
    overrides: Overrides,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let began = Instant::now();
    config.validate()?;
    let replica = crate::replicas::new_replica_id();
    // The PostgreSQL client blocks on a runtime of its own, so it is opened off this one.
    let (store, state_lock) = {
        let config = config.clone();
        let replica = replica.clone();
        tokio::task::spawn_blocking(move || crate::store::open(&config, &replica)).await??
    };
    tracing::info!("state: {} (replica {replica})", store.describe());
    let secret_hex = session_signing_key(store.as_ref())?;
    let auth = Arc::new(Authenticator::new(&config.auth)?);
    auth.start();

    let hub_listener = TcpListener::bind(&config.hub_bind)
        .await
        .with_context(|| format!("cannot listen on hub_bind {}", config.hub_bind))?;
    let hub_addr = hub_listener.local_addr()?;
    // The port actually bound (`hub_bind` may say 0), for whoever puts a Service in front.
    tracing::info!("the hub listens on {hub_addr}");
    let hub_url = config
        .hub_connect_url
        .clone()
        .unwrap_or_else(|| format!("http://{hub_addr}"));
    let base = config.base_prefix();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let session_url = config
        .session
        .redis_url
        .clone()
        .unwrap_or_else(|| config::SessionConfig::IN_PROCESS.to_owned());
    let mut listeners = Vec::new();
    let (proxy_api, records, proxy_api_url, public_url) = match &config.proxy.api_url {
        None => {
            let bind: SocketAddr = config.bind.parse().context("bind")?;
            let token = crate::tokens::generate();
            let proxy_config = ProxyConfig {
                public: Listen::Tcp {
                    host: bind.ip().to_string(),
                    port: bind.port(),
                },
                // Any free port, read back once bound.
                api: Listen::Tcp {
                    host: "127.0.0.1".into(),
                    port: 0,
                },
                auth_token: Some(token.clone()),
                error_target: Some(format!("{hub_url}{base}hub/error")),
                auth: Some(crate::session::edge_auth_config(
                    &secret_hex,
                    &config.session.cookie,
                    &session_url,
                    &format!("{base}hub/login"),
                    &format!("{hub_url}{base}hub/api"),
                    &config.auth,
                )),
                storage: config.proxy.route_storage()?,
                ..ProxyConfig::default()
            };
            let prebound = proxy::server::Prebound {
                public: overrides.public_listener,
                api: None,
            };
            // Bound before anything is served: connections wait in the backlog until then.
            let bound = proxy::server::bind_with(&proxy_config, prebound).await.map_err(|e| {
                let taken = matches!(&e, proxy::StartError::Bind { role: proxy::server::Role::Public, error, .. }
                    if error.kind() == std::io::ErrorKind::AddrInUse);
                let hint = match taken {
                    true => " (another edgehub, or another program, has it: `--bind 127.0.0.1:8001`, or `bind` in the configuration, picks another)",
                    false => "",
                };
                anyhow::anyhow!("the embedded proxy could not start: {e}{hint}")
            })?;
            let (Some(public_addr), Some(api_addr)) = (bound.public_addr(), bound.api_addr()) else {
                bail!("the embedded proxy listens on TCP");
            };
            let proxy = proxy::Proxy::new(bound.config()).context("embedded proxy")?;
            let records = match (
                &config.session.redis_url,
                proxy.auth.as_ref().and_then(|a| a.local_sessions()),
            ) {
                (None, Some(live)) => {
                    let restored = crate::session::restore_local(&live, store.as_ref())?;
                    if restored > 0 {
                        tracing::info!("{restored} login sessions restored");
                    }
                    if store.shared() {
                        // A login on another replica reaches this one's copy a moment later; a
                        // browser as quick as that is answered from the database.
                        let db = store.clone();
                        live.look_up_misses_in(Box::new(move |key| {
                            let jti = key.strip_prefix(crate::session::KEY_TEMPLATE.trim_end_matches("{jti}"))?;
                            db.session_live(jti, proxy::timestamp::now_ms()).ok().flatten()
                        }));
                    }
                    RecordStore::Local {
                        live,
                        db: store.clone(),
                    }
                }
                (None, None) => bail!("the embedded proxy has no in-process session store"),
                (Some(url), _) => RecordStore::Redis {
                    conn: redis_store(url).await?,
                    db: store.clone(),
                },
            };
            let serve_stop = stopped();
            listeners.push(tokio::spawn(async move {
                if let Err(e) = bound.serve(proxy, serve_stop).await {
                    tracing::error!("the embedded proxy stopped: {e}");
                }
            }));
            let api_url = format!("http://{api_addr}");
            (
                ProxyApi::new(&api_url, Some(token))?,
                records,
                Some(api_url),
                format!("http://{public_addr}{base}"),
            )
        }
        Some(url) => {
            let token = config
                .proxy
                .api_token
                .clone()
                .or_else(|| std::env::var("CONFIGPROXY_AUTH_TOKEN").ok());
            let Some(redis_url) = &config.session.redis_url else {
                bail!("session.redis_url is required with an external proxy");
            };
            let api = ProxyApi::new(url, token)?;
            let api = match config.proxy.replicas {
                ProxyReplicas::One => api,
                ProxyReplicas::Dns => api.with_replicas(overrides.resolver.unwrap_or_else(dns_resolver)),
            };
            (
                api,
                RecordStore::Redis {
                    conn: redis_store(redis_url).await?,
                    db: store.clone(),
                },
                None,
                format!("http://{}{base}", config.bind),
            )
        }
    };

    // Server logs and managed services' logs, beside the state database.
    let log_dir = state_dir(&config.db).join("logs");
    let spawner = match overrides.spawner {
        Some(s) => s,
        None => match (&config.spawner_class, &config.kubernetes) {
            (SpawnerClass::Kubernetes, Some(kubernetes)) => {
                // With several replicas, the warm pools are refilled by the one holding the
                // background lease (`replicas::keep_leases` turns it on there), not before.
                let pods = KubernetesSpawner::connect(kubernetes, config.state.url.is_none())
                    .await
                    .context("cannot start the Kubernetes spawner")?;
                tracing::info!("kubernetes spawner: {}", pods.describe());
                Arc::new(pods) as Arc<dyn Spawner>
            }
            _ => {
                let exe = std::env::current_exe().context("cannot find the edgehub executable")?;
                let local = LocalSpawner::new(&config.spawner, exe).with_log_dir(log_dir.clone());
                tracing::info!("local spawner: {}", local.describe());
                Arc::new(local)
            }
        },
    };
    // The proxy takes the key as the configured text (the hex), so the hub signs with the same bytes.
    let sessions = Sessions::new(
        secret_hex.as_bytes(),
        Duration::from_secs(config.session.lifetime_secs),
        records,
    )
    .bound_to(auth.platform_sessions());
    let roles = crate::roles::Roles::from_config(&config.roles)?;
    let services = crate::services::Services::from_config(&config.services, &roles, secret_hex.as_bytes())?;
    let hub = Hub::new(HubParts {
        services,
        roles,
        config,
        store,
        spawner,
        proxy: proxy_api,
        sessions,
        auth,
        hub_url,
        replica,
    })?;
    // Their sessions are ended in the store the edge checks, so a user blocked since their
    // sign-in loses the edge's access too, not only the hub's.
    for user in &hub.config.auth.blocked_users {
        // A failure is logged there; the hub still refuses the sessions' cookies.
        let _ = crate::web::api::end_sessions(&hub, user, "is blocked (auth.blocked_users)").await;
    }

    listeners.push(tokio::spawn(crate::web::serve(hub.clone(), hub_listener, stopped())));
    // Awaited like the listeners, so that `closed` returns once the services' processes are gone.
    listeners.push(tokio::spawn(crate::services::run_managed(
        hub.clone(),
        log_dir,
        stopped(),
    )));
    let mut background = Vec::new();
    match &hub.config.state.url {
        // Alone on its SQLite file: whatever the database says is in flight, the last run of
        // this hub left.
        None => {
            let report = crate::lifecycle::adopt_servers(&hub).await;
            if report.adopted + report.cleaned > 0 {
                tracing::info!(
                    "servers from the last run: {} adopted, {} found stopped",
                    report.adopted,
                    report.cleaned
                );
            }
        }
        // One of several: what is in flight may be another replica's. Servers whose replica
        // died are taken over by the one holding the background lease.
        Some(url) => {
            if hub.config.proxy.api_url.is_none() && hub.config.proxy.route_storage()? == config::RouteStorage::Memory {
                tracing::warn!(
                    "state.url is shared, but this hub's embedded proxy keeps its routes to itself: with several hub replicas, give them one route store (proxy.storage_backend = \"redis\") or an external proxy (proxy.api_url)"
                );
            }
            let (feed_endpoint, _) = crate::store::postgres::connection_config(url, &hub.replica)?;
            let (url, replica) = (url.clone(), hub.replica.clone());
            let feed_store: Arc<dyn StateStore> = Arc::new(
                tokio::task::spawn_blocking(move || crate::store::postgres::PostgresStore::open(&url, &replica))
                    .await??,
            );
            let stop_feed = Arc::new(std::sync::atomic::AtomicBool::new(false));
            {
                let (hub, store, stop_feed) = (Arc::downgrade(&hub), feed_store.clone(), stop_feed.clone());
                std::thread::Builder::new()
                    .name("edgehub-changes".into())
                    .spawn(move || crate::replicas::follow_changes(hub, store, feed_endpoint, stop_feed))?;
            }
            background.push(tokio::spawn(crate::replicas::keep_leases(hub.clone(), feed_store)));
            let (hub, stopping) = (hub.clone(), stopped());
            tokio::spawn(async move {
                stopping.await;
                stop_feed.store(true, std::sync::atomic::Ordering::Release);
                let _ = tokio::task::spawn_blocking(move || crate::replicas::hand_over(&hub)).await;
            });
        }
    }
    // Every replica, leader or not, sets the proxy up as it starts: its table (the hub's own
    // route above all) may be empty, and this replica's copy of the state is fresh from the
    // database. From then on the leader alone keeps it.
    if let Err(e) = crate::reconcile::check_routes(&hub).await {
        tracing::warn!(
            "first reconcile with the proxy failed (retried every {} s): {e}",
            hub.config.reconcile_interval_secs
        );
    }
    background.extend([
        tokio::spawn(crate::reconcile::run(hub.clone())),
        tokio::spawn(crate::cull::run(hub.clone())),
        tokio::spawn(crate::session::sweep(hub.clone())),
    ]);
    let stop_background = stopped();
    tokio::spawn(async move {
        stop_background.await;
        for task in background {
            task.abort();
        }
    });
    hub.metrics.hub_startup_duration.record(began.elapsed().as_secs_f64());
    Ok(Running {
        hub,
        public_url,
        hub_addr,
        proxy_api_url,
        listeners,
        _state_lock: state_lock,
    })
}

async fn redis_store(url: &str) -> anyhow::Result<redis::aio::ConnectionManager> {
    let client = redis::Client::open(url).with_context(|| format!("session.redis_url {url}"))?;
    tokio::time::timeout(Duration::from_secs(5), redis::aio::ConnectionManager::new(client))
        .await
        .map_err(|_| anyhow::anyhow!("session store {url}: no answer within 5 s"))?
        .with_context(|| format!("session store {url}"))
}
