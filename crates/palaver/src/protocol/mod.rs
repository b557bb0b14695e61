//! What the transports share: the wire shapes of API.md, their validation, and the chat
//! events' names and payloads. REST (`api`), Socket.IO (`gateway`) and the job workers
//! (`jobs`) depend on this module and on `service`, never on each other.

pub mod chat;
pub mod dto;
pub mod events;
pub mod jobs;
pub mod runs;
pub mod templates;
pub mod transfer;
pub mod tree;
pub mod validate;

pub use chat::ChatRequest;
pub use validate::{from_value, parse_json, validate};
