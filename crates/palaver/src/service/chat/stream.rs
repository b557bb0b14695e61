//! Streaming: the task an exchange runs in, the handle its transport keeps, and the loop
//! that relays the provider's deltas to the sink.

use std::sync::Arc;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Admitted, ChatEvent, ChatFailure, ChatInput, ChatOutcome, ChatService, ChatSink};
use super::{ExchangeOptions, ServiceError};
use crate::config::DisconnectPolicy;
use crate::providers::{ChatStream, ProviderError, StreamEvent, Usage};
use crate::service::chat::runs::RunRecorder;

/// How the answer is received: in one piece, or streamed into a sink until cancelled.
#[derive(Clone, Copy)]
pub(super) enum Mode<'a> {
    Plain,
    Stream {
        sink: &'a RunRecorder,
        cancel: &'a CancellationToken,
    },
}

/// What the provider gave.
pub(super) enum Answer {
    Complete {
        content: String,
        finish_reason: String,
        reported: Option<Usage>,
    },
    /// Cancelled (`chat:stop`, or the client left under `STREAM_ON_DISCONNECT=stop`).
    Stopped { content: String },
    /// Failed after some text arrived: the partial reply is kept.
    Broken {
        content: String,
        error: ProviderError,
    },
    /// Failed before any text arrived.
    Failed(ProviderError),
}

/// A running stream, as its transport holds it. Dropping the handle leaves the exchange
/// running to its end (it is stored either way); [`StreamHandle::stopper`] cancels it.
pub struct StreamHandle {
    pub conversation_id: Uuid,
    pub run_id: Uuid,
    cancel: CancellationToken,
    task: JoinHandle<Result<ChatOutcome, ChatFailure>>,
}

impl StreamHandle {
    /// The token that stops this stream: the upstream call is cancelled, the partial reply
    /// stored, and `Finished` says `stopped`.
    pub fn stopper(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Waits for the end of the exchange (which the sink has been told too).
    pub async fn finished(self) -> Result<ChatOutcome, ChatFailure> {
        self.task
            .await
            .map_err(|e| ServiceError::Internal(format!("stream task: {e}")))?
    }
}

/// Runs an admitted exchange in a tracked task, streaming into `sink` through the run's
/// recorder (which logs every event for clients that resume).
pub(super) fn launch(
    chat: ChatService,
    user_id: &str,
    admitted: Admitted,
    input: ChatInput,
    sink: Arc<dyn ChatSink>,
    options: ExchangeOptions,
) -> StreamHandle {
    let (conversation_id, run_id) = (admitted.conversation.id, admitted.run_id);
    // The claim's token: `chat:stop` reaches the exchange through the claim (ActiveStreams).
    let cancel = admitted.claim.cancel.clone();
    let stopper = cancel.clone();
    let user = user_id.to_owned();
    let tasks = chat.tasks.clone();
    let recorder = RunRecorder::new(run_id, chat.runs.clone(), chat.encoder.clone(), sink);
    let task = tasks.spawn(async move {
        let mode = Mode::Stream {
            sink: &recorder,
            cancel: &cancel,
        };
        let run = chat.exchange(&user, admitted, input, options, mode);
        tokio::pin!(run);
        let result = if chat.on_disconnect == DisconnectPolicy::Stop {
            tokio::select! {
                result = &mut run => result,
                () = recorder.sink().closed() => {
                    cancel.cancel();
                    run.await
                }
            }
        } else {
            run.await
        };
        // The run's last event is the one below: its end is stored first, so a client that
        // reads the run after that event finds it ended.
        chat.end_run(run_id, &result, recorder.last_seq() + 1).await;
        match &result {
            Ok(outcome) => recorder.emit(ChatEvent::Finished(outcome)),
            Err(failure) => recorder.emit(ChatEvent::Failed(failure)),
        }
        recorder.end();
        result
    });
    StreamHandle {
        conversation_id,
        run_id,
        cancel: stopper,
        task,
    }
}

/// Relays the provider's deltas to the sink until the stream ends, fails or is cancelled.
/// Dropping the stream at the end closes the upstream connection: no more tokens are paid for.
pub(super) async fn receive(
    mut stream: ChatStream,
    sink: &RunRecorder,
    cancel: &CancellationToken,
    conversation_id: Uuid,
    message_id: Uuid,
) -> Answer {
    let mut content = String::new();
    let mut index = 0u32;
    let ended = loop {
        let next = tokio::select! {
            biased;
            () = cancel.cancelled() => return Answer::Stopped { content },
            next = stream.next() => next,
        };
        match next {
            Some(Ok(StreamEvent::Delta(text))) => {
                content.push_str(&text);
                sink.emit(ChatEvent::Chunk {
                    conversation_id,
                    message_id,
                    index,
                    content: &text,
                });
                index += 1;
            }
            Some(Ok(StreamEvent::Finish {
                finish_reason,
                usage,
            })) => break Ok((finish_reason, usage)),
            Some(Err(err)) => break Err(err),
            None => {
                break Err(ProviderError::StreamCut {
                    detail: "stream ended without a finish event".into(),
                });
            }
        }
    };
    match ended {
        Ok((finish_reason, reported)) => Answer::Complete {
            content,
            finish_reason,
            reported,
        },
        Err(error) if content.is_empty() => Answer::Failed(error),
        Err(error) => Answer::Broken { content, error },
    }
}
