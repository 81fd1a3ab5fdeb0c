//! The query string, parsed once, the same way everywhere: `/v2` parameters, the token
//! endpoint's parameters and form body, the management API's filters.

use crate::error::{ErrorCode, RegistryError, Result};
use http::StatusCode;

/// Largest page of tags or repositories returned at once.
pub const MAX_PAGE: usize = 10_000;

/// Decoded query parameters.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a URI's query string (`None`: no parameters).
    pub(crate) fn parse(q: Option<&str>) -> Self {
        Self::from_form(q.unwrap_or("").as_bytes())
    }
    /// Parses an `application/x-www-form-urlencoded` body.
    pub(crate) fn from_form(raw: &[u8]) -> Self {
        Query(form_urlencoded::parse(raw).into_owned().collect())
    }
    /// The first value of a parameter.
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    /// Every value of a repeated parameter, in order.
    pub(crate) fn all<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
    /// Drops every value of the parameters `keys`.
    pub(crate) fn remove(&mut self, keys: &[&str]) {
        self.0.retain(|(k, _)| !keys.contains(&k.as_str()));
    }
    /// `n` (at most [`MAX_PAGE`]) and `last`.
    pub(crate) fn page(&self) -> Result<(usize, Option<&str>)> {
        let n = match self.get("n") {
            None => MAX_PAGE,
            Some(s) => s
                .parse::<usize>()
                .map_err(|_| {
                    RegistryError::new(
                        ErrorCode::Unsupported,
                        format!("n must be a number, got {s:?}"),
                    )
                    .with_status(StatusCode::BAD_REQUEST)
                })?
                .min(MAX_PAGE),
        };
        Ok((n, self.get("last").filter(|l| !l.is_empty())))
    }
}

/// Percent-encodes a query value.
pub(crate) fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
