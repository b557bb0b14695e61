//! The model's context: system prompt, history and the new message, within the token budget.

use crate::providers::tokens;
use crate::providers::{ChatMessage, ChatRole};
use crate::service::ServiceError;
use crate::store::{Message, Role};

/// System prompt, then the leading messages (a template's), then history oldest first, then
/// the new message; history (never the system prompt or the leading messages) is trimmed from
/// the oldest end so that the prompt fits the model's window minus `max_tokens`. Returns the
/// messages and what they cost in tokens: counted from each stored message's own count
/// (made when it was written, with its model's tokenizer), so a long history is never
/// tokenized again on each turn.
pub(super) fn build_context(
    model: &str,
    system_prompt: Option<&str>,
    leading: &[ChatMessage],
    history: &[Message],
    user_message: &Message,
    max_tokens: u32,
) -> Result<(Vec<ChatMessage>, u32), ServiceError> {
    let window = tokens::context_window(model);
    let budget = window.saturating_sub(max_tokens as usize);
    let overhead = tokens::message_overhead();
    let system = system_prompt.filter(|s| !s.trim().is_empty());
    let mut used = 3 + overhead + user_message.tokens as usize;
    if let Some(system) = system {
        used += overhead + tokens::count_text(model, system);
    }
    for message in leading {
        used += overhead + tokens::count_text(model, &message.content);
    }
    if used > budget {
        return Err(ServiceError::Invalid {
            field: "message".into(),
            message: format!(
                "the message, system prompt and template messages take {used} tokens; {model} allows {budget} with maxTokens {max_tokens}"
            ),
        });
    }
    let mut kept = 0;
    for message in history.iter().rev() {
        let cost = overhead + message.tokens.max(0) as usize;
        if used + cost > budget {
            break;
        }
        used += cost;
        kept += 1;
    }
    let mut messages = Vec::with_capacity(kept + leading.len() + 2);
    if let Some(system) = system {
        messages.push(ChatMessage {
            role: ChatRole::System,
            content: system.to_owned(),
        });
    }
    messages.extend_from_slice(leading);
    for message in &history[history.len() - kept..] {
        let role = match message.role {
            Role::User => ChatRole::User,
            Role::Assistant => ChatRole::Assistant,
            Role::System => ChatRole::System,
        };
        messages.push(ChatMessage {
            role,
            content: message.content.clone(),
        });
    }
    messages.push(ChatMessage {
        role: ChatRole::User,
        content: user_message.content.clone(),
    });
    Ok((messages, u32::try_from(used).unwrap_or(u32::MAX)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::store;

    fn message(role: Role, content: &str, tokens: i64) -> Message {
        Message {
            id: Uuid::now_v7(),
            conversation_id: Uuid::nil(),
            parent_id: None,
            role,
            content: content.into(),
            tokens,
            model: None,
            metadata: json!({}),
            created_at: store::now(),
            edited_at: None,
        }
    }

    #[test]
    fn context_keeps_order_and_trims_oldest_first() {
        // gpt-4: 8192 window; maxTokens 8000 leaves 192 tokens of prompt.
        let history: Vec<Message> = (0..10)
            .map(|i| {
                message(
                    if i % 2 == 0 {
                        Role::User
                    } else {
                        Role::Assistant
                    },
                    &format!("m{i}"),
                    40,
                )
            })
            .collect();
        let new = message(Role::User, "now", 1);
        let (messages, _) =
            build_context("gpt-4", Some("be brief"), &[], &history, &new, 8000).unwrap();
        assert_eq!(
            messages[0],
            ChatMessage {
                role: ChatRole::System,
                content: "be brief".into()
            }
        );
        assert_eq!(messages.last().unwrap().content, "now");
        let kept: Vec<&str> = messages[1..messages.len() - 1]
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        // Each kept message costs 44; 192 - (3 + 4 + 1) - (4 + 2) = 178 → 4 messages fit.
        assert_eq!(kept, vec!["m6", "m7", "m8", "m9"]);
        assert_eq!(messages[1].role, ChatRole::User);
        assert_eq!(messages[2].role, ChatRole::Assistant);
    }

    /// With each stored count made by the model's tokenizer, the cost is the exact count of
    /// the whole prompt, without tokenizing it again.
    #[test]
    fn the_cost_is_the_exact_count_from_the_stored_counts() {
        let counted =
            |role, text: &str| message(role, text, tokens::count_text("gpt-4o", text) as i64);
        let history = vec![
            counted(Role::User, "What is the capital of Portugal?"),
            counted(Role::Assistant, "Lisbon, on the Tagus — since 1255."),
        ];
        let new = counted(Role::User, "And its population, roughly?");
        let (messages, cost) =
            build_context("gpt-4o", Some("Be brief."), &[], &history, &new, 4096).unwrap();
        assert_eq!(cost as usize, tokens::count_messages("gpt-4o", &messages));
    }

    #[test]
    fn everything_fits_in_a_large_window() {
        let history: Vec<Message> = (0..3)
            .map(|i| message(Role::User, &format!("m{i}"), 10))
            .collect();
        let messages = build_context(
            "gpt-4o",
            None,
            &[],
            &history,
            &message(Role::User, "x", 1),
            4096,
        )
        .unwrap()
        .0;
        assert_eq!(messages.len(), 4);
    }

    #[test]
    fn a_message_that_cannot_fit_is_refused() {
        let big = message(Role::User, "x", 9000);
        let err = build_context("gpt-4", None, &[], &[], &big, 100).unwrap_err();
        assert!(matches!(
            err,
            ServiceError::Invalid { ref field, .. } if field == "message"
        ));
    }
}
