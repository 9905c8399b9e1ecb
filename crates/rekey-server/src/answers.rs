//! The server's own JSON answers (those not defined by rekey-core or the
//! engine). Each is a type so that `/openapi.json` describes what the
//! handler really sends.

use rekey_core::ids::{GrantId, KeyPairId, PrincipalId, RecordId};
use rekey_core::model::{Phase, Resolution};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    /// Always `ready` (a server that cannot read its vault answers 503).
    pub status: String,
    /// The migration phase.
    pub phase: Phase,
}

/// `POST /v1/admin/devices/{id}/write-off`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceWrittenOff {
    /// The device.
    pub device: String,
    /// Always true.
    pub written_off: bool,
}

/// `POST /v1/admin/non-migratable/{grant}/resolve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolved {
    /// The grant.
    pub grant: GrantId,
    /// What the administrator decided.
    pub resolution: Resolution,
}

/// `POST /v1/principals/{id}/role-receipts`: the receipt was kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptKept {
    /// The role confirmed.
    pub role: PrincipalId,
    /// Its key pair the receipt names.
    pub key_pair: KeyPairId,
}

/// `PUT /v1/records/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordWritten {
    /// The record.
    pub id: RecordId,
    /// Always true.
    pub written: bool,
}

/// Every refusal (4xx, 5xx): docs/PROTOCOL.md §9 lists the codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// One sentence: what was refused and why.
    pub error: String,
    /// A stable snake_case code.
    pub code: String,
    /// What to do about it.
    pub hint: String,
}

/// `POST /v1/admin/users/{name}/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRestored {
    /// The user.
    pub user: String,
    /// Always true.
    pub restored: bool,
}

/// `GET /ready` of a server of several vaults: every vault's database
/// answers (else `503` naming those that do not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultsReady {
    /// Always `ready`.
    pub status: String,
    /// Each vault's phase, in the order the server was given them.
    pub vaults: Vec<VaultReady>,
}

/// One vault in [`VaultsReady`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultReady {
    /// The vault's name (its API is under `/v1/vaults/{name}`).
    pub name: String,
    /// Its migration phase.
    pub phase: Phase,
}
