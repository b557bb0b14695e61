//! `DATABASE_URL` (or the embedded SQLite file) and Redis.

use std::path::Path;

use secrecy::SecretString;

use super::ConfigError;
use super::env::Env;

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

/// `DATABASE_URL`; unset: `palaver.db` in the data directory.
pub(super) fn database(env: &Env, data_dir: &Path) -> Result<DatabaseConfig, ConfigError> {
    match env.get("DATABASE_URL") {
        None => Ok(DatabaseConfig::Sqlite {
            url: format!("sqlite://{}", data_dir.join("palaver.db").display()),
        }),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(DatabaseConfig::Postgres {
                url: url.to_owned(),
            })
        }
        Some(url) if url.starts_with("sqlite:") => Ok(DatabaseConfig::Sqlite {
            url: url.to_owned(),
        }),
        Some(_) => Err(ConfigError::new(
            "DATABASE_URL",
            "must start with postgres://, postgresql:// or sqlite:",
        )),
    }
}

/// `REDIS_URL`, or one built from `REDIS_HOST`, `REDIS_PORT` and `REDIS_PASSWORD`.
pub(super) fn redis_url(env: &Env) -> Result<Option<SecretString>, ConfigError> {
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
