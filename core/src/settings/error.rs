//! What is wrong with a setting: one error, naming the variable and what it takes.

use std::fmt;

/// A setting that cannot be used. Its message names the variable and what was expected:
/// `WHARF_TOKEN_TTL_SECS must be a number, not "5m"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The variable (`WHARF_TOKEN_TTL_SECS`).
    pub variable: &'static str,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Set, but not of the form the setting takes (`expected`: "a number", "on or off").
    /// `found` is the value, or `None` for a secret, which is never repeated back.
    Invalid {
        /// What the setting takes.
        expected: String,
        /// What it was set to (`None`: a secret).
        found: Option<String>,
    },
    /// Unset, but required: always (`by: None`), or by another setting or a mode.
    Missing {
        /// What needs it (`WHARF_UPLOAD_URL`, "front mode (WHARF_FRONT_S3_BUCKET)").
        by: Option<&'static str>,
    },
    /// Of the right form, but unusable (a PEM block that is no P-256 key): why.
    Unusable(String),
}

impl SettingError {
    pub(super) fn invalid(variable: &'static str, expected: &str, found: &str) -> Self {
        Self {
            variable,
            problem: Problem::Invalid {
                expected: expected.to_owned(),
                found: Some(found.to_owned()),
            },
        }
    }

    /// The message, with each variable it names (the variable and, for a missing one, what
    /// needs it) written by `name`: a runtime whose settings also come from flags names
    /// those too (`WHARF_AUTH (--auth) must be on or off, not "maybe"`).
    pub fn describe(&self, name: impl Fn(&'static str) -> String) -> String {
        let var = name(self.variable);
        match &self.problem {
            Problem::Invalid {
                expected,
                found: Some(v),
            } => format!("{var} must be {expected}, not {v:?}"),
            Problem::Invalid {
                expected,
                found: None,
            } => format!("{var} must be {expected}"),
            Problem::Missing { by: None } => format!("{var} must be set"),
            Problem::Missing { by: Some(by) } => format!("{} needs {var}", name(by)),
            Problem::Unusable(why) => format!("{var}: {why}"),
        }
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(str::to_owned))
    }
}

impl std::error::Error for SettingError {}

/// Runtimes report start-up failures as text.
impl From<SettingError> for String {
    fn from(e: SettingError) -> Self {
        e.to_string()
    }
}
