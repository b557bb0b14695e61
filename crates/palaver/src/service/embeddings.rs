//! Embeddings: route the model, call the provider, record usage.

use std::sync::Arc;

use uuid::Uuid;

use super::{Admission, Attribution, ServiceError};

use crate::pricing::PriceTable;
use crate::providers::tokens;
use crate::providers::{EmbeddingRequest, Embeddings, Provider, ProviderError, Providers};
use crate::store::{self, Store, UsageRecord};

pub const DEFAULT_EMBEDDING_MODEL: &str = "text-embedding-3-small";

#[derive(Debug, Clone)]
pub struct EmbeddingOutcome {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
}

/// One embeddings request, validated.
#[derive(Debug, Clone, Default)]
pub struct EmbedInput {
    /// Default [`DEFAULT_EMBEDDING_MODEL`].
    pub model: Option<String>,
    pub inputs: Vec<String>,
    /// The vectors' length, for models that can shorten them.
    pub dimensions: Option<u32>,
    pub attribution: Attribution,
}

impl EmbedInput {
    /// Texts to embed with the default model and length, as their user alone.
    pub fn texts(model: Option<String>, inputs: Vec<String>) -> EmbedInput {
        EmbedInput {
            model,
            inputs,
            ..EmbedInput::default()
        }
    }
}

#[derive(Clone)]
pub struct EmbeddingService {
    store: Arc<dyn Store>,
    providers: Arc<Providers>,
    prices: Arc<PriceTable>,
    admission: Admission,
}

impl EmbeddingService {
    pub fn new(
        store: Arc<dyn Store>,
        providers: Arc<Providers>,
        prices: Arc<PriceTable>,
        admission: Admission,
    ) -> Self {
        Self {
            store,
            providers,
            prices,
            admission,
        }
    }

    pub async fn embed(
        &self,
        user_id: &str,
        input: EmbedInput,
    ) -> Result<EmbeddingOutcome, ServiceError> {
        let EmbedInput {
            model,
            inputs,
            dimensions,
            attribution,
        } = input;
        let requested = model.unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.to_owned());
        attribution.permits(&requested)?;
        self.admission.quota_open_for(user_id, &attribution).await?;
        let routed = self.providers.route(&requested)?;
        if !matches!(routed.provider, Provider::OpenAi(_) | Provider::Mock(_)) {
            return Err(ServiceError::Invalid {
                field: "model".into(),
                message: format!(
                    "the {} provider does not serve embeddings",
                    routed.provider.name()
                ),
            });
        }
        let model = if self.providers.is_mock() {
            "mock".to_owned()
        } else {
            requested.clone()
        };
        let estimate = inputs
            .iter()
            .map(|t| tokens::count_text(&requested, t) as i64)
            .sum();
        let _quota = self.admission.reserve(user_id, estimate).await?;
        let request = EmbeddingRequest {
            model: routed.model.to_owned(),
            inputs,
            dimensions,
        };
        let embeddings = ask(routed.provider, &request).await.inspect_err(
            |err| tracing::warn!(error = %err, model, "embeddings: provider failed"),
        )?;
        let prompt_tokens = embeddings.prompt_tokens.unwrap_or_else(|| {
            request
                .inputs
                .iter()
                .map(|t| tokens::count_text(&requested, t) as u32)
                .sum()
        });
        let record = UsageRecord {
            id: Uuid::now_v7(),
            user_id: user_id.to_owned(),
            conversation_id: None,
            kind: "embedding".to_owned(),
            model: model.clone(),
            prompt_tokens: i64::from(prompt_tokens),
            completion_tokens: 0,
            cost_usd: self.prices.cost(&model, i64::from(prompt_tokens), 0),
            created_at: store::now(),
            api_key_id: attribution.api_key_id,
            end_user: attribution.end_user,
        };
        self.store.record_usage(&record).await?;
        Ok(EmbeddingOutcome {
            model,
            vectors: embeddings.vectors,
            prompt_tokens,
        })
    }
}

/// The provider's vectors, one per input.
async fn ask(provider: &Provider, request: &EmbeddingRequest) -> Result<Embeddings, ServiceError> {
    let embeddings = provider.embed(request).await?;
    if embeddings.vectors.len() != request.inputs.len() {
        return Err(ServiceError::Provider(ProviderError::Protocol {
            detail: format!(
                "{} vectors for {} inputs",
                embeddings.vectors.len(),
                request.inputs.len()
            ),
        }));
    }
    Ok(embeddings)
}
