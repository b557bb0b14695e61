//! Configuration from the environment, exactly as API.md lists it.
//!
//! Every variable that is present but invalid stops start-up with a message naming it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// What happens to a stream whose client goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectPolicy {
    /// Generate the reply to the end and store it (the default: nothing is lost).
    Finish,
    /// Cancel the upstream call and store the partial reply.
    Stop,
}

#[derive(Debug, Clone)]
pub enum DatabaseConfig {
    Sqlite { url: String },
    Postgres { url: String },
}

impl DatabaseConfig {
    pub fn url(&self) -> &str {
        match self {
            DatabaseConfig::Sqlite { url } | DatabaseConfig::Postgres { url } => url,
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, DatabaseConfig::Sqlite { .. })
    }
}

#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    pub secret: Option<SecretString>,
    /// A PEM public key (RSA or EC P-256), given inline or as a file path.
    pub public_key: Option<String>,
    /// A JWKS document: an `http(s)://` URL, a `file://` URL or a path.
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway: Duration,
}

impl JwtConfig {
    pub fn has_verifier(&self) -> bool {
        self.secret.is_some() || self.public_key.is_some() || self.jwks_url.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    pub api_key: Option<SecretString>,
    pub org_id: Option<String>,
    pub base_url: Option<String>,
    pub model: String,
    pub max_tokens: u32,
    pub temperature: f32,
}

/// Timeouts and retries of upstream calls.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub connect_timeout: Duration,
    /// Until the response headers arrive.
    pub first_byte_timeout: Duration,
    /// Between two chunks of a body.
    pub idle_timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    /// Pause between words of the built-in mock provider's streams.
    pub mock_word_delay: Duration,
}

