//! Prompt templates on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::super::{StoreError, StoreResult, Template, TemplateStore};
use super::PgStore;
use super::writes::{PgQuery, write_error};

/// Selects the columns [`template`] reads.
macro_rules! select_templates {
    () => {
        "SELECT id, version, user_id, name, definition, created_at, version_created_at \
         FROM prompt_templates t"
    };
}

fn template(row: &PgRow) -> StoreResult<Template> {
    let definition: serde_json::Value = row.try_get("definition")?;
    Ok(Template {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        definition: serde_json::from_value(definition)
            .map_err(|e| StoreError::other(format!("bad template definition: {e}")))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("version_created_at")?,
    })
}

/// Binds a template version's columns as `$1`..`$7`.
fn bind_template<'q>(
    query: PgQuery<'q>,
    t: &'q Template,
    definition: serde_json::Value,
) -> PgQuery<'q> {
    query
        .bind(t.id)
        .bind(t.version)
        .bind(&t.user_id)
        .bind(&t.name)
        .bind(definition)
        .bind(t.created_at)
        .bind(t.updated_at)
}

fn definition(t: &Template) -> StoreResult<serde_json::Value> {
    serde_json::to_value(&t.definition).map_err(StoreError::other)
}

#[async_trait]
impl TemplateStore for PgStore {
    async fn create_template(&self, template: &Template) -> StoreResult<()> {
        let query = sqlx::query(
            "INSERT INTO prompt_templates (id, version, user_id, name, definition, created_at, \
             version_created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        );
        bind_template(query, template, definition(template)?)
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    async fn add_template_version(&self, template: &Template) -> StoreResult<bool> {
        let query = sqlx::query(
            "INSERT INTO prompt_templates (id, version, user_id, name, definition, created_at, \
             version_created_at) SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM \
             prompt_templates WHERE id = $1 AND user_id = $3 AND version = $2 - 1)",
        );
        let done = bind_template(query, template, definition(template)?)
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_template(
        &self,
        user_id: &str,
        id: Uuid,
        version: Option<i64>,
    ) -> StoreResult<Option<Template>> {
        let row = sqlx::query(concat!(
            select_templates!(),
            " WHERE user_id = $1 AND id = $2 AND ($3::BIGINT IS NULL OR version = $3) \
             ORDER BY version DESC LIMIT 1"
        ))
        .bind(user_id)
        .bind(id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(template).transpose()
    }

    async fn list_templates(&self, user_id: &str) -> StoreResult<Vec<Template>> {
        let rows = sqlx::query(concat!(
            select_templates!(),
            " WHERE user_id = $1 AND version = (SELECT MAX(version) FROM prompt_templates \
             WHERE id = t.id) ORDER BY name, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(template).collect()
    }

    async fn delete_template(&self, user_id: &str, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM prompt_templates WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
