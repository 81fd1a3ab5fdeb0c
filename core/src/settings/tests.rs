//! The loader against a lookup from a map: defaults, every variable, every refusal.

use super::*;
use crate::auth::{TokenSettings, generate_key_pem};
use crate::http::{RequestOrigin, TrustedProxies};
use crate::testing::TestEnv;
use std::collections::HashMap;

fn vars(pairs: &[(&str, &str)]) -> Vars<impl Fn(&str) -> Option<String> + use<>> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Vars::new(move |name: &str| map.get(name).cloned())
}

fn err<T: std::fmt::Debug>(r: Result<T, SettingError>) -> String {
    r.expect_err("refused").to_string()
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn defaults_when_nothing_is_set() {
    let v = vars(&[]);
    assert_eq!(v.config(None).expect("config"), Config::default());
    assert_eq!(
        v.config(Some(6 * 1024 * 1024))
            .expect("config")
            .max_request_body,
        Some(6 * 1024 * 1024)
    );
    let t = v.tokens().expect("tokens").expect("auth is on by default");
    let d = TokenSettings::default();
    assert_eq!(
        (
            t.issuer,
            t.service,
            t.ttl_secs,
            t.refresh_ttl_secs,
            t.leeway_secs
        ),
        (d.issuer, d.service, 300, 30 * 24 * 3600, d.leeway_secs)
    );
    assert!(v.token_keys_pem().expect("keys").is_none());
    assert_eq!(v.admin_password(), None);
    assert_eq!(v.origin(RequestOrigin::Url).base_url(), None);
    assert_eq!(
        v.trusted_proxies().expect("proxies"),
        TrustedProxies::default()
    );
    assert_eq!(v.upload_max_age_hours().expect("hours"), 24);
    let c = Config::default();
    assert!(c.delete_enabled && c.redirect_blobs && !c.capability_only);
    assert_eq!(
        (c.presign_ttl_secs, c.upload_capability_ttl_secs),
        (900, 3600)
    );
}

#[test]
fn blank_is_unset_and_values_are_trimmed() {
    let v = vars(&[
        ("WHARF_SERVICE", "  "),
        ("WHARF_TOKEN_TTL_SECS", " 60\n"),
        ("WHARF_BASE_URL", ""),
        ("WHARF_ADMIN_PASSWORD", " pw \n"),
    ]);
    let t = v.tokens().expect("tokens").expect("on");
    assert_eq!((t.service.as_str(), t.ttl_secs), ("wharf", 60));
    assert_eq!(v.origin(RequestOrigin::Forwarded).base_url(), None);
    assert_eq!(v.admin_password().as_deref(), Some("pw"));
    assert_eq!(v.text("WHARF_SERVICE"), None);
    assert_eq!(v.text("WHARF_NOT_SET"), None);
}

#[test]
fn every_config_variable_is_read() {
    let v = vars(&[
        ("WHARF_DISABLE_DELETE", "true"),
        ("WHARF_PRESIGN_TTL_SECS", "60"),
        ("WHARF_MAX_BODY_BYTES", "4500000"),
        ("WHARF_UPLOAD_URL", "https://front.example"),
        ("WHARF_UPLOAD_SECRET", SECRET),
    ]);
    let c = v.config(Some(6 * 1024 * 1024)).expect("config");
    assert_eq!(
        c,
        Config {
            delete_enabled: false,
            presign_ttl_secs: 60,
            max_request_body: Some(4_500_000),
            upload_front: Some("https://front.example".into()),
            upload_secret: Some(SECRET.as_bytes().to_vec()),
            ..Config::default()
        }
    );
    // A runtime without a limit of its own takes the variable too.
    assert_eq!(
        v.config(None).expect("config").max_request_body,
        Some(4_500_000)
    );
    // A secret alone: capabilities are accepted, uploads stay here.
    let c = vars(&[("WHARF_UPLOAD_SECRET", SECRET)])
        .config(None)
        .expect("config");
    assert_eq!(
        (c.upload_front, c.upload_secret),
        (None, Some(SECRET.as_bytes().to_vec()))
    );
}

#[test]
fn every_token_variable_is_read() {
    let v = vars(&[
        ("WHARF_AUTH", "on"),
        ("WHARF_SERVICE", "registry.example"),
        ("WHARF_TOKEN_TTL_SECS", "1"),
        ("WHARF_REFRESH_TOKEN_TTL_SECS", "3600"),
        ("WHARF_ADMIN_PASSWORD", "change-me"),
    ]);
    let t = v.tokens().expect("tokens").expect("on");
    assert_eq!(
        (t.service.as_str(), t.ttl_secs, t.refresh_ttl_secs),
        ("registry.example", 1, 3600)
    );
    assert_eq!(v.admin_password().as_deref(), Some("change-me"));
    // Off: no token service, and its other settings are not read.
    let off = vars(&[("WHARF_AUTH", "off"), ("WHARF_TOKEN_TTL_SECS", "soon")]);
    assert!(off.tokens().expect("off").is_none());
}

#[test]
fn token_keys_from_pem_text() {
    let env = TestEnv::default();
    let (a, b) = (
        generate_key_pem(&env).expect("key"),
        generate_key_pem(&env).expect("key"),
    );
    let both = format!("{a}\n{b}");
    let keys = vars(&[("WHARF_TOKEN_KEYS_PEM", &both)])
        .token_keys_pem()
        .expect("parsed")
        .expect("set");
    let first = vars(&[("WHARF_TOKEN_KEYS_PEM", &a)])
        .token_keys_pem()
        .expect("parsed")
        .expect("set");
    assert_eq!(keys.jwks().keys.len(), 2);
    assert_eq!(keys.signing_kid(), first.signing_kid(), "the first signs");
    let e = vars(&[(
        "WHARF_TOKEN_KEYS_PEM",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    )])
    .token_keys_pem()
    .map(|k| k.is_some());
    assert!(
        err(e).starts_with("WHARF_TOKEN_KEYS_PEM: not an EC P-256 private key"),
        "names the variable"
    );
}

#[test]
fn switches_take_every_spelling_and_refuse_others() {
    for on in ["on", "true", "yes", "1", " on "] {
        let v = vars(&[("WHARF_DISABLE_DELETE", on), ("WHARF_AUTH", on)]);
        assert!(!v.config(None).expect(on).delete_enabled, "{on}");
        assert!(v.tokens().expect(on).is_some(), "{on}");
    }
    for off in ["off", "false", "no", "0"] {
        let v = vars(&[("WHARF_DISABLE_DELETE", off), ("WHARF_AUTH", off)]);
        assert!(v.config(None).expect(off).delete_enabled, "{off}");
        assert!(v.tokens().expect(off).is_none(), "{off}");
    }
    assert_eq!(
        err(vars(&[("WHARF_AUTH", "maybe")]).tokens()),
        r#"WHARF_AUTH must be on or off, not "maybe""#
    );
    assert_eq!(
        err(vars(&[("WHARF_DISABLE_DELETE", "ON")]).config(None)),
        r#"WHARF_DISABLE_DELETE must be on or off, not "ON""#
    );
    let v = vars(&[("X", "1")]);
    assert_eq!(v.optional_switch("X"), Ok(Some(true)));
    assert_eq!(v.optional_switch("Y"), Ok(None));
    assert_eq!(v.switch("Y", true), Ok(true));
}

/// Reads the setting `name` is part of.
fn read(v: &Vars<impl Fn(&str) -> Option<String>>, name: &str) -> Result<(), SettingError> {
    match name {
        "WHARF_PRESIGN_TTL_SECS" | "WHARF_MAX_BODY_BYTES" | "WHARF_DEFAULT_QUOTA_BYTES" => {
            v.config(Some(1)).map(drop)
        }
        "WHARF_UPLOAD_MAX_AGE_HOURS" => v.upload_max_age_hours().map(drop),
        "WHARF_GC_INTERVAL_HOURS" | "WHARF_GC_GRACE_SECS" => v.gc_schedule().map(drop),
        _ => v.tokens().map(drop),
    }
}

#[test]
fn bad_numbers_name_the_variable() {
    for name in [
        "WHARF_PRESIGN_TTL_SECS",
        "WHARF_MAX_BODY_BYTES",
        "WHARF_TOKEN_TTL_SECS",
        "WHARF_REFRESH_TOKEN_TTL_SECS",
        "WHARF_UPLOAD_MAX_AGE_HOURS",
        "WHARF_GC_INTERVAL_HOURS",
        "WHARF_GC_GRACE_SECS",
        "WHARF_DEFAULT_QUOTA_BYTES",
    ] {
        for bad in ["5m", "-1", "1.5", "18446744073709551616"] {
            let v = vars(&[(name, bad)]);
            let e = read(&v, name).expect_err(name);
            assert_eq!(
                e,
                SettingError {
                    variable: name,
                    problem: Problem::Invalid {
                        expected: "a number".into(),
                        found: Some(bad.into()),
                    },
                }
            );
            assert_eq!(
                e.to_string(),
                format!("{name} must be a number, not {bad:?}")
            );
        }
    }
    let v = vars(&[("WHARF_UPLOAD_MAX_AGE_HOURS", "0")]);
    assert_eq!(v.upload_max_age_hours(), Ok(0));
    assert_eq!(v.optional_number("UNSET"), Ok(None));
    assert_eq!(v.number("UNSET", 7), Ok(7));
}

#[test]
fn upload_secret_is_checked_and_never_repeated() {
    let short = "x".repeat(31);
    let e = vars(&[("WHARF_UPLOAD_SECRET", &short)]).config(None);
    let msg = err(e);
    assert_eq!(msg, "WHARF_UPLOAD_SECRET must be at least 32 characters");
    assert!(!msg.contains(&short));
    let padded = format!("  {}  ", &SECRET[..31]);
    assert!(
        vars(&[("WHARF_UPLOAD_SECRET", &padded)])
            .config(None)
            .is_err(),
        "length counts after trimming"
    );
    assert_eq!(
        err(vars(&[("WHARF_UPLOAD_URL", "https://front.example")]).config(None)),
        "WHARF_UPLOAD_URL needs WHARF_UPLOAD_SECRET"
    );
}

#[test]
fn a_front_needs_the_secret_and_serves_capabilities_only() {
    const MODE: &str = "front mode (WHARF_FRONT_S3_BUCKET)";
    assert_eq!(
        err(vars(&[]).front_config(MODE, None)),
        "front mode (WHARF_FRONT_S3_BUCKET) needs WHARF_UPLOAD_SECRET"
    );
    assert_eq!(
        err(vars(&[("WHARF_UPLOAD_SECRET", "short")]).front_config(MODE, None)),
        "WHARF_UPLOAD_SECRET must be at least 32 characters"
    );
    let v = vars(&[("WHARF_UPLOAD_SECRET", SECRET)]);
    let c = v.front_config(MODE, Some(100)).expect("front");
    assert_eq!(
        c,
        Config {
            upload_secret: Some(SECRET.as_bytes().to_vec()),
            capability_only: true,
            max_request_body: Some(100),
            ..Config::default()
        }
    );
    let v = vars(&[
        ("WHARF_UPLOAD_SECRET", SECRET),
        ("WHARF_MAX_BODY_BYTES", "7"),
    ]);
    assert_eq!(
        v.front_config(MODE, Some(100))
            .expect("front")
            .max_request_body,
        Some(7)
    );
}

#[test]
fn trusted_proxies_are_parsed_or_refused_by_entry() {
    let v = vars(&[("WHARF_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7,,::1")]);
    let p = v.trusted_proxies().expect("proxies");
    assert_eq!(
        p,
        TrustedProxies::parse(["10.0.0.0/8", "192.168.1.7", "::1"]).expect("parse")
    );
    let peer = "10.1.2.3".parse().expect("ip");
    let mut h = http::HeaderMap::new();
    h.insert("x-forwarded-for", "203.0.113.9".parse().expect("value"));
    assert_eq!(p.client(peer, &h).to_string(), "203.0.113.9");
    for bad in ["proxy.example", "10.0.0.0/33"] {
        let e = vars(&[("WHARF_TRUSTED_PROXIES", &format!("10.0.0.0/8,{bad}"))]).trusted_proxies();
        assert_eq!(
            err(e),
            format!(
                "WHARF_TRUSTED_PROXIES must be IP addresses or CIDR ranges, comma-separated, not {bad:?}"
            )
        );
    }
}

#[test]
fn the_base_url_goes_into_every_runtimes_origin_rule() {
    let v = vars(&[("WHARF_BASE_URL", " https://registry.example/ ")]);
    for from in [
        RequestOrigin::Direct { tls: true },
        RequestOrigin::Forwarded,
        RequestOrigin::Url,
    ] {
        let rule = v.origin(from);
        assert_eq!(rule.base_url(), Some("https://registry.example"));
        let o = rule.origin(
            &"http://other.example/v2/".parse().expect("uri"),
            &http::HeaderMap::new(),
        );
        assert_eq!(o.0, "https://registry.example");
    }
    // Without it, each runtime's own rule (see crate::http::origin's tests, a case each).
    let rule = vars(&[]).origin(RequestOrigin::Direct { tls: true });
    let o = rule.origin(&"/v2/".parse().expect("uri"), &http::HeaderMap::new());
    assert_eq!(o.0, "https://localhost");
}

#[test]
fn required_settings_say_what_needs_them() {
    let v = vars(&[("WHARF_S3_BUCKET", "b")]);
    assert_eq!(v.required("WHARF_S3_BUCKET"), Ok("b".into()));
    assert_eq!(
        err(v.required("WHARF_DYNAMODB_TABLE")),
        "WHARF_DYNAMODB_TABLE must be set"
    );
    assert_eq!(
        err(v.required_by("R2_ACCESS_KEY_ID", "WHARF_R2_PRESIGN_URL")),
        "WHARF_R2_PRESIGN_URL needs R2_ACCESS_KEY_ID"
    );
}

#[test]
fn a_runtime_with_flags_names_them_too() {
    let flag = |v: &'static str| match v {
        "WHARF_UPLOAD_URL" => format!("{v} (--upload-url)"),
        "WHARF_UPLOAD_SECRET" => format!("{v} (--upload-secret)"),
        _ => v.to_owned(),
    };
    let e = vars(&[("WHARF_UPLOAD_URL", "https://f.example")])
        .config(None)
        .expect_err("needs the secret");
    assert_eq!(
        e.describe(flag),
        "WHARF_UPLOAD_URL (--upload-url) needs WHARF_UPLOAD_SECRET (--upload-secret)"
    );
    let e = vars(&[("WHARF_AUTH", "maybe")]).tokens().expect_err("bad");
    assert_eq!(
        e.describe(flag),
        r#"WHARF_AUTH must be on or off, not "maybe""#
    );
    assert_eq!(
        String::from(e),
        r#"WHARF_AUTH must be on or off, not "maybe""#
    );
}

