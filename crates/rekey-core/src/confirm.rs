//! Role confirmations: the defence against a hostile role member.
//!
//! The first member of a role to log in migrates the role: its client
//! makes the role's new key pair and KEK, re-wraps the role's grants to
//! the new key and gives every other member a grant of the new KEK. The
//! server cannot open any of these, so a hostile member could hand the
//! others garbage; once finalization deleted the legacy material they
//! would have lost the role's records for good.
//!
//! So every other e2ee member's client, at its own login, checks the role
//! as it was migrated and signs a **receipt**:
//!
//! 1. its grant of the role's new KEK opens (with its legacy key or its
//!    new one) and that KEK unwraps the role's new private key, whose
//!    public half is the role's current public key;
//! 2. every grant the migration wrote to the role opens with the role's new
//!    key to what it should: a record key that decrypts its record (AES-GCM
//!    authenticates it), a KEK that unwraps its key pair's private key.
//!    This costs microseconds per grant, where comparing with the legacy
//!    grants would cost an RSA decryption each, for every member;
//! 3. none of the role's legacy grants the migrating member declared
//!    non-migratable opens (with the role's legacy key, reached through the
//!    member's legacy grant of the role's legacy KEK, which stays until
//!    finalization) to a key that decrypts its record: a hostile member
//!    could otherwise drop grants by calling them unreadable;
//! 4. it signs [`receipt_message`] with the role's new private key.
//!
//! The server keeps a receipt only from the member's own session and only
//! if the signature verifies with the role's current public key; the
//! member that migrated the role counts as confirmed by its bundle.
//! Finalization refuses while a migrated role has an e2ee member without
//! a receipt (or a waiver by the administrator), naming them, and the
//! administrator can abort: the legacy material is all still there.
//! `docs/THREAT-MODEL.md` gives the whole argument.

use crate::crypto::PrivateKey;

use crate::grant::GrantOpener;
use crate::kek::unlock_key_pair as unlock;
use crate::model::{GrantRecord, KeyPairRecord, KeyState, RecordRow};
use crate::record::decrypt_record;
use crate::{
    GrantBinding, Kek, KeyPairId, MasterSecret, NewPublicKey, PrincipalId, RecordId, RunId,
    Subject, VaultId,
};
use std::collections::HashMap;
use std::sync::Arc;

/// The label a receipt's signed message starts with.
pub const RECEIPT_LABEL: &[u8] = b"rekey/v1/role-receipt";

/// What a member's client needs to check one migrated role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleCheck {
    /// The vault.
    pub vault: VaultId,
    /// The migration run.
    pub run: RunId,
    /// The member checking.
    pub holder: PrincipalId,
    /// The role.
    pub role: PrincipalId,
    /// The member's own key pairs (legacy, and current once migrated),
    /// wrapped under its KEK.
    pub holder_keys: Vec<KeyPairRecord>,
    /// The role's current (new) key pair, wrapped under its new KEK.
    pub role_current: KeyPairRecord,
    /// The role's legacy key pair, wrapped under its legacy KEK.
    pub role_legacy: KeyPairRecord,
    /// The member's grants of the role's KEKs (subjects: the two key
    /// pairs above).
    pub holder_grants: Vec<GrantRecord>,
    /// What every member of the role checks alike. Shared, not copied:
    /// the largest role of a 10,000-user vault names 15,705 grants and as
    /// many records, checked by 3,000 members.
    pub evidence: Arc<RoleEvidence>,
}

/// The part of a [`RoleCheck`] that is the same for every member: the role
/// as the migrating member left it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleEvidence {
    /// The grants the migration wrote to the role.
    pub grants: Vec<GrantRecord>,
    /// The records those grants' record keys decrypt.
    pub records: Vec<RecordRow>,
    /// The key pairs those grants' KEKs unwrap.
    pub subject_keys: Vec<KeyPairRecord>,
    /// The role's legacy grants declared non-migratable by the member who
    /// migrated it.
    pub disowned: Vec<GrantRecord>,
}

/// A member's signed statement that a role opens for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The role.
    pub role: PrincipalId,
    /// The role's key pair the member checked.
    pub key_pair: KeyPairId,
    /// How many of the role's grants it compared.
    pub checked: u32,
    /// ECDSA by the role's new private key over [`receipt_message`].
    pub signature: Vec<u8>,
}

