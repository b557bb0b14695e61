//! The models every configured provider serves, with what Palaver knows of each (context
//! window, price). Asked of the providers at most once a minute per process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::pricing::{Price, PriceTable};
use crate::providers::{Providers, tokens};

/// How long a model list is reused before the providers are asked again.
const CACHE_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The name to ask for (as `model` of a chat or embeddings request).
    pub id: String,
    /// The provider that serves it (`openai`, `openai-compatible`, `anthropic`, `gemini`,
    /// `mock`).
    pub provider: &'static str,
    /// Tokens, when the model's family is known.
    pub context_window: Option<usize>,
    pub price: Option<Price>,
}

#[derive(Clone)]
pub struct ModelService {
    providers: Arc<Providers>,
    prices: Arc<PriceTable>,
    cache: Arc<Mutex<Option<Listed>>>,
}

/// A model list and when it was made.
type Listed = (Instant, Arc<Vec<ModelInfo>>);

impl ModelService {
    pub fn new(providers: Arc<Providers>, prices: Arc<PriceTable>) -> Self {
        ModelService {
            providers,
            prices,
            cache: Arc::default(),
        }
    }

    /// Every model of every configured provider, sorted by provider then name. A provider
    /// that cannot be asked is left out (and logged) rather than failing the list.
    pub async fn list(&self) -> Arc<Vec<ModelInfo>> {
        let mut cache = self.cache.lock().await;
        if let Some((at, models)) = cache.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return models.clone();
        }
        let asked = self.providers.all().map(|p| async move {
            match p.list_models().await {
                Ok(names) => names.into_iter().map(|n| (p.name(), n)).collect(),
                Err(err) => {
                    tracing::warn!(provider = p.name(), error = %err, "models: could not list");
                    Vec::new()
                }
            }
        });
        let mut models: Vec<ModelInfo> = futures::future::join_all(asked)
            .await
            .into_iter()
            .flatten()
            .map(|(provider, id)| ModelInfo {
                context_window: tokens::known_context_window(&id),
                price: self.prices.price(&id),
                id,
                provider,
            })
            .collect();
        models.sort_by(|a, b| (a.provider, &a.id).cmp(&(b.provider, &b.id)));
        models.dedup_by(|a, b| a.id == b.id);
        let models = Arc::new(models);
        *cache = Some((Instant::now(), models.clone()));
        models
    }

    /// One model of [`ModelService::list`], by its id.
    pub async fn get(&self, id: &str) -> Option<ModelInfo> {
        self.list().await.iter().find(|m| m.id == id).cloned()
    }
}
