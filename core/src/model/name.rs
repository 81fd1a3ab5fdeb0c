//! Repository names and tags, validated by the grammar of the distribution spec before
//! they reach any store (a name never becomes a path without passing here).

use crate::error::{ErrorCode, RegistryError};

/// Longest repository name accepted (Distribution's limit).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag accepted (the spec's grammar allows 128 characters).
pub const MAX_TAG_LEN: usize = 128;

/// The subject name of unauthenticated tokens. It is reserved: no account may take it, and
/// a token naming it never resolves to a stored identity.
pub const ANONYMOUS: &str = "anonymous";

/// The project of a repository name: its first path segment (`team/app` → `team`).
pub fn project_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// Checks `name` against
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn validate_name(name: &str) -> Result<(), RegistryError> {
    let bad = |why: &str| {
        RegistryError::new(
            ErrorCode::NameInvalid,
            format!("invalid repository name {name:?}: {why}"),
        )
        .with_detail(serde_json::json!({ "name": name }))
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(bad("length must be 1 to 255"));
    }
    for component in name.split('/') {
        if !component_ok(component.as_bytes()) {
            return Err(bad(
                "components are lowercase letters and digits separated by '.', '_', '__' or dashes",
            ));
        }
    }
    Ok(())
}

fn component_ok(c: &[u8]) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if c.is_empty() || !alnum(c[0]) || !alnum(c[c.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < c.len() {
        if alnum(c[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        let sep = c[i];
        while i < c.len() && c[i] == sep {
            i += 1;
        }
        let run = i - start;
        let ok = match sep {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Checks `tag` against `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), RegistryError> {
    let b = tag.as_bytes();
    let first_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    let rest_ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok || b.len() > MAX_TAG_LEN {
        return Err(RegistryError::new(
            ErrorCode::TagInvalid,
            format!(
                "invalid tag {:?}: 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
                truncate(tag, 64)
            ),
        ));
    }
    Ok(())
}

/// A string checked once by a grammar, then passed around as its own type: a function that
/// takes one never needs to check it again.
macro_rules! validated {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `s`, with the spec's error code if it does not qualify.
            pub fn parse(s: &str) -> Result<Self, RegistryError> {
                $check(s)?;
                Ok(Self(s.to_owned()))
            }
            /// The checked string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

validated!(
    /// A repository name ([`validate_name`]).
    RepoName,
    validate_name
);
validated!(
    /// A tag ([`validate_tag`]).
    Tag,
    validate_tag
);

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newtypes_hold_only_what_their_grammar_allows() {
        assert_eq!(Tag::parse("v1.0_rc-2").expect("tag").as_str(), "v1.0_rc-2");
        let bad = Tag::parse(".hidden").expect_err("a tag starting with '.'");
        assert_eq!(bad.code, ErrorCode::TagInvalid);
        assert_eq!(&*RepoName::parse("team/app").expect("name"), "team/app");
        let bad = RepoName::parse("Team/App").expect_err("upper case");
        assert_eq!(bad.code, ErrorCode::NameInvalid);
        assert_eq!(String::from(Tag::parse("x").expect("tag")), "x");
    }

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/ubuntu",
            "a-b/c__d/e.f",
            "x--y",
            "0/1/2",
            "a_b",
        ] {
            validate_name(ok).expect(ok);
        }
        let long = "a".repeat(256);
        for bad in [
            "", "../x", "x/..", "A", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "a b",
            "a%2fb", &long,
        ] {
            assert_eq!(
                validate_name(bad).expect_err(bad).code,
                ErrorCode::NameInvalid
            );
        }
    }

    #[test]
    fn tags() {
        for ok in ["latest", "v1.0.0", "_x", "A-b.C_d", &"a".repeat(128)] {
            validate_tag(ok).expect(ok);
        }
        for bad in [
            "",
            ".x",
            "-x",
            "a/b",
            "a:b",
            &"a".repeat(129),
            &"t".repeat(300),
        ] {
            assert_eq!(
                validate_tag(bad).expect_err(bad).code,
                ErrorCode::TagInvalid
            );
        }
    }
}