/// Why a member's client refuses to confirm a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfirmError {
    /// The member's own keys do not open under its master secret.
    #[error("the password does not unlock this account's keys")]
    WrongMasterSecret,
    /// The member has no grant of the role's new KEK, or it does not open
    /// to a KEK that unwraps the role's new private key.
    #[error(
        "this account's grant of the role's new key does not open it: the role was migrated wrongly"
    )]
    NewKeyUnreachable,
    /// The role's new private key does not match its public key.
    #[error("the role's new private key does not match its public key")]
    NewKeyMismatch,
    /// The member cannot reach the role's legacy key to compare with.
    #[error("this account cannot open the role's legacy key to compare with")]
    LegacyKeyUnreachable,
    /// Grants the migration wrote that do not open to what they should.
    #[error(
        "{broken} of the role's {checked} migrated grants do not open what they name (first: {first:?})"
    )]
    GrantsBroken {
        /// Grants checked.
        checked: u32,
        /// Grants that do not open, or whose secret does not decrypt what
        /// its subject names.
        broken: u32,
        /// The first such subject.
        first: Subject,
    },
    /// A legacy grant declared non-migratable opens after all: the grant
    /// was dropped, not lost.
    #[error("a grant of the role declared unreadable opens for this account ({0:?})")]
    FalselyDisowned(Subject),
    /// The role's current key pair is not a new (EC or hybrid) key pair
    /// (nothing to sign with).
    #[error("the role's current key pair is not a new P-256, P-521 or hybrid key")]
    NotAnEcKey,
}

/// The message a receipt signs: [`RECEIPT_LABEL`] ‖ vault ‖ run ‖ role ‖
/// role key pair ‖ holder (16 bytes each) ‖ grants checked (u32,
/// big-endian).
#[must_use]
pub fn receipt_message(
    vault: VaultId,
    run: RunId,
    role: PrincipalId,
    key_pair: KeyPairId,
    holder: PrincipalId,
    checked: u32,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(RECEIPT_LABEL.len() + 5 * 16 + 4);
    m.extend_from_slice(RECEIPT_LABEL);
    m.extend_from_slice(&vault.to_bytes());
    m.extend_from_slice(&run.to_bytes());
    m.extend_from_slice(&role.to_bytes());
    m.extend_from_slice(&key_pair.to_bytes());
    m.extend_from_slice(&holder.to_bytes());
    m.extend_from_slice(&checked.to_be_bytes());
    m
}

/// Whether `receipt` was signed by the holder of the role's new private
/// key `public` for this vault, run and member.
pub fn verify_receipt(
    public: &NewPublicKey,
    vault: VaultId,
    run: RunId,
    holder: PrincipalId,
    receipt: &Receipt,
) -> bool {
    let msg = receipt_message(
        vault,
        run,
        receipt.role,
        receipt.key_pair,
        holder,
        receipt.checked,
    );
    public.verify(&msg, &receipt.signature).is_ok()
}

/// Checks a migrated role as its member `check.holder` (master secret
/// `master`) and signs the receipt.
pub fn confirm_role(check: &RoleCheck, master: &MasterSecret) -> Result<Receipt, ConfirmError> {
    let own = Kek::derive(master, check.vault, check.holder)
        .map_err(|_| ConfirmError::WrongMasterSecret)?;
    let holder_keys = HolderKeys::new(check, &own);
    if !holder_keys.any_unlocks() {
        return Err(ConfirmError::WrongMasterSecret);
    }
    let new_key = role_key(check, &holder_keys, &check.role_current)?
        .ok_or(ConfirmError::NewKeyUnreachable)?;
    // Cheap before expensive: an RSA "new" key could not sign the receipt.
    if matches!(new_key, PrivateKey::Rsa(_)) {
        return Err(ConfirmError::NotAnEcKey);
    }
    let named = Named::of(check);
    let checked = check_grants(check, &named, &new_key)?;
    if !check.evidence.disowned.is_empty() {
        let legacy_key = role_key(check, &holder_keys, &check.role_legacy)?
            .ok_or(ConfirmError::LegacyKeyUnreachable)?;
        check_disowned(check, &named, &legacy_key)?;
    }
    let signature = new_key
        .sign_ecdsa(&receipt_message(
            check.vault,
            check.run,
            check.role,
            check.role_current.id,
            check.holder,
            checked,
        ))
        .ok_or(ConfirmError::NotAnEcKey)?;
    Ok(Receipt {
        role: check.role,
        key_pair: check.role_current.id,
        checked,
        signature,
    })
}

