//! TLS for the HTTP clients: rustls with ring (no C build, the provider the AWS SDK here
//! uses too) and the system's CA certificates, read once per client.

use std::sync::Arc;

/// A reqwest builder that speaks https with the system's roots.
pub(crate) fn client_builder() -> Result<reqwest::ClientBuilder, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A certificate the store cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        tracing::warn!(errors = ?found.errors, "no CA certificates found: https registries will not verify");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder().tls_backend_preconfigured(config))
}
