//! Cost of usage: a price table of common models' list prices (USD per million tokens),
//! shipped in `prices.json` and overridable by a file (`PRICES_FILE`).

use std::collections::HashMap;

use serde::Deserialize;

const SHIPPED: &str = include_str!("../prices.json");

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Price {
    /// USD per million prompt (input) tokens.
    pub input: f64,
    /// USD per million completion (output) tokens.
    #[serde(default)]
    pub output: f64,
}

#[derive(Debug, Clone)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
}

#[derive(Debug, thiserror::Error)]
#[error("PRICES_FILE: {0}")]
pub struct PriceError(String);

impl PriceTable {
    /// The shipped table, with the entries of `override_file` (same JSON shape) on top.
    pub fn load(override_file: Option<&str>) -> Result<PriceTable, PriceError> {
        let mut prices = parse(SHIPPED).map_err(|e| PriceError(format!("shipped table: {e}")))?;
        if let Some(path) = override_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| PriceError(format!("cannot read `{path}`: {e}")))?;
            prices.extend(parse(&text).map_err(|e| PriceError(format!("`{path}`: {e}")))?);
        }
        Ok(PriceTable { prices })
    }

    /// The price of a model: an exact entry, else the longest entry the name starts with
    /// (`gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`). A `provider/` prefix is ignored.
    pub fn price(&self, model: &str) -> Option<Price> {
        let model = model.split_once('/').map_or(model, |(_, m)| m);
        if let Some(p) = self.prices.get(model) {
            return Some(*p);
        }
        self.prices
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| *p)
    }

    /// USD for the given usage; 0 for models without a price.
    pub fn cost(&self, model: &str, prompt_tokens: i64, completion_tokens: i64) -> f64 {
        self.price(model).map_or(0.0, |p| {
            (prompt_tokens as f64 * p.input + completion_tokens as f64 * p.output) / 1_000_000.0
        })
    }
}

fn parse(text: &str) -> Result<HashMap<String, Price>, serde_json::Error> {
    #[derive(Deserialize)]
    struct File {
        models: HashMap<String, Price>,
    }
    serde_json::from_str::<File>(text).map(|f| f.models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_prices_common_models() {
        let table = PriceTable::load(None).unwrap();
        let gpt4 = table.price("gpt-4").unwrap();
        assert_eq!((gpt4.input, gpt4.output), (30.0, 60.0));
        assert_eq!(table.price("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(table.price("openai/gpt-4o").unwrap().input, 2.5);
        assert!(table.price("claude-3-5-sonnet-latest").is_some());
        assert!(table.price("gemini-2.5-flash").is_some());
        assert!(table.price("text-embedding-3-small").is_some());
        assert!(table.price("some-local-llama").is_none());
        assert!((table.cost("gpt-4", 1000, 500) - 0.06).abs() < 1e-12);
    }

    #[test]
    fn override_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.json");
        std::fs::write(&path, r#"{"models": {"gpt-4": {"input": 1, "output": 2}, "llama3": {"input": 0.5, "output": 0.5}}}"#).unwrap();
        let table = PriceTable::load(Some(path.to_str().unwrap())).unwrap();
        assert_eq!(table.price("gpt-4").unwrap().output, 2.0);
        assert_eq!(table.price("llama3:8b").unwrap().input, 0.5);
        assert!(PriceTable::load(Some("/nonexistent/prices.json")).is_err());
    }
}
