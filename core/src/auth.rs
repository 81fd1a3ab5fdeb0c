//! Authentication and authorization: the Docker registry token flow, users, robot
//! accounts, projects and Harbor's roles. All of it is runtime-independent: identities live
//! in the [`DocumentStore`], time comes from [`Env`], and tokens are ES256 JWTs.
//!
//! A repository's project is its first path segment (`team/app` → `team`).

use crate::digest::to_hex;
use crate::error::{ErrorCode, RegistryError, StoreError};
use crate::ports::{DocumentStore, Env};
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests and blobs.
    Pull,
    /// Write manifests and blobs.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// The token-scope word for this action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
    /// Parses a scope action word.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }
}

/// A project-level right (registry actions plus management).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// A registry action.
    Repo(Action),
    /// Add, change and remove project members.
    ManageMembers,
    /// Read the project's audit log.
    ReadAudit,
}

/// Harbor's project roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Everything in the project, including members.
    ProjectAdmin,
    /// Pull, push, delete; reads the audit log; cannot manage members.
    Maintainer,
    /// Pull and push.
    Developer,
    /// Pull only.
    Guest,
    /// Pull only, and cannot see the project's audit log or members.
    LimitedGuest,
}

impl Role {
    /// The rights this role grants in its project (the README's table).
    pub fn allows(self, right: Right) -> bool {
        use Role::*;
        match right {
            Right::Repo(Action::Pull) => true,
            Right::Repo(Action::Push) => matches!(self, ProjectAdmin | Maintainer | Developer),
            Right::Repo(Action::Delete) => matches!(self, ProjectAdmin | Maintainer),
            Right::ManageMembers => self == ProjectAdmin,
            Right::ReadAudit => !matches!(self, LimitedGuest),
        }
    }
}

/// A person's account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Argon2id PHC string; never leaves the store.
    pub password_hash: String,
    /// Contact address.
    #[serde(default)]
    pub email: Option<String>,
    /// System administrator.
    #[serde(default)]
    pub admin: bool,
    /// Creation time (ms).
    pub created_ms: u64,
    /// Random id given at creation: a user deleted and created again under the same name is
    /// another incarnation, so nothing issued to or granted the old one applies (records
    /// from before incarnations read as 0).
    #[serde(default)]
    pub incarnation: u64,
    /// Bumped by every password change or reset: refresh tokens carry the generation they
    /// were issued under, so a change revokes every one issued before it.
    #[serde(default)]
    pub generation: u64,
}

/// A project: the unit of access control.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    /// Name (the first segment of its repositories' names).
    pub name: String,
    /// Public projects allow anonymous pull.
    pub public: bool,
    /// Creation time (ms).
    pub created_ms: u64,
    /// Random id given at creation; members and robot grants name it, so a project deleted
    /// and created again under the same name inherits none of them (0 before incarnations).
    #[serde(default)]
    pub incarnation: u64,
}

/// A user's role in a project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    /// Project.
    pub project: String,
    /// User.
    pub username: String,
    /// Role.
    pub role: Role,
    /// The project incarnation this membership was granted in.
    #[serde(default)]
    pub project_incarnation: u64,
    /// The user incarnation it was granted to.
    #[serde(default)]
    pub user_incarnation: u64,
}

/// What a robot may do in one project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RobotPermission {
    /// Project.
    pub project: String,
    /// Allowed actions.
    pub actions: Vec<Action>,
    /// The project incarnation the grant was made in (set by the server, never taken from
    /// a request).
    #[serde(default)]
    pub project_incarnation: u64,
}

/// A robot account: a non-person credential with explicit permissions and an expiry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Robot {
    /// Full name, `robot$<project>+<name>` or `robot$<name>`.
    pub name: String,
    /// Argon2id hash of the secret.
    pub secret_hash: String,
    /// Permissions.
    pub permissions: Vec<RobotPermission>,
    /// Expiry (ms); `None` never expires.
    pub expires_ms: Option<u64>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Creation time (ms).
    pub created_ms: u64,
    /// Random id given at creation (see [`User::incarnation`]).
    #[serde(default)]
    pub incarnation: u64,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// A user.
    User(User),
    /// A robot.
    Robot(Robot),
}

