//! Loading the facts once from a vault and running every check.

use crate::check::Check;
use crate::error::Result;
use crate::facts::{BackupFileFacts, CertificateFacts, Facts, LegacyScan, StorageFacts};
use crate::report::Report;
use rekey_core::ids::{PrincipalId, RecordId, Subject};
use rekey_core::model::{MigrationState, Principal, PrincipalKind, Timestamp, UserStatus};
use rekey_keys::{KeyDir, KeyFileState};
use rekey_storage::{Backend, Vault};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Grants read per query while scanning the legacy data.
const GRANT_PAGE: u64 = 1000;
/// Record ids read per query.
const RECORD_PAGE: u64 = 5000;
/// Principals read per query.
const PRINCIPAL_PAGE: u64 = 500;

/// What the runner is told besides the vault.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// When preparation began. `None`: the time recorded in the audit log
    /// by the first preflight run (see [`crate::begin_preparation`]); the
    /// runner records it now if it was never recorded.
    pub preparation_started_at: Option<Timestamp>,
    /// The server's key directory, to look for each certificate's private
    /// key. `None`: not looked for (the certificates check blocks if there
    /// are certificates).
    pub key_dir: Option<KeyDir>,
    /// A backup file to compare with the digests recorded by `rekey cert
    /// backup` (no passphrase needed: the digest is of the encrypted file).
    pub backup_file: Option<PathBuf>,
    /// "Now", for tests; `None`: the system clock.
    pub now: Option<Timestamp>,
    /// The target the migration will move keys to (`rekey start
    /// --target-scheme`): the new grants' size depends on it.
    pub target: rekey_core::Target,
}

/// Loads the facts from the vault once, runs every check, and returns the
/// report. Reads only, except that the first run records when preparation
/// began (an audit event) if [`Options::preparation_started_at`] is `None`.
pub async fn run(vault: &Vault, options: &Options) -> Result<Report> {
    let facts = load(vault, options).await?;
    Ok(run_checks(&facts, &crate::checks::all()))
}

/// Runs the given checks on already loaded facts.
#[must_use]
pub fn run_checks(facts: &Facts, checks: &[Box<dyn Check>]) -> Report {
    Report {
        checked_at: facts.now,
        results: checks.iter().map(|c| c.run(facts)).collect(),
    }
}

/// Every principal, by migration state then id.
pub(crate) async fn all_principals(vault: &Vault) -> Result<Vec<Principal>> {
    let mut out = Vec::new();
    for state in MigrationState::ALL {
        let mut after = None;
        loop {
            let page = vault
                .principals_in_state(*state, after, PRINCIPAL_PAGE)
                .await?;
            let full = page.len() as u64 == PRINCIPAL_PAGE;
            after = page.last().map(|p| p.id);
            out.extend(page);
            if !full {
                break;
            }
        }
    }
    Ok(out)
}

/// Loads everything the checks look at.
pub async fn load(vault: &Vault, options: &Options) -> Result<Facts> {
    let now = options.now.unwrap_or_else(Timestamp::now);
    let preparation_started_at = match options.preparation_started_at {
        Some(t) => t,
        None => crate::actions::begin_preparation_at(vault, "rekey preflight", now).await?,
    };
    let mut facts = Facts::new(now);
    facts.target = options.target;
    facts.preparation_started_at = preparation_started_at;
    facts.settings = vault.settings().await?;
    facts.components = vault.components().await?;
    facts.devices = vault.devices().await?;
    facts.servers = vault.servers().await?;
    facts.directory_profiles = vault.directory_profiles().await?;
    for status in [UserStatus::Deactivated, UserStatus::Deleted] {
        facts
            .unpurged_users
            .extend(vault.users_by_status(status).await?);
    }
    // Not recorded by the vault yet (see the crate docs).
    facts.e2ee_logins = None;

    let principals = all_principals(vault).await?;
    facts.names = principals.iter().map(|p| (p.id, p.name.clone())).collect();
    // A completed vault migrates again: what the next run re-wraps is the
    // completed run's keys and grants.
    let again = vault.migration().await?.phase == rekey_core::model::Phase::Completed;
    facts.legacy = scan_legacy(vault, &principals, again).await?;
    facts.roles_without_active_member = roles_without_active_member(vault, &principals).await?;

    facts.key_dir = options.key_dir.as_ref().map(|k| k.path().to_path_buf());
    for certificate in vault.certificates().await? {
        let key_file = match &options.key_dir {
            None => KeyFileState::NotChecked,
            Some(dir) => dir.check_any(&certificate.fingerprint),
        };
        facts.certificates.push(CertificateFacts {
            owner: facts.name_of(certificate.principal),
            certificate,
            created_at: None,
            key_file,
        });
    }
    facts.backup_file = options.backup_file.as_ref().map(|path| BackupFileFacts {
        path: path.clone(),
        digest: std::fs::read(path)
            .map(|bytes| hex::encode(Sha256::digest(&bytes)))
            .map_err(|e| e.to_string()),
    });
    facts.storage = storage_facts(vault);
    Ok(facts)
}

