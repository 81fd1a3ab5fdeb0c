//! The two work lists on the sparse index `gsi1`, read the same way by both clients: each
//! gives its own `Query` of one index partition ([`IndexQuery`] → [`IndexPage`]), and the
//! walk over the shards is here.
//!
//! The unlinked blobs' shards sort like digests, so they are read in turn. The unreferenced
//! links are listed in (repository, digest) order but sharded by digest (so pushes to one
//! repository spread over the partitions), so their shards are merged: each is read a page
//! at a time, and only as far as the merge reaches.

use super::{
    UNREFERENCED_SHARDS, record_of, unlinked_index_pk, unlinked_shards, unreferenced_index_sk,
    unreferenced_shards,
};
use crate::{Item, get_n, get_s};
use std::collections::VecDeque;
use std::future::Future;
use wharf_core::ports::{BlobRecord, LinkCursor, UnreferencedLink};
use wharf_core::{Digest, StoreError};

/// One `Query` of `gsi1`: partition `pk` (`gsi1pk`), sort keys after `after` (`gsi1sk >
/// :after`), resuming at `start` (the last page's `LastEvaluatedKey`), at most `limit` items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexQuery {
    /// The index partition.
    pub pk: String,
    /// Only sort keys after this one.
    pub after: Option<String>,
    /// Where the previous page ended.
    pub start: Option<Item>,
    /// Items at most (a client may send at most 1,000).
    pub limit: usize,
}

/// What an [`IndexQuery`] found, in sort-key order, and where the next page starts.
#[derive(Clone, Debug, Default)]
pub struct IndexPage {
    /// The items.
    pub items: Vec<Item>,
    /// `LastEvaluatedKey`, if there is more.
    pub next: Option<Item>,
}

