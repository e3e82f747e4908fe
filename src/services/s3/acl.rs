//! ACL stubs as MinIO answers them: one owner with FULL_CONTROL on everything; setting the
//! `private` ACL (or that same single grant) is accepted and changes nothing; any other grant is
//! 501 NotImplemented, because opsbox has one account and cannot honour it.

use s3s::dto::*;
use s3s::{S3Result, s3_error};

/// The owner MinIO reports for its root account (same ID and display name).
pub fn owner() -> Owner {
    Owner {
        id: Some("02d6176db174dc93cb1b899f7c6078f08654445fe8cf1b6ce98d8855f66bdbf4".to_owned()),
        display_name: Some("minio".to_owned()),
    }
}

/// The owner with FULL_CONTROL: the only ACL opsbox has.
pub fn grants() -> Grants {
    let owner = owner();
    vec![Grant {
        grantee: Some(Grantee {
            display_name: owner.display_name,
            id: owner.id,
            type_: Type::from_static(Type::CANONICAL_USER),
            email_address: None,
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }]
}

/// What a Put*Acl request asks for, in the parts that matter here.
pub struct Requested<'a> {
    pub canned: Option<&'a str>,
    pub policy: Option<&'a AccessControlPolicy>,
    pub any_grant_header: bool,
}

/// Accept what opsbox already does (private, owner FULL_CONTROL), refuse the rest with 501.
pub fn check_put(requested: &Requested<'_>) -> S3Result<()> {
    let not_implemented = || {
        s3_error!(
            NotImplemented,
            "opsbox has one account: only the private ACL (owner FULL_CONTROL) is supported"
        )
    };
    if requested.any_grant_header {
        return Err(not_implemented());
    }
    if let Some(canned) = requested.canned
        && canned != "private"
    {
        return Err(not_implemented());
    }
    if let Some(policy) = requested.policy {
        let owner_id = owner().id;
        let only_owner_full_control =
            policy
                .grants
                .as_deref()
                .unwrap_or_default()
                .iter()
                .all(|g| {
                    g.permission.as_ref().map(Permission::as_str) == Some(Permission::FULL_CONTROL)
                        && g.grantee.as_ref().is_some_and(|grantee| {
                            grantee.type_.as_str() == Type::CANONICAL_USER && grantee.id == owner_id
                        })
                });
        if !only_owner_full_control {
            return Err(not_implemented());
        }
    }
    Ok(())
}
