//! What a runtime tells the core about a request beyond the request itself (the client's
//! address, the public origin), and what the core reads of the `Host` and `Authorization`
//! headers.

use http::header::{self, HeaderMap};

/// The client's address, inserted as a request extension by the runtime (for the audit log
/// and login throttling).
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

/// The registry's public origin (`https://host:port`), inserted as a request extension by
/// the runtime; the token realm is `<origin>/token`.
#[derive(Debug, Clone)]
pub struct PublicOrigin(pub String);

/// `host[:port]` as RFC 3986 allows it in an authority (reg-name, IPv4 or `[IPv6]`),
/// without user info: what a runtime may put into the token realm from a `Host` header.
pub fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        // `[v6]` without a port, or a bare IPv6 address (refused below).
        Some((a, _)) if !a.ends_with(']') && a.contains(':') => (h, None),
        Some((a, p)) => (a, Some(p)),
        None => (h, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        !v6.is_empty()
            && v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    port_ok && host_ok
}

/// The registry's public origin for this request: the runtime's [`PublicOrigin`], else
/// `http://<Host>` when the `Host` header is a plain `host[:port]`, else
/// `http://localhost`. The Host header is the client's to set: only a valid one is used, so
/// nothing can be injected into a `WWW-Authenticate` challenge built from it.
pub(crate) fn public_origin(headers: &HeaderMap, ext: &http::Extensions) -> String {
    if let Some(o) = ext.get::<PublicOrigin>() {
        return o.0.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| valid_host(h))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The `Authorization` header, if it is text.
pub(crate) fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The token of `Authorization: Bearer …` (or `bearer …`), untrimmed.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    authorization(headers).and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    })
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn hosts() {
        for h in [
            "reg.example",
            "127.0.0.1:5000",
            "[::1]:5000",
            "[::1]",
            "a-b.c",
        ] {
            assert!(valid_host(h), "{h}");
        }
        for h in [
            "a.example\",error=\"x",
            "",
            "u@h",
            "h:",
            "h:123456",
            "::1",
            "h/x",
            "h p",
        ] {
            assert!(!valid_host(h), "{h}");
        }
    }
}
