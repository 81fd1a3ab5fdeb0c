//! [`Vars`]: the `WHARF_*` variables through a runtime's lookup, parsed into the core's
//! types.

use super::error::{Problem, SettingError};
use super::{Config, Regions, var};
use crate::auth::capability::MIN_SECRET_LEN;
use crate::auth::{Keys, TokenSettings, split_pems};
use crate::http::{OriginRule, RequestOrigin, TrustedProxies};

/// Idle uploads older than this many hours are removed, unless
/// [`var::UPLOAD_MAX_AGE_HOURS`] says otherwise.
pub const DEFAULT_UPLOAD_MAX_AGE_HOURS: u64 = 24;

/// A runtime's settings, read through its lookup: `std::env` (the Lambda), the Worker's
/// `Env` (variables and secrets), or flags over variables over a file (`wharf serve`).
///
/// Every value is trimmed, and an unset and a blank variable are the same. Each accessor
/// reads only what it returns, so a runtime is refused a bad value only of a setting it
/// uses.
pub struct Vars<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// Settings read through `lookup` (a variable's value, `None` when unset).
    pub fn new(lookup: F) -> Self {
        Self { lookup }
    }

    /// A variable, trimmed; `None` when unset or blank.
    pub fn text(&self, name: &str) -> Option<String> {
        let v = (self.lookup)(name)?;
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_owned())
    }

    /// A variable that must be set.
    pub fn required(&self, name: &'static str) -> Result<String, SettingError> {
        self.text(name).ok_or(SettingError {
            variable: name,
            problem: Problem::Missing { by: None },
        })
    }

    /// A variable that must be set because `by` (another setting, a mode) needs it.
    pub fn required_by(
        &self,
        name: &'static str,
        by: &'static str,
    ) -> Result<String, SettingError> {
        self.text(name).ok_or(SettingError {
            variable: name,
            problem: Problem::Missing { by: Some(by) },
        })
    }

    /// A whole number, if set.
    pub fn optional_number(&self, name: &'static str) -> Result<Option<u64>, SettingError> {
        self.text(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| SettingError::invalid(name, "a number", &v))
            })
            .transpose()
    }

    /// A whole number, or `default` when unset.
    pub fn number(&self, name: &'static str, default: u64) -> Result<u64, SettingError> {
        Ok(self.optional_number(name)?.unwrap_or(default))
    }

    /// An on/off switch, if set: `on`, `true`, `yes`, `1` or `off`, `false`, `no`, `0`.
    pub fn optional_switch(&self, name: &'static str) -> Result<Option<bool>, SettingError> {
        match self.text(name).as_deref() {
            None => Ok(None),
            Some("on" | "true" | "yes" | "1") => Ok(Some(true)),
            Some("off" | "false" | "no" | "0") => Ok(Some(false)),
            Some(v) => Err(SettingError::invalid(name, "on or off", v)),
        }
    }

    /// An on/off switch, or `default` when unset.
    pub fn switch(&self, name: &'static str, default: bool) -> Result<bool, SettingError> {
        Ok(self.optional_switch(name)?.unwrap_or(default))
    }

    /// A secret (never repeated in an error) of at least [`MIN_SECRET_LEN`] characters.
    fn secret(&self, name: &'static str) -> Result<Option<String>, SettingError> {
        match self.text(name) {
            Some(s) if s.len() < MIN_SECRET_LEN => Err(SettingError {
                variable: name,
                problem: Problem::Invalid {
                    expected: format!("at least {MIN_SECRET_LEN} characters"),
                    found: None,
                },
            }),
            s => Ok(s),
        }
    }

    /// The behaviour of the API: deletes ([`var::DISABLE_DELETE`]), presigned URL lifetime
    /// ([`var::PRESIGN_TTL_SECS`]), the largest request body ([`var::MAX_BODY_BYTES`], else
    /// the runtime's `max_request_body`: `None`, no limit) and the upload front
    /// ([`var::UPLOAD_URL`], which needs [`var::UPLOAD_SECRET`]); the rest as
    /// [`Config::default`].
    pub fn config(&self, max_request_body: Option<u64>) -> Result<Config, SettingError> {
        let d = Config::default();
        let upload_secret = self.secret(var::UPLOAD_SECRET)?;
        let upload_front = self.text(var::UPLOAD_URL);
        if upload_front.is_some() && upload_secret.is_none() {
            return Err(SettingError {
                variable: var::UPLOAD_SECRET,
                problem: Problem::Missing {
                    by: Some(var::UPLOAD_URL),
                },
            });
        }
        Ok(Config {
            delete_enabled: !self.switch(var::DISABLE_DELETE, !d.delete_enabled)?,
            presign_ttl_secs: self.number(var::PRESIGN_TTL_SECS, d.presign_ttl_secs)?,
            max_request_body: self
                .optional_number(var::MAX_BODY_BYTES)?
                .or(max_request_body),
            upload_front,
            upload_secret: upload_secret.map(String::into_bytes),
            default_quota_bytes: self.optional_number(var::DEFAULT_QUOTA_BYTES)?,
            regions: self.regions()?,
            identity_home: self.text(var::IDENTITY_HOME),
            secret_key: self
                .secret(var::SECRET_KEY)?
                .map(|k| crate::auth::sealed::SealKey::from_secret(&k))
                .transpose()
                .map_err(|e| SettingError {
                    variable: var::SECRET_KEY,
                    problem: Problem::Invalid {
                        expected: e,
                        found: None,
                    },
                })?,
            replication_retry_base_ms: self
                .number(
                    var::REPLICATION_RETRY_SECS,
                    d.replication_retry_base_ms / 1000,
                )?
                .saturating_mul(1000),
            ..d
        })
    }

    /// [`var::REGION`] and [`var::REGIONS`]: both or neither; this region and the identity
    /// home among the regions.
    fn regions(&self) -> Result<Option<Regions>, SettingError> {
        let (here, list) = match (self.text(var::REGION), self.text(var::REGIONS)) {
            (None, None) => return Ok(None),
            (Some(h), Some(l)) => (h, l),
            (None, Some(_)) => {
                return Err(SettingError {
                    variable: var::REGION,
                    problem: Problem::Missing {
                        by: Some(var::REGIONS),
                    },
                });
            }
            (Some(_), None) => {
                return Err(SettingError {
                    variable: var::REGIONS,
                    problem: Problem::Missing {
                        by: Some(var::REGION),
                    },
                });
            }
        };
        let expected = "name=https://base-url entries separated by commas";
        let mut urls: Vec<(String, String)> = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((name, url)) = entry.split_once('=') else {
                return Err(SettingError::invalid(var::REGIONS, expected, entry));
            };
            let (name, url) = (name.trim(), url.trim());
            let web = url.starts_with("https://") || url.starts_with("http://");
            if name.is_empty() || !web || urls.iter().any(|(n, _)| n == name) {
                return Err(SettingError::invalid(var::REGIONS, expected, entry));
            }
            urls.push((name.to_owned(), url.to_owned()));
        }
        let known = |n: &str| urls.iter().any(|(u, _)| u == n);
        if !known(&here) {
            return Err(SettingError {
                variable: var::REGION,
                problem: Problem::Unusable(format!("{here} is not one of {}", var::REGIONS)),
            });
        }
        let default_home = match self.text(var::IDENTITY_HOME) {
            Some(h) if !known(&h) => {
                return Err(SettingError {
                    variable: var::IDENTITY_HOME,
                    problem: Problem::Unusable(format!("{h} is not one of {}", var::REGIONS)),
                });
            }
            Some(h) => h,
            None => here.clone(),
        };
        Ok(Some(Regions {
            here,
            urls,
            default_home,
        }))
    }

    /// The behaviour of an upload front with no token service of its own
    /// ([`Config::capability_only`]): [`var::UPLOAD_SECRET`], which `mode` (what makes this
    /// runtime a front) needs, and the largest request body as in [`Self::config`].
    pub fn front_config(
        &self,
        mode: &'static str,
        max_request_body: Option<u64>,
    ) -> Result<Config, SettingError> {
        let secret = self.secret(var::UPLOAD_SECRET)?.ok_or(SettingError {
            variable: var::UPLOAD_SECRET,
            problem: Problem::Missing { by: Some(mode) },
        })?;
        Ok(Config {
            upload_secret: Some(secret.into_bytes()),
            capability_only: true,
            max_request_body: self
                .optional_number(var::MAX_BODY_BYTES)?
                .or(max_request_body),
            ..Config::default()
        })
    }

    /// Token auth: `None` when [`var::AUTH`] is off, else the token service's settings
    /// ([`var::SERVICE`], [`var::TOKEN_TTL_SECS`], [`var::REFRESH_TOKEN_TTL_SECS`]; the rest
    /// as [`TokenSettings::default`]).
    pub fn tokens(&self) -> Result<Option<TokenSettings>, SettingError> {
        if !self.switch(var::AUTH, true)? {
            return Ok(None);
        }
        let d = TokenSettings::default();
        Ok(Some(TokenSettings {
            service: self.text(var::SERVICE).unwrap_or(d.service.clone()),
            ttl_secs: self.number(var::TOKEN_TTL_SECS, d.ttl_secs)?,
            refresh_ttl_secs: self.number(var::REFRESH_TOKEN_TTL_SECS, d.refresh_ttl_secs)?,
            ..d
        }))
    }

    /// The token keys of [`var::TOKEN_KEYS_PEM`] (PEM blocks, the signing key first), if
    /// set; a runtime without them uses its stored or generated key.
    pub fn token_keys_pem(&self) -> Result<Option<Keys>, SettingError> {
        self.text(var::TOKEN_KEYS_PEM)
            .map(|text| {
                Keys::from_pems(&split_pems(&text)).map_err(|e| SettingError {
                    variable: var::TOKEN_KEYS_PEM,
                    problem: Problem::Unusable(e),
                })
            })
            .transpose()
    }

    /// The password `admin` is created with if missing ([`var::ADMIN_PASSWORD`]).
    pub fn admin_password(&self) -> Option<String> {
        self.text(var::ADMIN_PASSWORD)
    }

    /// How requests get their public origin: [`var::BASE_URL`], else by `from_request`,
    /// the runtime's own rule.
    pub fn origin(&self, from_request: RequestOrigin) -> OriginRule {
        OriginRule::new(self.text(var::BASE_URL).as_deref(), from_request)
    }

    /// The proxies whose `X-Forwarded-For` is believed ([`var::TRUSTED_PROXIES`]: IP
    /// addresses and CIDR ranges, comma-separated; default none).
    pub fn trusted_proxies(&self) -> Result<TrustedProxies, SettingError> {
        let list = self.text(var::TRUSTED_PROXIES).unwrap_or_default();
        TrustedProxies::parse(list.split(',')).map_err(|entry| {
            SettingError::invalid(
                var::TRUSTED_PROXIES,
                "IP addresses or CIDR ranges, comma-separated",
                &entry,
            )
        })
    }

    /// Idle uploads older than this many hours are removed
    /// ([`var::UPLOAD_MAX_AGE_HOURS`], default [`DEFAULT_UPLOAD_MAX_AGE_HOURS`]).
    pub fn upload_max_age_hours(&self) -> Result<u64, SettingError> {
        self.number(var::UPLOAD_MAX_AGE_HOURS, DEFAULT_UPLOAD_MAX_AGE_HOURS)
    }

    /// The replica changes are copied to ([`var::REPLICA_URL`], with
    /// [`var::REPLICA_USERNAME`] and [`var::REPLICA_PASSWORD`]), if one is set.
    pub fn replica(&self) -> Result<Option<Replica>, SettingError> {
        let Some(url) = self.text(var::REPLICA_URL) else {
            return Ok(None);
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SettingError {
                variable: var::REPLICA_URL,
                problem: Problem::Invalid {
                    expected: "an http:// or https:// URL".into(),
                    found: Some(url),
                },
            });
        }
        let credentials = match self.text(var::REPLICA_USERNAME) {
            Some(u) => Some((
                u,
                self.required_by(var::REPLICA_PASSWORD, var::REPLICA_USERNAME)?,
            )),
            None if self.text(var::REPLICA_PASSWORD).is_some() => {
                return Err(SettingError {
                    variable: var::REPLICA_USERNAME,
                    problem: Problem::Missing {
                        by: Some(var::REPLICA_PASSWORD),
                    },
                });
            }
            None => None,
        };
        Ok(Some(Replica {
            url: url.trim_end_matches('/').to_owned(),
            credentials,
        }))
    }

    /// When scheduled garbage collection runs and with what grace (`WHARF_GC_INTERVAL_HOURS`,
    /// `WHARF_GC_GRACE_SECS`); its uploads' age is [`Self::upload_max_age_hours`].
    pub fn gc_schedule(&self) -> Result<GcSchedule, SettingError> {
        let hours = self.number(var::GC_INTERVAL_HOURS, 24)?;
        let grace = self.number(var::GC_GRACE_SECS, 3600)?;
        let upload_hours = self.upload_max_age_hours()?;
        let ms = |n: u64, unit: u64, name| {
            n.checked_mul(unit).ok_or(SettingError {
                variable: name,
                problem: Problem::Invalid {
                    expected: "a smaller number".into(),
                    found: Some(n.to_string()),
                },
            })
        };
        Ok(GcSchedule {
            every_ms: ms(hours, 3_600_000, var::GC_INTERVAL_HOURS)?,
            grace_ms: ms(grace, 1000, var::GC_GRACE_SECS)?,
            upload_max_age_ms: ms(upload_hours, 3_600_000, var::UPLOAD_MAX_AGE_HOURS)?,
        })
    }
}

/// The registry this one replicates to.
#[derive(Clone, PartialEq, Eq)]
pub struct Replica {
    /// Its base URL (`http://host:port`), no trailing `/`.
    pub url: String,
    /// Basic credentials for its token endpoint, if it asks for them.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is never printed.
        f.debug_struct("Replica")
            .field("url", &self.url)
            .field("username", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

/// Scheduled garbage collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcSchedule {
    /// Between two runs; 0: none.
    pub every_ms: u64,
    /// What a scheduled run keeps.
    pub grace_ms: u64,
    /// Uploads idle this long are abandoned.
    pub upload_max_age_ms: u64,
}
