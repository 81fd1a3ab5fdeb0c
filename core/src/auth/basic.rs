//! HTTP Basic credentials.

use base64::Engine as _;

/// Parses `Authorization: Basic …` into user and password.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic() {
        assert_eq!(
            parse_basic("Basic YWxpY2U6czNjcjN0OjE="),
            Some(("alice".into(), "s3cr3t:1".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
    }
}