/// `unlinked_blobs`: the `UNLINKED#` shards in digest order, from the one `after` is in.
/// The index is eventually consistent: a blob linked a moment ago may still be listed
/// (collection checks the record before marking it).
pub async fn unlinked_blobs<F, Fut>(
    after: Option<&Digest>,
    limit: usize,
    mut query: F,
) -> Result<Vec<BlobRecord>, StoreError>
where
    F: FnMut(IndexQuery) -> Fut,
    Fut: Future<Output = Result<IndexPage, StoreError>>,
{
    let mut out = Vec::new();
    let first = after.map(unlinked_index_pk);
    for shard in unlinked_shards() {
        if first.as_ref().is_some_and(|f| shard < *f) {
            continue;
        }
        let mut q = IndexQuery {
            after: after
                .filter(|_| first.as_ref() == Some(&shard))
                .map(Digest::to_string),
            pk: shard,
            start: None,
            limit: 0,
        };
        loop {
            if out.len() >= limit {
                return Ok(out);
            }
            q.limit = limit - out.len();
            let page = query(q.clone()).await?;
            for item in page.items {
                let d = get_s(&item, "gsi1sk")
                    .and_then(|d| d.parse::<Digest>().ok())
                    .ok_or_else(|| bad("unlinked index item without a digest"))?;
                out.push(record_of(&d, &item));
            }
            match page.next {
                Some(k) => q.start = Some(k),
                None => break,
            }
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// `unreferenced_links`: the `UNREFERENCED#` shards merged by sort key (the (repository,
/// digest) order), after `after`. Each shard is read a page at a time (about its share of
/// `limit`), and again only when the merge has taken all it read. Eventually consistent:
/// `collect_link` checks the link again in its own write.
pub async fn unreferenced_links<F, Fut>(
    after: Option<&LinkCursor>,
    limit: usize,
    mut query: F,
) -> Result<Vec<UnreferencedLink>, StoreError>
where
    F: FnMut(IndexQuery) -> Fut,
    Fut: Future<Output = Result<IndexPage, StoreError>>,
{
    struct Shard {
        pk: String,
        read: VecDeque<(String, Item)>,
        next: Option<Item>,
        started: bool,
    }
    let after = after.map(|c| unreferenced_index_sk(&c.repo, &c.digest));
    let page = limit
        .div_ceil(UNREFERENCED_SHARDS as usize)
        .saturating_add(8)
        .min(limit);
    let mut shards: Vec<Shard> = unreferenced_shards()
        .into_iter()
        .map(|pk| Shard {
            pk,
            read: VecDeque::new(),
            next: None,
            started: false,
        })
        .collect();
    let mut out = Vec::new();
    while out.len() < limit {
        for s in &mut shards {
            while s.read.is_empty() && (!s.started || s.next.is_some()) {
                let p = query(IndexQuery {
                    pk: s.pk.clone(),
                    after: after.clone(),
                    start: s.next.take(),
                    limit: page,
                })
                .await?;
                s.started = true;
                s.next = p.next;
                for item in p.items {
                    let sk = get_s(&item, "gsi1sk")
                        .ok_or_else(|| bad("unreferenced index item without its key"))?
                        .to_owned();
                    s.read.push_back((sk, item));
                }
            }
        }
        let Some(s) = shards
            .iter_mut()
            .filter(|s| !s.read.is_empty())
            .min_by(|a, b| a.read[0].0.cmp(&b.read[0].0))
        else {
            break;
        };
        if let Some((_, item)) = s.read.pop_front() {
            out.push(unreferenced_of(&item)?);
        }
    }
    Ok(out)
}

/// The link a listed link item is.
fn unreferenced_of(item: &Item) -> Result<UnreferencedLink, StoreError> {
    let repo = get_s(item, "pk")
        .and_then(|pk| pk.strip_prefix("REPO#"))
        .ok_or_else(|| bad("unreferenced index item without its repository"))?;
    let digest = get_s(item, "sk")
        .and_then(|sk| sk.strip_prefix("BLOB#"))
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| bad("unreferenced index item without its digest"))?;
    Ok(UnreferencedLink {
        repo: repo.to_owned(),
        digest,
        size: get_n(item, "size")?,
        linked_ms: get_n(item, "linked").ok(),
    })
}

fn bad(what: &str) -> StoreError {
    StoreError::Other(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::{link_key, unreferenced_index_pk};
    use super::*;
    use crate::Attr;
    use std::collections::BTreeMap;

    fn link_item_for_test(repo: &str, d: &Digest) -> Item {
        let mut item = link_key(repo, d);
        item.insert("size".into(), Attr::N(1));
        item.insert("gsi1pk".into(), Attr::S(unreferenced_index_pk(d)));
        item.insert("gsi1sk".into(), Attr::S(unreferenced_index_sk(repo, d)));
        item
    }

    /// An index in memory: what each client's `Query` answers, with small pages.
    fn index(links: &[(&str, Digest)]) -> BTreeMap<String, Vec<Item>> {
        let mut by: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        for (repo, d) in links {
            by.entry(unreferenced_index_pk(d))
                .or_default()
                .push(link_item_for_test(repo, d));
        }
        for v in by.values_mut() {
            v.sort_by(|a, b| get_s(a, "gsi1sk").cmp(&get_s(b, "gsi1sk")));
        }
        by
    }

    fn answer(by: &BTreeMap<String, Vec<Item>>, q: IndexQuery, calls: &mut usize) -> IndexPage {
        *calls += 1;
        let sk = |i: &Item| get_s(i, "gsi1sk").unwrap_or_default().to_owned();
        let from = q.start.as_ref().map(sk).or(q.after.clone());
        let rest: Vec<Item> = by
            .get(&q.pk)
            .into_iter()
            .flatten()
            .filter(|i| from.as_ref().is_none_or(|f| sk(i) > *f))
            .cloned()
            .collect();
        let limit = q.limit.min(3);
        IndexPage {
            next: (rest.len() > limit).then(|| rest[limit - 1].clone()),
            items: rest.into_iter().take(limit).collect(),
        }
    }

    #[test]
    fn shards_are_merged_in_repository_then_digest_order() {
        let links: Vec<(&str, Digest)> = (0..60u32)
            .map(|i| {
                let repo = ["a", "a-b", "a/b", "b"][i as usize % 4];
                (repo, Digest::sha256_of(&i.to_be_bytes()))
            })
            .collect();
        let by = index(&links);
        let mut want: Vec<(String, String)> = links
            .iter()
            .map(|(r, d)| ((*r).to_owned(), d.to_string()))
            .collect();
        want.sort();
        for limit in [1, 7, 100] {
            let mut got = Vec::new();
            let mut after: Option<LinkCursor> = None;
            let mut calls = 0;
            loop {
                let page = block_on(unreferenced_links(after.as_ref(), limit, |q| {
                    std::future::ready(Ok(answer(&by, q, &mut calls)))
                }))
                .expect("list");
                let Some(last) = page.last() else { break };
                after = Some(LinkCursor {
                    repo: last.repo.clone(),
                    digest: last.digest.clone(),
                });
                assert!(page.len() <= limit);
                got.extend(page.into_iter().map(|l| (l.repo, l.digest.to_string())));
            }
            assert_eq!(got, want, "limit {limit}");
        }
    }

    /// Runs a future that never waits (the index above answers at once).
    fn block_on<T>(f: impl Future<Output = T>) -> T {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the test index never waits"),
        }
    }
}