/// Reads every principal's key pairs and legacy grants, page by page, then
/// every record id, to find records no legacy grant opens. A principal
/// whose rows the vault cannot parse is noted, not fatal.
///
/// The two halves of the principals are scanned at once, on two
/// connections: each query waits on the database, so one scan keeps one
/// core busy at most (on the 10,000-user demo vault, 1.4 million grants,
/// the scan was most of preflight's 31 s and of `start`'s wait besides the
/// server's RSA work).
async fn scan_legacy(vault: &Vault, principals: &[Principal], again: bool) -> Result<LegacyScan> {
    let (first, second) = principals.split_at(principals.len() / 2);
    let (a, b) = futures_util::future::join(
        scan_principals(vault, first, again),
        scan_principals(vault, second, again),
    )
    .await;
    let (mut scan, mut granted) = a?;
    let (rest, granted_rest) = b?;
    scan.absorb(rest);
    granted.extend(granted_rest);
    let mut orphans = Vec::new();
    let mut after = None;
    loop {
        let page = vault.record_ids_page(after, RECORD_PAGE).await?;
        let full = page.len() as u64 == RECORD_PAGE;
        after = page.last().copied();
        orphans.extend(
            page.iter()
                .filter(|r| !granted.contains(r))
                .map(ToString::to_string),
        );
        if !full {
            break;
        }
    }
    scan.records_without_grant = Some(orphans);
    Ok(scan)
}

/// The scan of `principals`, and the records their legacy grants open.
async fn scan_principals(
    vault: &Vault,
    principals: &[Principal],
    again: bool,
) -> Result<(LegacyScan, HashSet<RecordId>)> {
    let mut scan = LegacyScan {
        again,
        ..LegacyScan::default()
    };
    let mut granted: HashSet<RecordId> = HashSet::new();
    for p in principals {
        let key_pairs = match vault.key_pairs(p.id).await {
            Ok(k) => Ok(k),
            Err(rekey_storage::Error::Corrupt { what, detail }) => Err(format!("{what}: {detail}")),
            Err(e) => return Err(e.into()),
        };
        let mut grants = Vec::new();
        let mut grants_error = None;
        let mut after = None;
        loop {
            match vault
                .grants_page_where_legacy(p.id, !again, after, GRANT_PAGE)
                .await
            {
                Ok(page) => {
                    let full = page.len() as u64 == GRANT_PAGE;
                    granted.extend(page.iter().filter_map(|g| match g.subject {
                        Subject::RecordKey(r) => Some(r),
                        Subject::PrivateKey(_) => None,
                    }));
                    after = page.last().map(|g| g.id);
                    grants.extend(page);
                    if !full {
                        break;
                    }
                }
                Err(rekey_storage::Error::Corrupt { what, detail }) => {
                    grants_error = Some(format!("{what}: {detail}"));
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        scan.observe(
            p,
            key_pairs.as_deref().map_err(Clone::clone),
            &grants,
            grants_error,
        );
    }
    Ok((scan, granted))
}

/// Names of the roles none of whose members is an active user (purged,
/// deactivated or deleted members, or none): nobody could ever open such a
/// role's key to migrate it.
async fn roles_without_active_member(
    vault: &Vault,
    principals: &[Principal],
) -> Result<Vec<String>> {
    let roles: Vec<&Principal> = principals
        .iter()
        .filter(|p| p.kind == PrincipalKind::Role && p.migration != MigrationState::Exempt)
        .collect();
    if roles.is_empty() {
        return Ok(Vec::new());
    }
    let active: HashSet<PrincipalId> = principals
        .iter()
        .filter(|p| p.kind == PrincipalKind::User && p.status == UserStatus::Active)
        .map(|p| p.id)
        .collect();
    let ids: Vec<PrincipalId> = roles.iter().map(|r| r.id).collect();
    let reachable: HashSet<PrincipalId> = vault
        .memberships_of_roles(&ids)
        .await?
        .into_iter()
        .filter(|(_, member)| active.contains(member))
        .map(|(role, _)| role)
        .collect();
    Ok(roles
        .into_iter()
        .filter(|r| !reachable.contains(&r.id))
        .map(|r| r.name.clone())
        .collect())
}

/// Where the vault lives, and free space there for a SQLite file.
fn storage_facts(vault: &Vault) -> StorageFacts {
    match vault.backend() {
        Backend::Sqlite => match sqlite_path(vault.url()) {
            None => StorageFacts::InMemory,
            Some(path) => {
                let free_bytes = free_space(&path);
                StorageFacts::SqliteFile { path, free_bytes }
            }
        },
        Backend::Postgres => StorageFacts::Remote {
            backend: "PostgreSQL".to_owned(),
        },
        Backend::MySql => StorageFacts::Remote {
            backend: "MySQL/MariaDB".to_owned(),
        },
        _ => StorageFacts::Remote {
            backend: "database server".to_owned(),
        },
    }
}

/// The file of a `sqlite://PATH?…` or `sqlite:PATH` URL; `None` for an
/// in-memory database.
pub(crate) fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Bytes available to an unprivileged writer on the file system holding
/// `file` (the file itself, or its directory if it does not exist yet).
pub(crate) fn free_space(file: &Path) -> Result<u64, String> {
    let target = if file.exists() {
        file.to_path_buf()
    } else {
        match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let st = nix::sys::statvfs::statvfs(&target).map_err(|e| e.desc().to_owned())?;
    #[allow(clippy::useless_conversion)]
    let (avail, frag) = (
        u64::from(st.blocks_available()),
        u64::from(st.fragment_size()),
    );
    Ok(avail.saturating_mul(frag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/v.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/v.db"))
        );
        assert_eq!(sqlite_path("sqlite://v.db"), Some(PathBuf::from("v.db")));
        assert_eq!(
            sqlite_path("sqlite:v.db?mode=rw"),
            Some(PathBuf::from("v.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(
            sqlite_path("sqlite://file.db?mode=memory&cache=shared"),
            None
        );
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }

    #[test]
    fn free_space_of_temp_dir() {
        let free = free_space(&std::env::temp_dir().join("no-such-file.db")).unwrap();
        assert!(free > 0);
    }
}