#[test]
fn the_gc_schedule_defaults_to_daily_with_an_hour_of_grace() {
    use crate::settings::GcSchedule;
    assert_eq!(
        vars(&[]).gc_schedule(),
        Ok(GcSchedule {
            every_ms: 24 * 3_600_000,
            grace_ms: 3_600_000,
            upload_max_age_ms: 24 * 3_600_000,
        })
    );
    let v = vars(&[
        ("WHARF_GC_INTERVAL_HOURS", "0"),
        ("WHARF_GC_GRACE_SECS", "0"),
    ]);
    let s = v.gc_schedule().expect("schedule");
    assert_eq!((s.every_ms, s.grace_ms), (0, 0));
    let huge = vars(&[("WHARF_GC_INTERVAL_HOURS", "18446744073709551615")]);
    assert!(huge.gc_schedule().is_err());
}

#[test]
fn the_replica_and_its_credentials() {
    assert_eq!(vars(&[]).replica().expect("none"), None);
    let r = vars(&[
        ("WHARF_REPLICA_URL", "http://127.0.0.2:5000/"),
        ("WHARF_REPLICA_USERNAME", "robot$repl"),
        ("WHARF_REPLICA_PASSWORD", "s3cret-pass"),
    ])
    .replica()
    .expect("replica")
    .expect("set");
    assert_eq!(r.url, "http://127.0.0.2:5000");
    assert_eq!(
        r.credentials,
        Some(("robot$repl".into(), "s3cret-pass".into()))
    );
    assert!(
        !format!("{r:?}").contains("s3cret"),
        "the password is printed: {r:?}"
    );
    assert_eq!(
        err(vars(&[("WHARF_REPLICA_URL", "ftp://x")]).replica()),
        "WHARF_REPLICA_URL must be an http:// or https:// URL, not \"ftp://x\""
    );
    assert_eq!(
        err(vars(&[
            ("WHARF_REPLICA_URL", "http://x"),
            ("WHARF_REPLICA_USERNAME", "u")
        ])
        .replica()),
        "WHARF_REPLICA_USERNAME needs WHARF_REPLICA_PASSWORD"
    );
    assert_eq!(
        err(vars(&[
            ("WHARF_REPLICA_URL", "http://x"),
            ("WHARF_REPLICA_PASSWORD", "p")
        ])
        .replica()),
        "WHARF_REPLICA_PASSWORD needs WHARF_REPLICA_USERNAME"
    );
}

