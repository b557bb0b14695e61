//! Stopping runs from anywhere: a stop is tried on this process's streams, and with Redis it
//! is also published on a control channel that every instance listens to, so it reaches the
//! producer on whichever instance it runs (`POST /ai/runs/:id/cancel`, `chat:stop`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use super::RedisLogError;
use crate::service::ActiveStreams;

/// The channel stops travel on.
const CHANNEL: &str = "palaver:runs:control";

/// A stop, as published.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stop {
    user_id: String,
    /// One run; else the user's streams on `conversation_id`, or all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation_id: Option<Uuid>,
}

/// Stops runs here, and elsewhere through Redis when it is configured. Cheap to clone.
#[derive(Clone)]
pub struct RunControl {
    streams: Arc<ActiveStreams>,
    shared: Option<Shared>,
}

#[derive(Clone)]
struct Shared {
    conn: ConnectionManager,
    /// Stops the listener when the last clone goes.
    _listening: Arc<DropGuard>,
}

impl RunControl {
    /// This process's streams only.
    pub fn local(streams: Arc<ActiveStreams>) -> RunControl {
        RunControl {
            streams,
            shared: None,
        }
    }

    /// This process's streams, and the control channel on Redis (listened to from now on).
    pub async fn connect(
        streams: Arc<ActiveStreams>,
        url: &str,
    ) -> Result<RunControl, RedisLogError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client.clone()).await?;
        let stop = CancellationToken::new();
        // Subscribed before this returns: a stop published once it has is heard here.
        let pubsub = subscribe(&client).await?;
        tokio::runtime::Handle::current().spawn(listen(
            client,
            Some(pubsub),
            streams.clone(),
            stop.clone(),
        ));
        Ok(RunControl {
            streams,
            shared: Some(Shared {
                conn,
                _listening: Arc::new(stop.drop_guard()),
            }),
        })
    }

    /// Stops the user's run: at once when it runs here (true), else by telling the other
    /// instances (false; with no shared channel nothing else can be done).
    pub async fn stop_run(&self, user_id: &str, run_id: Uuid) -> bool {
        if self.streams.stop_run(user_id, run_id) {
            return true;
        }
        self.publish(Stop {
            user_id: user_id.to_owned(),
            run_id: Some(run_id),
            conversation_id: None,
        })
        .await;
        false
    }

    /// Whether stops reach other instances.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Stops the user's streams (on one conversation, or all of them), here and on every
    /// other instance; returns how many stopped here.
    pub async fn stop(&self, user_id: &str, conversation_id: Option<Uuid>) -> usize {
        let stopped = self.streams.stop(user_id, conversation_id);
        self.publish(Stop {
            user_id: user_id.to_owned(),
            run_id: None,
            conversation_id,
        })
        .await;
        stopped
    }

    async fn publish(&self, stop: Stop) {
        let Some(shared) = &self.shared else {
            return;
        };
        let Ok(payload) = serde_json::to_string(&stop) else {
            return;
        };
        let mut conn = shared.conn.clone();
        let published = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await;
        if let Err(err) = published {
            tracing::warn!(error = %err, "runs: could not publish a stop");
        }
    }
}

async fn subscribe(client: &redis::Client) -> Result<redis::aio::PubSub, RedisLogError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    Ok(pubsub)
}

/// Applies the stops published by any instance to this process's streams, until `stop`;
/// reconnects after a lost connection.
async fn listen(
    client: redis::Client,
    mut pubsub: Option<redis::aio::PubSub>,
    streams: Arc<ActiveStreams>,
    stop: CancellationToken,
) {
    loop {
        let mut subscribed = match pubsub.take() {
            Some(subscribed) => subscribed,
            None => match subscribe(&client).await {
                Ok(subscribed) => subscribed,
                Err(err) => {
                    tracing::warn!(error = %err, "runs: control channel unreachable; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        let mut messages = subscribed.on_message();
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                message = messages.next() => message,
            };
            let Some(message) = message else {
                break;
            };
            let Ok(payload) = message.get_payload::<String>() else {
                continue;
            };
            match serde_json::from_str::<Stop>(&payload) {
                Ok(Stop {
                    user_id,
                    run_id: Some(run_id),
                    ..
                }) => {
                    streams.stop_run(&user_id, run_id);
                }
                Ok(Stop {
                    user_id,
                    conversation_id,
                    ..
                }) => {
                    streams.stop(&user_id, conversation_id);
                }
                Err(err) => tracing::debug!(error = %err, "runs: unreadable stop ignored"),
            }
        }
        tracing::warn!("runs: control channel lost; resubscribing");
    }
}
