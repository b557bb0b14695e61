//! One conformance suite for every `JobStore` operation, run against each backend, talking to
//! the trait directly (tests/api/jobs.rs drives the same table through the HTTP stack).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use palaver::config::DatabaseConfig;
use palaver::store::jobs::{Finish, Job, JobKind, JobStatus, JobStore, JobStoreError, Stranded};
use palaver::store::{self, Timestamp};
use serde_json::json;
use serde_json::value::to_raw_value;
use uuid::Uuid;

use crate::support::db::{Backend, TestDb, backends};

const QUEUE: &str = "conformance";

async fn open(backend: Backend) -> (Arc<dyn JobStore>, TestDb) {
    let db = TestDb::new(backend).await;
    let config = match backend {
        Backend::Sqlite => DatabaseConfig::Sqlite { url: db.url() },
        Backend::Postgres => DatabaseConfig::Postgres { url: db.url() },
    };
    let opened = store::connect(&config, 4).await.unwrap();
    (opened.jobs, db)
}

fn waiting(at: Timestamp) -> Job {
    Job {
        id: Uuid::now_v7(),
        user_id: "jo".to_owned(),
        kind: JobKind::GenerateEmbeddings,
        data: json!({"text": "hello", "nested": {"n": 1}}),
        status: JobStatus::Waiting,
        progress: 0,
        attempts: 0,
        max_attempts: 3,
        result: None,
        error: None,
        conversation_id: None,
        run_at: None,
        locked_by: None,
        locked_until: None,
        created_at: at,
        updated_at: at,
    }
}

/// Inserts `n` waiting jobs of [`QUEUE`], one millisecond apart from `at`; returns their ids.
async fn insert_waiting(jobs: &dyn JobStore, n: usize, at: Timestamp) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for i in 0..n {
        let job = waiting(at + Duration::milliseconds(i as i64));
        jobs.insert(&job, QUEUE).await.unwrap();
        ids.push(job.id);
    }
    ids
}

/// Claims the job `id` (the only due one) under `token`, with a lease until `now + lease`.
async fn claim_one(jobs: &dyn JobStore, token: &str, now: Timestamp, lease: Duration) -> Job {
    let claimed = jobs
        .claim_due(QUEUE, 1, token, now, now + lease)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "one due job");
    claimed.into_iter().next().unwrap().unwrap()
}

#[tokio::test]
async fn jobs_round_trip_and_ids_are_unique() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        let mut job = waiting(t0);
        job.kind = JobKind::GenerateCompletion;
        job.status = JobStatus::Delayed;
        job.progress = 40;
        job.attempts = 1;
        job.result = Some(json!({"content": "Grüße ✈️"}));
        job.error = Some("The AI provider failed to answer".to_owned());
        job.conversation_id = Some(Uuid::now_v7());
        job.run_at = Some(t0 + Duration::seconds(30));
        job.locked_by = Some("token".to_owned());
        job.locked_until = Some(t0 + Duration::seconds(20));
        job.updated_at = t0 + Duration::milliseconds(1500);
        jobs.insert(&job, QUEUE).await.unwrap();
        assert_eq!(
            jobs.get(job.id).await.unwrap(),
            Some(job.clone()),
            "{backend}: what is read is what was written"
        );
        assert_eq!(jobs.get(Uuid::now_v7()).await.unwrap(), None);
        assert!(
            matches!(jobs.insert(&job, QUEUE).await, Err(JobStoreError::Conflict)),
            "{backend}: the same id twice is a conflict"
        );
    }
}