/// Background jobs (the `ai-tasks` queue). [jobs]
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Jobs a process runs at once (`WORKER_CONCURRENCY`, default 4; 0 runs no worker).
    pub concurrency: u32,
    /// Delay before the second attempt (`JOB_BACKOFF_MS`, default 5000); doubles per attempt.
    pub backoff: Duration,
    /// Queue name (`JOB_QUEUE`, default `ai-tasks`): the Redis key prefix, or the `queue` of
    /// the `jobs` rows this process serves.
    pub queue: String,
    /// Worker heartbeat (`JOB_HEARTBEAT_SECS`, default 10): a running job's lease is renewed
    /// every half heartbeat and lasts two; once it has expired (its worker died) the job is
    /// due again for a live worker.
    pub heartbeat: Duration,
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
    /// Failed authentications allowed per client IP per minute before 429.
    pub auth_failures_per_minute: u32,
    /// Take the client IP from `X-Forwarded-For` (behind a trusted load balancer).
    pub trust_forwarded_for: bool,
    pub stream_on_disconnect: DisconnectPolicy,
    pub body_limit_bytes: usize,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    /// Background jobs. [jobs]
    pub jobs: JobsConfig,
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
        let env = Env(vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect());
        for var in ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"] {
            if let Some(key) = env.get(var) {
                check_key(var, key)?;
            }
        }
        let data_dir = PathBuf::from(env.get("PALAVER_DATA_DIR").unwrap_or("./palaver-data"));
        let database = match env.get("DATABASE_URL") {
            None => DatabaseConfig::Sqlite {
                url: format!("sqlite://{}", data_dir.join("palaver.db").display()),
            },
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                DatabaseConfig::Postgres {
                    url: url.to_owned(),
                }
            }
            Some(url) if url.starts_with("sqlite:") => DatabaseConfig::Sqlite {
                url: url.to_owned(),
            },
            Some(_) => {
                return Err(ConfigError::new(
                    "DATABASE_URL",
                    "must start with postgres://, postgresql:// or sqlite:",
                ));
            }
        };
        Ok(Config {
            host: env.get("HOST").unwrap_or("0.0.0.0").to_owned(),
            port: env.parse("PORT", 3000)?,
            database_pool_size: env.parse("DATABASE_POOL_SIZE", 10)?,
            data_dir,
            database,
            redis_url: redis_url(&env)?,
            jwt: JwtConfig {
                secret: env
                    .get("JWT_SECRET")
                    .map(|s| SecretString::from(s.to_owned())),
                public_key: env.get("JWT_PUBLIC_KEY").map(str::to_owned),
                jwks_url: env.get("JWT_JWKS_URL").map(str::to_owned),
                issuer: env.get("JWT_ISSUER").map(str::to_owned),
                audience: env.get("JWT_AUDIENCE").map(str::to_owned),
                leeway: Duration::from_secs(env.parse("JWT_LEEWAY_SECS", 30)?),
            },
            cors_origins: env
                .get("CORS_ORIGIN")
                .unwrap_or("http://localhost:5173")
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            openai: OpenAiConfig {
                api_key: env
                    .get("OPENAI_API_KEY")
                    .map(|s| SecretString::from(s.to_owned())),
                org_id: env.get("OPENAI_ORG_ID").map(str::to_owned),
                base_url: env
                    .get("OPENAI_BASE_URL")
                    .map(|s| s.trim_end_matches('/').to_owned()),
                model: env.get("OPENAI_MODEL").unwrap_or("gpt-4").to_owned(),
                max_tokens: env.parse_range(
                    &["OPENAI_MAX_TOKENS", "MAX_TOKENS"],
                    4096,
                    1..=1_000_000,
                )?,
                temperature: env.parse_float(
                    &["OPENAI_TEMPERATURE", "TEMPERATURE"],
                    0.7,
                    0.0,
                    2.0,
                )?,
            },
            anthropic_api_key: env
                .get("ANTHROPIC_API_KEY")
                .map(|s| SecretString::from(s.to_owned())),
            anthropic_base_url: env
                .get("ANTHROPIC_BASE_URL")
                .unwrap_or("https://api.anthropic.com")
                .trim_end_matches('/')
                .to_owned(),
            gemini_api_key: env
                .get("GEMINI_API_KEY")
                .map(|s| SecretString::from(s.to_owned())),
            gemini_base_url: env
                .get("GEMINI_BASE_URL")
                .unwrap_or("https://generativelanguage.googleapis.com")
                .trim_end_matches('/')
                .to_owned(),
            providers: ProviderSettings {
                connect_timeout: Duration::from_millis(
                    env.parse("PROVIDER_CONNECT_TIMEOUT_MS", 5_000)?,
                ),
                first_byte_timeout: Duration::from_millis(
                    env.parse("PROVIDER_FIRST_BYTE_TIMEOUT_MS", 60_000)?,
                ),
                idle_timeout: Duration::from_millis(env.parse("PROVIDER_IDLE_TIMEOUT_MS", 30_000)?),
                max_attempts: env.parse_range(&["PROVIDER_MAX_ATTEMPTS"], 3, 1..=10)?,
                backoff_base: Duration::from_millis(env.parse("PROVIDER_BACKOFF_MS", 250)?),
                mock_word_delay: Duration::from_millis(env.parse("MOCK_WORD_DELAY_MS", 15)?),
            },
            prices_file: env.get("PRICES_FILE").map(str::to_owned),
            rate_limit_per_minute: env.parse_range(
                &["RATE_LIMIT_PER_MINUTE"],
                20,
                1..=1_000_000,
            )?,
            quota_tokens_per_day: match env.get("QUOTA_TOKENS_PER_DAY") {
                None => None,
                Some(_) => Some(i64::from(env.parse_range(
                    &["QUOTA_TOKENS_PER_DAY"],
                    0,
                    1..=u32::MAX,
                )?)),
            },
            auth_failures_per_minute: env.parse_range(
                &["AUTH_FAILURES_PER_MINUTE"],
                30,
                1..=1_000_000,
            )?,
            trust_forwarded_for: env.parse("TRUST_FORWARDED_FOR", false)?,
            stream_on_disconnect: match env.get("STREAM_ON_DISCONNECT") {
                None | Some("finish") => DisconnectPolicy::Finish,
                Some("stop") => DisconnectPolicy::Stop,
                Some(_) => {
                    return Err(ConfigError::new(
                        "STREAM_ON_DISCONNECT",
                        "must be `finish` or `stop`",
                    ));
                }
            },
            body_limit_bytes: env.parse_range(
                &["BODY_LIMIT_BYTES"],
                1024 * 1024,
                1024..=512 * 1024 * 1024,
            )? as usize,
            log_format: match env.get("LOG_FORMAT") {
                None | Some("text") | Some("pretty") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(_) => return Err(ConfigError::new("LOG_FORMAT", "must be `text` or `json`")),
            },
            shutdown_grace: Duration::from_secs(env.parse("SHUTDOWN_GRACE_SECS", 30)?),
            jobs: jobs_config(&env)?,
        })
    }

    /// The embedded default: a SQLite file and no external services.
    pub fn is_embedded(&self) -> bool {
        self.database.is_embedded()
    }
}

