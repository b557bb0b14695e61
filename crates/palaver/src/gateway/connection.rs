//! What a connection keeps, and how a run's encoded event is sent to it.

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use tokio_util::sync::CancellationToken;

use crate::service::chat::runs::Logged;

/// Cancelled when the connection goes away, which stops its streams under
/// `STREAM_ON_DISCONNECT=stop`.
#[derive(Clone, Default)]
pub struct Connection {
    pub gone: CancellationToken,
}

/// Sends a run's event as encoded (its JSON payload as it is, neither copied nor parsed again).
pub fn emit_logged<A: Adapter>(
    socket: &SocketRef<A>,
    logged: &Logged,
) -> Result<(), socketioxide::SendError> {
    socket.emit(logged.name, &*logged.data)
}
