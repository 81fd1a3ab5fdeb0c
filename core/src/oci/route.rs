//! Routing of `/v2/…` paths. Repository names contain slashes, so a route is recognised
//! by its suffix (`/manifests/<ref>`, `/blobs/uploads/<id>`, …), never by depth.

/// A recognised API endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags {
        /// Repository.
        name: &'a str,
    },
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        /// Repository.
        name: &'a str,
        /// Tag or digest.
        reference: &'a str,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob {
        /// Repository.
        name: &'a str,
        /// Digest.
        digest: &'a str,
    },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart {
        /// Repository.
        name: &'a str,
    },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload {
        /// Repository.
        name: &'a str,
        /// Upload id.
        id: &'a str,
    },
    /// `/v2/<name>/referrers/<digest>`
    Referrers {
        /// Repository.
        name: &'a str,
        /// Subject digest.
        digest: &'a str,
    },
}

impl<'a> Route<'a> {
    /// The repository the route addresses (`None` for `/v2/` and the catalog).
    pub fn name(&self) -> Option<&'a str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags { name }
            | Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

/// Recognises `path`; `None` if it is not a registry API path.
pub fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    // Peel up to three trailing segments; `name` is what precedes them.
    let (head1, last) = rest.rsplit_once('/')?;
    if last == "list"
        && let Some(name) = head1.strip_suffix("/tags")
    {
        return Some(Route::Tags { name });
    }
    if let Some(name) = head1.strip_suffix("/blobs/uploads") {
        return Some(if last.is_empty() {
            Route::UploadStart { name }
        } else {
            Route::Upload { name, id: last }
        });
    }
    let (name, kind) = head1.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest {
            name,
            reference: last,
        }),
        "blobs" if last == "uploads" => Some(Route::UploadStart { name }),
        "blobs" => Some(Route::Blob { name, digest: last }),
        "referrers" => Some(Route::Referrers { name, digest: last }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2"), Some(Route::Base));
        assert_eq!(route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(
            route("/v2/a/b/tags/list"),
            Some(Route::Tags { name: "a/b" })
        );
        assert_eq!(
            route("/v2/a/manifests/b/manifests/latest"),
            Some(Route::Manifest {
                name: "a/manifests/b",
                reference: "latest"
            })
        );
        assert_eq!(
            route("/v2/a/blobs/uploads/"),
            Some(Route::UploadStart { name: "a" })
        );
        assert_eq!(
            route("/v2/a/blobs/uploads"),
            Some(Route::UploadStart { name: "a" })
        );
        assert_eq!(
            route("/v2/x/blobs/uploads/blobs/uploads/u1"),
            Some(Route::Upload {
                name: "x/blobs/uploads",
                id: "u1"
            })
        );
        assert_eq!(
            route("/v2/a/blobs/sha256:00"),
            Some(Route::Blob {
                name: "a",
                digest: "sha256:00"
            })
        );
        assert_eq!(
            route("/v2/a/referrers/sha256:00"),
            Some(Route::Referrers {
                name: "a",
                digest: "sha256:00"
            })
        );
        assert_eq!(route("/v2/a/other/x"), None);
        assert_eq!(route("/v3/a/blobs/x"), None);
        assert_eq!(route("/v2x"), None);
    }
}
