//! Replication with other registries, as Harbor has it: *remotes* (another registry's URL
//! and credentials) and *rules* (what to copy, which way, when). A rule's runs are in
//! [`crate::runs::replication`]; the engine that does them in `jobs::replicate::rules`.
//!
//! Documents: `repl_remote/<name>` and `repl_rule/<name>`. A remote's password is stored
//! only sealed ([`crate::auth::sealed`]), bound to the remote's name.

use super::patterns::Selector;
use crate::auth::sealed::SealKey;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::ports::{DocumentStore, Env};
use http::StatusCode;
use serde::{Deserialize, Serialize};

/// Document kind of remotes.
pub const REMOTE: &str = "repl_remote";
/// Document kind of rules.
pub const RULE: &str = "repl_rule";

fn bad(msg: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorCode::Unsupported, msg).with_status(StatusCode::BAD_REQUEST)
}

/// Another registry, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remote {
    /// Its name here.
    pub name: String,
    /// `http(s)://host[:port]`, no path.
    pub url: String,
    /// User name to log in with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password, sealed for this remote's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_sealed: Option<String>,
    /// When it was created and last changed (ms).
    pub created_ms: u64,
    /// See `created_ms`.
    pub updated_ms: u64,
}

/// A remote as the API takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRemote {
    /// Its name (on a `PUT`, the path's).
    #[serde(default)]
    pub name: String,
    /// See [`Remote::url`].
    pub url: String,
    /// See [`Remote::username`].
    #[serde(default)]
    pub username: Option<String>,
    /// In clear, sealed before it is stored; on a `PUT`, absent keeps the stored one.
    #[serde(default)]
    pub password: Option<String>,
}

/// What a transport logs in with.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password, in clear (in memory only).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// The associated data a remote's password is sealed with.
fn seal_context(name: &str) -> String {
    format!("{REMOTE}:{name}")
}

/// Refuses a URL that is not `http(s)://authority` (a path, a query, another scheme).
pub fn validate_url(url: &str) -> Result<String> {
    let u = url.trim_end_matches('/');
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or_else(|| bad(format!("remote url {url:?}: the scheme is http or https")))?;
    let ok = !rest.is_empty()
        && rest.len() <= 255
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return Err(bad(format!(
            "remote url {url:?}: give scheme, host and port only (no path, user or query)"
        )));
    }
    Ok(u.to_owned())
}

impl Remote {
    /// A remote from the API's input; `old` is the stored one a `PUT` replaces. The
    /// password is sealed with `key`; one given where no key is configured is refused.
    pub fn from_input<E: Env>(
        input: NewRemote,
        old: Option<&Remote>,
        key: Option<&SealKey>,
        env: &E,
    ) -> Result<Remote> {
        let now = env.now_ms();
        let url = validate_url(&input.url)?;
        if let Some(u) = &input.username
            && (u.is_empty() || u.len() > 256 || u.contains(':'))
        {
            return Err(bad("username: 1 to 256 characters, no ':'"));
        }
        let password_sealed = match input.password {
            Some(p) => {
                if p.len() > 4096 {
                    return Err(bad("password: at most 4096 characters"));
                }
                let key = key.ok_or_else(|| {
                    bad("this registry has no secret key (WHARF_SECRET_KEY) to seal remote passwords with")
                })?;
                let mut nonce = [0u8; 24];
                env.fill_random(&mut nonce);
                Some(key.seal(&p, &seal_context(&input.name), nonce)?)
            }
            None => old.and_then(|o| o.password_sealed.clone()),
        };
        Ok(Remote {
            name: input.name,
            url,
            username: input.username,
            password_sealed,
            created_ms: old.map_or(now, |o| o.created_ms),
            updated_ms: now,
        })
    }

