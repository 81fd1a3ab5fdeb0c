//! Forwarding to another region of the same registry ([`wharf_core::oci::home`]): a
//! request sent on as the client sent it (method, URI, headers, streamed body, with
//! `Wharf-Forwarded-To` naming the home) and the home's answer returned as it is.
//!
//! The client's token goes with it: the regions sign with one key, so the home verifies
//! it as its own. The `Host` header goes too, so the home builds its token realm and its
//! `Location`s for the host the client knows, and the client keeps talking to the region
//! it chose.

use http::{HeaderName, HeaderValue, Request, Response};
use std::time::Duration;
use wharf_core::http::headers::WHARF_FORWARDED_TO;
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

    /// Sends `req` to `home` and returns its answer; `Err` when the home cannot be reached.
    pub async fn forward(
        &self,
        home: &ForwardHome,
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
