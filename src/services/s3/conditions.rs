//! Conditional requests: `If-Match`, `If-None-Match`, `If-Modified-Since` and
//! `If-Unmodified-Since` on reads, their `x-amz-copy-source-if-*` forms on copies, and the
//! preconditions of conditional writes. s3s parses the headers; nothing in s3s or s3s-fs
//! evaluates them.

use std::time::SystemTime;

use s3s::dto::{ETag, ETagCondition, Timestamp, TimestampFormat};
use s3s::{S3Error, S3ErrorCode, s3_error};

/// The four conditions of one request, as sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

/// What the conditions say about the current object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Proceed,
    /// 304 on GET/HEAD.
    NotModified,
    /// 412.
    PreconditionFailed,
}

/// Whether `condition` names the object whose ETag is `e_tag` (without quotes). Weak and strong
/// forms compare by value, as S3 does.
fn names(condition: &ETagCondition, e_tag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(tag) => tag.value() == e_tag,
    }
}

/// HTTP dates have whole seconds; an object modified at 10:00:00.7 was not modified since 10:00:00.
fn seconds(time: SystemTime) -> i64 {
    time::OffsetDateTime::from(time).unix_timestamp()
}

fn since(timestamp: &Timestamp) -> i64 {
    time::OffsetDateTime::from(timestamp.clone()).unix_timestamp()
}

impl Conditions<'_> {
    /// S3's order: If-Match, then If-Unmodified-Since (ignored when If-Match holds), then
    /// If-None-Match, then If-Modified-Since (ignored when If-None-Match is present). A failed
    /// If-Match or If-Unmodified-Since wins over 304.
    pub fn evaluate(&self, e_tag: &str, modified: SystemTime) -> Outcome {
        let modified = seconds(modified);
        match self.if_match {
            Some(condition) if !names(condition, e_tag) => return Outcome::PreconditionFailed,
            Some(_) => {}
            None => {
                if self
                    .if_unmodified_since
                    .is_some_and(|time| modified > since(time))
                {
                    return Outcome::PreconditionFailed;
                }
            }
        }
        match self.if_none_match {
            Some(condition) if names(condition, e_tag) => Outcome::NotModified,
            Some(_) => Outcome::Proceed,
            None => {
                if self
                    .if_modified_since
                    .is_some_and(|time| modified <= since(time))
                {
                    Outcome::NotModified
                } else {
                    Outcome::Proceed
                }
            }
        }
    }

    /// The error a GET or HEAD answers, if any; a 304 carries the object's ETag and
    /// Last-Modified as S3's does.
    pub fn check_read(&self, e_tag: &str, modified: SystemTime) -> Result<(), S3Error> {
        match self.evaluate(e_tag, modified) {
            Outcome::Proceed => Ok(()),
            Outcome::PreconditionFailed => Err(precondition_failed()),
            Outcome::NotModified => {
                let mut error = S3Error::new(S3ErrorCode::NotModified);
                let mut headers = http::HeaderMap::new();
                if let Ok(value) = ETag::Strong(e_tag.to_owned()).to_http_header() {
                    headers.insert(http::header::ETAG, value);
                }
                let mut date = Vec::new();
                if Timestamp::from(modified)
                    .format(TimestampFormat::HttpDate, &mut date)
                    .is_ok()
                    && let Ok(value) = http::HeaderValue::from_bytes(&date)
                {
                    headers.insert(http::header::LAST_MODIFIED, value);
                }
                error.set_headers(headers);
                Err(error)
            }
        }
    }

    /// The error a copy answers for its `x-amz-copy-source-if-*` conditions: every failure
    /// is 412 (S3 never answers 304 to a copy).
    pub fn check_copy_source(&self, e_tag: &str, modified: SystemTime) -> Result<(), S3Error> {
        match self.evaluate(e_tag, modified) {
            Outcome::Proceed => Ok(()),
            Outcome::NotModified | Outcome::PreconditionFailed => Err(precondition_failed()),
        }
    }
}