    /// The credentials to log in with, opened with `key`.
    pub fn credentials(&self, key: Option<&SealKey>) -> Result<Option<Credentials>> {
        let Some(username) = &self.username else {
            return Ok(None);
        };
        let password = match &self.password_sealed {
            Some(s) => {
                let key = key.ok_or_else(|| {
                    RegistryError::new(
                        ErrorCode::Unknown,
                        format!(
                            "remote {} has a sealed password and this registry no secret key (WHARF_SECRET_KEY)",
                            self.name
                        ),
                    )
                })?;
                key.open(s, &seal_context(&self.name))?
            }
            None => String::new(),
        };
        Ok(Some(Credentials {
            username: username.clone(),
            password,
        }))
    }

    /// What the API shows: never the password, sealed or not.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "url": self.url,
            "username": self.username,
            "has_password": self.password_sealed.is_some(),
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        })
    }
}

/// Which way a rule copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From this registry to the remote.
    Push,
    /// From the remote to this registry.
    Pull,
}

/// When a rule runs by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// Only when asked.
    Manual,
    /// Every `every_secs` (at least a minute).
    Scheduled {
        /// The period.
        every_secs: u64,
    },
    /// After pushes to what the rule selects (push rules; checked every few seconds).
    OnPush,
}

/// The shortest schedule.
pub const MIN_EVERY_SECS: u64 = 60;

fn yes() -> bool {
    true
}

/// A replication rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Which way.
    pub direction: Direction,
    /// The other registry's name ([`Remote`]).
    pub remote: String,
    /// Source repositories (full names) every one of these selects; none selects all.
    #[serde(default)]
    pub repositories: Vec<Selector>,
    /// Tags every one of these selects; none selects all.
    #[serde(default)]
    pub tags: Vec<Selector>,
    /// Replaces a repository's first path component at the destination (`lib/app` →
    /// `<ns>/app`; `alpine` → `<ns>/alpine`), as Harbor's default flattening does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_namespace: Option<String>,
    /// When it runs by itself.
    #[serde(default = "manual")]
    pub trigger: Trigger,
    /// Delete destination tags the source no longer has, in the repositories it selects.
    #[serde(default)]
    pub delete_sync: bool,
    /// Move a destination tag that points elsewhere; off, such a tag is left and reported.
    #[serde(default = "yes", rename = "override")]
    pub override_tags: bool,
    /// Off: no trigger starts it (a manual run still does).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When it was last written (ms).
    #[serde(default)]
    pub updated_ms: u64,
}

fn manual() -> Trigger {
    Trigger::Manual
}

impl Rule {
    /// Refuses what cannot run: bad names, patterns, schedules.
    pub fn validate(&self) -> Result<()> {
        for s in &self.repositories {
            s.validate("repositories")?;
        }
        for s in &self.tags {
            s.validate("tags")?;
        }
        if self.repositories.len() > 32 || self.tags.len() > 32 {
            return Err(bad("at most 32 repository and 32 tag patterns"));
        }
        if let Some(ns) = &self.destination_namespace
            && crate::model::name::RepoName::parse(ns).is_err()
        {
            return Err(bad(format!(
                "destination_namespace {ns:?} is not a repository name"
            )));
        }
        if let Trigger::Scheduled { every_secs } = self.trigger
            && every_secs < MIN_EVERY_SECS
        {
            return Err(bad(format!(
                "a schedule runs at most every {MIN_EVERY_SECS} s"
            )));
        }
        if self.trigger == Trigger::OnPush && self.direction == Direction::Pull {
            return Err(bad(
                "an on_push trigger is for push rules (a pull rule cannot see the remote's pushes; schedule it)",
            ));
        }
        Ok(())
    }

    /// Whether the rule copies source repository `repo`.
    pub fn selects_repository(&self, repo: &str) -> bool {
        self.repositories.iter().all(|s| s.selects(repo))
    }

    /// Whether the rule copies tag `tag`.
    pub fn selects_tag(&self, tag: &str) -> bool {
        self.tags.iter().all(|s| s.selects(tag))
    }