/// The member's own private keys, each unlocked when first needed.
///
/// A member checks its roles after its own migration, which re-wrapped its
/// grants of the roles' KEKs to its new key: its new key then opens them
/// with an HPKE open. Its legacy RSA key (a PKCS#8 parse with a key check,
/// then an RSA decryption per grant) is unlocked only when no such grant
/// opens. Unlocking it up front, and trying the legacy grants first, was
/// about 4 % of a 1,000-user `login-all`'s CPU time.
struct HolderKeys<'a> {
    vault: VaultId,
    kek: &'a Kek,
    /// The key pairs, current before legacy, each with its unlocked key
    /// once tried (`None`: it does not unlock).
    keys: Vec<(&'a KeyPairRecord, std::cell::OnceCell<Option<PrivateKey>>)>,
}

impl<'a> HolderKeys<'a> {
    fn new(check: &'a RoleCheck, kek: &'a Kek) -> Self {
        let mut keys: Vec<_> = check
            .holder_keys
            .iter()
            .map(|kp| (kp, std::cell::OnceCell::new()))
            .collect();
        keys.sort_by_key(|(kp, _)| kp.state == KeyState::Legacy);
        Self {
            vault: check.vault,
            kek,
            keys,
        }
    }

    /// The `i`th key, unlocked on first use.
    fn key(&self, i: usize) -> Option<&PrivateKey> {
        let (kp, cell) = self.keys.get(i)?;
        cell.get_or_init(|| unlock(kp, self.vault, self.kek))
            .as_ref()
    }

    /// Whether the master secret unlocks any of the member's keys (the
    /// current one first: it is the cheap one).
    fn any_unlocks(&self) -> bool {
        (0..self.keys.len()).any(|i| self.key(i).is_some())
    }

    /// Whether the `i`th key is a legacy one.
    fn is_legacy(&self, i: usize) -> bool {
        self.keys
            .get(i)
            .is_some_and(|(kp, _)| kp.state == KeyState::Legacy)
    }
}

/// The role's private key of key pair `kp`, reached through one of the
/// member's grants of its KEK. `Ok(None)` when no grant opens to a KEK
/// that unwraps it. The member's new-key grants are tried with its new
/// key first; the legacy grants and its legacy key only after them.
fn role_key(
    check: &RoleCheck,
    holder_keys: &HolderKeys<'_>,
    kp: &KeyPairRecord,
) -> Result<Option<PrivateKey>, ConfirmError> {
    let subject = Subject::PrivateKey(kp.id);
    let binding = GrantBinding {
        vault: check.vault,
        recipient: check.holder,
        subject,
    };
    // Every grant with every key, a new-scheme grant with a new key first
    // (the stable sort keeps the order within each group).
    let mut tries: Vec<(&GrantRecord, usize)> = check
        .holder_grants
        .iter()
        .filter(|g| g.subject == subject && g.recipient == check.holder)
        .flat_map(|g| (0..holder_keys.keys.len()).map(move |i| (g, i)))
        .collect();
    tries.sort_by_key(|(g, i)| g.envelope.scheme().is_legacy() || holder_keys.is_legacy(*i));
    for (g, i) in tries {
        let Some(key) = holder_keys.key(i) else {
            continue;
        };
        let Ok(secret) = GrantOpener::new(key).open(&binding, &g.envelope) else {
            continue;
        };
        let Some(kek) = secret.into_kek() else {
            continue;
        };
        if let Some(k) = unlock(kp, check.vault, &kek) {
            if k.public_key().to_bytes() != kp.public_key {
                return Err(ConfirmError::NewKeyMismatch);
            }
            return Ok(Some(k));
        }
    }
    Ok(None)
}