#[test]
fn regions_name_this_one_and_every_base_url() {
    let v = vars(&[
        ("WHARF_REGION", "eu"),
        (
            "WHARF_REGIONS",
            "us=https://us.registry.example, eu=https://eu.registry.example/",
        ),
        ("WHARF_IDENTITY_HOME", "us"),
    ]);
    let c = v.config(None).expect("config");
    let r = c.regions.expect("regions");
    assert_eq!(r.here, "eu");
    assert_eq!(r.default_home, "us");
    assert_eq!(r.url("eu"), Some("https://eu.registry.example"));
    assert_eq!(r.url("mars"), None);
    assert_eq!(c.identity_home.as_deref(), Some("us"));
    // Without an identity home, projects are homed here.
    let v = vars(&[
        ("WHARF_REGION", "us"),
        ("WHARF_REGIONS", "us=http://127.0.0.1:1"),
    ]);
    assert_eq!(
        v.config(None)
            .expect("config")
            .regions
            .expect("r")
            .default_home,
        "us"
    );
    assert_eq!(vars(&[]).config(None).expect("config").regions, None);
    for (pairs, says) in [
        (&[("WHARF_REGIONS", "us=https://x")][..], "WHARF_REGION"),
        (&[("WHARF_REGION", "us")][..], "WHARF_REGIONS"),
        (
            &[("WHARF_REGION", "eu"), ("WHARF_REGIONS", "us=https://x")][..],
            "eu is not one of WHARF_REGIONS",
        ),
        (
            &[("WHARF_REGION", "us"), ("WHARF_REGIONS", "us=ftp://x")][..],
            "us=ftp://x",
        ),
        (
            &[
                ("WHARF_REGION", "us"),
                ("WHARF_REGIONS", "us=https://x,us=https://y"),
            ][..],
            "us=https://y",
        ),
        (
            &[
                ("WHARF_REGION", "us"),
                ("WHARF_REGIONS", "us=https://x"),
                ("WHARF_IDENTITY_HOME", "eu"),
            ][..],
            "eu is not one of WHARF_REGIONS",
        ),
    ] {
        let e = err(vars(pairs).config(None));
        assert!(e.contains(says), "{pairs:?}: {e}");
    }
}
