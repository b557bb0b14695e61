//! Migrations in sqlx's format and bookkeeping table (`_sqlx_migrations`), applied on the
//! writer's connection.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rusqlite::Connection;

use super::{DbError, DbResult};

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";

pub(super) fn apply_migrations(
    conn: &Connection,
    migrator: &sqlx::migrate::Migrator,
) -> DbResult<()> {
    conn.execute_batch(MIGRATIONS_TABLE)?;
    let applied = applied(conn)?;
    let known: HashSet<i64> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    if let Some(missing) = applied.keys().find(|v| !known.contains(v)) {
        return Err(DbError::Migrate {
            version: *missing,
            description: String::new(),
            message: "applied to this database but not known to this build (a newer Palaver?)"
                .into(),
        });
    }
    for migration in migrator.iter() {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        let fail = |message: String| DbError::Migrate {
            version: migration.version,
            description: migration.description.to_string(),
            message,
        };
        match applied.get(&migration.version) {
            Some((_, false)) => return Err(fail("left half-applied by an earlier run".into())),
            Some((checksum, true)) if checksum.as_slice() != &*migration.checksum => {
                return Err(fail(
                    "it was applied from a different file than this build carries".into(),
                ));
            }
            Some(_) => continue,
            None => {}
        }
        if let Err(e) = apply(conn, migration) {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            return Err(fail(e.to_string()));
        }
    }
    Ok(())
}

/// The migrations recorded in the database: checksum, and whether each succeeded.
fn applied(conn: &Connection) -> rusqlite::Result<HashMap<i64, (Vec<u8>, bool)>> {
    conn.prepare("SELECT version, checksum, success FROM _sqlx_migrations")?
        .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))?
        .collect()
}

/// Runs one migration and records it, in one transaction (unless it asks for none).
fn apply(conn: &Connection, migration: &sqlx::migrate::Migration) -> rusqlite::Result<()> {
    let started = Instant::now();
    if migration.no_tx {
        conn.execute_batch(migration.sql.as_str())?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
    } else {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute_batch(migration.sql.as_str())?;
    }
    conn.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (?1, ?2, TRUE, ?3, ?4)",
        rusqlite::params![
            migration.version,
            migration.description.as_ref(),
            migration.checksum.as_ref(),
            i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX),
        ],
    )?;
    conn.execute_batch("COMMIT")
}