impl Principal {
    /// The name recorded in tokens and audit events.
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User(u) => &u.username,
            Principal::Robot(r) => &r.name,
        }
    }
    /// System administrator?
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::User(u) if u.admin)
    }
    fn kind(&self) -> &'static str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User(_) => "user",
            Principal::Robot(_) => "robot",
        }
    }
    /// (incarnation, credential generation): what a refresh token is bound to.
    pub fn binding(&self) -> (u64, u64) {
        match self {
            Principal::Anonymous => (0, 0),
            Principal::User(u) => (u.incarnation, u.generation),
            Principal::Robot(r) => (r.incarnation, 0),
        }
    }
}

/// The subject name of unauthenticated tokens. It is reserved: no account may take it, and
/// a token naming it never resolves to a stored identity.
pub const ANONYMOUS: &str = "anonymous";

/// Whether `name` may be given to a new user: not the anonymous subject, and nothing that
/// reads as a robot's name (`robot$…`; `$` and `+` are refused by the name rules anyway).
pub fn reserved_username(name: &str) -> bool {
    name == ANONYMOUS || name.starts_with("robot$") || name.contains(['$', '+'])
}

/// A fresh incarnation id (never 0, which marks records from before incarnations).
pub fn new_incarnation(env: &impl Env) -> u64 {
    loop {
        let mut b = [0u8; 8];
        env.fill_random(&mut b);
        // Below 2^53, so the id survives JSON readers that use doubles.
        let v = u64::from_le_bytes(b) >> 11;
        if v != 0 {
            return v;
        }
    }
}

/// The project of a repository name.
pub fn project_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

// ---- the document store, typed ----------------------------------------------------------

/// Typed access to identities in a [`DocumentStore`].
pub struct Directory<'a, D>(pub &'a D);

fn store_err(e: crate::error::StoreError) -> RegistryError {
    e.into()
}

impl<D: DocumentStore> Directory<'_, D> {
    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<T>, RegistryError> {
        match self.0.get_doc(kind, id).await.map_err(store_err)? {
            Some(raw) => serde_json::from_slice(&raw).map(Some).map_err(|e| {
                RegistryError::new(ErrorCode::Unknown, format!("corrupt {kind} record: {e}"))
            }),
            None => Ok(None),
        }
    }
    /// Writes a record.
    pub async fn put<T: Serialize>(
        &self,
        kind: &str,
        id: &str,
        v: &T,
        if_absent: bool,
    ) -> Result<(), RegistryError> {
        let raw = serde_json::to_vec(v)
            .map_err(|e| RegistryError::new(ErrorCode::Unknown, e.to_string()))?;
        self.0
            .put_doc(kind, id, &raw, if_absent)
            .await
            .map_err(|e| match e {
                StoreError::Precondition(_) => {
                    RegistryError::new(ErrorCode::Conflict, format!("{kind} {id:?} exists"))
                }
                e => store_err(e),
            })
    }
    /// Lists records of a kind under a prefix.
    pub async fn list<T: for<'de> Deserialize<'de>>(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<T>, RegistryError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .0
                .list_docs(kind, prefix, after.as_deref(), 500)
                .await
                .map_err(store_err)?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            after = Some(last.clone());
            for (_, raw) in &page {
                if let Ok(v) = serde_json::from_slice(raw) {
                    out.push(v);
                }
            }
            if page.len() < 500 {
                return Ok(out);
            }
        }
    }
    /// A user by name.
    pub async fn user(&self, name: &str) -> Result<Option<User>, RegistryError> {
        self.get("user", name).await
    }
    /// A robot by full name.
    pub async fn robot(&self, name: &str) -> Result<Option<Robot>, RegistryError> {
        self.get("robot", name).await
    }
    /// A project by name.
    pub async fn project(&self, name: &str) -> Result<Option<Project>, RegistryError> {
        self.get("project", name).await
    }
    /// A user's membership of a project.
    pub async fn member(&self, project: &str, user: &str) -> Result<Option<Member>, RegistryError> {
        self.get("member", &format!("{project}/{user}")).await
    }
    /// The principal's rights in a project, in the terms of [`Right`].
    pub async fn allowed(
        &self,
        who: &Principal,
        project: &str,
        right: Right,
    ) -> Result<bool, RegistryError> {
        if who.is_admin() {
            return Ok(true);
        }
        let Some(p) = self.project(project).await? else {
            return Ok(false);
        };
        let public_pull = p.public && right == Right::Repo(Action::Pull);
        // A grant counts only in the incarnation of the project (and of the user) it was
        // made in: whoever re-creates a deleted project's name inherits nothing of it.
        match who {
            Principal::Anonymous => Ok(public_pull),
            Principal::User(u) => Ok(public_pull
                || self.member(project, &u.username).await?.is_some_and(|m| {
                    m.project_incarnation == p.incarnation
                        && m.user_incarnation == u.incarnation
                        && m.role.allows(right)
                })),
            Principal::Robot(r) => Ok(match right {
                Right::Repo(a) => {
                    public_pull
                        || r.permissions.iter().any(|perm| {
                            perm.project == project
                                && perm.project_incarnation == p.incarnation
                                && perm.actions.contains(&a)
                        })
                }
                _ => false,
            }),
        }
    }
}

