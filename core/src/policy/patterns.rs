//! Repository and tag patterns, in the doublestar grammar Harbor's selectors use (`*`
//! within a path segment, `**` across them, `?`, `[a-z]`, `{a,b}`; glob-match implements
//! it), each either what to include or what to exclude.

use crate::error::{ErrorCode, RegistryError, Result};
use http::StatusCode;
use serde::{Deserialize, Serialize};

/// One pattern and which way it selects: `{"matches": "v*"}` or `{"excludes": "dev-*"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Selector {
    /// Names the pattern matches.
    Matches(String),
    /// Names the pattern does not match.
    Excludes(String),
}

impl Default for Selector {
    /// Everything.
    fn default() -> Self {
        Self::Matches("**".to_owned())
    }
}

impl Selector {
    /// Whether `name` is selected.
    pub fn selects(&self, name: &str) -> bool {
        match self {
            Self::Matches(p) => glob_match::glob_match(p, name),
            Self::Excludes(p) => !glob_match::glob_match(p, name),
        }
    }

    /// Refuses an empty or oversized pattern (`what` names the field in the message).
    pub fn validate(&self, what: &str) -> Result<()> {
        let (Self::Matches(p) | Self::Excludes(p)) = self;
        if p.is_empty() || p.len() > 256 {
            return Err(RegistryError::new(
                ErrorCode::Unsupported,
                format!("{what}: a pattern is 1 to 256 characters"),
            )
            .with_status(StatusCode::BAD_REQUEST));
        }
        Ok(())
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Matches(p) => write!(f, "matching {p}"),
            Self::Excludes(p) => write!(f, "not matching {p}"),
        }
    }
}

/// A repository's name within its project (`team/app/web` → `app/web`), which is what
/// repository patterns match, as in Harbor.
pub fn within_project(repo: &str) -> &str {
    repo.split_once('/').map_or(repo, |(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doublestar_grammar() {
        let m = |p: &str, n: &str| Selector::Matches(p.into()).selects(n);
        assert!(m("**", "app/web"));
        assert!(m("*", "app"));
        assert!(!m("*", "app/web"), "* stays in a segment");
        assert!(m("app/**", "app/web/x"));
        assert!(m("v*", "v1.2"));
        assert!(!m("v*", "latest"));
        assert!(m("{latest,stable}", "stable"));
        assert!(m("v1.?", "v1.2"));
        assert!(m("release-[0-9]*", "release-3"));
        assert!(Selector::Excludes("dev-*".into()).selects("v1"));
        assert!(!Selector::Excludes("dev-*".into()).selects("dev-1"));
        assert_eq!(within_project("team/app/web"), "app/web");
        assert!(Selector::Matches(String::new()).validate("tags").is_err());
    }
}
