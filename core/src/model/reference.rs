//! Manifest references: a tag or a digest.

use crate::error::Result;
use crate::model::digest::Digest;
use crate::model::name::Tag;

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// By tag.
    Tag(Tag),
    /// By digest.
    Digest(Digest),
}

impl Reference {
    /// Parses the `<reference>` of a manifest URL: a digest if it contains `:`, else a tag.
    pub fn parse(r: &str) -> Result<Reference> {
        if r.contains(':') {
            Ok(Reference::Digest(r.parse()?))
        } else {
            Ok(Reference::Tag(Tag::parse(r)?))
        }
    }
}

impl std::fmt::Display for Reference {
    /// The reference as a URL names it: the tag, or the digest.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}