// ---- passwords --------------------------------------------------------------------------

/// Hashes a password with Argon2id (default parameters) and a salt from `env`.
pub fn hash_password(env: &impl Env, password: &str) -> Result<String, RegistryError> {
    let mut salt = [0u8; 16];
    env.fill_random(&mut salt);
    argon2::Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("hashing password: {e}")))
}

/// Checks a password against a stored hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// [`hash_password`] on [`Env::run_heavy`], so a burst of logins does not stall requests.
pub async fn hash_password_off_thread(
    env: &impl Env,
    password: &str,
) -> Result<String, RegistryError> {
    let mut salt = [0u8; 16];
    env.fill_random(&mut salt);
    let password = password.to_owned();
    env.run_heavy(move || {
        argon2::Argon2::default()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("hashing password: {e}")))
    })
    .await
}

/// [`verify_password`] on [`Env::run_heavy`].
pub async fn verify_password_off_thread(env: &impl Env, password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    env.run_heavy(move || verify_password(&password, &hash))
        .await
}

/// A fresh random secret (robot secrets, generated passwords).
pub fn random_secret(env: &impl Env) -> String {
    let mut b = [0u8; 24];
    env.fill_random(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

// ---- tokens -----------------------------------------------------------------------------

/// One access grant in a token: the Docker token spec's `access` claim entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Access {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name, or `catalog`.
    pub name: String,
    /// Granted actions (`pull`, `push`, `delete`, `*`).
    pub actions: Vec<String>,
}

/// The claims of wharf's tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: user or robot name, or `anonymous`.
    pub sub: String,
    /// Audience: the registry service name (refresh tokens: `<service>/refresh`).
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Not before.
    pub nbf: u64,
    /// Issued at.
    pub iat: u64,
    /// Token id.
    pub jti: String,
    /// Grants.
    #[serde(default)]
    pub access: Vec<Access>,
    /// `user`, `robot`, `anonymous`.
    #[serde(default)]
    pub kind: String,
    /// The subject's incarnation when the token was issued ([`Principal::binding`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inc: Option<u64>,
    /// The subject's credential generation when the token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgen: Option<u64>,
}

impl Claims {
    /// Whether the token grants `action` on repository `repo`.
    pub fn grants(&self, repo: &str, action: Action) -> bool {
        self.access.iter().any(|a| {
            a.kind == "repository"
                && a.name == repo
                && a.actions.iter().any(|x| x == action.as_str() || x == "*")
        })
    }
    /// Whether the token grants the catalog.
    pub fn grants_catalog(&self) -> bool {
        self.access.iter().any(|a| {
            a.kind == "registry" && a.name == "catalog" && a.actions.iter().any(|x| x == "*")
        })
    }
}

/// A requested scope: `repository:<name>:<actions>` or `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// Resource type.
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// Actions asked for.
    pub actions: Vec<String>,
}

