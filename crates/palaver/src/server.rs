//! Start-up: build the state from configuration, bind, serve, shut down gracefully.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::time::Instant;

use tokio_util::task::TaskTracker;

use crate::auth::{AuthConfigError, Authenticator, JwtVerifier};
use crate::config::{Config, ConfigError};
use crate::gateway::{self, Broadcaster, GatewayError};
use crate::limits::{LimitError, LocalGcra, QuotaError, Quotas, Rate, RateLimiter, RedisGcra};
use crate::pricing::{PriceError, PriceTable};
use crate::protocol::events::WireEncoder;
use crate::providers::{ProviderError, Providers};
use crate::queue::{JobQueue, QueueError};
use crate::service::chat::runs::{
    LocalLog, RedisLog, RedisLogError, RunControl, RunLog, RunService,
};
use crate::service::{
    ActiveStreams, Admission, AutoTitle, ChatDefaults, ChatParts, ChatService, ConversationService,
    EmbeddingService, JobService, KeyService, ModelService, Notifier, ServiceError,
    TemplateService, TitleService, TransferService, TreeService, UsageService,
};
use crate::state::AppState;
use crate::store::{self, Backend, StoreError};

mod response_cache;
mod secrets;

pub use secrets::{embedded_jwt_secret, resolve_jwt};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Prices(#[from] PriceError),
    #[error(transparent)]
    Limits(#[from] LimitError),
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("providers: {0}")]
    Providers(#[from] ProviderError),
    #[error("jobs: {0}")]
    Queue(#[from] QueueError),
    #[error("jobs: {0}")]
    Jobs(#[from] ServiceError),
    #[error(transparent)]
    RunLog(#[from] RedisLogError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Connects the configured database (SQLite file or PostgreSQL) and applies migrations.
pub async fn connect_store(config: &Config) -> Result<Backend, StartupError> {
    Ok(store::connect(&config.database, config.database_pool_size).await?)
}

/// Refuses a title model no provider serves (every title job would fail); warns of odd keys.
fn check_models(config: &Config, providers: &Providers) -> Result<(), StartupError> {
    if let Some(model) = &config.titles.model {
        providers
            .route(model)
            .map_err(|e| ConfigError::new("TITLE_MODEL", e.to_string()))?;
    }
    (config.key_warnings().iter()).for_each(|warning| tracing::warn!("{warning}"));
    Ok(())
}

/// Builds the shared state: store (migrated), JWT verifier, providers, services.
pub async fn build_state(mut config: Config) -> Result<AppState, StartupError> {
    resolve_jwt(&mut config)?;
    let backend = connect_store(&config).await?;
    let store = backend.store.clone();
    let verifier = JwtVerifier::from_config(&config.jwt).await?;
    let providers = Arc::new(Providers::from_config(&config)?);
    let prices = Arc::new(PriceTable::load(config.prices_file.as_deref())?);
    let (limiter, key_limiter, auth_failures, quotas) = limits(&config, &store).await?;
    announce_providers(&providers);
    check_models(&config, &providers)?;
    let _ = crate::telemetry::metrics_handle();
    let streams = Arc::new(ActiveStreams::default());
    let admission = Admission::new(limiter, key_limiter, quotas, streams.clone());
    let run_log = Arc::new(run_log(&config).await?);
    let control = match &config.redis_url {
        Some(url) => RunControl::connect(streams.clone(), url.expose_secret()).await?,
        None => RunControl::local(streams.clone()),
    };
    let tasks = TaskTracker::new();
    let queue = JobQueue::connect(&config).await?;
    let jobs = JobService::new(backend.jobs, queue, store.clone()).await?;
    let titles = config.titles.auto.then(|| AutoTitle {
        queue: Arc::new(jobs.clone()),
        model: config.titles.model.clone(),
    });
    // The tokenizer tables (tens of MB each) load on first use, not here: an idle
    // instance stays small, and the first chat of a process pays for its model's encoding.
    let chat = ChatService::new(ChatParts {
        store: store.clone(),
        providers: providers.clone(),
        prices: prices.clone(),
        admission: admission.clone(),
        defaults: ChatDefaults {
            model: config.openai.model.clone(),
            max_tokens: config.openai.max_tokens,
            temperature: config.openai.temperature,
        },
        tasks: tasks.clone(),
        on_disconnect: config.stream_on_disconnect,
        titles,
        runs: run_log.clone(),
        encoder: Arc::new(WireEncoder),
        lease: config.run_lease,
        checkpoint_every: config.run_checkpoint,
        interrupt: tokio_util::sync::CancellationToken::new(),
        cache: response_cache::build(&config).await?,
    });
    let notifier = Notifier::default();
    let tree = TreeService::new(store.clone(), notifier.clone(), config.openai.model.clone());
    Ok(AppState {
        auth: Arc::new(Authenticator::new(verifier, auth_failures, store.clone())),
        conversations: ConversationService::new(store.clone()),
        runs: RunService::new(store.clone(), run_log, control, Arc::new(WireEncoder)),
        transfer: TransferService::new(store.clone(), tree.clone(), config.openai.model.clone()),
        tree,
        embeddings: EmbeddingService::new(
            store.clone(),
            providers.clone(),
            prices.clone(),
            admission.clone(),
        ),
        keys: KeyService::new(store.clone()),
        models: ModelService::new(providers.clone(), prices.clone()),
        titles: TitleService::new(store.clone(), providers, prices, admission.clone()),
        usage: UsageService::new(store.clone(), admission.clone()),
        admission,
        chat,
        templates: TemplateService::new(store.clone()),
        jobs,
        notifier,
        tasks,
        config: Arc::new(config),
        store,
    })
}

/// The most events kept of one run (a run of more chunks is resumed with a snapshot).
const RUN_EVENTS_CAP: usize = 100_000;

/// The runs' event logs: this process's, and with Redis the shared one.
async fn run_log(config: &Config) -> Result<RunLog, StartupError> {
    let (ttl, cap) = (config.run_events_ttl, RUN_EVENTS_CAP);
    let shared = match &config.redis_url {
        Some(url) => Some(RedisLog::connect(url.expose_secret(), cap, ttl).await?),
        None => None,
    };
    Ok(RunLog::new(LocalLog::new(ttl, cap), shared))
}

/// The per-user rate limiter, API keys' own limiter (each check names its key's rate), the
/// per-IP limiter of failed authentications, and the quotas: shared through Redis when it is
/// configured.
async fn limits(config: &Config, store: &Arc<dyn store::Store>) -> Result<Limits, StartupError> {
    let redis_url = config.redis_url.as_ref().map(|u| u.expose_secret());
    let per_minute = |n| Rate::per_minute(n);
    let user_rate = per_minute(config.rate_limit_per_minute);
    let limiter = rate_limiter(redis_url, user_rate, "palaver:rl:user:");
    let keys = rate_limiter(redis_url, user_rate, "palaver:rl:key:");
    let failures = rate_limiter(
        redis_url,
        per_minute(config.auth_failures_per_minute),
        "palaver:rl:ip:",
    );
    let quotas = Quotas::new(config.quota_tokens_per_day, store.clone(), redis_url);
    Ok((
        Arc::new(limiter.await?),
        Arc::new(keys.await?),
        Arc::new(failures.await?),
        Arc::new(quotas.await?),
    ))
}

/// The users' and the keys' limiters, the failed authentications' limiter, the quotas.
type Limits = (
    Arc<RateLimiter>,
    Arc<RateLimiter>,
    Arc<RateLimiter>,
    Arc<Quotas>,
);

async fn rate_limiter(
    redis_url: Option<&str>,
    rate: Rate,
    prefix: &str,
) -> Result<RateLimiter, StartupError> {
    Ok(match redis_url {
        None => RateLimiter::Local(LocalGcra::new(rate)),
        Some(url) => RateLimiter::Redis(RedisGcra::connect(url, rate, prefix).await?),
    })
}

fn announce_providers(providers: &Providers) {
    if providers.is_mock() {
        tracing::warn!(
            "**************************************************************************"
        );
        tracing::warn!(
            "* NO PROVIDER KEY IS CONFIGURED: answering from the built-in MOCK provider *"
        );
        tracing::warn!(
            "* Replies are canned text. Set OPENAI_API_KEY, ANTHROPIC_API_KEY,          *"
        );
        tracing::warn!(
            "* GEMINI_API_KEY or OPENAI_BASE_URL to talk to a real model.               *"
        );
        tracing::warn!(
            "**************************************************************************"
        );
    } else {
        let names: Vec<&str> = providers.all().map(|p| p.name()).collect();
        tracing::info!(providers = ?names, "providers configured");
    }
}

/// A built application bound to a listener: tests bind port 0 and read [`Application::port`].
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    gateway: Broadcaster,
}

impl Application {
    /// Builds the state and binds `HOST:PORT` from the configuration.
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        let listener = TcpListener::bind((config.host.as_str(), config.port)).await?;
        Application::with_listener(config, listener).await
    }

    pub async fn with_listener(
        config: Config,
        listener: TcpListener,
    ) -> Result<Application, StartupError> {
        let state = build_state(config).await?;
        let (routes, gateway) = gateway::attach(crate::api::routes(state.clone()), &state).await?;
        state.notifier.attach(Arc::new(gateway.clone()));
        let router = crate::api::with_middleware(routes, &state.config);
        Ok(Application {
            listener,
            router,
            state,
            gateway,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn port(&self) -> u16 {
        self.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish (Socket.IO
    /// connections are closed, streams whose clients left complete and are stored), all
    /// within `SHUTDOWN_GRACE_SECS` of the signal; exchanges still running then are
    /// interrupted: each stores its partial reply and ends `interrupted`.
    pub async fn run_until<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let grace = self.state.config.shutdown_grace;
        let deadline = Arc::new(OnceLock::new());
        let stopping = Arc::new(tokio::sync::Notify::new());
        // Workers run beside the server and stop taking jobs as soon as shutdown begins.
        let workers = crate::jobs::start_workers(&self.state);
        let signal = {
            let (stopping, gateway) = (stopping.clone(), self.gateway.clone());
            let (workers_stopping, deadline) = (workers.stopping(), deadline.clone());
            async move {
                shutdown.await;
                let _ = deadline.set(Instant::now() + grace);
                workers_stopping.cancel();
                stopping.notify_one();
                // Long-lived WebSocket connections would otherwise hold the server open.
                gateway.close().await;
            }
        };
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        // Small writes (stream chunks, WebSocket frames) go out at once, not after the
        // previous segment's delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "could not set TCP_NODELAY");
            }
        });
        let serve = axum::serve(listener, service)
            .with_graceful_shutdown(signal)
            .into_future();
        tokio::pin!(serve);
        tokio::select! {
            result = &mut serve => result?,
            () = async { stopping.notified().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("shutdown: connections still open after the grace period; closing them");
            }
        }
        let until = deadline
            .get()
            .copied()
            .unwrap_or_else(|| Instant::now() + grace);
        let left = || until.saturating_duration_since(Instant::now());
        // Active jobs finish (or are handed over) within the grace period.
        workers.shutdown(left()).await;
        // Streams whose clients left are still being generated and stored: let them finish.
        let tasks = &self.state.tasks;
        tasks.close();
        if tokio::time::timeout(left(), tasks.wait()).await.is_err() {
            tracing::warn!(
                remaining = tasks.len(),
                "shutdown: exchanges still running after the grace period: interrupting them"
            );
            self.state.chat.interrupt_all();
            if tokio::time::timeout(INTERRUPT_WAIT, tasks.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    remaining = tasks.len(),
                    "shutdown: background work did not finish in time"
                );
            }
        }
        // The last events of the runs reach the shared log before the process goes.
        self.state.runs.log().flush().await;
        Ok(())
    }
}

/// How long interrupted exchanges get to store their partial replies at shutdown.
const INTERRUPT_WAIT: Duration = Duration::from_secs(3);

/// `palaver worker`: job workers only, until `shutdown`, then a bounded drain. Job events
/// reach users through the gateway's adapter (with Redis, on whichever instance they are
/// connected).
pub async fn run_workers<F>(state: AppState, shutdown: F) -> Result<(), GatewayError>
where
    F: Future<Output = ()>,
{
    let (_, gateway) = gateway::attach(Router::new(), &state).await?;
    state.notifier.attach(Arc::new(gateway));
    let workers = crate::jobs::start_workers(&state);
    shutdown.await;
    workers.shutdown(state.config.shutdown_grace).await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received: finishing in-flight requests");
}
