//! Tokens: the claims of wharf's ES256 JWTs, requested scopes, and the service that issues
//! and verifies them against the core's clock.

use crate::auth::keys::Keys;
use crate::auth::model::{Action, Principal};
use crate::error::{ErrorCode, RegistryError};
use crate::model::to_hex;
use crate::ports::Env;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
