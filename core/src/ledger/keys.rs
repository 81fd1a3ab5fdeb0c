//! The ledger's keys. `|` separates parts: it is in no repository name, tag or digest, and
//! sorts after every character they use, so a prefix `link|a|` never reaches `link|a/b|…`.

use crate::model::Digest;

pub(super) const OUTBOX_COUNTER: &str = "meta|outbox-counter";
pub(super) const BACKFILL: &str = "meta|backfill";
pub(super) const SCHEMA: &str = "meta|schema";
pub(super) const BLOB: &str = "blob|";
pub(super) const UNLINKED: &str = "unlinked|";
pub(super) const OUTBOX: &str = "outbox|";
pub(super) const UNREF: &str = "unref|";

pub(super) fn blob_key(d: &Digest) -> String {
    format!("{BLOB}{d}")
}
pub(super) fn unlinked_key(d: &Digest) -> String {
    format!("{UNLINKED}{d}")
}
pub(super) fn with_prefix(d: &Digest) -> String {
    format!("with|{d}|")
}
pub(super) fn with_key(d: &Digest, repo: &str) -> String {
    format!("with|{d}|{repo}")
}
pub(super) fn link_prefix(repo: &str) -> String {
    format!("link|{repo}|")
}
pub(super) fn link_key(repo: &str, d: &Digest) -> String {
    format!("link|{repo}|{d}")
}
pub(super) fn unref_key(repo: &str, d: &Digest) -> String {
    format!("{UNREF}{repo}|{d}")
}
pub(super) fn manifest_prefix(repo: &str) -> String {
    format!("manifest|{repo}|")
}
pub(super) fn manifest_key(repo: &str, d: &Digest) -> String {
    format!("manifest|{repo}|{d}")
}
pub(super) fn tag_prefix(repo: &str) -> String {
    format!("tag|{repo}|")
}
pub(super) fn tag_key(repo: &str, tag: &str) -> String {
    format!("tag|{repo}|{tag}")
}
pub(super) fn project_blob_key(project: &str, d: &Digest) -> String {
    format!("pblob|{project}|{d}")
}
pub(super) fn usage_key(project: &str) -> String {
    format!("usage|{project}")
}
pub(super) fn outbox_key(seq: &str) -> String {
    format!("{OUTBOX}{seq}")
}