impl Scope {
    /// Parses one scope string; names may contain ':' only in a registry host port, which
    /// repository names cannot, so the split is from the right.
    pub fn parse(s: &str) -> Option<Scope> {
        let (rest, actions) = s.rsplit_once(':')?;
        let (kind, name) = rest.split_once(':')?;
        Some(Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// A key that signs (and verifies) tokens.
struct KeyPair {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Jwk,
}

/// Token signing and verification keys. The first key signs; all verify (rotation: add the
/// new key first, keep the old one until its tokens have expired).
pub struct Keys {
    keys: Vec<KeyPair>,
}

impl Keys {
    /// Loads PKCS#8 PEM P-256 private keys; the first signs.
    pub fn from_pems(pems: &[Vec<u8>]) -> Result<Keys, String> {
        let mut keys = Vec::new();
        for pem in pems {
            let encoding = EncodingKey::from_ec_pem(pem)
                .map_err(|e| format!("not an EC P-256 private key: {e}"))?;
            let mut jwk =
                Jwk::from_encoding_key(&encoding, Algorithm::ES256).map_err(|e| e.to_string())?;
            let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm else {
                return Err("not an EC key".into());
            };
            let kid = to_hex(
                crate::digest::Digest::sha256_of(format!("{}.{}", ec.x, ec.y).as_bytes())
                    .hex()
                    .as_bytes(),
            )[..16]
                .to_owned();
            let decoding =
                DecodingKey::from_ec_components(&ec.x, &ec.y).map_err(|e| e.to_string())?;
            jwk.common.key_id = Some(kid.clone());
            jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
            keys.push(KeyPair {
                kid,
                encoding,
                decoding,
                jwk,
            });
        }
        if keys.is_empty() {
            return Err("at least one signing key is needed".into());
        }
        Ok(Keys { keys })
    }
    /// The JWKS document of all verification keys (public parts only).
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.keys.iter().map(|k| k.jwk.clone()).collect(),
        }
    }
    /// The signing key's id.
    pub fn signing_kid(&self) -> &str {
        &self.keys[0].kid
    }
}

/// A new P-256 private key as PKCS#8 PEM, from `env`'s randomness.
pub fn generate_key_pem(env: &impl Env) -> Result<String, RegistryError> {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let key = loop {
        let mut b = [0u8; 32];
        env.fill_random(&mut b);
        // All but a 2^-128 fraction of 32-byte strings are valid scalars.
        if let Ok(k) = p256::SecretKey::from_slice(&b) {
            break k;
        }
    };
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("encoding key: {e}")))
}

/// Splits a text holding one or more PEM blocks (e.g. an environment variable or a secret
/// with the signing key first, then keys still accepted for rotation).
pub fn split_pems(text: &str) -> Vec<Vec<u8>> {
    text.split_inclusive("-----END PRIVATE KEY-----")
        .map(str::trim)
        .filter(|b| b.starts_with("-----BEGIN"))
        .map(|b| format!("{b}\n").into_bytes())
        .collect()
}

/// Document kind and id under which a stateless deployment keeps its generated key.
const KEY_DOC: (&str, &str) = ("config", "token-signing-key");

