//! The pure half of the store beyond what wharf-chunked shares with wharf-s3: part sizes,
//! how recorded objects map onto the parts of an assembled blob, and what an R2 error
//! means. No JavaScript here, so all of it is unit-tested on the host.

use wharf_core::StoreError;

/// The writer's part size. Fixed: R2 wants every part but the last the same size.
pub const PART: usize = 8 * 1024 * 1024;
/// The largest single put or part R2 accepts (5 GiB − 5 MiB).
pub const MAX_PUT: u64 = 5 * 1024 * 1024 * 1024 - 5 * 1024 * 1024;
/// Request objects one upload may have: commit reads each of them once, and a Worker
/// invocation has about 1,000 subrequests.
pub const MAX_OBJECTS: usize = 400;
/// Smallest part of a blob assembled by multipart upload (only blobs above [`MAX_PUT`]).
const ASSEMBLY_MIN_PART: u64 = 64 * 1024 * 1024;
/// Parts of an assembled blob stay below this, well inside [`wharf_chunked::MAX_PARTS`].
const ASSEMBLY_MAX_PARTS: u64 = 9_000;

pub(crate) fn other(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(e.to_string())
}

/// A byte range of one recorded object that goes into an assembled part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Index of the object.
    pub obj: usize,
    /// First byte within it.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
}

/// Part size for assembling a blob of `total` bytes by multipart upload: one size for all
/// parts (R2's rule), big enough to stay below [`ASSEMBLY_MAX_PARTS`] parts.
pub(crate) fn assembly_part_size(total: u64) -> u64 {
    ASSEMBLY_MIN_PART
        .max(total.div_ceil(ASSEMBLY_MAX_PARTS))
        .min(MAX_PUT)
}

/// Cuts the concatenation of objects of `sizes` into parts of `part` bytes (the last may be
/// shorter), each a list of segments of the objects it spans.
pub(crate) fn plan_parts(sizes: &[u64], part: u64) -> Vec<Vec<Segment>> {
    let mut parts = Vec::new();
    let mut current: Vec<Segment> = Vec::new();
    let mut room = part;
    for (obj, &size) in sizes.iter().enumerate() {
        let mut offset = 0;
        while offset < size {
            let len = room.min(size - offset);
            current.push(Segment { obj, offset, len });
            offset += len;
            room -= len;
            if room == 0 {
                parts.push(std::mem::take(&mut current));
                room = part;
            }
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// The R2 error code at the end of a binding error message (`"put: … (10058)"`).
fn r2_code(msg: &str) -> Option<u32> {
    let inner = msg.trim_end().strip_suffix(')')?;
    let open = inner.rfind('(')?;
    inner[open + 1..].parse().ok()
}

/// Maps an R2 binding error onto the core's meanings, by its code
/// (developers.cloudflare.com/r2/api/error-codes) or, for errors of the runtime around it
/// (a lost connection), by its words.
pub(crate) fn classify(op: &str, msg: &str) -> StoreError {
    let text = format!("R2 {op}: {msg}");
    match r2_code(msg) {
        // NoSuchKey, NoSuchUpload.
        Some(10007 | 10024) => StoreError::NotFound,
        Some(10031) => StoreError::Precondition(text),
        // InternalError, ServiceUnavailable, ClientDisconnect, TooManyRequests.
        Some(10001 | 10043 | 10054 | 10058) => StoreError::Unavailable(text),
        Some(_) => StoreError::Other(text),
        None => {
            let lower = msg.to_ascii_lowercase();
            let transient = [
                "network",
                "timed out",
                "timeout",
                "internal error",
                "overloaded",
                "too many",
                "unavailable",
                "disconnected",
            ];
            if transient.iter().any(|w| lower.contains(w)) {
                StoreError::Unavailable(text)
            } else {
                StoreError::Other(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembly_plans_cover_every_byte_once_in_equal_parts() {
        assert_eq!(
            plan_parts(&[5, 3, 9], 6),
            vec![
                vec![
                    Segment {
                        obj: 0,
                        offset: 0,
                        len: 5
                    },
                    Segment {
                        obj: 1,
                        offset: 0,
                        len: 1
                    }
                ],
                vec![
                    Segment {
                        obj: 1,
                        offset: 1,
                        len: 2
                    },
                    Segment {
                        obj: 2,
                        offset: 0,
                        len: 4
                    }
                ],
                vec![Segment {
                    obj: 2,
                    offset: 4,
                    len: 5
                }],
            ]
        );
        assert_eq!(plan_parts(&[6, 6], 6).len(), 2);
        assert!(plan_parts(&[], 6).is_empty());
        let sizes = [13u64, 1, 40, 7, 7, 2, 31];
        for part in 1..50 {
            let plan = plan_parts(&sizes, part);
            let lens: Vec<u64> = plan.iter().map(|p| p.iter().map(|s| s.len).sum()).collect();
            let (last, rest) = lens.split_last().expect("parts");
            assert!(rest.iter().all(|&l| l == part) && *last <= part && *last > 0);
            let mut next = vec![0u64; sizes.len()];
            let mut prev = 0;
            for s in plan.iter().flatten() {
                assert!(s.obj >= prev && s.len > 0 && s.offset == next[s.obj]);
                next[s.obj] += s.len;
                prev = s.obj;
            }
            assert_eq!(next, sizes);
        }
        const G: u64 = 1024 * 1024 * 1024;
        assert_eq!(assembly_part_size(6 * G), ASSEMBLY_MIN_PART);
        let big = assembly_part_size(5 * 1024 * G);
        assert!(big > ASSEMBLY_MIN_PART && (5 * 1024 * G).div_ceil(big) <= ASSEMBLY_MAX_PARTS);
    }

    #[test]
    fn errors_by_meaning() {
        let m = |s: &str| classify("get", s);
        assert!(matches!(
            m("get: The specified key does not exist. (10007)"),
            StoreError::NotFound
        ));
        assert!(matches!(
            m("complete: no such upload (10024)"),
            StoreError::NotFound
        ));
        assert!(matches!(
            m("put: Precondition Failed (10031)"),
            StoreError::Precondition(_)
        ));
        assert!(matches!(
            m("put: too many requests (10058) "),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            m("get: We encountered an internal error. (10001)"),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            m("Network connection lost."),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            m("uploadPart: InvalidPart (10048)"),
            StoreError::Other(_)
        ));
        assert!(matches!(
            m("TypeError: body used (x)"),
            StoreError::Other(_)
        ));
        assert!(matches!(
            m("Error: Provided readable stream must have a known length"),
            StoreError::Other(_)
        ));
    }
}
