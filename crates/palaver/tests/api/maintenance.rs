//! Housekeeping that every process runs (issue #14 items 9 and 10): finished jobs are deleted
//! once `JOB_RETENTION_DAYS` have passed, usage records once `USAGE_RETENTION_DAYS` have;
//! unfinished jobs, recent rows and usage totals stay.

use chrono::Duration;
use palaver::store::jobs::{Job, JobKind, JobStatus};
use palaver::store::{self, Timestamp, UsageRecord};
use reqwest::Method;
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

/// Issue #14 item 10: usage records past `USAGE_RETENTION_DAYS` are deleted by the same
/// housekeeping, and `/ai/usage` answers the same before and after (it reads the rollup).
#[tokio::test]
async fn usage_records_past_their_retention_are_pruned_and_totals_stay() {
    for backend in backends() {
        let app = TestApp::spawn_with(
            backend,
            &[("USAGE_RETENTION_DAYS", "2"), ("WORKER_CONCURRENCY", "0")],
        )
        .await;
        let now = store::now();
        for (days_ago, tokens) in [(30, 1_000), (3, 200), (1, 30), (0, 4)] {
            let record = UsageRecord {
                id: Uuid::now_v7(),
                user_id: "keeper".to_owned(),
                conversation_id: None,
                kind: "embedding".to_owned(),
                model: "text-embedding-3-small".to_owned(),
                prompt_tokens: tokens,
                completion_tokens: 0,
                cost_usd: 0.0,
                created_at: now - Duration::days(days_ago),
                api_key_id: None,
                end_user: None,
            };
            app.state.store.record_usage(&record).await.unwrap();
        }
        let usage = || async {
            let token = app.token("keeper");
            let r = app
                .request(Method::GET, "/api/v1/ai/usage", Some(&token), None)
                .await;
            assert_eq!(r.status, 200, "{backend:?}: {}", r.body);
            r.body
        };
        let before = usage().await;
        assert_eq!(before["totalTokens"], 1_234, "{backend:?}: {before}");
        assert_eq!(before["requests"], 4, "{backend:?}");

        let pruned = palaver::jobs::prune_usage(&app.state).await.unwrap();
        assert_eq!(pruned, 2, "{backend:?}: the records of 30 and 3 days ago");
        assert_eq!(palaver::jobs::prune_usage(&app.state).await.unwrap(), 0);
        let after = usage().await;
        for field in [
            "totalTokens",
            "promptTokens",
            "requests",
            "costUsd",
            "byModel",
        ] {
            assert_eq!(after[field], before[field], "{backend:?}: {field}");
        }
        // The records still there are the recent ones: a since inside yesterday reads them.
        let since = now - Duration::days(1) - Duration::minutes(1);
        let recent = app
            .state
            .store
            .tokens_used_since("keeper", since)
            .await
            .unwrap();
        assert_eq!(recent, 34, "{backend:?}");
    }
}
