//! One page of a bucket listing: prefix, delimiter roll-up, resume point and max-keys over sorted keys.

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