/// The records and key pairs of a role check by id, looked up once per
/// grant (a role's grants name hundreds of them).
struct Named<'a> {
    records: HashMap<RecordId, &'a RecordRow>,
    key_pairs: HashMap<KeyPairId, &'a KeyPairRecord>,
}

impl<'a> Named<'a> {
    fn of(check: &'a RoleCheck) -> Self {
        Self {
            records: check.evidence.records.iter().map(|r| (r.id, r)).collect(),
            key_pairs: check
                .evidence
                .subject_keys
                .iter()
                .map(|k| (k.id, k))
                .collect(),
        }
    }

    /// Whether `secret`, the secret of a grant of `subject`, opens what
    /// the subject names: a record key decrypts the record, a KEK unwraps
    /// the key pair's private key. Both are authenticated encryption, so a
    /// wrong secret fails.
    fn opens(&self, vault: VaultId, subject: Subject, secret: crate::SecretBytes) -> bool {
        match subject {
            Subject::RecordKey(id) => {
                let (Some(key), Some(record)) = (secret.into_record_key(), self.records.get(&id))
                else {
                    return false;
                };
                decrypt_record(&key, vault, id, &record.ciphertext).is_ok()
            }
            Subject::PrivateKey(kp) => {
                let (Some(kek), Some(pair)) = (secret.into_kek(), self.key_pairs.get(&kp)) else {
                    return false;
                };
                unlock(pair, vault, &kek).is_some()
            }
        }
    }
}

/// Opens every grant the migration wrote to the role with its new key and
/// checks it opens what it names; answers how many were checked.
fn check_grants(
    check: &RoleCheck,
    named: &Named<'_>,
    new_key: &PrivateKey,
) -> Result<u32, ConfirmError> {
    let mut opener = GrantOpener::new(new_key);
    let (mut checked, mut broken, mut first) = (0u32, 0u32, None);
    for g in check
        .evidence
        .grants
        .iter()
        .filter(|g| g.recipient == check.role && !g.envelope.scheme().is_legacy())
    {
        let binding = GrantBinding {
            vault: check.vault,
            recipient: check.role,
            subject: g.subject,
        };
        checked += 1;
        let ok = opener
            .open(&binding, &g.envelope)
            .is_ok_and(|secret| named.opens(check.vault, g.subject, secret));
        if !ok {
            broken += 1;
            first.get_or_insert(g.subject);
        }
    }
    match first {
        Some(first) => Err(ConfirmError::GrantsBroken {
            checked,
            broken,
            first,
        }),
        None => Ok(checked),
    }
}

/// Fails if a legacy grant declared non-migratable opens with the role's
/// legacy key to what it names.
fn check_disowned(
    check: &RoleCheck,
    named: &Named<'_>,
    legacy_key: &PrivateKey,
) -> Result<(), ConfirmError> {
    let mut opener = GrantOpener::new(legacy_key);
    for g in check
        .evidence
        .disowned
        .iter()
        .filter(|g| g.recipient == check.role)
    {
        let binding = GrantBinding {
            vault: check.vault,
            recipient: check.role,
            subject: g.subject,
        };
        if let Ok(secret) = opener.open(&binding, &g.envelope) {
            if named.opens(check.vault, g.subject, secret) {
                return Err(ConfirmError::FalselyDisowned(g.subject));
            }
        }
    }
    Ok(())
}

/// The format string of the role checks JSON.
pub const ROLE_CHECKS_FORMAT: &str = "rekey-role-checks/1";

/// `GET /v1/principals/{id}/role-checks`: the roles a member has to
/// confirm, as JSON (every byte string in lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RoleChecksJson {
    /// Always [`ROLE_CHECKS_FORMAT`].
    pub format: String,
    /// The vault.
    pub vault: VaultId,
    /// The migration run.
    pub run: RunId,
    /// The member.
    pub holder: PrincipalId,
    /// One entry per role to confirm.
    pub roles: Vec<RoleCheckJson>,
}

