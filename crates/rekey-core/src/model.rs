//! The vault's domain model: plain data shared by storage, the engine and
//! the frontends. No behaviour that needs I/O.
//!
//! Every enum has a stable lower-case name (`as_str`, `FromStr`, serde) that
//! is what the database and JSON hold. Rows that carry wrapped key material
//! ([`KeyPairRecord`], [`GrantRecord`]) hold it only as an [`Envelope`] and
//! are deliberately not `Serialize`.

use crate::envelope::{Envelope, Scheme};
use crate::ids::{GrantId, KeyPairId, PrincipalId, RecordId, Subject};
use serde::{Deserialize, Serialize};

/// A name that is not one of an enum's stable names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownName {
    /// Which kind of name was expected ("phase", "user status", …).
    pub what: &'static str,
    /// The text received.
    pub value: String,
}

macro_rules! named_enum {
    (
        $(#[$doc:meta])*
        $name:ident, $what:literal {
            $( $(#[$vdoc:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vdoc])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable name, as stored and printed.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        // By hand: the derive does not see the stable names through the
        // macro's `rename`, and would list the variants' Rust names.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $what, value: s.to_owned() }),
                }
            }
        }
    };
}

named_enum!(
    /// What kind of principal a row is.
    PrincipalKind, "principal kind" {
        /// A person who logs in.
        User => "user",
        /// A group whose members share its private key.
        Role => "role",
        /// A key the server holds itself (see [`ServiceKind`]).
        Service => "service",
    }
);

named_enum!(
    /// Which server-held service a service principal is.
    ServiceKind, "service kind" {
        /// The vault's own key.
        VaultKey => "vault_key",
        /// The key that lets administrators reset a user's password.
        PasswordResetKey => "password_reset_key",
        /// The directory master key that managed users' private keys are
        /// wrapped to.
        DirectoryMasterKey => "directory_master_key",
        /// A service whose private key is held by a server certificate.
        CertificateHeld => "certificate_held",
    }
);

named_enum!(
    /// A user's account status.
    UserStatus, "user status" {
        /// Can log in.
        Active => "active",
        /// Switched off by an administrator; can never log in as is.
        Deactivated => "deactivated",
        /// Deleted but not purged: the rows are still there.
        Deleted => "deleted",
        /// Purged: nothing left to migrate.
        Purged => "purged",
    }
);

named_enum!(
    /// How a user's private key is held.
    KeyCustody, "key custody" {
        /// Under a key-encryption key only the user can derive.
        E2ee => "e2ee",
        /// Wrapped to the directory master key the server holds.
        Managed => "managed",
    }
);

named_enum!(
    /// Where a key pair is in its life.
    KeyState, "key state" {
        /// The pre-migration (RSA) key pair.
        Legacy => "legacy",
        /// The key pair in use.
        Current => "current",
        /// Kept for reference, no longer used.
        Retired => "retired",
    }
);

named_enum!(
    /// Whether a grant existed before the migration or was written by it.
    /// Abort removes exactly the `migration` ones; finalize removes the
    /// legacy ones (the `legacy` flag, not this).
    GrantOrigin, "grant origin" {
        /// Present before the migration started.
        Legacy => "legacy",
        /// Written by the migration (new grants and membership grants).
        Migration => "migration",
        /// Written by an earlier, completed migration and legacy material
        /// of the current one (a migrated vault migrating again). Abort
        /// turns it back into `migration`; finalize deletes it.
        Earlier => "earlier",
    }
);

named_enum!(
    /// The vault-wide migration phase.
    Phase, "phase" {
        /// Before the migration: the vault is fully writable.
        Legacy => "legacy",
        /// The server migrates the keys it holds.
        ServerPhase => "server_phase",
        /// A certificate's private key is missing; waiting for an import.
        AwaitingCertificates => "awaiting_certificates",
        /// E2EE users migrate as they log in.
        UserPhase => "user_phase",
        /// Legacy material is being removed (resumable).
        Finalizing => "finalizing",
        /// Done: the vault is writable again and holds no legacy material.
        Completed => "completed",
    }
);

impl Phase {
    /// Whether the vault is read-only (except for the migration's own
    /// writes) in this phase.
    #[must_use]
    pub fn is_read_only(self) -> bool {
        matches!(
            self,
            Phase::ServerPhase | Phase::AwaitingCertificates | Phase::UserPhase | Phase::Finalizing
        )
    }
}

named_enum!(
    /// Where one principal is in the migration.
    MigrationState, "migration state" {
        /// Still holds legacy material to re-wrap.
        Pending => "pending",
        /// Re-wrapped.
        Migrated => "migrated",
        /// Can never log in to migrate (deactivated, deleted): holds up
        /// finalization until resolved.
        Blocked => "blocked",
        /// Nothing to migrate (purged).
        Exempt => "exempt",
    }
);

named_enum!(
    /// What an administrator decided about a grant that cannot be migrated.
    Resolution, "resolution" {
        /// Not decided yet: blocks finalization.
        Unresolved => "unresolved",
        /// The record was shared again to the recipient with a new grant.
        Reshared => "reshared",
        /// The administrator accepts losing the recipient's access.
        WrittenOff => "written_off",
    }
);

named_enum!(
    /// What kind of device holds offline data.
    DeviceKind, "device kind" {
        /// The offline add-on of a desktop client.
        OfflineAddon => "offline_addon",
        /// A mobile app.
        Mobile => "mobile",
    }
);

/// A moment, in milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time from the system clock (the epoch if the clock is
    /// set before 1970).
    #[must_use]
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(ms)
    }

    /// Milliseconds since the epoch.
    #[must_use]
    pub fn as_millis(self) -> i64 {
        self.0
    }
}

