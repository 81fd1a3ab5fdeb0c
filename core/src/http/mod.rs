//! The HTTP surface of the core: header names, the one query-string parser, what is read
//! of request headers (lengths, ranges, `Accept`, `Host`, `Authorization`), the public
//! origin and the client address behind trusted proxies (the rules every runtime applies to
//! its requests), body limits, the response body, response builders, and the rendering of
//! an error as the spec's answer. The only module that knows header names.
//!
//! May use: [`crate::error`], [`crate::model`] and [`crate::ports`]. It knows no endpoint:
//! handlers above build on it.

pub mod body;
pub mod headers;
pub mod origin;
pub mod proxies;
pub mod query;
pub mod request;
pub mod response;

pub use body::Body;
pub use origin::{OriginRule, RequestOrigin};
pub use proxies::TrustedProxies;
pub use request::{ClientAddr, PublicOrigin, valid_host};
pub use response::{ApiResponse, error_response};
