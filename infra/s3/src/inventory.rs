//! The S3 store's blob inventory: ListObjectsV2 under `<prefix>blobs/`, from the key of the
//! digest a page starts after ([`S3Api::list`], `start-after`), in key order, which is
//! digest order. Keys map back to digests through [`wharf_chunked::Layout::blob_digest`]; a
//! key that is not a blob's is skipped, and the listing goes on until the page is full or
//! the bucket has nothing more. Staged bytes are never listed: request objects live under
//! `uploads/`, and a declared-digest upload at the blob's key is a multipart upload, which
//! is no object until commit completes it.

use crate::{S3Api, S3Blobs, other};
use wharf_core::StoreError;
use wharf_core::ports::{BlobEntry, BlobInventory};

/// The most keys one ListObjectsV2 call returns.
pub const MAX_LIST: usize = 1000;

/// An object as ListObjectsV2 describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its key (unencoded).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its LastModified, in ms since the epoch.
    pub modified_ms: u64,
}

impl<A: S3Api> BlobInventory for S3Blobs<A> {
    async fn list_blobs(
        &self,
        after: Option<&wharf_core::Digest>,
        limit: usize,
    ) -> Result<Vec<BlobEntry>, StoreError> {
        let layout = &self.0.layout;
        let prefix = layout.blobs_prefix();
        let mut start = after.map(|d| layout.blob_key(d));
        let mut out = Vec::new();
        while out.len() < limit {
            let want = (limit - out.len()).min(MAX_LIST);
            let (objects, more) = self.0.api.list(&prefix, start.as_deref(), want).await?;
            out.extend(objects.iter().filter_map(|o| {
                Some(BlobEntry {
                    digest: layout.blob_digest(&o.key)?,
                    size: o.size,
                    modified_ms: o.modified_ms,
                })
            }));
            match objects.last() {
                Some(o) if more => start = Some(o.key.clone()),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// An RFC 3339 time (S3's `LastModified`, `2009-10-12T17:50:30.000Z`) in ms since the epoch.
pub(crate) fn rfc3339_ms(s: &str) -> Result<u64, StoreError> {
    use aws_smithy_types::date_time::{DateTime, Format};
    let t = DateTime::from_str(s, Format::DateTime)
        .map_err(|e| other(format!("bad LastModified {s:?}: {e}")))?;
    let ms = t
        .to_millis()
        .map_err(|e| other(format!("bad LastModified {s:?}: {e}")))?;
    Ok(u64::try_from(ms).unwrap_or(0))
}

/// The objects of a ListObjectsV2 answer, and whether it is truncated.
pub(crate) fn parse_list(xml: &str) -> Result<(Vec<Listed>, bool), StoreError> {
    use wharf_sigv4::xml_value;
    let mut objects = Vec::new();
    // Each <Contents> holds one object's <Key>, <Size> and <LastModified>.
    for c in xml.split("<Contents>").skip(1) {
        let field = |name: &str| {
            xml_value(c, name).ok_or_else(|| other(format!("a listed object without {name}")))
        };
        let size = field("Size")?;
        objects.push(Listed {
            key: field("Key")?,
            size: size
                .parse()
                .map_err(|_| other(format!("bad listed size {size:?}")))?,
            modified_ms: rfc3339_ms(&field("LastModified")?)?,
        });
    }
    let truncated = xml_value(xml, "IsTruncated").as_deref() == Some("true");
    Ok((objects, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_list_objects_v2_answer() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>wharf</Name><Prefix>p/blobs/</Prefix><StartAfter>p/blobs/sha256/00</StartAfter>
  <KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
  <Contents><Key>p/blobs/sha256/ab</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size>
    <StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>p/blobs/a&amp;b</Key><LastModified>2024-02-29T00:00:01.5Z</LastModified>
    <ETag>&quot;x&quot;</ETag><Size>0</Size></Contents>
  <NextContinuationToken>tok</NextContinuationToken>
</ListBucketResult>"#;
        let (objects, more) = parse_list(xml).expect("parse");
        assert!(more);
        assert_eq!(
            objects,
            [
                Listed {
                    key: "p/blobs/sha256/ab".into(),
                    size: 434_234,
                    modified_ms: 1_255_369_830_000,
                },
                Listed {
                    key: "p/blobs/a&b".into(),
                    size: 0,
                    modified_ms: 1_709_164_801_500,
                },
            ]
        );
        let empty = "<ListBucketResult><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>\
                     </ListBucketResult>";
        assert_eq!(parse_list(empty).expect("parse"), (Vec::new(), false));
        assert!(parse_list("<Contents><Key>k</Key><Size>1</Size></Contents>").is_err());
        assert!(rfc3339_ms("yesterday").is_err());
    }
}