/// The token keys of a deployment that has no configured key: one generated on first use
/// and kept in the document store (a create-only write, so instances starting at once agree
/// on a single key). For stateless runtimes (Lambda, Workers) whose instances must verify
/// each other's tokens; the key is then as private as the table (encrypted at rest, IAM).
pub async fn stored_keys<D: DocumentStore>(
    docs: &D,
    env: &impl Env,
) -> Result<Keys, RegistryError> {
    let invalid =
        |e: String| RegistryError::new(ErrorCode::Unknown, format!("stored token key: {e}"));
    for _ in 0..3 {
        if let Some(pem) = docs.get_doc(KEY_DOC.0, KEY_DOC.1).await? {
            return Keys::from_pems(&[pem]).map_err(invalid);
        }
        let pem = generate_key_pem(env)?;
        match docs
            .put_doc(KEY_DOC.0, KEY_DOC.1, pem.as_bytes(), true)
            .await
        {
            Ok(()) => {
                tracing::info!("generated the token signing key");
                return Keys::from_pems(&[pem.into_bytes()]).map_err(invalid);
            }
            // Another instance won the race: use its key.
            Err(StoreError::Precondition(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(invalid("could not be read or created".into()))
}

/// Creates the system administrator `admin` if there is none, with `password` or a
/// generated one; returns the password if it was generated (for the caller to show once).
pub async fn ensure_admin<D: DocumentStore>(
    docs: &D,
    env: &impl Env,
    password: Option<&str>,
) -> Result<Option<String>, RegistryError> {
    let dir = Directory(docs);
    if dir.user("admin").await?.is_some() {
        return Ok(None);
    }
    let (password, generated) = match password {
        Some(p) if !p.is_empty() => (p.to_owned(), false),
        _ => (random_secret(env), true),
    };
    let user = User {
        username: "admin".into(),
        password_hash: hash_password(env, &password)?,
        email: None,
        admin: true,
        created_ms: env.now_ms(),
        incarnation: new_incarnation(env),
        generation: 0,
    };
    let raw = serde_json::to_vec(&user)
        .map_err(|e| RegistryError::new(ErrorCode::Unknown, e.to_string()))?;
    match docs.put_doc("user", "admin", &raw, true).await {
        Ok(()) => {}
        // Created meanwhile by another instance: theirs stands.
        Err(StoreError::Precondition(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    tracing::info!("created the system administrator 'admin'");
    Ok(generated.then_some(password))
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Unreadable, wrong algorithm, unknown key, bad signature, wrong issuer or audience.
    Invalid(String),
    /// Past `exp`.
    Expired,
    /// Before `nbf`.
    NotYetValid,
}

/// Settings of the token service.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens (the registry's service name).
    pub service: String,
    /// Access token lifetime.
    pub ttl_secs: u64,
    /// Refresh token lifetime.
    pub refresh_ttl_secs: u64,
    /// Accepted clock skew.
    pub leeway_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "wharf".into(),
            service: "wharf".into(),
            ttl_secs: 300,
            refresh_ttl_secs: 30 * 24 * 3600,
            leeway_secs: 5,
        }
    }
}

/// Issues and verifies tokens; caches verified ones so a signature is checked once per token.
pub struct TokenService {
    keys: Keys,
    /// Settings.
    pub settings: TokenSettings,
    cache: Mutex<HashMap<String, Claims>>,
}

const CACHE_MAX: usize = 4096;

impl TokenService {
    /// A service with `keys`.
    pub fn new(keys: Keys, settings: TokenSettings) -> Self {
        Self {
            keys,
            settings,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The JWKS document.
    pub fn jwks(&self) -> JwkSet {
        self.keys.jwks()
    }

    /// Signs claims with the current key.
    pub fn sign(&self, claims: &Claims) -> Result<String, RegistryError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.keys.signing_kid().to_owned());
        jsonwebtoken::encode(&header, claims, &self.keys.keys[0].encoding)
            .map_err(|e| RegistryError::new(ErrorCode::Unknown, format!("signing token: {e}")))
    }

    /// Builds and signs a token for `who` with `access`, valid from now for `ttl_secs`
    /// (capped by a robot's expiry).
    pub fn issue(
        &self,
        env: &impl Env,
        who: &Principal,
        access: Vec<Access>,
        refresh: bool,
    ) -> Result<(String, Claims), RegistryError> {
        let now = env.now_ms() / 1000;
        let ttl = if refresh {
            self.settings.refresh_ttl_secs
        } else {
            self.settings.ttl_secs
        };
        let mut exp = now + ttl;
        if let Principal::Robot(r) = who
            && let Some(e) = r.expires_ms
        {
            exp = exp.min(e / 1000);
        }
        let mut jti = [0u8; 12];
        env.fill_random(&mut jti);
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            sub: who.name().to_owned(),
            aud: if refresh {
                format!("{}/refresh", self.settings.service)
            } else {
                self.settings.service.clone()
            },
            exp,
            nbf: now,
            iat: now,
            jti: to_hex(&jti),
            access,
            kind: if refresh {
                "refresh".into()
            } else {
                who.kind().into()
            },
            inc: Some(who.binding().0),
            cgen: Some(who.binding().1),
        };
        Ok((self.sign(&claims)?, claims))
    }

    /// Verifies an access token: pinned ES256, known `kid`, signature, `iss`, `aud`,
    /// then `exp`/`nbf` against the core's clock (jsonwebtoken's own time check reads the
    /// OS clock, which does not exist on wasm32).
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Claims, TokenError> {
        self.verify_for(token, now_ms, &self.settings.service, true)
    }

    /// Verifies a refresh token (audience `<service>/refresh`).
    pub fn verify_refresh(&self, token: &str, now_ms: u64) -> Result<Claims, TokenError> {
        let aud = format!("{}/refresh", self.settings.service);
        self.verify_for(token, now_ms, &aud, false)
    }

    fn verify_for(
        &self,
        token: &str,
        now_ms: u64,
        aud: &str,
        cache: bool,
    ) -> Result<Claims, TokenError> {
        let cached = if cache {
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(token)
                .cloned()
        } else {
            None
        };
        let claims = match cached {
            Some(c) => c,
            None => {
                let c = self.verify_signature(token, aud)?;
                if cache {
                    let mut m = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    if m.len() >= CACHE_MAX {
                        m.clear();
                    }
                    m.insert(token.to_owned(), c.clone());
                }
                c
            }
        };
        let now = now_ms / 1000;
        if claims.exp + self.settings.leeway_secs <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + self.settings.leeway_secs {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    fn verify_signature(&self, token: &str, aud: &str) -> Result<Claims, TokenError> {
        let invalid = |m: String| TokenError::Invalid(m);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("malformed token: {e}")))?;
        if header.alg != Algorithm::ES256 {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("token has no kid".into()))?;
        let key = self
            .keys
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| invalid(format!("unknown key id {kid:?}")))?;
        let mut v = Validation::new(Algorithm::ES256);
        v.algorithms = vec![Algorithm::ES256];
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims = ["exp", "nbf", "iss", "aud", "sub"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.set_audience(&[aud]);
        v.set_issuer(&[&self.settings.issuer]);
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| invalid(format!("token rejected: {e}")))
    }
}

/// Parses `Authorization: Basic …` into user and password.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// Seconds since the epoch as RFC 3339 (`issued_at`), without a date library.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn scopes() {
        assert_eq!(
            Scope::parse("repository:team/app:pull,push"),
            Some(Scope {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into(), "push".into()]
            })
        );
        assert_eq!(
            Scope::parse("registry:catalog:*").map(|s| s.name),
            Some("catalog".into())
        );
        assert_eq!(Scope::parse("nonsense"), None);
    }

    #[test]
    fn role_table() {
        use Action::*;
        let rows = [
            (Role::ProjectAdmin, [true, true, true, true, true]),
            (Role::Maintainer, [true, true, true, false, true]),
            (Role::Developer, [true, true, false, false, true]),
            (Role::Guest, [true, false, false, false, true]),
            (Role::LimitedGuest, [true, false, false, false, false]),
        ];
        for (role, want) in rows {
            let got = [
                role.allows(Right::Repo(Pull)),
                role.allows(Right::Repo(Push)),
                role.allows(Right::Repo(Delete)),
                role.allows(Right::ManageMembers),
                role.allows(Right::ReadAudit),
            ];
            assert_eq!(got, want, "{role:?}");
        }
    }

    /// A document store whose writes fail as `fail` says: a duplicate (`Precondition`) or an
    /// outage (`Unavailable`).
    struct FailingDocs(fn() -> StoreError);

    impl DocumentStore for FailingDocs {
        async fn get_doc(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        async fn put_doc(&self, _: &str, _: &str, _: &[u8], _: bool) -> Result<(), StoreError> {
            Err((self.0)())
        }
        async fn delete_doc(&self, _: &str, _: &str) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn list_docs(
            &self,
            _: &str,
            _: &str,
            _: Option<&str>,
            _: usize,
        ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_duplicate_is_a_conflict_and_an_outage_is_not() {
        let put = |docs: FailingDocs| {
            futures_executor::block_on(Directory(&docs).put("user", "alice", &1u8, true))
                .expect_err("fails")
        };
        let dup = put(FailingDocs(|| StoreError::Precondition("exists".into())));
        assert_eq!((dup.code, dup.status.as_u16()), (ErrorCode::Conflict, 409));
        let down = put(FailingDocs(|| StoreError::Unavailable("timeout".into())));
        assert_eq!(
            (down.code, down.status.as_u16()),
            (ErrorCode::Unavailable, 503)
        );
    }

    #[test]
    fn reserved_names() {
        for n in ["anonymous", "robot$x", "a+b", "a$b"] {
            assert!(reserved_username(n), "{n}");
        }
        for n in ["alice", "anonymous2", "robots"] {
            assert!(!reserved_username(n), "{n}");
        }
    }

    #[test]
    fn basic() {
        assert_eq!(
            parse_basic("Basic YWxpY2U6czNjcjN0OjE="),
            Some(("alice".into(), "s3cr3t:1".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
    }
}
