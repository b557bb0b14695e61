//! The JWT secret: configured, or (embedded mode only) generated once and kept in the data
//! directory.

use std::path::Path;

use secrecy::SecretString;

use super::StartupError;
use crate::config::{Config, ConfigError};

/// The JWT secret of the embedded mode: generated once, kept in the data directory.
pub fn embedded_jwt_secret(data_dir: &Path) -> Result<(SecretString, bool), std::io::Error> {
    let path = data_dir.join("jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok((SecretString::from(existing), false));
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let bytes: [u8; 32] = rand::random();
    let secret = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
    write_private(&path, &secret)?;
    Ok((SecretString::from(secret), true))
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// Fills in the embedded JWT secret when no verifier is configured (embedded mode only).
pub fn resolve_jwt(config: &mut Config) -> Result<(), StartupError> {
    if config.jwt.has_verifier() {
        return Ok(());
    }
    if !config.is_embedded() {
        return Err(ConfigError::new(
            "JWT_SECRET",
            "required with PostgreSQL (or set JWT_PUBLIC_KEY or JWT_JWKS_URL): every instance must verify the same tokens",
        )
        .into());
    }
    let (secret, created) = embedded_jwt_secret(&config.data_dir)?;
    let path = config.data_dir.join("jwt-secret");
    if created {
        tracing::warn!(path = %path.display(), "JWT_SECRET is not set: generated a development secret; mint tokens with `palaver token --sub USER`");
    } else {
        tracing::warn!(path = %path.display(), "JWT_SECRET is not set: using the development secret kept in the data directory");
    }
    config.jwt.secret = Some(secret);
    Ok(())
}