/// A user, a role or a server-held service.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Principal {
    /// Identifier.
    pub id: PrincipalId,
    /// User, role or service.
    pub kind: PrincipalKind,
    /// Login or display name.
    pub name: String,
    /// Account status (users; `active` for roles and services).
    pub status: UserStatus,
    /// How the private key is held (users; `managed` for services).
    pub custody: KeyCustody,
    /// Which service (service principals only).
    pub service: Option<ServiceKind>,
    /// Where the principal is in the migration.
    pub migration: MigrationState,
}

/// One key pair of a principal.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyPairRecord {
    /// Identifier.
    pub id: KeyPairId,
    /// Owner.
    pub principal: PrincipalId,
    /// The scheme the key pair serves (legacy RSA or an HPKE suite).
    pub scheme: Scheme,
    /// The public key's encoding (SPKI DER for RSA, SEC1 for EC).
    pub public_key: Vec<u8>,
    /// The private key wrapped under its owner's KEK, or `None` when the
    /// private key is carried by grants instead (roles, managed users).
    pub wrapped_private_key: Option<Envelope>,
    /// Legacy, current or retired.
    pub state: KeyState,
}

/// One wrapped key addressed to one recipient.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GrantRecord {
    /// Identifier.
    pub id: GrantId,
    /// The principal that can open it.
    pub recipient: PrincipalId,
    /// What it carries.
    pub subject: Subject,
    /// The wrapped key; its scheme is in its header.
    pub envelope: Envelope,
    /// Whether it predates the migration.
    pub origin: GrantOrigin,
    /// When it was written, if known.
    pub created_at: Option<Timestamp>,
}

/// A stored record: ciphertext under its record key. The migration never
/// touches it; it is here for seeding and the read/write API.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RecordRow {
    /// Identifier.
    pub id: RecordId,
    /// The record's encrypted content.
    pub ciphertext: Vec<u8>,
}

/// A user's membership of a role.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Membership {
    /// The role.
    pub role: PrincipalId,
    /// The member.
    pub member: PrincipalId,
}

/// A server-held key pair's public half. The private half lives in the
/// server's key directory, never in the database.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Certificate {
    /// The key pair the certificate holds.
    pub key_pair: KeyPairId,
    /// The service principal it belongs to.
    pub principal: PrincipalId,
    /// Fingerprint of the public key (hex).
    pub fingerprint: String,
    /// Digest of the latest backup verified by `rekey cert backup`.
    pub backup_digest: Option<String>,
    /// When that backup was verified.
    pub backup_verified_at: Option<Timestamp>,
}

/// A server that serves this vault.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Server {
    /// Stable name (host name or configured id).
    pub name: String,
    /// Last heartbeat.
    pub heartbeat_at: Timestamp,
    /// Fingerprints of the certificates the server holds.
    pub certificate_fingerprints: Vec<String>,
}

/// A device that can hold changes made offline.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Device {
    /// Identifier (as the client reports it).
    pub id: String,
    /// The device's user.
    pub owner: PrincipalId,
    /// Offline add-on or mobile app.
    pub kind: DeviceKind,
    /// Last completed synchronisation, if any.
    pub last_sync_at: Option<Timestamp>,
    /// Changes on the device that never reached the vault.
    pub unsynced_changes: u32,
    /// The administrator accepted losing those changes.
    pub written_off: bool,
}

/// A directory synchronisation profile (Entra ID, SCIM).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DirectoryProfile {
    /// Profile name.
    pub name: String,
    /// Directory type (`entra_id`, `scim`, …).
    pub kind: String,
    /// When its current token was issued.
    pub token_issued_at: Option<Timestamp>,
}