/// A key must at least look like a key: no spaces, quotes or placeholders.
fn check_key(var: &'static str, key: &str) -> Result<(), ConfigError> {
    if key.len() < 8
        || key
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '<' || c == '>')
    {
        return Err(ConfigError::new(
            var,
            "does not look like an API key (too short, or has spaces, quotes or <placeholders>)",
        ));
    }
    Ok(())
}

impl Config {
    /// Keys whose prefix is not the provider's usual one: worth a warning, not a refusal.
    pub fn key_warnings(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        let mut warnings = Vec::new();
        let mut check = |var: &str, key: &Option<SecretString>, prefix: &str| {
            if let Some(key) = key
                && !key.expose_secret().starts_with(prefix)
            {
                warnings.push(format!(
                    "{var} does not start with `{prefix}`: is it the right key?"
                ));
            }
        };
        if self.openai.base_url.is_none() {
            check("OPENAI_API_KEY", &self.openai.api_key, "sk-");
        }
        check("ANTHROPIC_API_KEY", &self.anthropic_api_key, "sk-ant-");
        check("GEMINI_API_KEY", &self.gemini_api_key, "AIza");
        warnings
    }
}

/// [jobs] `WORKER_CONCURRENCY`, `JOB_BACKOFF_MS`, `JOB_QUEUE`, `JOB_HEARTBEAT_SECS`.
fn jobs_config(env: &Env) -> Result<JobsConfig, ConfigError> {
    let queue = env.get("JOB_QUEUE").unwrap_or("ai-tasks").trim().to_owned();
    if queue.len() > 100
        || !queue
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
    {
        return Err(ConfigError::new(
            "JOB_QUEUE",
            "must be 1 to 100 letters, digits, `-`, `_`, `:` or `.`",
        ));
    }
    Ok(JobsConfig {
        concurrency: env.parse_range(&["WORKER_CONCURRENCY"], 4, 0..=256)?,
        backoff: Duration::from_millis(u64::from(env.parse_range(
            &["JOB_BACKOFF_MS"],
            5_000,
            1..=3_600_000,
        )?)),
        queue,
        heartbeat: Duration::from_secs(u64::from(env.parse_range(
            &["JOB_HEARTBEAT_SECS"],
            10,
            1..=3_600,
        )?)),
    })
}

fn redis_url(env: &Env) -> Result<Option<SecretString>, ConfigError> {
    if let Some(url) = env.get("REDIS_URL") {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(ConfigError::new(
                "REDIS_URL",
                "must start with redis:// or rediss://",
            ));
        }
        return Ok(Some(SecretString::from(url.to_owned())));
    }
    let Some(host) = env.get("REDIS_HOST") else {
        return Ok(None);
    };
    let port: u16 = env.parse("REDIS_PORT", 6379)?;
    let url = match env.get("REDIS_PASSWORD") {
        Some(password) => format!("redis://:{password}@{host}:{port}"),
        None => format!("redis://{host}:{port}"),
    };
    Ok(Some(SecretString::from(url)))
}

struct Env(HashMap<String, String>);

impl Env {
    /// A variable's value; an empty value counts as unset.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    fn parse<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(name, format!("`{raw}` is not a valid value"))),
        }
    }

    /// The first of `names` that is set, parsed as an integer within `range`.
    fn parse_range(
        &self,
        names: &[&'static str],
        default: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<u32, ConfigError> {
        let Some((name, raw)) = names.iter().find_map(|n| self.get(n).map(|v| (*n, v))) else {
            return Ok(default);
        };
        match raw.trim().parse::<u32>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(ConfigError::new(
                name,
                format!(
                    "`{raw}` must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    fn parse_float(
        &self,
        names: &[&'static str],
        default: f32,
        min: f32,
        max: f32,
    ) -> Result<f32, ConfigError> {
        let Some((name, raw)) = names.iter().find_map(|n| self.get(n).map(|v| (*n, v))) else {
            return Ok(default);
        };
        match raw.trim().parse::<f32>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(ConfigError::new(
                name,
                format!("`{raw}` must be a number from {min} to {max}"),
            )),
        }
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
}
