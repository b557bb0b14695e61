//! Streaming: the task an exchange runs in, the handle its transport keeps, and the loop
//! that relays the provider's deltas to the sink.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::turn::Turn;
use super::{Admitted, ChatEvent, ChatFailure, ChatInput, ChatOutcome, ChatService, ChatSink};
use super::{ExchangeOptions, ServiceError};
use crate::config::DisconnectPolicy;
use crate::providers::{ChatStream, ProviderError, StreamEvent, Usage, tokens};
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
    /// Given up: this process shuts down, or its run was taken for lost.
    Interrupted { content: String },
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
        let run = chat.leased(run_id, chat.exchange(&user, admitted, input, options, mode));
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

/// The tick of a stream that is never checkpointed (any long period: it is never taken).
const ONE_DAY: Duration = Duration::from_secs(86_400);

/// Relays the provider's deltas to the sink until the stream ends, fails or is cancelled,
/// and checkpoints the reply every `RUN_CHECKPOINT_MS` meanwhile (not a job's, which stores only its
/// complete reply), beside the relay. Dropping the stream at the end closes the upstream
/// connection: no more tokens are paid for.
pub(super) async fn receive(
    chat: &ChatService,
    turn: &Turn<'_>,
    mut stream: ChatStream,
    sink: &RunRecorder,
    cancel: &CancellationToken,
) -> Answer {
    let (conversation_id, message_id, mut index) = (turn.conversation.id, turn.reply_id, 0u32);
    let mut content = String::new();
    let checkpoints = turn.scope.is_none() && chat.checkpoint_every.is_some();
    let every = chat.checkpoint_every.unwrap_or(ONE_DAY);
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut saving, mut saved_len): (Option<BoxFuture<'_, bool>>, usize) = (None, 0);
    let mut tokens = 0i64;
    // Waited on once for the whole stream (a new waiter per chunk, on a token every stream
    // shares, was a lock per chunk). An interruption cancels every stream's token too.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let ended = loop {
        let next = tokio::select! {
            biased;
            () = &mut cancelled => match chat.interrupt.is_cancelled() {
                true => break Err(Halt::Interrupted),
                false => break Err(Halt::Stopped),
            },
            live = async { if let Some(s) = saving.as_mut() { s.await } else { true } }, if saving.is_some() => {
                saving = None;
                if !live {
                    break Err(Halt::Interrupted);
                }
                continue;
            }
            _ = tick.tick(), if checkpoints && saving.is_none() && content.len() > saved_len => {
                // Only the text since the last checkpoint is counted (the whole reply, every
                // second, was most of the relay's CPU); the reply's last write counts it all.
                tokens += tokens::count_text(&turn.model, &content[saved_len..]) as i64;
                saved_len = content.len();
                let text = content.clone();
                saving = Some(chat.checkpoint(turn, text, tokens, sink.last_seq()).boxed());
                continue;
            }
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
            Some(Err(err)) => break Err(Halt::Failed(err)),
            None => {
                break Err(Halt::Failed(ProviderError::StreamCut {
                    detail: "stream ended without a finish event".into(),
                }));
            }
        }
    };
    // A checkpoint under way lands before the reply's last write.
    if let Some(saving) = saving {
        saving.await;
    }
    answer(ended, content, turn.checkpointed.get().is_some())
}

/// What a stream that ended gave, with the text it streamed (`checkpointed`: some of it is
/// stored already).
fn answer(
    ended: Result<(String, Option<Usage>), Halt>,
    content: String,
    checkpointed: bool,
) -> Answer {
    match ended {
        Ok((finish_reason, reported)) => Answer::Complete {
            content,
            finish_reason,
            reported,
        },
        Err(Halt::Stopped) => Answer::Stopped { content },
        Err(Halt::Interrupted) => Answer::Interrupted { content },
        Err(Halt::Failed(error)) if content.is_empty() && !checkpointed => Answer::Failed(error),
        Err(Halt::Failed(error)) => Answer::Broken { content, error },
    }
}

/// Why a stream ended early.
enum Halt {
    Stopped,
    Interrupted,
    Failed(ProviderError),
}
