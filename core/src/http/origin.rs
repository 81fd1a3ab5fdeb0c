//! The registry's public origin (`scheme://host[:port]`), on which the token realm and
//! absolute `Location`s are built: the configured base URL (`WHARF_BASE_URL`), else what the
//! request says, read by the rule of the runtime that received it ([`RequestOrigin`]).
//!
//! What the request says is the client's to write: only a plain `host[:port]`
//! ([`valid_host`]) and a known scheme are used, anything else becomes `localhost` or the
//! runtime's default scheme, so nothing can be injected into a `WWW-Authenticate` challenge.

use crate::http::headers::X_FORWARDED_PROTO;
use crate::http::request::{PublicOrigin, valid_host};
use http::Uri;
use http::header::{self, HeaderMap};

/// Where a runtime finds the origin a client used, when no base URL is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOrigin {
    /// A server that accepts the connection itself (`wharf serve`): its own scheme (`https`
    /// when it terminates TLS, the client's `:scheme` is not believed), the host of the URI's
    /// authority (HTTP/2's `:authority`) or else of the `Host` header (HTTP/1.1).
    Direct {
        /// Whether the server terminates TLS.
        tls: bool,
    },
    /// Behind a proxy that terminates TLS and states the scheme in `X-Forwarded-Proto` (AWS
    /// Lambda: function URLs, API Gateway, ALB): that scheme when it is `http` or `https`,
    /// else `http`; the host of the `Host` header.
    Forwarded,
    /// A platform that hands over the URL the client used (workerd): its scheme (`https`
    /// when it has none) and authority, else the host of the `Host` header.
    Url,
}

/// How a runtime's requests get their [`PublicOrigin`]: the base URL, else by the
/// runtime's [`RequestOrigin`]. Built from the settings once (see
/// [`crate::settings::Vars::origin`]), applied to every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginRule {
    base_url: Option<String>,
    from_request: RequestOrigin,
}

impl OriginRule {
    /// A rule with `base_url` (trailing slashes dropped) over `from_request`.
    pub fn new(base_url: Option<&str>, from_request: RequestOrigin) -> Self {
        Self {
            base_url: base_url.map(|b| b.trim_end_matches('/').to_owned()),
            from_request,
        }
    }

