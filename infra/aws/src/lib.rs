//! Shared AWS plumbing for wharf's S3 and DynamoDB adapters.
//!
//! - [`http_client`]: the SDK's hyper client on rustls with *ring* (no aws-lc-rs, so no C or
//!   CMake build), the same TLS stack the `wharf` server uses.
//! - [`static_config`] (local stand-ins, tests) and, with the `env` feature, `env_config`
//!   (Lambda, ECS, EC2, profiles): the [`SdkConfig`] both adapters are built from.
//! - [`store_error`]: every SDK failure becomes a [`StoreError`] named by meaning, so no SDK
//!   type ever reaches the core.
//! - [`CallCounter`]: an interceptor counting calls per operation (for tests and benchmarks).
//! - `testing` (feature): starts moto and s3s-fs on free ports for tests.
#![deny(missing_docs)]

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::SdkConfig;
use aws_types::region::Region;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wharf_core::StoreError;

#[cfg(feature = "testing")]
pub mod testing;

/// How long to wait for a TCP (and TLS) connection to an AWS endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The SDK's HTTP client: hyper on rustls with the *ring* provider and the OS trust store.
pub fn http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

fn timeouts() -> TimeoutConfig {
    // No overall operation timeout: a part upload or a server-side copy may take long.
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

/// A config with fixed credentials, for local stand-ins (moto, s3s-fs, MinIO) and tests.
pub fn static_config(
    endpoint_url: Option<&str>,
    region: &str,
    access_key: &str,
    secret_key: &str,
) -> SdkConfig {
    let creds = Credentials::new(access_key, secret_key, None, None, "wharf-static");
    let mut b = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .http_client(http_client())
        .timeout_config(timeouts());
    if let Some(e) = endpoint_url {
        b = b.endpoint_url(e);
    }
    b.build()
}

/// The config from the environment: region and credentials as the AWS SDKs find them
/// (environment variables in Lambda, the container or instance role on ECS/EC2, profiles),
/// with [`http_client`] and an optional endpoint override (`AWS_ENDPOINT_URL` also works).
#[cfg(feature = "env")]
pub async fn env_config(endpoint_url: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(timeouts());
    if let Some(e) = endpoint_url {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}

/// `sdk` in another region (the same credentials): another region's stores beside this
/// one's.
pub fn in_region(sdk: &SdkConfig, region: &str) -> SdkConfig {
    sdk.to_builder()
        .region(Region::new(region.to_owned()))
        .build()
}

/// Maps an SDK failure to a [`StoreError`] by meaning.
///
/// Timeouts, connection failures, unparseable responses, throttling and 5xx are
/// `Unavailable` (a retry may succeed; the SDK already retried); 404-class codes are
/// `NotFound`; 412 and failed DynamoDB conditions are `Precondition`; the rest is `Other`,
/// with the service's code and message.
pub fn store_error<E>(e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::ServiceError(se) => classify(
            se.raw().status().as_u16(),
            se.err().code().unwrap_or(""),
            se.err().message().unwrap_or(""),
        ),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(DisplayErrorContext(&e).to_string())
        }
        _ => StoreError::Other(DisplayErrorContext(&e).to_string()),
    }
}

/// Classifies a service error by HTTP status and error code (shared with the SDK-free
/// clients of wharf-sigv4).
pub use wharf_sigv4::classify;

/// Counts SDK operations by `Service.Operation` (retries are not counted again).
///
/// Add it to a client with the adapters' options, then read [`CallCounter::snapshot`].
#[derive(Clone, Debug, Default)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl CallCounter {
    /// Operation name → calls so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Forgets the counts.
    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    /// Total calls so far.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "wharf-call-counter"
    }
    // Not `read_before_execution`: client interceptors see that before the operation's
    // metadata is in the config bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg
            .load::<Metadata>()
            .map(|m| format!("{}.{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".into());
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_default() += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_by_meaning() {
        assert!(matches!(
            classify(404, "NoSuchKey", ""),
            StoreError::NotFound
        ));
        assert!(matches!(classify(404, "", ""), StoreError::NotFound));
        assert!(matches!(
            classify(400, "ConditionalCheckFailedException", "x"),
            StoreError::Precondition(_)
        ));
        assert!(matches!(classify(412, "", ""), StoreError::Precondition(_)));
        assert!(matches!(
            classify(400, "ProvisionedThroughputExceededException", ""),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(classify(503, "", ""), StoreError::Unavailable(_)));
        assert!(matches!(
            classify(400, "ResourceNotFoundException", "no table"),
            StoreError::Other(_)
        ));
        assert!(matches!(
            classify(403, "AccessDenied", ""),
            StoreError::Other(_)
        ));
    }
}
