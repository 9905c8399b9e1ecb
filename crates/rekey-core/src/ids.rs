//! Identifiers of the things a vault holds, and the binding of a wrapped key
//! to its place.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random identifier.
            #[must_use]
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The identifier's 16 bytes, as they appear in bindings.
            #[must_use]
            pub fn to_bytes(self) -> [u8; 16] {
                *self.0.as_bytes()
            }

            /// Builds an identifier from its 16 bytes.
            #[must_use]
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// One vault: every binding names it, so nothing moves between vaults.
    VaultId
);
id_type!(
    /// A user, a role or a server-held service.
    PrincipalId
);
id_type!(
    /// A record (one stored secret).
    RecordId
);
id_type!(
    /// One key pair of a principal (legacy or new).
    KeyPairId
);
id_type!(
    /// One grant: a wrapped key addressed to one recipient.
    GrantId
);
impl GrantId {
    /// A fresh time-ordered identifier (UUIDv7: milliseconds since the Unix
    /// epoch, then random bits). The grants a migration writes get these:
    /// consecutive ids land side by side in the database's primary-key
    /// index instead of on a random page each, so a bundle's commit writes
    /// a few pages rather than one per grant. The id tells no more than the
    /// grant's `created_at` already does.
    #[must_use]
    pub fn time_ordered() -> Self {
        Self(Uuid::now_v7())
    }
}

id_type!(
    /// One run of the migration (a start). Bundles name it, so a bundle
    /// built for an aborted run cannot be replayed into the next one.
    RunId
);

/// What a grant carries the key of.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Subject {
    /// The key a record's content is encrypted under.
    RecordKey(RecordId),
    /// The private key of a key pair (a role's key for a member, a managed
    /// user's key for the directory master key, …).
    PrivateKey(KeyPairId),
}

impl Subject {
    /// The subject kind byte used in bindings (see docs/FORMAT.md).
    #[must_use]
    pub fn kind_byte(self) -> u8 {
        match self {
            Subject::RecordKey(_) => 1,
            Subject::PrivateKey(_) => 2,
        }
    }

    /// The subject's 16-byte identifier.
    #[must_use]
    pub fn id_bytes(self) -> [u8; 16] {
        match self {
            Subject::RecordKey(id) => id.to_bytes(),
            Subject::PrivateKey(id) => id.to_bytes(),
        }
    }

    /// The 17 bytes `kind ‖ id` that bind a grant to its subject.
    #[must_use]
    pub fn to_bytes(self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[0] = self.kind_byte();
        out[1..].copy_from_slice(&self.id_bytes());
        out
    }
}

/// Where a grant belongs: which vault, which recipient, which subject. A new
/// grant is cryptographically bound to these three; moved anywhere else it
/// fails to open.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct GrantBinding {
    /// The vault the grant lives in.
    pub vault: VaultId,
    /// The principal the grant is addressed to.
    pub recipient: PrincipalId,
    /// What the grant carries.
    pub subject: Subject,
}

/// Where a private key wrapped under a key-encryption key belongs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct KeyBinding {
    /// The vault.
    pub vault: VaultId,
    /// The principal that owns the key pair.
    pub owner: PrincipalId,
    /// The key pair whose private half is wrapped.
    pub key_pair: KeyPairId,
}

/// The longest name of a vault in a fleet (`--vault NAME`,
/// `/v1/vaults/NAME/…`).
pub const MAX_VAULT_NAME: usize = 64;

/// Whether `name` may name a vault: 1 to [`MAX_VAULT_NAME`] of `a-z`,
/// `0-9`, `_`, `-` (it becomes a URL path segment and a metrics label as
/// it is). The one rule the fleet file, the server and the client apply.
#[must_use]
pub fn valid_vault_name(name: &str) -> bool {
    (1..=MAX_VAULT_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ordered_grant_ids_sort_in_creation_order_as_text() {
        let ids: Vec<GrantId> = (0..1000).map(|_| GrantId::time_ordered()).collect();
        let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted, "the database orders them as created");
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