#[tokio::test]
async fn claim_due_takes_the_oldest_due_jobs_of_its_queue() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        let ids = insert_waiting(&*jobs, 3, t0).await;
        let mut elsewhere = waiting(t0 - Duration::seconds(60));
        elsewhere.id = Uuid::now_v7();
        jobs.insert(&elsewhere, "another-queue").await.unwrap();

        let now = t0 + Duration::seconds(1);
        let lease_until = now + Duration::seconds(20);
        let claimed: Vec<Job> = jobs
            .claim_due(QUEUE, 2, "a", now, lease_until)
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        // (The order of the returned rows is not part of the contract, which jobs are is.)
        let claimed_ids: HashSet<Uuid> = claimed.iter().map(|j| j.id).collect();
        assert_eq!(
            claimed_ids,
            ids[..2].iter().copied().collect(),
            "{backend}: the oldest `limit` of them"
        );
        for job in &claimed {
            assert_eq!(job.status, JobStatus::Active);
            assert_eq!(job.attempts, 1, "{backend}: the first attempt starts");
            assert_eq!(job.locked_by.as_deref(), Some("a"));
            assert_eq!(job.locked_until, Some(lease_until));
            assert_eq!(job.updated_at, now);
        }
        // Active under a live lease: not due again; the third one is.
        let next = jobs
            .claim_due(QUEUE, 10, "b", now, lease_until)
            .await
            .unwrap();
        let next: Vec<Uuid> = next.into_iter().map(|j| j.unwrap().id).collect();
        assert_eq!(next, vec![ids[2]], "{backend}");
        assert!(
            jobs.claim_due(QUEUE, 10, "c", now, lease_until)
                .await
                .unwrap()
                .is_empty()
        );
        // Once the lease expired (its worker died), the same attempt is claimed again.
        let later = lease_until + Duration::seconds(1);
        let again = jobs
            .claim_due(QUEUE, 1, "d", later, later + Duration::seconds(20))
            .await
            .unwrap();
        let again = again.into_iter().next().unwrap().unwrap();
        assert_eq!(again.id, ids[0], "{backend}");
        assert_eq!(again.attempts, 1, "{backend}: the same attempt runs again");
        assert_eq!(again.locked_by.as_deref(), Some("d"));
    }
}

#[tokio::test]
async fn concurrent_claims_never_share_a_job() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        let ids = insert_waiting(&*jobs, 30, t0).await;
        let now = t0 + Duration::seconds(1);
        let claimers = (0..4).map(|k| {
            let jobs = jobs.clone();
            tokio::spawn(async move {
                let token = format!("claimer-{k}");
                let mut mine = Vec::new();
                loop {
                    let claimed = jobs
                        .claim_due(QUEUE, 3, &token, now, now + Duration::seconds(20))
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|j| j.unwrap()));
                }
            })
        });
        let mut seen = HashSet::new();
        for claimer in futures::future::join_all(claimers).await {
            for job in claimer.unwrap() {
                assert!(seen.insert(job.id), "{backend}: {} claimed twice", job.id);
            }
        }
        assert_eq!(seen, ids.into_iter().collect(), "{backend}: every job once");
    }
}

#[tokio::test]
async fn claim_starts_an_attempt_only_when_it_is_due() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        let id = insert_waiting(&*jobs, 1, t0).await[0];
        let lease = |now: Timestamp| now + Duration::seconds(20);
        let now = t0 + Duration::seconds(1);
        let first = jobs.claim(id, 1, "a", now, lease(now)).await.unwrap();
        let first = first.expect("a waiting job is due for attempt 1");
        assert_eq!((first.status, first.attempts), (JobStatus::Active, 1));
        assert_eq!(first.locked_by.as_deref(), Some("a"));
        // A duplicate delivery of attempt 1 while the lease is live: not due.
        assert_eq!(jobs.claim(id, 1, "b", now, lease(now)).await.unwrap(), None);
        // After the lease expired, attempt 1 may run again (not attempt 0).
        let later = lease(now) + Duration::seconds(1);
        assert_eq!(
            jobs.claim(id, 0, "b", later, lease(later)).await.unwrap(),
            None
        );
        let again = jobs.claim(id, 1, "b", later, lease(later)).await.unwrap();
        assert_eq!(
            again.map(|j| j.locked_by),
            Some(Some("b".to_owned())),
            "{backend}"
        );
        // Delayed: attempt 2, and only once `run_at` has come.
        let run_at = later + Duration::seconds(30);
        let delayed = Finish::Delayed {
            error: "try again".into(),
            run_at,
        };
        assert!(jobs.finish(id, "b", &delayed).await.unwrap());
        assert_eq!(
            jobs.claim(id, 2, "c", later, lease(later)).await.unwrap(),
            None
        );
        assert_eq!(
            jobs.claim(id, 1, "c", run_at, lease(run_at)).await.unwrap(),
            None
        );
        let second = jobs.claim(id, 2, "c", run_at, lease(run_at)).await.unwrap();
        assert_eq!(second.map(|j| j.attempts), Some(2), "{backend}");
    }
}