/// One role to confirm.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RoleCheckJson {
    /// The role.
    pub role: PrincipalId,
    /// The member's own key pairs.
    pub holder_keys: Vec<KeyPairJson>,
    /// The role's current key pair.
    pub role_current: KeyPairJson,
    /// The role's legacy key pair.
    pub role_legacy: KeyPairJson,
    /// The member's grants of the role's KEKs.
    pub holder_grants: Vec<GrantJson>,
    /// The grants the migration wrote to the role.
    pub role_grants: Vec<GrantJson>,
    /// The records those grants name.
    pub records: Vec<RecordJson>,
    /// The key pairs those grants name.
    pub subject_keys: Vec<KeyPairJson>,
    /// The role's legacy grants declared non-migratable.
    pub disowned: Vec<GrantJson>,
}

/// A record: its id and ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecordJson {
    /// The record.
    pub id: crate::RecordId,
    /// Its ciphertext in hex.
    pub ciphertext: String,
}

/// A key pair: its public key (SPKI DER or SEC1) and wrapped private key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyPairJson {
    /// The key pair.
    pub id: KeyPairId,
    /// Its owner.
    pub owner: PrincipalId,
    /// `legacy` or `current`.
    pub state: crate::model::KeyState,
    /// The public key in hex.
    pub public_key: String,
    /// The private key's envelope in hex, if the vault holds it.
    pub wrapped_private: Option<String>,
}

/// A grant: recipient, subject and envelope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantJson {
    /// The grant.
    pub id: crate::GrantId,
    /// Who can open it.
    pub recipient: PrincipalId,
    /// What it carries.
    pub subject: Subject,
    /// The envelope in hex.
    pub envelope: String,
}

/// `POST /v1/principals/{id}/role-receipts`: one receipt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReceiptJson {
    /// The role.
    pub role: PrincipalId,
    /// The role's key pair checked.
    pub key_pair: KeyPairId,
    /// Grants compared.
    pub checked: u32,
    /// The signature in hex.
    pub signature: String,
}

/// Why role checks from the network are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoleChecksError {
    /// Not JSON of the expected shape.
    #[error("the role checks are not valid {ROLE_CHECKS_FORMAT} JSON: {0}")]
    Json(String),
    /// For another vault or account.
    #[error("the server sent role checks of another vault or account")]
    WrongAccount,
    /// A byte string that is not hex, or an envelope that does not parse.
    #[error("{0} is not valid")]
    Bytes(&'static str),
}

impl From<&KeyPairRecord> for KeyPairJson {
    fn from(k: &KeyPairRecord) -> Self {
        Self {
            id: k.id,
            owner: k.principal,
            state: k.state,
            public_key: hex::encode(&k.public_key),
            wrapped_private: k
                .wrapped_private_key
                .as_ref()
                .map(|e| hex::encode(e.as_bytes())),
        }
    }
}

impl From<&GrantRecord> for GrantJson {
    fn from(g: &GrantRecord) -> Self {
        Self {
            id: g.id,
            recipient: g.recipient,
            subject: g.subject,
            envelope: hex::encode(g.envelope.as_bytes()),
        }
    }
}

impl RoleCheckJson {
    /// The JSON form of `c`.
    #[must_use]
    pub fn from_check(c: &RoleCheck) -> Self {
        Self {
            role: c.role,
            holder_keys: c.holder_keys.iter().map(KeyPairJson::from).collect(),
            role_current: (&c.role_current).into(),
            role_legacy: (&c.role_legacy).into(),
            holder_grants: c.holder_grants.iter().map(GrantJson::from).collect(),
            role_grants: c.evidence.grants.iter().map(GrantJson::from).collect(),
            records: c
                .evidence
                .records
                .iter()
                .map(|r| RecordJson {
                    id: r.id,
                    ciphertext: hex::encode(&r.ciphertext),
                })
                .collect(),
            subject_keys: c
                .evidence
                .subject_keys
                .iter()
                .map(KeyPairJson::from)
                .collect(),
            disowned: c.evidence.disowned.iter().map(GrantJson::from).collect(),
        }
    }
}

fn envelope_of(hex_str: &str, what: &'static str) -> Result<crate::Envelope, RoleChecksError> {
    let bytes = hex::decode(hex_str).map_err(|_| RoleChecksError::Bytes(what))?;
    crate::Envelope::parse(&bytes).map_err(|_| RoleChecksError::Bytes(what))
}

