//! Housekeeping that every worker process runs (issue #14 item 9): finished jobs are deleted
//! once `JOB_RETENTION_DAYS` have passed; unfinished and recent ones stay.

use chrono::Duration;
use palaver::store::jobs::{Job, JobKind, JobStatus};
use palaver::store::{self, Timestamp};
use serde_json::json;
use uuid::Uuid;

use crate::support::app::TestApp;
use crate::support::db::backends;

fn job(status: JobStatus, updated_at: Timestamp) -> Job {
    Job {
        id: Uuid::now_v7(),
        user_id: "keeper".to_owned(),
        kind: JobKind::GenerateEmbeddings,
        data: json!({"text": "old"}),
        status,
        progress: if status.is_terminal() { 100 } else { 0 },
        attempts: 1,
        max_attempts: 3,
        result: None,
        error: None,
        conversation_id: None,
        run_at: None,
        locked_by: None,
        locked_until: None,
        created_at: updated_at,
        updated_at,
    }
}

#[tokio::test]
async fn finished_jobs_past_their_retention_are_pruned() {
    for backend in backends() {
        let app = TestApp::spawn_with(
            backend,
            &[("JOB_RETENTION_DAYS", "2"), ("WORKER_CONCURRENCY", "0")],
        )
        .await;
        let jobs = app.state.jobs.store().clone();
        let now = store::now();
        let old = now - Duration::days(3);
        let kept_recent = job(JobStatus::Completed, now - Duration::days(1));
        let gone_completed = job(JobStatus::Completed, old);
        let gone_failed = job(JobStatus::Failed, old);
        let kept_waiting = job(JobStatus::Waiting, old);
        for j in [&kept_recent, &gone_completed, &gone_failed, &kept_waiting] {
            jobs.insert(j, "ai-tasks").await.unwrap();
        }
        let pruned = palaver::jobs::prune_finished(&app.state).await.unwrap();
        assert_eq!(pruned, 2, "{backend:?}");
        for (j, present) in [
            (&kept_recent, true),
            (&gone_completed, false),
            (&gone_failed, false),
            (&kept_waiting, true),
        ] {
            let found = jobs.get(j.id).await.unwrap().is_some();
            assert_eq!(
                found, present,
                "{backend:?}: {:?} job of {}",
                j.status, j.updated_at
            );
        }
        // A second sweep has nothing left to do.
        assert_eq!(palaver::jobs::prune_finished(&app.state).await.unwrap(), 0);
    }
}
