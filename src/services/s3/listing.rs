//! Bucket listings (ListObjects v1 and v2): one page over sorted keys (prefix, delimiter
//! roll-up, resume point, max-keys), URL encoding of the answer, continuation tokens, owners.

use std::sync::Arc;

use s3s::dto::*;
use s3s::{S3Response, S3Result, s3_error};

use super::backend::{Backend, timestamp};
use super::storage;

/// One entry of a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Index into the key slice given to [`page`].
    Object(usize),
    CommonPrefix(String),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Item>,
    pub is_truncated: bool,
    /// The key or common prefix of the last item, where the next page resumes (when truncated).
    pub next: Option<String>,
}

/// What a listing asks for.
#[derive(Debug, Default)]
pub struct Query<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    /// Only keys after this (ListObjectsV2 `start-after`).
    pub start_after: Option<&'a str>,
    /// Only entries (keys or common prefixes) after this (marker / continuation token).
    pub resume_after: Option<&'a str>,
    pub max_keys: usize,
}

/// Page through `keys`, which must be sorted and free of duplicates.
pub fn page(keys: &[String], query: &Query<'_>) -> Page {
    let mut result = Page::default();
    let first = keys.partition_point(|k| k.as_str() < query.prefix);
    for (index, key) in keys.iter().enumerate().skip(first) {
        let Some(rest) = key.strip_prefix(query.prefix) else {
            break;
        };
        if query.start_after.is_some_and(|after| key.as_str() <= after) {
            continue;
        }
        let common_prefix = query.delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            rest.find(d)
                .map(|at| format!("{}{}", query.prefix, &rest[..at + d.len()]))
        });
        let id = common_prefix.as_deref().unwrap_or(key.as_str());
        if query.resume_after.is_some_and(|after| id <= after) {
            continue;
        }
        if let (Some(cp), Some(Item::CommonPrefix(last))) = (&common_prefix, result.items.last())
            && cp == last
        {
            continue;
        }
        if result.items.len() >= query.max_keys {
            result.is_truncated = query.max_keys > 0;
            break;
        }
        result.next = Some(id.to_owned());
        result.items.push(match common_prefix {
            Some(cp) => Item::CommonPrefix(cp),
            None => Item::Object(index),
        });
    }
    if !result.is_truncated {
        result.next = None;
    }
    result
}

impl Backend {
    /// One page of `bucket` as objects (with size, ETag, date) and common prefixes.
    async fn list(
        &self,
        bucket: &str,
        query: &Query<'_>,
        with_owner: bool,
    ) -> S3Result<(Vec<Object>, Vec<CommonPrefix>, Page)> {
        let bucket_dir = self.require_bucket(bucket)?;
        let prefix = query.prefix.to_owned();
        let mut found = self
            .blocking("list bucket", move || {
                storage::walk_keys(&bucket_dir, &prefix)
            })
            .await?;
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let keys: Vec<String> = found.iter().map(|(k, _)| k.clone()).collect();
        let page = page(&keys, query);
        let mut wanted = Vec::new();
        let mut prefixes = Vec::new();
        for item in &page.items {
            match item {
                Item::Object(i) => wanted.push(found[*i].clone()),
                Item::CommonPrefix(p) => prefixes.push(CommonPrefix {
                    prefix: Some(p.clone()),
                }),
            }
        }
        let layout = Arc::clone(&self.layout);
        let bucket = bucket.to_owned();
        let objects = self
            .blocking("list bucket", move || {
                let mut objects = Vec::with_capacity(wanted.len());
                for (key, path) in wanted {
                    // The object may be deleted while we list; skip it then.
                    let Ok(stat) = fs_err::metadata(&path) else {
                        continue;
                    };
                    let meta_path = layout.meta_path(&bucket, &key);
                    let meta = match storage::read_meta(&meta_path).ok().flatten() {
                        Some(meta) if meta.describes(&stat) => Some(meta),
                        _ => storage::rebuild_meta(&layout, &path, &meta_path).ok(),
                    };
                    objects.push(Object {
                        key: Some(key),
                        size: Some(i64::try_from(stat.len()).unwrap_or(i64::MAX)),
                        last_modified: timestamp(stat.modified()),
                        e_tag: meta.map(|m| ETag::Strong(m.e_tag)),
                        storage_class: Some(ObjectStorageClass::from_static(
                            ObjectStorageClass::STANDARD,
                        )),
                        owner: with_owner.then(super::acl::owner),
                        ..Default::default()
                    });
                }
                Ok(objects)
            })
            .await?;
        Ok((objects, prefixes, page))
    }