pub fn precondition_failed() -> S3Error {
    s3_error!(
        PreconditionFailed,
        "At least one of the pre-conditions you specified did not hold"
    )
}

/// The precondition of a conditional PUT, checked under the key's lock right before the new
/// object replaces the old one, so that two racing writers cannot both see "absent".
#[derive(Debug, Clone)]
pub enum WriteCondition {
    /// `If-None-Match: *`: only if no object has the key.
    Absent,
    /// `If-Match: <etag>`: only if the current object has this ETag.
    Matches(String),
}

impl WriteCondition {
    pub fn from_headers(
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
    ) -> Result<Option<WriteCondition>, S3Error> {
        match (if_match, if_none_match) {
            (_, Some(ETagCondition::Any)) => Ok(Some(WriteCondition::Absent)),
            (_, Some(ETagCondition::ETag(_))) => Err(s3_error!(
                NotImplemented,
                "If-None-Match on a PUT supports only `*`"
            )),
            (Some(ETagCondition::ETag(tag)), None) => {
                Ok(Some(WriteCondition::Matches(tag.value().to_owned())))
            }
            (Some(ETagCondition::Any), None) => Ok(Some(WriteCondition::Matches(String::new()))),
            (None, None) => Ok(None),
        }
    }

    /// Check against the current object's ETag (`None`: no object).
    pub fn check(&self, current: Option<&str>) -> Result<(), S3Error> {
        match (self, current) {
            (WriteCondition::Absent, None) => Ok(()),
            (WriteCondition::Absent, Some(_)) => Err(precondition_failed()),
            (WriteCondition::Matches(_), None) => Err(s3_error!(
                NoSuchKey,
                "If-Match was given but no object has this key"
            )),
            // `If-Match: *` is stored as an empty tag: any existing object.
            (WriteCondition::Matches(wanted), Some(e_tag)) => {
                if wanted.is_empty() || wanted == e_tag {
                    Ok(())
                } else {
                    Err(precondition_failed())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> Timestamp {
        Timestamp::from(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn s3_precedence() {
        let tag = |s: &str| ETagCondition::ETag(ETag::Strong(s.to_owned()));
        let (right, wrong) = (tag("abc"), tag("xyz"));
        let modified = UNIX_EPOCH + Duration::from_millis(1_000_700);
        let (before, same, after) = (at(900), at(1000), at(1100));
        let case = |c: Conditions<'_>| c.evaluate("abc", modified);
        // If-Match true wins over a failing If-Unmodified-Since.
        assert_eq!(
            case(Conditions {
                if_match: Some(&right),
                if_unmodified_since: Some(&before),
                ..Default::default()
            }),
            Outcome::Proceed
        );
        assert_eq!(
            case(Conditions {
                if_unmodified_since: Some(&before),
                ..Default::default()
            }),
            Outcome::PreconditionFailed
        );
        // Same second: not modified since, and unmodified since.
        assert_eq!(
            case(Conditions {
                if_modified_since: Some(&same),
                if_unmodified_since: Some(&same),
                ..Default::default()
            }),
            Outcome::NotModified
        );
        // If-None-Match false (tag matches) gives 304 even when modified since.
        assert_eq!(
            case(Conditions {
                if_none_match: Some(&right),
                if_modified_since: Some(&before),
                ..Default::default()
            }),
            Outcome::NotModified
        );
        // If-None-Match true: If-Modified-Since is ignored.
        assert_eq!(
            case(Conditions {
                if_none_match: Some(&wrong),
                if_modified_since: Some(&after),
                ..Default::default()
            }),
            Outcome::Proceed
        );
        // 412 wins over 304.
        assert_eq!(
            case(Conditions {
                if_match: Some(&wrong),
                if_none_match: Some(&right),
                ..Default::default()
            }),
            Outcome::PreconditionFailed
        );
    }
}