/// What a claim says when its takeover would be the job's `max_attempts`-th (issue #14 item
/// 7): the job is failed, with no lease and a public error, instead of being run again.
fn assert_exhausted(job: &Job, backend: Backend, stopped: Timestamp, attempts: i32) {
    assert_eq!(
        job.status,
        JobStatus::Failed,
        "{backend}: failed, not claimed"
    );
    assert_eq!(
        job.error.as_deref(),
        Some("The worker running the job stopped 3 times"),
        "{backend}"
    );
    assert_eq!(job.attempts, attempts, "{backend}: no attempt started");
    assert_eq!(
        (job.locked_by.as_deref(), job.locked_until),
        (None, None),
        "{backend}: no lease"
    );
    assert_eq!(job.updated_at, stopped, "{backend}");
}

#[tokio::test]
async fn claim_due_fails_a_job_whose_worker_died_max_attempts_times() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        let id = insert_waiting(&*jobs, 1, t0).await[0];
        let lease = Duration::seconds(20);
        // Run, then two takeovers (max_attempts is 3): each worker dies under its lease.
        let mut now = t0 + Duration::seconds(1);
        for token in ["first", "second", "third"] {
            let job = claim_one(&*jobs, token, now, lease).await;
            assert_eq!((job.id, job.status), (id, JobStatus::Active), "{backend}");
            assert_eq!(
                job.attempts, 1,
                "{backend}: a takeover runs the same attempt"
            );
            assert_eq!(job.locked_by.as_deref(), Some(token));
            now = now + lease + Duration::seconds(1);
        }
        // The third worker died too: the third takeover fails the job instead.
        let claimed = jobs
            .claim_due(QUEUE, 10, "fourth", now, now + lease)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "{backend}: reported to the claimer");
        let failed = claimed.into_iter().next().unwrap().unwrap();
        assert_exhausted(&failed, backend, now, 1);
        assert_eq!(jobs.get(id).await.unwrap(), Some(failed), "{backend}");
        // Never due again; the dead worker's token can write nothing.
        let much_later = now + Duration::hours(1);
        assert!(!jobs.any_due(QUEUE, much_later).await.unwrap(), "{backend}");
        let empty = jobs
            .claim_due(QUEUE, 10, "fifth", much_later, much_later + lease)
            .await
            .unwrap();
        assert!(empty.is_empty(), "{backend}");
        let result = to_raw_value(&json!({"late": true})).unwrap();
        let completed = Finish::Completed { result: &result };
        assert!(!jobs.finish(id, "third", &completed).await.unwrap());
        assert!(!jobs.renew(id, "third", much_later).await.unwrap());
        assert_eq!(
            jobs.get(id).await.unwrap().unwrap().status,
            JobStatus::Failed
        );
    }
}

#[tokio::test]
async fn claim_fails_a_job_whose_worker_died_max_attempts_times() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        let id = insert_waiting(&*jobs, 1, t0).await[0];
        let lease = |now: Timestamp| now + Duration::seconds(20);
        let after = |now: Timestamp| lease(now) + Duration::seconds(1);
        // Attempt 1 runs, its worker dies; the takeover runs it and fails it (a retry).
        let now = t0 + Duration::seconds(1);
        assert!(
            jobs.claim(id, 1, "a", now, lease(now))
                .await
                .unwrap()
                .is_some()
        );
        let now = after(now);
        let taken = jobs.claim(id, 1, "b", now, lease(now)).await.unwrap();
        assert_eq!(
            taken.map(|j| j.status),
            Some(JobStatus::Active),
            "{backend}"
        );
        let run_at = now + Duration::seconds(5);
        let delayed = Finish::Delayed {
            error: "try again".into(),
            run_at,
        };
        assert!(jobs.finish(id, "b", &delayed).await.unwrap());
        // Attempt 2 runs and its worker dies twice more: takeovers are counted per job, not
        // per attempt, so the third one fails it (a retry does not reset the count).
        let second = jobs.claim(id, 2, "c", run_at, lease(run_at)).await.unwrap();
        assert_eq!(
            second.map(|j| (j.status, j.attempts)),
            Some((JobStatus::Active, 2))
        );
        let now = after(run_at);
        let taken = jobs.claim(id, 2, "d", now, lease(now)).await.unwrap();
        assert_eq!(
            taken.map(|j| j.status),
            Some(JobStatus::Active),
            "{backend}"
        );
        let now = after(now);
        // A delivery of a later attempt (a rescued envelope) starts nothing either.
        let failed = jobs.claim(id, 3, "e", now, lease(now)).await.unwrap();
        let failed = failed.expect("reported to the claimer");
        assert_exhausted(&failed, backend, now, 2);
        assert_eq!(jobs.get(id).await.unwrap(), Some(failed), "{backend}");
        let later = after(now);
        for attempt in [2, 3] {
            let again = jobs.claim(id, attempt, "f", later, lease(later)).await;
            assert_eq!(again.unwrap(), None, "{backend}: never claimed again");
        }
        assert!(!jobs.set_progress(id, "d", 10).await.unwrap(), "{backend}");
    }
}

