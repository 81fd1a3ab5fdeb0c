//! Forwarding to another region of the same registry ([`wharf_core::oci::home`]): a
//! request sent on as the client sent it (method, URI, headers, streamed body, with
//! `Wharf-Forwarded-To` naming the home) and the home's answer returned as it is.
//!
//! The client's token goes with it: the regions sign with one key, so the home verifies
//! it as its own. The `Host` header goes too, so the home builds its token realm and its
//! `Location`s for the host the client knows, and the client keeps talking to the region
//! it chose. `X-Forwarded-For` gets the client's address as this region determined it
//! appended (a proxy's duty), so a home that trusts its regions as proxies audits the
//! client, not the region, and a client's own entries stay to the left of it.

use http::{HeaderName, HeaderValue, Request, Response};
use std::time::Duration;
use wharf_core::http::headers::{WHARF_FORWARDED_TO, X_FORWARDED_FOR};
use wharf_core::oci::home::ForwardHome;

/// Headers of one connection, not of the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Sends requests on to their project's home region.
#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
}

impl Forwarder {
    /// A forwarder; redirects are returned to the client, not followed.
    pub fn new() -> Result<Self, String> {
        let client = crate::tls::client_builder()?
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { client })
    }

    /// Sends `req` (from `client`, its address as this region determined it) to `home`
    /// and returns its answer; `Err` when the home cannot be reached.
    pub async fn forward(
        &self,
        home: &ForwardHome,
        client: &str,
        req: Request<reqwest::Body>,
    ) -> Result<Response<reqwest::Body>, String> {
        let (parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let url = format!("{}{pq}", home.base);
        let mut headers = parts.headers;
        for h in HOP_BY_HOP {
            headers.remove(HeaderName::from_static(h));
        }
        let region =
            HeaderValue::from_str(&home.region).map_err(|e| format!("region name: {e}"))?;
        headers.insert(WHARF_FORWARDED_TO, region);
        append_forwarded_for(&mut headers, client);
        let resp = self
            .client
            .request(parts.method, &url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "region {} ({}): {}",
                    home.region,
                    home.base,
                    crate::chain(&e)
                )
            })?;
        let mut resp: Response<reqwest::Body> = resp.into();
        for h in HOP_BY_HOP {
            resp.headers_mut().remove(HeaderName::from_static(h));
        }
        Ok(resp)
    }
}

/// Appends `client` to the request's `X-Forwarded-For` (one header line, as proxies
/// write it).
fn append_forwarded_for(headers: &mut http::HeaderMap, client: &str) {
    if client.is_empty() {
        return;
    }
    let before: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let line = if before.is_empty() {
        client.to_owned()
    } else {
        format!("{}, {client}", before.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&line) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_appended_to_x_forwarded_for() {
        let mut h = http::HeaderMap::new();
        append_forwarded_for(&mut h, "198.51.100.7");
        assert_eq!(h[X_FORWARDED_FOR], "198.51.100.7");
        let mut h = http::HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        h.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("10.0.0.2, 10.0.0.3"),
        );
        append_forwarded_for(&mut h, "198.51.100.7");
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(
            h[X_FORWARDED_FOR],
            "10.0.0.1, 10.0.0.2, 10.0.0.3, 198.51.100.7"
        );
        append_forwarded_for(&mut h, "");
        assert_eq!(
            h[X_FORWARDED_FOR],
            "10.0.0.1, 10.0.0.2, 10.0.0.3, 198.51.100.7"
        );
    }
}
