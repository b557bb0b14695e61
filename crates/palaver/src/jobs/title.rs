//! `generate-title`: the title service sets the conversation's title, then its owner's
//! connections hear `conversation:title` (on every instance, through the notifier).

use serde::{Deserialize, Serialize};
use serde_json::value::{RawValue, to_raw_value};
use uuid::Uuid;

use super::outcome::invalid_result;
use super::runner::Runner;
use crate::protocol::events::CONVERSATION_TITLE;
use crate::service::ServiceError;
use crate::store::jobs::Job;

/// `generate-title` data, as the chat pipeline queued it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitleJobData {
    conversation_id: Uuid,
    model: String,
}

/// The job's result, and the `conversation:title` payload (`title` null: none was set, the
/// conversation being renamed or gone, or the model's answer empty).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Titled<'a> {
    conversation_id: Uuid,
    title: Option<&'a str>,
}

impl Runner {
    /// `generate-title`: `{conversationId, title}`.
    pub(super) async fn title(&self, job: &Job) -> Result<Box<RawValue>, ServiceError> {
        let data: TitleJobData = serde_json::from_value(job.data.clone()).map_err(|e| {
            ServiceError::Corrupt(format!(
                "data of job {} is not a title request: {e}",
                job.id
            ))
        })?;
        let title = self
            .state
            .titles
            .generate(&job.user_id, data.conversation_id, &data.model)
            .await?;
        let titled = Titled {
            conversation_id: data.conversation_id,
            title: title.as_deref(),
        };
        if title.is_some() {
            tracing::info!(job_id = %job.id, conversation_id = %data.conversation_id, "titles: conversation titled");
            self.emit(&job.user_id, CONVERSATION_TITLE, &titled).await;
        }
        to_raw_value(&titled).map_err(invalid_result)
    }
}