#[tokio::test]
async fn writes_under_a_stale_lease_are_refused() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        let id = insert_waiting(&*jobs, 1, t0).await[0];
        let now = t0 + Duration::seconds(1);
        claim_one(&*jobs, "old", now, Duration::seconds(20)).await;
        // The lease expires and another worker takes the job over.
        let later = now + Duration::seconds(21);
        claim_one(&*jobs, "new", later, Duration::seconds(20)).await;

        let conversation = Uuid::now_v7();
        let until = later + Duration::seconds(60);
        assert!(!jobs.renew(id, "old", until).await.unwrap(), "{backend}");
        assert!(!jobs.set_progress(id, "old", 50).await.unwrap());
        assert!(
            !jobs
                .set_conversation(id, "old", conversation)
                .await
                .unwrap()
        );
        assert!(
            !jobs
                .stash_result(id, "old", &json!({"x": 1}))
                .await
                .unwrap()
        );
        let failed = Finish::Failed {
            error: "stale".into(),
        };
        assert!(!jobs.finish(id, "old", &failed).await.unwrap());
        let job = jobs.get(id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Active, "{backend}: nothing changed");
        assert_eq!(
            (job.progress, job.conversation_id, job.result),
            (0, None, None)
        );
        assert_eq!(job.locked_by.as_deref(), Some("new"));

        // The holder of the lease may write.
        assert!(jobs.renew(id, "new", until).await.unwrap(), "{backend}");
        assert!(jobs.set_progress(id, "new", 50).await.unwrap());
        assert!(
            jobs.set_conversation(id, "new", conversation)
                .await
                .unwrap()
        );
        assert!(
            jobs.stash_result(id, "new", &json!({"x": 1}))
                .await
                .unwrap()
        );
        let job = jobs.get(id).await.unwrap().unwrap();
        assert_eq!(job.locked_until, Some(until), "{backend}: renewed");
        assert_eq!(job.progress, 50);
        assert_eq!(job.conversation_id, Some(conversation));
        assert_eq!(job.result, Some(json!({"x": 1})));
    }
}

