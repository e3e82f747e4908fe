//! The unprivileged account PostgreSQL runs as when opsbox itself runs as root.

use nix::unistd::{Uid, User};

use super::SupervisorError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl Account {
    /// `None` when opsbox does not run as root (processes keep our own account).
    /// As root: `OPSBOX_POSTGRES_USER` if set, else the `postgres` system account if it exists,
    /// else `nobody`.
    pub fn unprivileged_for_root(purpose: &str) -> Result<Option<Account>, SupervisorError> {
        if !Uid::effective().is_root() {
            return Ok(None);
        }
        let candidates: Vec<String> = match std::env::var("OPSBOX_POSTGRES_USER") {
            Ok(name) if !name.is_empty() => vec![name],
            _ => vec!["postgres".into(), "nobody".into()],
        };
        for name in &candidates {
            if let Ok(Some(user)) = User::from_name(name)
                && !user.uid.is_root()
            {
                return Ok(Some(Account {
                    name: user.name,
                    uid: user.uid.as_raw(),
                    gid: user.gid.as_raw(),
                }));
            }
        }
        Err(SupervisorError::NoAccount {
            purpose: purpose.to_string(),
            looked_for: candidates.join(", "),
        })
    }
}
