//! A registry served from several regions (`Config::regions`): each project has a home
//! region that takes all of its writes, so every tag has one writer and a tag moved
//! through two regions at once is decided once, at home, then replicated everywhere.
//!
//! - A write (POST, PUT, PATCH, DELETE under `/v2/<name>/`) for a project homed elsewhere
//!   is forwarded to the home region by the runtime, with the client's token (the
//!   registry has one signing key) and body, and the home's answer returned as it is; so
//!   every later request of an upload comes here too and is forwarded again. A redirect
//!   would not do: docker sends its token only to the host it logged in to.
//!   [`crate::Registry::forward_target`] tells a runtime which requests to forward.
//! - A read (GET, HEAD) this region cannot answer yet (the manifest, blob or repository
//!   is unknown here) for a project homed elsewhere is answered `307` to the same URL at
//!   home, marked with a [`ForwardHome`] extension: a runtime that can forward sends the
//!   read there and returns the home's answer (a blob's is a `307` to the home's bucket);
//!   a pull right after a push at home works here at once, from farther away, until
//!   replication catches up.
//! - The regions' views of a project's home agree once identity is mirrored; while a
//!   changed home is on its way two regions could each name the other, so a forwarded
//!   request carries `Wharf-Forwarded-To: <region>`, and a region that gets one is not to
//!   forward it again: it serves it if it is the home, and answers `503` (retry) if it
//!   thinks the home is elsewhere, rather than write where it is not the home.
//!
//! Replication's own writes are never forwarded: they are how content reaches a replica.
//! In-process they are the system's ([`crate::auth::authorize::SystemCall`]); over HTTP
//! (between `wharf serve` regions) they carry `Wharf-Replicated-From`, and a region takes
//! such a write for a project homed elsewhere only from a system administrator (the
//! account replication logs in as), so no client can write around the home with it.

use super::Resp;
use crate::auth::Directory;
use crate::error::{ErrorCode, RegistryError};
use crate::http::body::Body;
use crate::http::headers;
use crate::model::name::project_of;
use crate::model::regions::Regions;
use crate::ports::{BlobStore, DocumentStore, MetadataStore};
use http::{HeaderMap, Method, Response, StatusCode, Uri};

/// Where a region sends a request it is not the home for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardHome {
    /// The home region's name (the value of `Wharf-Forwarded-To`).
    pub region: String,
    /// Its base URL.
    pub base: String,
}

/// Whether the method writes.
pub(crate) fn writes(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Whether a read's error means this region lacks the thing (home may have it).
pub(super) fn missing_here(e: &RegistryError) -> bool {
    e.status == StatusCode::NOT_FOUND
        && matches!(
            e.code,
            ErrorCode::ManifestUnknown | ErrorCode::BlobUnknown | ErrorCode::NameUnknown
        )
}

/// Whether the request is a region's replication.
pub(crate) fn replicated(h: &HeaderMap) -> bool {
    h.contains_key(headers::WHARF_REPLICATED_FROM)
}

/// A replication write from someone who is not a system administrator.
pub(super) fn not_replication() -> RegistryError {
    RegistryError::new(
        ErrorCode::Denied,
        "only the registry's replication (a system administrator) writes in a region that is not the project's home",
    )
}

/// Whether a region forwarded the request here already.
pub(crate) fn forwarded(h: &HeaderMap) -> bool {
    h.contains_key(headers::WHARF_FORWARDED_TO)
}

/// The region homing `name`'s project, when that is not this one.
pub(crate) async fn elsewhere<M: MetadataStore + DocumentStore>(
    meta: &M,
    regions: &Regions,
    name: &str,
) -> crate::error::Result<Option<ForwardHome>> {
    let home = Directory(meta)
        .project(project_of(name))
        .await?
        .and_then(|p| p.home_region)
        .unwrap_or_else(|| regions.default_home.clone());
    if home == regions.here {
        return Ok(None);
    }
    // A home that is no region (any more) is served here rather than nowhere.
    Ok(regions.url(&home).map(|u| ForwardHome {
        region: home.clone(),
        base: u.to_owned(),
    }))
}

/// A request forwarded here by a region that took this one for the home, which this one
/// does not: refused for a retry, never written in a region that is not the home.
pub(super) fn not_home(home: &ForwardHome) -> RegistryError {
    RegistryError::new(
        ErrorCode::Unavailable,
        format!(
            "this region is not the project's home (region {} is); the regions' views are converging, retry",
            home.region
        ),
    )
}

/// `307` to the same request at `home`, marked for a runtime that forwards.
pub(super) fn redirect<B: BlobStore>(home: ForwardHome, uri: &Uri) -> Resp<B> {
    let location = match uri.path_and_query() {
        Some(pq) => format!("{}{pq}", home.base),
        None => home.base.clone(),
    };
    let mut r = Response::builder()
        .status(StatusCode::TEMPORARY_REDIRECT)
        .header(headers::LOCATION, location)
        .header(headers::CONTENT_LENGTH, 0)
        .body(Body::Empty)
        .map_err(super::internal)?;
    r.extensions_mut().insert(home);
    Ok(r)
}
