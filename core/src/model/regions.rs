//! The regions of a registry served from several.

/// The regions of a registry served from several, and which one this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regions {
    /// This region's name.
    pub here: String,
    /// Every region's name and base URL (`https://eu.registry.example`), this one's too.
    pub urls: Vec<(String, String)>,
    /// Where projects are homed when they name no home: the identity home (where they are
    /// created), else here.
    pub default_home: String,
}

impl Regions {
    /// The base URL of region `name`, without a trailing `/`.
    pub fn url(&self, name: &str) -> Option<&str> {
        self.urls
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, u)| u.trim_end_matches('/'))
    }
}
