//! The variables as given, and the parsers that name the variable in every error.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use super::ConfigError;

pub(super) struct Env(HashMap<String, String>);

impl Env {
    pub(super) fn new<I, K, V>(vars: I) -> Env
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env(vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }

    /// A variable's value; an empty value counts as unset.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// A variable's value with the trailing slashes of a base URL removed.
    pub(super) fn base_url(&self, name: &str, default: &str) -> String {
        self.get(name)
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_owned()
    }

    pub(super) fn parse<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(name, format!("`{raw}` is not a valid value"))),
        }
    }

    /// The first of `names` that is set, parsed as an integer within `range`.
    pub(super) fn parse_range(
        &self,
        names: &[&'static str],
        default: u32,
        range: RangeInclusive<u32>,
    ) -> Result<u32, ConfigError> {
        let Some((name, raw)) = self.first_of(names) else {
            return Ok(default);
        };
        match raw.trim().parse::<u32>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(ConfigError::new(
                name,
                format!(
                    "`{raw}` must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }

    pub(super) fn parse_float(
        &self,
        names: &[&'static str],
        default: f32,
        min: f32,
        max: f32,
    ) -> Result<f32, ConfigError> {
        let Some((name, raw)) = self.first_of(names) else {
            return Ok(default);
        };
        match raw.trim().parse::<f32>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(ConfigError::new(
                name,
                format!("`{raw}` must be a number from {min} to {max}"),
            )),
        }
    }

    fn first_of(&self, names: &[&'static str]) -> Option<(&'static str, &str)> {
        names.iter().find_map(|n| self.get(n).map(|v| (*n, v)))
    }
}
