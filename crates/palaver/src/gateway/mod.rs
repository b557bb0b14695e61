//! The Socket.IO gateway on namespace `/ai`: the chat pipeline streamed as the events of
//! API.md. Authentication happens at the handshake; a refused token gets `connect_error`.
//! With Redis configured, emits to a user's room reach every instance.

mod connection;
mod handlers;
mod resume;

use axum::Router;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::SocketIo;
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};

use crate::service::{Emitter, Notifier};
use crate::state::AppState;

pub const NAMESPACE: &str = "/ai";

/// The room every connection of a user joins.
pub fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("redis adapter: {0}")]
    Redis(String),
}

/// Emits to a user's room, on whichever instance their connections are.
#[derive(Clone)]
pub enum Broadcaster {
    Local(SocketIo<LocalAdapter>),
    Redis(SocketIo<RedisAdapter<socketioxide::adapter::Emitter>>),
}

impl Broadcaster {
    pub async fn to_user<T: Serialize + ?Sized>(&self, user_id: &str, event: &str, payload: &T) {
        let room = user_room(user_id);
        let result = match self {
            Broadcaster::Local(io) => emit_room(io, room, event, payload).await,
            Broadcaster::Redis(io) => emit_room(io, room, event, payload).await,
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, event, "could not emit to a user's room");
        }
    }
}

impl Emitter for Broadcaster {
    fn to_user<'a>(
        &'a self,
        user_id: &'a str,
        event: &'static str,
        payload: &'a RawValue,
    ) -> BoxFuture<'a, ()> {
        Box::pin(Broadcaster::to_user(self, user_id, event, payload))
    }
}

impl Broadcaster {
    /// Disconnects every socket of this instance (at shutdown).
    pub async fn close(&self) {
        match self {
            Broadcaster::Local(io) => io.close().await,
            Broadcaster::Redis(io) => io.close().await,
        }
    }
}

async fn emit_room<A: Adapter, T: Serialize + ?Sized>(
    io: &SocketIo<A>,
    room: String,
    event: &str,
    payload: &T,
) -> Result<(), String> {
    match io.of(NAMESPACE) {
        Some(ns) => ns
            .to(room)
            .emit(event, payload)
            .await
            .map_err(|e| e.to_string()),
        None => Err("namespace /ai is not registered".to_owned()),
    }
}

/// Adds the Socket.IO layer to the router and returns the broadcaster.
pub async fn attach(
    router: Router,
    state: &AppState,
) -> Result<(Router, Broadcaster), GatewayError> {
    // The handlers' state has a notifier of its own, with no emitter: sharing the caller's,
    // which is about to hold this `SocketIo`, would make a reference cycle (the state holds
    // the gateway, whose config holds the state), and nothing of that process (its database
    // pool, say) would ever be freed. Handlers emit on their own sockets.
    let handlers_state = AppState {
        notifier: Notifier::default(),
        ..state.clone()
    };
    let builder = SocketIo::builder()
        .max_buffer_size(4096)
        .with_state(handlers_state);
    match &state.config.redis_url {
        None => {
            let (layer, io) = builder.build_layer();
            io.ns(
                NAMESPACE,
                handlers::on_connect::<LocalAdapter>.with(handlers::authenticate::<LocalAdapter>),
            );
            Ok((router.layer(layer), Broadcaster::Local(io)))
        }
        Some(url) => {
            use secrecy::ExposeSecret;
            let url = with_resp3(url.expose_secret());
            let client =
                redis::Client::open(url).map_err(|e| GatewayError::Redis(e.to_string()))?;
            let adapter = RedisAdapterCtr::new_with_redis(&client)
                .await
                .map_err(|e| GatewayError::Redis(e.to_string()))?;
            let (layer, io) = builder
                .with_adapter::<RedisAdapter<_>>(adapter)
                .build_layer();
            io.ns(NAMESPACE, handlers::on_connect.with(handlers::authenticate))
                .await
                .map_err(|e| GatewayError::Redis(e.to_string()))?;
            Ok((router.layer(layer), Broadcaster::Redis(io)))
        }
    }
}

/// The adapter's driver speaks RESP3.
fn with_resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

use socketioxide::handler::ConnectHandler as _;