    /// The configured base URL, without trailing slashes.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
    }

    /// The public origin of a request for `uri` with `headers`.
    pub fn origin(&self, uri: &Uri, headers: &HeaderMap) -> PublicOrigin {
        if let Some(b) = &self.base_url {
            return PublicOrigin(b.clone());
        }
        let host_header = || headers.get(header::HOST)?.to_str().ok();
        let authority = || uri.authority().map(|a| a.as_str());
        let (scheme, host) = match self.from_request {
            RequestOrigin::Direct { tls } => {
                let scheme = if tls { "https" } else { "http" };
                (scheme, authority().or_else(host_header))
            }
            RequestOrigin::Forwarded => {
                let proto = headers
                    .get(X_FORWARDED_PROTO)
                    .and_then(|v| v.to_str().ok())
                    .filter(|p| matches!(*p, "http" | "https"))
                    .unwrap_or("http");
                (proto, host_header())
            }
            RequestOrigin::Url => (
                uri.scheme_str().unwrap_or("https"),
                authority().or_else(host_header),
            ),
        };
        let host = host.filter(|h| valid_host(h)).unwrap_or("localhost");
        PublicOrigin(format!("{scheme}://{host}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(rule: &OriginRule, uri: &str, headers: &[(&str, &str)]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        rule.origin(&uri.parse().expect("uri"), &h).0
    }

    const DIRECT: RequestOrigin = RequestOrigin::Direct { tls: false };
    const DIRECT_TLS: RequestOrigin = RequestOrigin::Direct { tls: true };
    const ALL: [RequestOrigin; 4] = [
        DIRECT,
        DIRECT_TLS,
        RequestOrigin::Forwarded,
        RequestOrigin::Url,
    ];

    #[test]
    fn the_base_url_wins_everywhere_without_its_trailing_slashes() {
        for from in ALL {
            let rule = OriginRule::new(Some("https://registry.example/"), from);
            assert_eq!(rule.base_url(), Some("https://registry.example"));
            for (uri, headers) in [
                ("/v2/", &[("host", "other.example")][..]),
                (
                    "http://other.example:81/v2/",
                    &[("x-forwarded-proto", "http")][..],
                ),
                ("/v2/", &[][..]),
            ] {
                assert_eq!(
                    origin(&rule, uri, headers),
                    "https://registry.example",
                    "{from:?}"
                );
            }
            let rule = OriginRule::new(Some("https://r.example/sub//"), from);
            assert_eq!(origin(&rule, "/v2/", &[]), "https://r.example/sub");
        }
        assert_eq!(OriginRule::new(None, DIRECT).base_url(), None);
    }

    #[test]
    fn direct_host_header_with_the_servers_own_scheme() {
        // HTTP/1.1: the Host header; the scheme is the server's, by whether it has TLS.
        let plain = OriginRule::new(None, DIRECT);
        let tls = OriginRule::new(None, DIRECT_TLS);
        let host = [("host", "127.0.0.1:5000")];
        assert_eq!(origin(&plain, "/v2/", &host), "http://127.0.0.1:5000");
        assert_eq!(origin(&tls, "/v2/", &host), "https://127.0.0.1:5000");
        // X-Forwarded-Proto is not believed by a server that accepts connections itself.
        let fwd = [("host", "r.example"), ("x-forwarded-proto", "https")];
        assert_eq!(origin(&plain, "/v2/", &fwd), "http://r.example");
    }

    #[test]
    fn direct_http2_authority_before_the_host_header() {
        // HTTP/2 carries the host in the URI's authority; the client's :scheme is ignored.
        let plain = OriginRule::new(None, DIRECT);
        let tls = OriginRule::new(None, DIRECT_TLS);
        let uri = "https://h2.example:5000/v2/";
        let host = [("host", "other.example")];
        assert_eq!(origin(&plain, uri, &host), "http://h2.example:5000");
        assert_eq!(
            origin(&tls, "http://h2.example/v2/", &[]),
            "https://h2.example"
        );
        // An authority that is no plain host (user info) is not replaced by the Host header.
        assert_eq!(
            origin(&plain, "http://u@h2.example/v2/", &host),
            "http://localhost"
        );
    }

    #[test]
    fn direct_bad_or_missing_host_is_localhost() {
        let plain = OriginRule::new(None, DIRECT);
        assert_eq!(origin(&plain, "/v2/", &[]), "http://localhost");
        for bad in ["a.example\",error=\"x", "u@h", "h:123456", "h/x"] {
            assert_eq!(
                origin(&plain, "/v2/", &[("host", bad)]),
                "http://localhost",
                "{bad}"
            );
        }
        let tls = OriginRule::new(None, DIRECT_TLS);
        assert_eq!(
            origin(&tls, "/v2/", &[("host", "u@h")]),
            "https://localhost"
        );
    }

    #[test]
    fn forwarded_scheme_from_x_forwarded_proto_else_http() {
        let rule = OriginRule::new(None, RequestOrigin::Forwarded);
        let with = |proto: &str| {
            origin(
                &rule,
                "/v2/",
                &[
                    ("host", "fn.lambda-url.example"),
                    ("x-forwarded-proto", proto),
                ],
            )
        };
        assert_eq!(with("https"), "https://fn.lambda-url.example");
        assert_eq!(with("http"), "http://fn.lambda-url.example");
        // Anything but http or https (client-written garbage, a list) is http.
        for other in ["javascript", "https, http", "HTTPS", ""] {
            assert_eq!(with(other), "http://fn.lambda-url.example", "{other:?}");
        }
        assert_eq!(
            origin(&rule, "/v2/", &[("host", "fn.lambda-url.example")]),
            "http://fn.lambda-url.example"
        );
    }

    #[test]
    fn forwarded_host_only_from_the_host_header() {
        let rule = OriginRule::new(None, RequestOrigin::Forwarded);
        // lambda_http builds the URI from the Host header or the context's domain: only the
        // header counts, so a request without one is localhost.
        assert_eq!(
            origin(&rule, "https://domain.example/v2/", &[]),
            "http://localhost"
        );
        assert_eq!(
            origin(
                &rule,
                "https://domain.example/v2/",
                &[("host", "h.example"), ("x-forwarded-proto", "https")]
            ),
            "https://h.example"
        );
        assert_eq!(
            origin(
                &rule,
                "/v2/",
                &[
                    ("host", "a.example\",x=\"y"),
                    ("x-forwarded-proto", "https")
                ]
            ),
            "https://localhost"
        );
    }

    #[test]
    fn url_scheme_and_authority_of_the_request_url() {
        let rule = OriginRule::new(None, RequestOrigin::Url);
        assert_eq!(
            origin(
                &rule,
                "https://wharf.workers.example/v2/",
                &[("host", "x.example")]
            ),
            "https://wharf.workers.example"
        );
        // wrangler dev: plain HTTP on a local port.
        assert_eq!(
            origin(&rule, "http://127.0.0.1:8787/v2/", &[]),
            "http://127.0.0.1:8787"
        );
        assert_eq!(
            origin(&rule, "http://[::1]:8787/v2/", &[]),
            "http://[::1]:8787"
        );
    }

    #[test]
    fn url_without_authority_takes_the_host_header_and_https() {
        let rule = OriginRule::new(None, RequestOrigin::Url);
        assert_eq!(
            origin(&rule, "/v2/", &[("host", "w.example")]),
            "https://w.example"
        );
        assert_eq!(origin(&rule, "/v2/", &[]), "https://localhost");
        assert_eq!(
            origin(&rule, "/v2/", &[("host", "w.example/evil")]),
            "https://localhost"
        );
        assert_eq!(
            origin(&rule, "http://u@w.example/v2/", &[]),
            "http://localhost"
        );
    }
}