fn key_pair_of(k: KeyPairJson) -> Result<KeyPairRecord, RoleChecksError> {
    let public_key =
        hex::decode(&k.public_key).map_err(|_| RoleChecksError::Bytes("a public key"))?;
    // A legacy key is RSA, or (a migrated vault migrating again) the
    // previous target's key: told apart by the encoding's length, as the
    // new kinds' lengths are never an RSA SPKI's.
    let scheme = match crate::Target::of_public_key(&public_key) {
        Some(target) => target.batch_scheme(),
        None if k.state == crate::model::KeyState::Legacy => crate::Scheme::RsaOaepSha256,
        None => return Err(RoleChecksError::Bytes("a public key")),
    };
    Ok(KeyPairRecord {
        id: k.id,
        principal: k.owner,
        scheme,
        public_key,
        wrapped_private_key: k
            .wrapped_private
            .map(|w| envelope_of(&w, "a wrapped private key"))
            .transpose()?,
        state: k.state,
    })
}

fn grant_of(g: GrantJson) -> Result<GrantRecord, RoleChecksError> {
    Ok(GrantRecord {
        id: g.id,
        recipient: g.recipient,
        subject: g.subject,
        envelope: envelope_of(&g.envelope, "a grant envelope")?,
        origin: crate::model::GrantOrigin::Migration,
        created_at: None,
    })
}

/// Parses the role checks a server sent for `holder` (of `vault`, when
/// the client knows it), refusing anything of another vault or account or
/// that does not parse.
pub fn parse_role_checks(
    bytes: &[u8],
    holder: PrincipalId,
    vault: Option<VaultId>,
) -> Result<Vec<RoleCheck>, RoleChecksError> {
    let json: RoleChecksJson =
        serde_json::from_slice(bytes).map_err(|e| RoleChecksError::Json(e.to_string()))?;
    if json.format != ROLE_CHECKS_FORMAT {
        return Err(RoleChecksError::Json(format!("format {:?}", json.format)));
    }
    if json.holder != holder || vault.is_some_and(|v| v != json.vault) {
        return Err(RoleChecksError::WrongAccount);
    }
    let vault = json.vault;
    json.roles
        .into_iter()
        .map(|r| {
            Ok(RoleCheck {
                vault,
                run: json.run,
                holder,
                role: r.role,
                holder_keys: r
                    .holder_keys
                    .into_iter()
                    .map(key_pair_of)
                    .collect::<Result<_, _>>()?,
                role_current: key_pair_of(r.role_current)?,
                role_legacy: key_pair_of(r.role_legacy)?,
                holder_grants: r
                    .holder_grants
                    .into_iter()
                    .map(grant_of)
                    .collect::<Result<_, _>>()?,
                evidence: Arc::new(RoleEvidence {
                    grants: r
                        .role_grants
                        .into_iter()
                        .map(grant_of)
                        .collect::<Result<_, _>>()?,
                    records: r
                        .records
                        .into_iter()
                        .map(|rec| {
                            Ok(RecordRow {
                                id: rec.id,
                                ciphertext: hex::decode(&rec.ciphertext)
                                    .map_err(|_| RoleChecksError::Bytes("a record"))?,
                            })
                        })
                        .collect::<Result<_, RoleChecksError>>()?,
                    subject_keys: r
                        .subject_keys
                        .into_iter()
                        .map(key_pair_of)
                        .collect::<Result<_, _>>()?,
                    disowned: r
                        .disowned
                        .into_iter()
                        .map(grant_of)
                        .collect::<Result<_, _>>()?,
                }),
            })
        })
        .collect()
}

impl From<&Receipt> for ReceiptJson {
    fn from(r: &Receipt) -> Self {
        Self {
            role: r.role,
            key_pair: r.key_pair,
            checked: r.checked,
            signature: hex::encode(&r.signature),
        }
    }
}

impl ReceiptJson {
    /// The receipt, if its signature is hex.
    pub fn into_receipt(self) -> Option<Receipt> {
        Some(Receipt {
            role: self.role,
            key_pair: self.key_pair,
            checked: self.checked,
            signature: hex::decode(&self.signature).ok()?,
        })
    }
}
