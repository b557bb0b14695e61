//! Embeddings: route the model, call the provider, record usage.

use std::sync::Arc;

use uuid::Uuid;

use super::{Admission, ServiceError};

use crate::pricing::PriceTable;
use crate::providers::tokens;
use crate::providers::{EmbeddingRequest, Provider, ProviderError, Providers};
use crate::store::{self, Store, UsageRecord};

pub const DEFAULT_EMBEDDING_MODEL: &str = "text-embedding-3-small";

#[derive(Debug, Clone)]
pub struct EmbeddingOutcome {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
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
        model: Option<String>,
        inputs: Vec<String>,
    ) -> Result<EmbeddingOutcome, ServiceError> {
        let requested = model.unwrap_or_else(|| DEFAULT_EMBEDDING_MODEL.to_owned());
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
        };
        let result = routed.provider.embed(&request).await;
        let embeddings = match result {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!(error = %err, model, "embeddings: provider failed");
                return Err(ServiceError::Provider(err));
            }
        };
        if embeddings.vectors.len() != request.inputs.len() {
            return Err(ServiceError::Provider(ProviderError::Protocol {
                detail: format!(
                    "{} vectors for {} inputs",
                    embeddings.vectors.len(),
                    request.inputs.len()
                ),
            }));
        }
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
        };
        self.store.record_usage(&record).await?;
        Ok(EmbeddingOutcome {
            model,
            vectors: embeddings.vectors,
            prompt_tokens,
        })
    }
}