/// A deployed component and its version.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Component {
    /// `server`, `desktop_client`, `web_client`, …
    pub name: String,
    /// Version string as the component reports it.
    pub version: String,
}

/// The vault settings preparation looks at.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Settings {
    /// Clients may work offline.
    pub offline_access_allowed: bool,
    /// Mobile apps may sync.
    pub mobile_sync_allowed: bool,
}

/// What had to be migrated when the migration started.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct SnapshotCounts {
    /// Users to migrate.
    pub users: u64,
    /// Roles to migrate.
    pub roles: u64,
    /// Services to migrate.
    pub services: u64,
    /// Legacy grants to re-wrap.
    pub grants: u64,
}

/// The one row describing the vault-wide migration.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct MigrationRow {
    /// The vault's identity (made at `init`; every grant binding names it).
    pub vault: crate::ids::VaultId,
    /// Current phase.
    pub phase: Phase,
    /// Incremented by every transition (compare-and-swap token).
    pub version: i64,
    /// When the migration started.
    pub started_at: Option<Timestamp>,
    /// Who started it.
    pub started_by: Option<String>,
    /// What had to be migrated at start.
    pub snapshot: Option<SnapshotCounts>,
    /// The current run (set by start, cleared by abort).
    pub run: Option<crate::ids::RunId>,
    /// The target of the current run (`hpke-p256` when no run is on, and
    /// for a run started before targets were recorded).
    pub target: crate::Target,
    /// The completed migration before this run, when a migrated vault
    /// migrates again: what an abort restores.
    pub previous: Option<PreviousRun>,
}

/// A completed migration that a later run replaces (kept on the migration
/// row so an abort of the later run restores it exactly).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PreviousRun {
    /// Its run id.
    pub run: crate::ids::RunId,
    /// Its target.
    pub target: crate::Target,
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// Who started it.
    pub started_by: Option<String>,
    /// What it had to migrate.
    pub snapshot: Option<SnapshotCounts>,
    /// The run before it, if it too migrated a migrated vault.
    pub previous: Option<Box<PreviousRun>>,
}

/// A grant that could not be migrated.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NonMigratable {
    /// The legacy grant.
    pub grant: GrantId,
    /// Its recipient.
    pub recipient: PrincipalId,
    /// Why (e.g. "could not decrypt"); never key material.
    pub reason: String,
    /// What the administrator decided.
    pub resolution: Resolution,
    /// Who decided, if anyone yet.
    pub resolved_by: Option<String>,
}

/// One audit event. `details` is a JSON document and never holds key
/// material.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    pub at: Timestamp,
    /// Who did it (administrator, user id, `server:<name>`).
    pub actor: String,
    /// What happened (`start`, `transition`, `migrate_user`, …).
    pub action: String,
    /// JSON details.
    pub details: String,
}

/// Migrated versus remaining, for one kind of thing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counts {
    /// Done.
    pub migrated: u64,
    /// Still to do (pending and blocked).
    pub remaining: u64,
}

/// How far the migration is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Progress {
    /// Users.
    pub users: Counts,
    /// Roles.
    pub roles: Counts,
    /// Server-held services.
    pub services: Counts,
    /// Legacy grants: re-wrapped (recipient migrated) versus still pending.
    pub grants: Counts,
    /// Principals that can never migrate and hold up finalization.
    pub blocked: u64,
    /// Grants that could not be migrated and are not resolved yet.
    pub unresolved_non_migratable: u64,
    /// Members of migrated roles whose client has not yet confirmed the
    /// role's new key (`confirm`); finalize waits for each, or for
    /// `rekey waive-role`.
    pub unconfirmed_role_members: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn phase_names_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::from_str(p.as_str()), Ok(*p));
        }
        assert!(Phase::from_str("migrating").is_err());
        assert!(Phase::UserPhase.is_read_only());
        assert!(!Phase::Legacy.is_read_only());
        assert!(!Phase::Completed.is_read_only());
    }

    #[test]
    fn every_enum_round_trips() {
        fn check<T: FromStr + Copy + PartialEq + std::fmt::Debug + ToString>(all: &[T]) {
            for v in all {
                assert_eq!(T::from_str(&v.to_string()).ok(), Some(*v));
            }
        }
        check(PrincipalKind::ALL);
        check(ServiceKind::ALL);
        check(UserStatus::ALL);
        check(KeyCustody::ALL);
        check(KeyState::ALL);
        check(GrantOrigin::ALL);
        check(MigrationState::ALL);
        check(Resolution::ALL);
        check(DeviceKind::ALL);
    }
}