    /// The destination's name for source repository `repo`.
    pub fn destination(&self, repo: &str) -> String {
        match &self.destination_namespace {
            None => repo.to_owned(),
            Some(ns) => {
                let rest = repo.split_once('/').map_or(repo, |(_, r)| r);
                format!("{ns}/{rest}")
            }
        }
    }
}

/// A remote by name.
pub async fn remote<D: DocumentStore>(docs: &D, name: &str) -> Result<Option<Remote>> {
    crate::auth::Directory(docs).get(REMOTE, name).await
}

/// A rule by name.
pub async fn rule<D: DocumentStore>(docs: &D, name: &str) -> Result<Option<Rule>> {
    crate::auth::Directory(docs).get(RULE, name).await
}

/// Every remote, by name.
pub async fn remotes<D: DocumentStore>(docs: &D) -> Result<Vec<Remote>> {
    crate::auth::Directory(docs).list(REMOTE, "").await
}

/// Every rule, by name.
pub async fn rules<D: DocumentStore>(docs: &D) -> Result<Vec<Rule>> {
    crate::auth::Directory(docs).list(RULE, "").await
}

/// Stores a remote; `create` refuses one that exists (409).
pub async fn store_remote<D: DocumentStore>(docs: &D, r: &Remote, create: bool) -> Result<()> {
    crate::auth::Directory(docs)
        .put(REMOTE, &r.name, r, create)
        .await
}

/// Stores a rule; `create` refuses one that exists (409).
pub async fn store_rule<D: DocumentStore>(docs: &D, r: &Rule, create: bool) -> Result<()> {
    crate::auth::Directory(docs)
        .put(RULE, &r.name, r, create)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: serde_json::Value) -> Rule {
        serde_json::from_value(json).expect("test value")
    }

    #[test]
    fn rules_select_and_rename() {
        let r = rule(serde_json::json!({
            "name": "r", "direction": "push", "remote": "hub",
            "repositories": [{"matches": "lib/**"}, {"excludes": "lib/secret*"}],
            "tags": [{"matches": "v*"}, {"excludes": "*-dev"}],
            "destination_namespace": "mirror",
        }));
        r.validate().expect("test value");
        assert!(r.override_tags && r.enabled && !r.delete_sync);
        assert_eq!(r.trigger, Trigger::Manual);
        assert!(r.selects_repository("lib/app"));
        assert!(r.selects_repository("lib/a/b"));
        assert!(!r.selects_repository("lib/secret-x"));
        assert!(!r.selects_repository("library/app"));
        assert!(r.selects_tag("v1") && !r.selects_tag("v2-dev") && !r.selects_tag("latest"));
        assert_eq!(r.destination("lib/app/web"), "mirror/app/web");
        assert_eq!(r.destination("alpine"), "mirror/alpine");
        let mut same = r.clone();
        same.destination_namespace = None;
        assert_eq!(same.destination("lib/app"), "lib/app");
    }

    #[test]
    fn bad_rules_and_urls_are_refused() {
        let base = serde_json::json!({"name": "r", "direction": "pull", "remote": "hub"});
        let mut j = base.clone();
        j["trigger"] = serde_json::json!({"kind": "scheduled", "every_secs": 5});
        assert!(rule(j).validate().is_err());
        let mut j = base.clone();
        j["trigger"] = serde_json::json!({"kind": "on_push"});
        assert!(rule(j).validate().is_err());
        let mut j = base.clone();
        j["tags"] = serde_json::json!([{"matches": ""}]);
        assert!(rule(j).validate().is_err());
        let mut j = base.clone();
        j["destination_namespace"] = serde_json::json!("Bad NS");
        assert!(rule(j).validate().is_err());
        let mut j = base;
        j["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Rule>(j).is_err());
        for u in [
            "file:///etc/passwd",
            "ftp://x",
            "http://h/path",
            "http://u:p@h",
            "http://",
            "http://h?x=1",
        ] {
            assert!(validate_url(u).is_err(), "{u}");
        }
        assert_eq!(
            validate_url("http://127.0.0.1:5000/").expect("test value"),
            "http://127.0.0.1:5000"
        );
    }
}
