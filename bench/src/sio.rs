//! A minimal Socket.IO v5 / Engine.IO v4 client over WebSocket, enough to load Palaver's
//! gateway from Rust (so the client is not the bottleneck): connect to a namespace with an
//! auth payload, emit events, answer pings, receive events.

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct SioClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    ns: String,
}

pub enum Incoming {
    Event(String, Value),
    Other,
}

impl SioClient {
    /// Opens the WebSocket transport and connects to `ns` with `auth`.
    pub async fn connect(base: &str, ns: &str, auth: &Value) -> anyhow::Result<SioClient> {
        let url = format!(
            "{}/socket.io/?EIO=4&transport=websocket",
            base.replacen("http", "ws", 1)
        );
        // tungstenite zeroes its whole read buffer (128 KiB by default) before every read: at
        // 20,000 small frames a second that memset was a fifth of the load generator's CPU.
        // Events here are a few hundred bytes; larger frames still arrive, in several reads.
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .context("websocket connect")?;
        // Engine.IO open packet.
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
            other => bail!("no engine.io open packet: {other:?}"),
        }
        ws.send(Message::Text(format!("40{ns},{auth}").into()))
            .await?;
        let mut client = SioClient {
            ws,
            ns: ns.to_owned(),
        };
        loop {
            let Some(frame) = client.ws.next().await else {
                bail!("closed during connect")
            };
            let Message::Text(text) = frame? else {
                continue;
            };
            if text.starts_with(&format!("40{ns},")) {
                return Ok(client);
            }
            if text.starts_with(&format!("44{ns},")) {
                bail!("connect_error: {}", &text[ns.len() + 3..]);
            }
            if text.as_str() == "2" {
                client.ws.send(Message::Text("3".into())).await?;
            }
        }
    }

    pub async fn emit(&mut self, event: &str, data: &Value) -> anyhow::Result<()> {
        let packet = format!("42{},{}", self.ns, serde_json::json!([event, data]));
        self.ws.send(Message::Text(packet.into())).await?;
        Ok(())
    }

    /// The next event (pings are answered on the way).
    pub async fn next(&mut self) -> anyhow::Result<Option<Incoming>> {
        loop {
            let Some(frame) = self.ws.next().await else {
                return Ok(None);
            };
            let Message::Text(text) = frame? else {
                continue;
            };
            if text.as_str() == "2" {
                self.ws.send(Message::Text("3".into())).await?;
                continue;
            }
            let prefix = format!("42{},", self.ns);
            let Some(body) = text.strip_prefix(prefix.as_str()) else {
                return Ok(Some(Incoming::Other));
            };
            let parsed: Value = serde_json::from_str(body)?;
            let name = parsed[0].as_str().unwrap_or_default().to_owned();
            return Ok(Some(Incoming::Event(name, parsed[1].clone())));
        }
    }

    /// Keeps an idle connection alive: answers pings until the server closes it.
    pub async fn idle(mut self) {
        while let Some(Ok(frame)) = self.ws.next().await {
            if let Message::Text(t) = frame
                && t.as_str() == "2"
                && self.ws.send(Message::Text("3".into())).await.is_err()
            {
                break;
            }
        }
    }
}
