//! Configuration from the environment, exactly as API.md lists it.
//!
//! Every variable that is present but invalid stops start-up with a message naming it.
//! [`Config::from_vars`] reads the groups in turn, one file each: the database and Redis,
//! JWT verification, providers, jobs and the HTTP server's behaviour.

mod auth;
mod cache;
mod database;
mod env;
mod jobs;
mod limits;
mod providers;
mod serving;
mod titles;

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

pub use auth::JwtConfig;
pub use cache::CacheConfig;
pub use database::DatabaseConfig;
pub use jobs::JobsConfig;
pub use providers::{OpenAiConfig, ProviderSettings};
pub use serving::{DisconnectPolicy, LogFormat};
pub use titles::TitlesConfig;

use env::Env;

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Connections of the PostgreSQL pool (`DATABASE_POOL_SIZE`, default 10).
    pub database_pool_size: u32,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub redis_url: Option<SecretString>,
    pub jwt: JwtConfig,
    pub cors_origins: Vec<String>,
    pub openai: OpenAiConfig,
    pub anthropic_api_key: Option<SecretString>,
    pub anthropic_base_url: String,
    pub gemini_api_key: Option<SecretString>,
    pub gemini_base_url: String,
    pub providers: ProviderSettings,
    /// A JSON price table layered over the shipped one.
    pub prices_file: Option<String>,
    pub rate_limit_per_minute: u32,
    /// Tokens per user per UTC day; unset: no quota.
    pub quota_tokens_per_day: Option<i64>,
    /// How long raw usage records are kept (`USAGE_RETENTION_DAYS`, default 90); totals and
    /// quotas read the per-day rollup, which is kept.
    pub usage_retention: Duration,
    /// Failed authentications allowed per client IP per minute before 429.
    pub auth_failures_per_minute: u32,
    /// Take the client IP from `X-Forwarded-For` (behind a trusted load balancer).
    pub trust_forwarded_for: bool,
    pub stream_on_disconnect: DisconnectPolicy,
    /// How long a streamed run's events stay readable after it ends (`RUN_EVENTS_TTL_SECS`,
    /// default 3600), for clients that resume.
    pub run_events_ttl: Duration,
    /// How long a live run's producer holds it without renewing (`RUN_LEASE_SECS`, default
    /// 15): a run whose lease expires lost its instance and is marked `interrupted`.
    pub run_lease: Duration,
    /// How often a streaming reply's text is written to its message row
    /// (`RUN_CHECKPOINT_MS`, default 1000), so that a run whose instance dies keeps its
    /// partial reply; `None` (`0`): only the reply's last write stores it.
    pub run_checkpoint: Option<Duration>,
    /// How often a silent event stream (SSE) gets a keep-alive comment
    /// (`SSE_KEEPALIVE_SECS`, default 15), so that proxies do not close it.
    pub sse_keep_alive: Duration,
    pub body_limit_bytes: usize,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    /// Background jobs. \[jobs\]
    pub jobs: JobsConfig,
    /// Automatic conversation titles (`AUTO_TITLE`, `TITLE_MODEL`).
    pub titles: TitlesConfig,
    /// The response cache (`RESPONSE_CACHE`, `CACHE_MAX_ENTRIES`, `CACHE_TTL_SECS`).
    pub cache: CacheConfig,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(std::env::vars())
    }

    /// Reads configuration from the given variables (for tests and embedding hosts).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let env = Env::new(vars);
        providers::check_keys(&env)?;
        let data_dir = PathBuf::from(env.get("PALAVER_DATA_DIR").unwrap_or("./palaver-data"));
        let database = database::database(&env, &data_dir)?;
        Ok(Config {
            host: env.get("HOST").unwrap_or("0.0.0.0").to_owned(),
            port: env.parse("PORT", 3000)?,
            database_pool_size: env.parse("DATABASE_POOL_SIZE", 10)?,
            data_dir,
            database,
            redis_url: database::redis_url(&env)?,
            jwt: auth::jwt(&env)?,
            cors_origins: serving::cors_origins(&env),
            openai: providers::openai(&env)?,
            anthropic_api_key: providers::secret(&env, "ANTHROPIC_API_KEY"),
            anthropic_base_url: env.base_url("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
            gemini_api_key: providers::secret(&env, "GEMINI_API_KEY"),
            gemini_base_url: env.base_url(
                "GEMINI_BASE_URL",
                "https://generativelanguage.googleapis.com",
            ),
            providers: providers::provider_settings(&env)?,
            prices_file: env.get("PRICES_FILE").map(str::to_owned),
            rate_limit_per_minute: env.parse_range(
                &["RATE_LIMIT_PER_MINUTE"],
                20,
                1..=1_000_000,
            )?,
            quota_tokens_per_day: limits::quota_tokens_per_day(&env)?,
            usage_retention: Duration::from_secs(
                86_400 * u64::from(env.parse_range(&["USAGE_RETENTION_DAYS"], 90, 1..=36_500)?),
            ),
            auth_failures_per_minute: env.parse_range(
                &["AUTH_FAILURES_PER_MINUTE"],
                30,
                1..=1_000_000,
            )?,
            trust_forwarded_for: env.parse("TRUST_FORWARDED_FOR", false)?,
            stream_on_disconnect: serving::stream_on_disconnect(&env)?,
            run_events_ttl: Duration::from_secs(u64::from(env.parse_range(
                &["RUN_EVENTS_TTL_SECS"],
                3600,
                1..=7 * 86_400,
            )?)),
            run_lease: Duration::from_secs(u64::from(env.parse_range(
                &["RUN_LEASE_SECS"],
                15,
                2..=3600,
            )?)),
            run_checkpoint: match env.parse_range(&["RUN_CHECKPOINT_MS"], 1000, 0..=60_000)? {
                0 => None,
                ms => Some(Duration::from_millis(u64::from(ms))),
            },
            sse_keep_alive: Duration::from_secs(u64::from(env.parse_range(
                &["SSE_KEEPALIVE_SECS"],
                15,
                1..=300,
            )?)),
            body_limit_bytes: env.parse_range(
                &["BODY_LIMIT_BYTES"],
                1024 * 1024,
                1024..=512 * 1024 * 1024,
            )? as usize,
            log_format: serving::log_format(&env)?,
            shutdown_grace: Duration::from_secs(env.parse("SHUTDOWN_GRACE_SECS", 30)?),
            jobs: jobs::jobs_config(&env)?,
            titles: titles::titles(&env)?,
            cache: cache::cache(&env)?,
        })
    }

    /// The embedded default: a SQLite file and no external services.
    pub fn is_embedded(&self) -> bool {
        self.database.is_embedded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_are_those_of_api_md() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 3000);
        assert!(c.is_embedded());
        assert_eq!(c.openai.model, "gpt-4");
        assert_eq!(c.openai.max_tokens, 4096);
        assert!((c.openai.temperature - 0.7).abs() < f32::EPSILON);
        assert_eq!(c.rate_limit_per_minute, 20);
        assert_eq!(c.cors_origins, vec!["http://localhost:5173".to_string()]);
        assert_eq!(c.body_limit_bytes, 1024 * 1024);
        assert!(c.redis_url.is_none());
        assert_eq!(c.usage_retention, Duration::from_secs(90 * 86_400));
        assert!(c.titles.auto);
        assert_eq!(c.titles.model, None);
        assert_eq!(c.run_checkpoint, Some(Duration::from_secs(1)));
        let c = cfg(&[("AUTO_TITLE", "false"), ("TITLE_MODEL", " gpt-4o-mini ")]).unwrap();
        assert!(!c.titles.auto);
        assert_eq!(c.titles.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(
            cfg(&[("RUN_CHECKPOINT_MS", "0")]).unwrap().run_checkpoint,
            None
        );
        let c = cfg(&[("RUN_CHECKPOINT_MS", "250")]).unwrap();
        assert_eq!(c.run_checkpoint, Some(Duration::from_millis(250)));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value) in [
            ("PORT", "eighty"),
            ("OPENAI_TEMPERATURE", "3"),
            ("RATE_LIMIT_PER_MINUTE", "0"),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "http://x"),
            ("LOG_FORMAT", "xml"),
            ("MAX_TOKENS", "-1"),
            ("OPENAI_API_KEY", "<your key>"),
            ("ANTHROPIC_API_KEY", "short"),
            ("STREAM_ON_DISCONNECT", "maybe"),
            ("USAGE_RETENTION_DAYS", "0"),
            ("AUTO_TITLE", "sometimes"),
            ("TITLE_MODEL", "two words"),
            ("RUN_CHECKPOINT_MS", "60001"),
        ] {
            let err = cfg(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn aliases_and_redis_parts() {
        use secrecy::ExposeSecret;
        let c = cfg(&[
            ("TEMPERATURE", "0"),
            ("MAX_TOKENS", "100"),
            ("REDIS_HOST", "cache"),
            ("REDIS_PASSWORD", "pw"),
            ("DATABASE_URL", "postgres://u@h/db"),
        ])
        .unwrap();
        assert_eq!(c.openai.temperature, 0.0);
        assert_eq!(c.openai.max_tokens, 100);
        assert_eq!(
            c.redis_url.as_ref().unwrap().expose_secret(),
            "redis://:pw@cache:6379"
        );
        assert!(!c.is_embedded());
    }

    #[test]
    fn a_self_hosted_server_takes_the_key_its_docs_say() {
        use secrecy::ExposeSecret;
        for key in ["ollama", "EMPTY", "x"] {
            let c = cfg(&[
                ("OPENAI_BASE_URL", "http://localhost:11434/v1"),
                ("OPENAI_API_KEY", key),
            ])
            .unwrap_or_else(|e| panic!("OPENAI_API_KEY={key} with OPENAI_BASE_URL: {e}"));
            assert_eq!(c.openai.api_key.as_ref().unwrap().expose_secret(), key);
            assert!(c.key_warnings().is_empty(), "{:?}", c.key_warnings());
        }
        let err = cfg(&[
            ("OPENAI_BASE_URL", "http://localhost:11434/v1"),
            ("OPENAI_API_KEY", "two words"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OPENAI_API_KEY");
    }

    #[test]
    fn a_vendor_key_must_still_look_like_a_key() {
        for key in ["ollama", "EMPTY"] {
            let err = cfg(&[("OPENAI_API_KEY", key)]).unwrap_err();
            assert_eq!(err.var, "OPENAI_API_KEY");
        }
        let c = cfg(&[("OPENAI_API_KEY", "proj-0123456789")]).unwrap();
        assert_eq!(
            c.key_warnings(),
            vec!["OPENAI_API_KEY does not start with `sk-`: is it the right key?".to_string()]
        );
    }
}
