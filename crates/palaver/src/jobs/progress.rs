//! Progress of a completion: 10 once the context is built and the user message stored, then
//! streamed chunks counted against `maxTokens` up to 95; storing the reply makes it 100.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::watch;

use crate::service::chat::runs::Logged;
use crate::service::{ChatEvent, ChatSink};

/// Progress once the context is built and the user message stored.
pub const CONTEXT_BUILT: i32 = 10;
/// Progress when every token of `maxTokens` has arrived.
const TOKENS_DONE: i32 = 95;

/// Counts streamed chunks against `maxTokens`: progress from 10 (context built) to 95.
pub struct ProgressSink {
    progress: watch::Sender<i32>,
    chunks: AtomicU32,
    max_tokens: u32,
}

impl ProgressSink {
    pub fn new(progress: watch::Sender<i32>, max_tokens: u32) -> Self {
        ProgressSink {
            progress,
            chunks: AtomicU32::new(0),
            max_tokens: max_tokens.max(1),
        }
    }

    fn raise(&self, value: i32) {
        self.progress.send_if_modified(|current| {
            let raised = value > *current;
            if raised {
                *current = value;
            }
            raised
        });
    }
}

impl ChatSink for ProgressSink {
    fn emit(&self, event: ChatEvent<'_>, _: &Logged) {
        match event {
            ChatEvent::UserMessage(_) => self.raise(CONTEXT_BUILT),
            ChatEvent::Chunk { .. } => {
                let chunks = self.chunks.fetch_add(1, Ordering::Relaxed) + 1;
                let share =
                    u64::from(chunks.min(self.max_tokens)) * (TOKENS_DONE - CONTEXT_BUILT) as u64;
                self.raise(CONTEXT_BUILT + (share / u64::from(self.max_tokens)) as i32);
            }
            ChatEvent::ConversationCreated(_) | ChatEvent::Finished(_) | ChatEvent::Failed(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::store::{self, Role};

    #[test]
    fn progress_counts_chunks_against_max_tokens() {
        let (tx, rx) = watch::channel(0);
        let sink = ProgressSink::new(tx.clone(), 10);
        let message = store::Message {
            id: Uuid::now_v7(),
            conversation_id: Uuid::nil(),
            parent_id: None,
            role: Role::User,
            content: "hi".into(),
            tokens: 1,
            model: None,
            metadata: json!({}),
            created_at: store::now(),
            edited_at: None,
        };
        // What the run's recorder passes along (the progress sink reads the event only).
        let logged = Logged {
            run_id: Uuid::nil(),
            seq: 1,
            name: "chat:message",
            data: serde_json::value::RawValue::from_string("{}".to_owned())
                .unwrap()
                .into(),
            last: false,
        };
        sink.emit(ChatEvent::UserMessage(&message), &logged);
        assert_eq!(*rx.borrow(), 10);
        let chunk = |i| ChatEvent::Chunk {
            conversation_id: Uuid::nil(),
            message_id: Uuid::nil(),
            index: i,
            content: "x",
        };
        for i in 0..5 {
            sink.emit(chunk(i), &logged);
        }
        assert_eq!(*rx.borrow(), 10 + 85 * 5 / 10);
        for i in 5..40 {
            sink.emit(chunk(i), &logged);
        }
        assert_eq!(*rx.borrow(), 95);
    }
}