#[tokio::test]
async fn finishing_completes_fails_or_delays_and_releases_the_lease() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        let ids = insert_waiting(&*jobs, 3, t0).await;
        let now = t0 + Duration::seconds(1);
        let tokens = ["done", "failed", "delayed"];
        for token in tokens {
            claim_one(&*jobs, token, now, Duration::seconds(20)).await;
        }
        assert!(jobs.set_progress(ids[1], "failed", 30).await.unwrap());
        assert!(jobs.set_progress(ids[2], "delayed", 30).await.unwrap());
        let result = to_raw_value(&json!({"content": "hi", "tokens": 3})).unwrap();
        let run_at = now + Duration::seconds(30);
        let finishes = [
            Finish::Completed { result: &result },
            Finish::Failed {
                error: "refused".into(),
            },
            Finish::Delayed {
                error: "hiccup".into(),
                run_at,
            },
        ];
        for ((id, token), finish) in ids.iter().zip(tokens).zip(&finishes) {
            assert!(jobs.finish(*id, token, finish).await.unwrap(), "{backend}");
            // An attempt ends once.
            assert!(!jobs.finish(*id, token, finish).await.unwrap(), "{backend}");
        }
        let [done, failed, delayed] = [ids[0], ids[1], ids[2]];
        let done = jobs.get(done).await.unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Completed, "{backend}");
        assert_eq!(done.progress, 100);
        assert_eq!(done.result, Some(json!({"content": "hi", "tokens": 3})));
        assert_eq!(done.error, None);
        let failed = jobs.get(failed).await.unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed, "{backend}");
        assert_eq!(
            failed.progress, 30,
            "{backend}: a failure keeps the progress"
        );
        assert_eq!(failed.error.as_deref(), Some("refused"));
        let delayed = jobs.get(delayed).await.unwrap().unwrap();
        assert_eq!(delayed.status, JobStatus::Delayed, "{backend}");
        assert_eq!(
            delayed.progress, 0,
            "{backend}: the next attempt starts over"
        );
        assert_eq!(delayed.error.as_deref(), Some("hiccup"));
        assert_eq!(delayed.run_at, Some(run_at));
        for job in [&done, &failed, &delayed] {
            assert_eq!(
                (&job.locked_by, job.locked_until),
                (&None, None),
                "{backend}"
            );
        }
        // The delayed job is due at `run_at`, as attempt 2.
        assert!(!jobs.any_due(QUEUE, now).await.unwrap(), "{backend}");
        assert!(jobs.any_due(QUEUE, run_at).await.unwrap(), "{backend}");
        let next = claim_one(&*jobs, "next", run_at, Duration::seconds(20)).await;
        assert_eq!((next.id, next.attempts), (delayed.id, 2), "{backend}");
    }
}

#[tokio::test]
async fn any_due_sees_what_claim_due_would_take() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        assert!(!jobs.any_due(QUEUE, t0).await.unwrap(), "{backend}: empty");
        let mut elsewhere = waiting(t0);
        elsewhere.id = Uuid::now_v7();
        jobs.insert(&elsewhere, "another-queue").await.unwrap();
        assert!(
            !jobs.any_due(QUEUE, t0).await.unwrap(),
            "{backend}: another queue's"
        );
        insert_waiting(&*jobs, 1, t0).await;
        assert!(jobs.any_due(QUEUE, t0).await.unwrap(), "{backend}: waiting");
        let now = t0 + Duration::seconds(1);
        claim_one(&*jobs, "a", now, Duration::seconds(20)).await;
        assert!(
            !jobs.any_due(QUEUE, now).await.unwrap(),
            "{backend}: leased"
        );
        let expired = now + Duration::seconds(21);
        assert!(
            jobs.any_due(QUEUE, expired).await.unwrap(),
            "{backend}: lease expired"
        );
    }
}