    pub(super) async fn list_objects_v2(
        &self,
        input: ListObjectsV2Input,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let resume = input
            .continuation_token
            .as_deref()
            .map(token_decode)
            .transpose()?;
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let query = Query {
            prefix: input.prefix.as_deref().unwrap_or(""),
            delimiter: delimiter.as_deref(),
            start_after: input.start_after.as_deref(),
            resume_after: resume.as_deref(),
            max_keys: max_keys(input.max_keys)?,
        };
        let with_owner = input.fetch_owner.unwrap_or(false);
        let (mut objects, mut prefixes, page) =
            self.list(&input.bucket, &query, with_owner).await?;
        let encode = wants_url_encoding(input.encoding_type.as_ref());
        if encode {
            encode_listing(&mut objects, &mut prefixes);
        }
        let key_count = i32::try_from(objects.len() + prefixes.len()).unwrap_or(i32::MAX);
        let text = |s: Option<String>| if encode { s.map(|s| url_encode(&s)) } else { s };
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: text(Some(input.prefix.clone().unwrap_or_default())),
            delimiter: text(delimiter.clone()),
            start_after: text(input.start_after.clone()),
            max_keys: Some(i32::try_from(query.max_keys).unwrap_or(1000)),
            key_count: Some(key_count),
            is_truncated: Some(page.is_truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next.as_deref().map(token_encode),
            encoding_type: input.encoding_type,
            contents: (!objects.is_empty()).then_some(objects),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_v1(
        &self,
        input: ListObjectsInput,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let query = Query {
            prefix: input.prefix.as_deref().unwrap_or(""),
            delimiter: delimiter.as_deref(),
            start_after: None,
            resume_after: input.marker.as_deref().filter(|m| !m.is_empty()),
            max_keys: max_keys(input.max_keys)?,
        };
        // ListObjects (v1) always names each object's owner.
        let (mut objects, mut prefixes, page) = self.list(&input.bucket, &query, true).await?;
        let encode = wants_url_encoding(input.encoding_type.as_ref());
        if encode {
            encode_listing(&mut objects, &mut prefixes);
        }
        let text = |s: Option<String>| if encode { s.map(|s| url_encode(&s)) } else { s };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: text(Some(input.prefix.clone().unwrap_or_default())),
            delimiter: text(delimiter.clone()),
            marker: text(Some(input.marker.clone().unwrap_or_default())),
            max_keys: Some(i32::try_from(query.max_keys).unwrap_or(1000)),
            is_truncated: Some(page.is_truncated),
            next_marker: text(page.next),
            encoding_type: input.encoding_type,
            contents: (!objects.is_empty()).then_some(objects),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            ..Default::default()
        }))
    }
}

fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

fn wants_url_encoding(e: Option<&EncodingType>) -> bool {
    e.is_some_and(|e| e.as_str().eq_ignore_ascii_case("url"))
}

fn encode_listing(objects: &mut [Object], prefixes: &mut [CommonPrefix]) {
    for o in objects {
        o.key = o.key.as_deref().map(url_encode);
    }
    for p in prefixes {
        p.prefix = p.prefix.as_deref().map(url_encode);
    }
}

fn token_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn token_decode(s: &str) -> S3Result<String> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(1000).min(1000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn delimiter_pages_resume_after_common_prefix() {
        let keys = keys(&["a", "b/1", "b/2", "c/1", "d"]);
        let q = Query {
            delimiter: Some("/"),
            max_keys: 2,
            ..Query::default()
        };
        let p1 = page(&keys, &q);
        assert_eq!(
            p1.items,
            vec![Item::Object(0), Item::CommonPrefix("b/".into())]
        );
        assert_eq!(p1.next.as_deref(), Some("b/"));
        let q2 = Query {
            resume_after: p1.next.as_deref(),
            ..q
        };
        let p2 = page(&keys, &q2);
        assert_eq!(
            p2.items,
            vec![Item::CommonPrefix("c/".into()), Item::Object(4)]
        );
        assert!(!p2.is_truncated);
    }
}
