//! How the HTTP server behaves: CORS, streams whose client leaves, logs.

use super::ConfigError;
use super::env::Env;

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

/// `CORS_ORIGIN`: a comma-separated list.
pub(super) fn cors_origins(env: &Env) -> Vec<String> {
    env.get("CORS_ORIGIN")
        .unwrap_or("http://localhost:5173")
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

pub(super) fn stream_on_disconnect(env: &Env) -> Result<DisconnectPolicy, ConfigError> {
    match env.get("STREAM_ON_DISCONNECT") {
        None | Some("finish") => Ok(DisconnectPolicy::Finish),
        Some("stop") => Ok(DisconnectPolicy::Stop),
        Some(_) => Err(ConfigError::new(
            "STREAM_ON_DISCONNECT",
            "must be `finish` or `stop`",
        )),
    }
}

pub(super) fn log_format(env: &Env) -> Result<LogFormat, ConfigError> {
    match env.get("LOG_FORMAT") {
        None | Some("text") | Some("pretty") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(_) => Err(ConfigError::new("LOG_FORMAT", "must be `text` or `json`")),
    }
}
