//! Upload ids: the last segment of an upload URL, and a directory or key name in stores.

/// Longest upload id accepted.
pub const MAX_UPLOAD_ID_LEN: usize = 128;

/// Whether `id` can be an upload id: 1 to [`MAX_UPLOAD_ID_LEN`] ASCII letters, digits or
/// `-` (the core makes hex ones), so it is safe as a path segment or a key part.
pub fn valid_upload_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_UPLOAD_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids() {
        for ok in ["0123abcdef", "a-b", &"a".repeat(128)] {
            assert!(valid_upload_id(ok), "{ok}");
        }
        for bad in ["", "../x", "a/b", "a.b", &"a".repeat(129)] {
            assert!(!valid_upload_id(bad), "{bad}");
        }
    }
}
