//! Checksums of uploaded bodies: the hashers a request asks for, trailer checksums of
//! aws-chunked uploads, and the comparison with what the client announced (Content-MD5, x-amz-checksum-*).

use s3s::dto::{Checksum, ChecksumAlgorithm};
use s3s::{S3Result, s3_error};

/// The checksums a request announced (headers or trailers) and the hasher that checks them.
pub fn checksum_hasher(
    announced: &Checksum,
    algorithm: Option<&ChecksumAlgorithm>,
) -> S3Result<s3s::checksum::ChecksumHasher> {
    let mut hasher = s3s::checksum::ChecksumHasher::default();
    let mut enable = |name: &str| -> S3Result<()> {
        match name {
            ChecksumAlgorithm::CRC32 => hasher.crc32 = Some(Default::default()),
            ChecksumAlgorithm::CRC32C => hasher.crc32c = Some(Default::default()),
            ChecksumAlgorithm::SHA1 => hasher.sha1 = Some(Default::default()),
            ChecksumAlgorithm::SHA256 => hasher.sha256 = Some(Default::default()),
            ChecksumAlgorithm::CRC64NVME => hasher.crc64nvme = Some(Default::default()),
            _ => return Err(s3_error!(NotImplemented, "Unsupported checksum algorithm")),
        }
        Ok(())
    };
    for (value, name) in [
        (&announced.checksum_crc32, ChecksumAlgorithm::CRC32),
        (&announced.checksum_crc32c, ChecksumAlgorithm::CRC32C),
        (&announced.checksum_sha1, ChecksumAlgorithm::SHA1),
        (&announced.checksum_sha256, ChecksumAlgorithm::SHA256),
        (&announced.checksum_crc64nvme, ChecksumAlgorithm::CRC64NVME),
    ] {
        if value.is_some() {
            enable(name)?;
        }
    }
    if let Some(algorithm) = algorithm {
        enable(algorithm.as_str())?;
    }
    Ok(hasher)
}

/// Fill in checksums sent as trailers (aws-chunked uploads) after the body was read.
pub fn add_trailers(
    announced: &mut Checksum,
    trailers: Option<s3s::TrailingHeaders>,
) -> S3Result<()> {
    let Some(trailers) = trailers.and_then(|t| t.take()) else {
        return Ok(());
    };
    let slots = [
        ("x-amz-checksum-crc32", &mut announced.checksum_crc32),
        ("x-amz-checksum-crc32c", &mut announced.checksum_crc32c),
        ("x-amz-checksum-sha1", &mut announced.checksum_sha1),
        ("x-amz-checksum-sha256", &mut announced.checksum_sha256),
        (
            "x-amz-checksum-crc64nvme",
            &mut announced.checksum_crc64nvme,
        ),
    ];
    for (name, slot) in slots {
        if let Some(value) = trailers.get(name) {
            *slot = Some(
                value
                    .to_str()
                    .map_err(|_| s3_error!(InvalidArgument, "bad {name} trailer"))?
                    .to_owned(),
            );
        }
    }
    Ok(())
}

pub fn verify_checksums(announced: &Checksum, computed: &Checksum) -> S3Result<()> {
    let pairs = [
        ("crc32", &announced.checksum_crc32, &computed.checksum_crc32),
        (
            "crc32c",
            &announced.checksum_crc32c,
            &computed.checksum_crc32c,
        ),
        ("sha1", &announced.checksum_sha1, &computed.checksum_sha1),
        (
            "sha256",
            &announced.checksum_sha256,
            &computed.checksum_sha256,
        ),
        (
            "crc64nvme",
            &announced.checksum_crc64nvme,
            &computed.checksum_crc64nvme,
        ),
    ];
    for (name, expected, actual) in pairs {
        if let Some(expected) = expected
            && actual.as_ref() != Some(expected)
        {
            return Err(s3_error!(
                BadDigest,
                "The {name} checksum you specified did not match the data received"
            ));
        }
    }
    Ok(())
}

pub fn verify_content_md5(content_md5: Option<&str>, md5: &[u8]) -> S3Result<()> {
    use base64::Engine as _;
    let Some(content_md5) = content_md5 else {
        return Ok(());
    };
    let expected = base64::engine::general_purpose::STANDARD
        .decode(content_md5.trim())
        .map_err(|_| {
            s3_error!(
                InvalidDigest,
                "The Content-MD5 you specified is not valid base64"
            )
        })?;
    if expected.len() != 16 {
        return Err(s3_error!(
            InvalidDigest,
            "The Content-MD5 you specified is not an MD5"
        ));
    }
    if expected != md5 {
        return Err(s3_error!(
            BadDigest,
            "The Content-MD5 you specified did not match what we received"
        ));
    }
    Ok(())
}
