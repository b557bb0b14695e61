//! Prompt templates on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

use super::super::to_sqlite_text as ts;
use super::super::{StoreError, StoreResult, Template, TemplateStore};
use super::SqliteStore;
use super::conversations::{corrupt, ts_at, uuid_at};

/// Selects the columns [`template`] reads.
macro_rules! select_templates {
    () => {
        "SELECT id, version, user_id, name, definition, created_at, version_created_at \
         FROM prompt_templates t"
    };
}

fn template(row: &Row<'_>) -> rusqlite::Result<Template> {
    let definition: String = row.get(4)?;
    Ok(Template {
        id: uuid_at(row, 0)?,
        version: row.get(1)?,
        user_id: row.get(2)?,
        name: row.get(3)?,
        definition: serde_json::from_str(&definition)
            .map_err(|e| corrupt(4, format!("bad template definition: {e}")))?,
        created_at: ts_at(row, 5)?,
        updated_at: ts_at(row, 6)?,
    })
}

/// A template version, owned, ready to bind.
struct TemplateRow {
    id: String,
    version: i64,
    user_id: String,
    name: String,
    definition: String,
    created_at: String,
    updated_at: String,
}

impl TemplateRow {
    fn of(t: &Template) -> StoreResult<TemplateRow> {
        Ok(TemplateRow {
            id: t.id.to_string(),
            version: t.version,
            user_id: t.user_id.clone(),
            name: t.name.clone(),
            definition: serde_json::to_string(&t.definition).map_err(StoreError::other)?,
            created_at: ts(t.created_at),
            updated_at: ts(t.updated_at),
        })
    }

    /// Runs `sql` (an insert whose values are `?1` to `?7`, in column order).
    fn execute(&self, c: &Connection, sql: &str) -> rusqlite::Result<usize> {
        c.prepare_cached(sql)?.execute(params![
            self.id,
            self.version,
            self.user_id,
            self.name,
            self.definition,
            self.created_at,
            self.updated_at
        ])
    }
}

#[async_trait]
impl TemplateStore for SqliteStore {
    async fn create_template(&self, template: &Template) -> StoreResult<()> {
        let row = TemplateRow::of(template)?;
        let sql = concat!(
            "INSERT INTO prompt_templates (id, version, user_id, name, definition, ",
            "created_at, version_created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        );
        self.db.write(move |c| row.execute(c, sql)).await?;
        Ok(())
    }

    async fn add_template_version(&self, template: &Template) -> StoreResult<bool> {
        let row = TemplateRow::of(template)?;
        let sql = concat!(
            "INSERT INTO prompt_templates (id, version, user_id, name, definition, ",
            "created_at, version_created_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS ",
            "(SELECT 1 FROM prompt_templates WHERE id = ?1 AND user_id = ?3 AND version = ?2 - 1)"
        );
        let added = self.db.write(move |c| row.execute(c, sql)).await?;
        Ok(added == 1)
    }

    async fn get_template(
        &self,
        user_id: &str,
        id: Uuid,
        version: Option<i64>,
    ) -> StoreResult<Option<Template>> {
        let (user_id, id) = (user_id.to_owned(), id.to_string());
        let sql = concat!(
            select_templates!(),
            " WHERE user_id = ?1 AND id = ?2 AND (?3 IS NULL OR version = ?3) \
             ORDER BY version DESC LIMIT 1"
        );
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(sql)?
                    .query_row(params![user_id, id, version], template)
                    .optional()
            })
            .await?)
    }

    async fn list_templates(&self, user_id: &str) -> StoreResult<Vec<Template>> {
        let user_id = user_id.to_owned();
        let sql = concat!(
            select_templates!(),
            " WHERE user_id = ?1 AND version = (SELECT MAX(version) FROM prompt_templates \
             WHERE id = t.id) ORDER BY name, id"
        );
        Ok(self
            .db
            .read(move |c| {
                c.prepare_cached(sql)?
                    .query_map([user_id], template)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?)
    }

    async fn delete_template(&self, user_id: &str, id: Uuid) -> StoreResult<bool> {
        let (user_id, id) = (user_id.to_owned(), id.to_string());
        let deleted = self
            .db
            .write(move |c| {
                c.prepare_cached("DELETE FROM prompt_templates WHERE user_id = ?1 AND id = ?2")?
                    .execute(params![user_id, id])
            })
            .await?;
        Ok(deleted > 0)
    }
}