#[tokio::test]
async fn stranded_jobs_are_the_unfinished_ones_nobody_looked_after() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        let old = t0 - Duration::minutes(10);
        let before = t0 - Duration::minutes(5);
        let forgotten = insert_waiting(&*jobs, 1, old).await[0];
        let recent = insert_waiting(&*jobs, 1, t0).await[0];
        let mut overdue = waiting(old);
        overdue.status = JobStatus::Delayed;
        overdue.attempts = 1;
        overdue.run_at = Some(old + Duration::seconds(1));
        let mut dead = waiting(old);
        dead.status = JobStatus::Active;
        dead.attempts = 2;
        dead.locked_by = Some("dead".into());
        dead.locked_until = Some(old + Duration::seconds(20));
        let mut finished = waiting(old);
        finished.status = JobStatus::Completed;
        for job in [&overdue, &dead, &finished] {
            jobs.insert(job, QUEUE).await.unwrap();
        }
        let stranded = jobs.stranded(before, 100).await.unwrap();
        let expected = [
            (forgotten, JobStatus::Waiting, 0),
            (overdue.id, JobStatus::Delayed, 1),
            (dead.id, JobStatus::Active, 2),
        ];
        assert_eq!(stranded.len(), 3, "{backend}: {stranded:?}");
        for (id, status, attempts) in expected {
            let found = Stranded {
                id,
                status,
                attempts,
            };
            assert!(
                stranded.contains(&found),
                "{backend}: {found:?} in {stranded:?}"
            );
        }
        assert!(
            stranded
                .iter()
                .all(|s| s.id != recent && s.id != finished.id)
        );
        assert_eq!(
            jobs.stranded(before, 1).await.unwrap().len(),
            1,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_job_that_was_never_queued_is_abandoned_as_failed() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        let ids = insert_waiting(&*jobs, 2, t0).await;
        jobs.abandon(ids[0], "The job could not be queued")
            .await
            .unwrap();
        let job = jobs.get(ids[0]).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed, "{backend}");
        assert_eq!(job.error.as_deref(), Some("The job could not be queued"));
        // Only a waiting job: one that started is left to its attempt.
        let now = t0 + Duration::seconds(1);
        claim_one(&*jobs, "a", now, Duration::seconds(20)).await;
        jobs.abandon(ids[1], "late").await.unwrap();
        let job = jobs.get(ids[1]).await.unwrap().unwrap();
        assert_eq!(
            (job.status, job.error),
            (JobStatus::Active, None),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn old_finished_jobs_are_pruned_and_nothing_else() {
    for backend in backends() {
        let (jobs, _db) = open(backend).await;
        let t0 = store::now();
        let old = t0 - Duration::days(30);
        let cutoff = t0 - Duration::days(7);
        let job_at = |status: JobStatus, at: Timestamp| {
            let mut job = waiting(at);
            job.status = status;
            job
        };
        let old_done: Vec<Job> = (0..3)
            .map(|i| job_at(JobStatus::Completed, old + Duration::seconds(i)))
            .collect();
        let old_failed = job_at(JobStatus::Failed, old + Duration::seconds(10));
        let kept = [
            job_at(JobStatus::Completed, t0),
            job_at(JobStatus::Failed, t0),
            job_at(JobStatus::Waiting, old),
            job_at(JobStatus::Delayed, old),
            job_at(JobStatus::Active, old),
        ];
        for job in old_done.iter().chain([&old_failed]).chain(&kept) {
            jobs.insert(job, QUEUE).await.unwrap();
        }
        // At most `limit` at a time, oldest first.
        assert_eq!(
            jobs.prune_finished(cutoff, 2).await.unwrap(),
            2,
            "{backend}"
        );
        assert_eq!(jobs.get(old_done[0].id).await.unwrap(), None, "{backend}");
        assert!(jobs.get(old_done[2].id).await.unwrap().is_some());
        assert_eq!(
            jobs.prune_finished(cutoff, 100).await.unwrap(),
            2,
            "{backend}"
        );
        assert_eq!(
            jobs.prune_finished(cutoff, 100).await.unwrap(),
            0,
            "{backend}"
        );
        for gone in old_done.iter().chain([&old_failed]) {
            assert_eq!(jobs.get(gone.id).await.unwrap(), None, "{backend}");
        }
        for job in &kept {
            assert_eq!(
                jobs.get(job.id).await.unwrap().as_ref(),
                Some(job),
                "{backend}: recent or unfinished jobs stay"
            );
        }
    }
}

#[tokio::test]
async fn a_corrupt_row_is_reported_as_corrupt() {
    for backend in backends() {
        let (jobs, db) = open(backend).await;
        let t0 = store::now();
        let ids = insert_waiting(&*jobs, 2, t0).await;
        corrupt(&db, ids[0]).await;
        assert!(
            matches!(jobs.get(ids[0]).await, Err(JobStoreError::Corrupt(_))),
            "{backend}"
        );
        // A claim still takes the others, and names the broken one.
        let now = t0 + Duration::seconds(1);
        let claimed = jobs
            .claim_due(QUEUE, 10, "a", now, now + Duration::seconds(20))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2, "{backend}");
        let unreadable: Vec<_> = claimed.iter().filter_map(|c| c.as_ref().err()).collect();
        let read: Vec<Uuid> = claimed
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .map(|j| j.id)
            .collect();
        assert_eq!(unreadable.len(), 1, "{backend}: {claimed:?}");
        assert_eq!(unreadable[0].id, Some(ids[0]), "{backend}");
        assert_eq!(read, vec![ids[1]], "{backend}");
    }
}

/// Breaks job `id` as a hand edit could: text that is not JSON in `data` (SQLite), a kind
/// this build does not know (PostgreSQL, once its CHECK constraint is gone).
async fn corrupt(db: &TestDb, id: Uuid) {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url()).await.unwrap();
            sqlx::query("UPDATE jobs SET data = 'not json' WHERE id = ?1")
                .bind(id.to_string())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
            sqlx::query("ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("UPDATE jobs SET kind = 'generate-poetry' WHERE id = $1")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}
