//! Certificate backups: one age file, encrypted to a passphrase (age's
//! scrypt recipient), holding every server-held private key of one vault.
//!
//! The age payload is a small binary manifest (every integer big-endian):
//!
//! ```text
//! "rekey-cert-backup\0"   18 bytes, magic
//! version                  1 byte, 2 (1 is still read)
//! vault id                16 bytes
//! created at               8 bytes, i64 milliseconds since the epoch
//! key count                4 bytes, u32
//! per key:
//!   fingerprint           32 bytes, SHA-256 of the public key's encoding
//!   kind                   1 byte (version 2 only): 0 a legacy RSA key,
//!                          1, 2, 3 a new key of that target (FORMAT.md's
//!                          key-kind byte: P-256, P-521, hybrid)
//!   length                 4 bytes, u32
//!   private key           `length` bytes: PKCS#8 DER for RSA (the whole
//!                          `.pk8` file); for a new key what follows the
//!                          kind byte in its `.ec` file
//! ```
//!
//! Version 1 (before the new keys were backed up) has no kind byte: every
//! key is RSA. A backup made after `rekey start` holds the new
//! certificates' keys too, so the other servers of the vault can import
//! them at the end of the migration.
//!
//! Nothing follows the last key. age authenticates the header (HMAC) and
//! every 64 KiB chunk of the payload (ChaCha20-Poly1305), so a truncated or
//! altered file does not decrypt; the manifest names the vault, so a backup
//! of another vault is refused.

use crate::error::{Error, Result};
use crate::files;
use crate::keydir::{KeyDir, KeyFileState, LoadedKey, RSA_KIND};
use age::secrecy::SecretString;
use rekey_core::ids::VaultId;
use rekey_core::model::{AuditEvent, Timestamp};
use rekey_storage::Vault;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use zeroize::Zeroizing;

const MAGIC: &[u8; 18] = b"rekey-cert-backup\0";
/// How every age v1 file begins.
const AGE_V1_MAGIC: &[u8] = b"age-encryption.org/v1\n";
const VERSION: u8 = 2;
/// The first version, still read: RSA keys only, no kind byte.
const VERSION_RSA_ONLY: u8 = 1;
/// Largest private key accepted in a backup (an RSA-4096 PKCS#8 is about
/// 2.4 KB, a hybrid key 64 bytes).
const MAX_KEY_LEN: usize = 16 * 1024;
/// The scrypt work factor (log2 N) of a backup when none is asked for:
/// N = 2^18 takes 256 MiB and about a second. Fixed rather than measured
/// on the machine that writes, so that every machine that reads accepts
/// it.
pub const DEFAULT_WORK_FACTOR: u8 = 18;
/// The largest scrypt work factor (log2 N) a backup may ask for: N = 2^20
/// takes 1 GiB and a few seconds. The file names its own work factor, so
/// without a cap a crafted file could make `cert verify` or `cert import`
/// run for hours and take tens of GiB of memory (scrypt needs 1 KiB × N)
/// before the passphrase is even checked. A larger factor is refused
/// before any work, and `backup` never writes one.
pub const MAX_WORK_FACTOR: u8 = 20;

/// The audit action written after a backup.
pub const CERTIFICATE_BACKUP: &str = "certificate_backup";
/// The audit action written after an import.
pub const CERTIFICATE_IMPORT: &str = "certificate_import";

/// A backup passphrase. Wiped on drop; `Debug` does not print it.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Takes a passphrase (from a prompt, a file or the environment; the
    /// caller trims a trailing newline if it wants to).
    #[must_use]
    pub fn new(passphrase: String) -> Self {
        Self(Zeroizing::new(passphrase))
    }

    fn secret(&self) -> Result<SecretString> {
        if self.0.is_empty() {
            return Err(Error::EmptyPassphrase);
        }
        Ok(SecretString::from(self.0.as_str().to_owned()))
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase([redacted])")
    }
}

/// How to make a backup.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// scrypt work factor (log2 N), at most [`MAX_WORK_FACTOR`] (larger
    /// values are lowered to it). `None`: [`DEFAULT_WORK_FACTOR`]. Lower
    /// values are for tests only.
    pub work_factor: Option<u8>,
    /// Who is recorded in the audit log.
    pub actor: String,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            work_factor: None,
            actor: "rekey cert backup".to_owned(),
        }
    }
}

/// What a backup file holds (no key material).
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize)]
pub struct BackupSummary {
    /// Lower-case hex SHA-256 of the file.
    pub digest: String,
    /// The vault it belongs to.
    pub vault: VaultId,
    /// When it was made.
    pub created_at: Timestamp,
    /// The fingerprints of the keys it holds, in file order.
    pub fingerprints: Vec<String>,
    /// Certificates of the vault that the file does not hold.
    pub missing: Vec<String>,
    /// Whether the vault records this file's digest for every certificate
    /// it holds (it is the latest backup made by `rekey cert backup`).
    pub recorded: bool,
}

/// What an import did.
#[derive(Clone, PartialEq, Eq, Debug, Default, serde::Serialize)]
pub struct ImportSummary {
    /// Key files written (fingerprints).
    pub written: Vec<String>,
    /// Key files already there with the same key (fingerprints).
    pub unchanged: Vec<String>,
}

/// The decoded manifest.
struct Manifest {
    vault: VaultId,
    created_at: Timestamp,
    keys: Vec<LoadedKey>,
}

/// Writes one passphrase-protected file holding every server-held private
/// key of the vault, read from the key directory (`<fingerprint>.pk8` for
/// legacy keys, `<fingerprint>.ec` for new ones), then
/// decrypts it again to verify it, and records its SHA-256 on every
/// certificate (and an audit event listing the fingerprints).
///
/// A missing or unusable key stops the backup before anything is written.
/// The file is written atomically (temporary file, mode 0600, rename).
pub async fn backup(
    vault: &Vault,
    key_dir: &KeyDir,
    out_file: &Path,
    passphrase: &Passphrase,
) -> Result<BackupSummary> {
    backup_with(
        vault,
        key_dir,
        out_file,
        passphrase,
        &BackupOptions::default(),
    )
    .await
}

/// [`backup`] with options.
pub async fn backup_with(
    vault: &Vault,
    key_dir: &KeyDir,
    out_file: &Path,
    passphrase: &Passphrase,
    options: &BackupOptions,
) -> Result<BackupSummary> {
    let secret = passphrase.secret()?;
    let vault_id = vault.vault_id().await?;
    let certificates = vault.certificates().await?;
    if certificates.is_empty() {
        return Err(Error::NoCertificates);
    }
    let mut keys = Vec::with_capacity(certificates.len());
    for c in &certificates {
        match key_dir.read_any(&c.fingerprint) {
            Ok(key) => keys.push(key),
            Err(KeyFileState::Missing | KeyFileState::NotChecked) => {
                let owner = vault
                    .principal(c.principal)
                    .await?
                    .map_or_else(|| c.principal.to_string(), |p| p.name);
                return Err(Error::MissingKey {
                    fingerprint: c.fingerprint.clone(),
                    owner,
                    key_dir: key_dir.path().to_path_buf(),
                });
            }
            Err(KeyFileState::Unusable(reason)) => {
                return Err(Error::UnusableKey {
                    fingerprint: c.fingerprint.clone(),
                    reason,
                });
            }
            Err(KeyFileState::Present) => {}
        }
    }
    let manifest = Manifest {
        vault: vault_id,
        created_at: Timestamp::now(),
        keys,
    };
    let plaintext = encode(&manifest)?;
    let ciphertext = encrypt(
        secret,
        options.work_factor.unwrap_or(DEFAULT_WORK_FACTOR),
        &plaintext,
    )?;
    // Verify before writing: the file decrypts to exactly what we meant.
    let reopened = decrypt(&ciphertext, passphrase, MAX_WORK_FACTOR)?;
    if reopened.as_slice() != plaintext.as_slice() {
        return Err(Error::DamagedBackup {
            reason: "it did not decrypt to what was written".to_owned(),
        });
    }
    files::write_private(out_file, &ciphertext).map_err(|source| Error::File {
        action: "write the backup",
        path: out_file.to_path_buf(),
        source,
    })?;
    let digest = hex::encode(Sha256::digest(&ciphertext));
    let now = Timestamp::now();
    for c in &certificates {
        vault
            .record_certificate_backup(c.key_pair, &digest, now)
            .await?;
    }
    let fingerprints: Vec<String> = manifest
        .keys
        .iter()
        .map(|k| k.fingerprint.clone())
        .collect();
    let details = serde_json::json!({
        "file_sha256": digest,
        "fingerprints": fingerprints,
    });
    vault
        .append_audit(&AuditEvent {
            at: now,
            actor: options.actor.clone(),
            action: CERTIFICATE_BACKUP.to_owned(),
            details: details.to_string(),
        })
        .await?;
    Ok(BackupSummary {
        digest,
        vault: vault_id,
        created_at: manifest.created_at,
        fingerprints,
        missing: Vec::new(),
        recorded: true,
    })
}

/// Checks a backup file with its passphrase: it decrypts, is a backup of
/// this vault, every key parses and has the fingerprint it is filed under.
/// Says which of the vault's certificates it does not hold and whether it
/// is the backup the vault recorded. Writes nothing.
pub async fn verify(vault: &Vault, file: &Path, passphrase: &Passphrase) -> Result<BackupSummary> {
    let (summary, _manifest) = open_for_vault(vault, file, passphrase).await?;
    Ok(summary)
}

/// Restores the keys of a backup into `key_dir` as `<fingerprint>.pk8`
/// (legacy RSA) or `<fingerprint>.ec` (new keys) (mode 0600; the directory is created with mode 0700 if missing). Every
/// check (passphrase, integrity, vault, keys, no different key already in
/// place) happens before anything is written; then every key goes to a
/// temporary file and all are renamed into place.
pub async fn import(
    vault: &Vault,
    file: &Path,
    passphrase: &Passphrase,
    key_dir: &Path,
) -> Result<ImportSummary> {
    let (summary, manifest) = open_for_vault(vault, file, passphrase).await?;
    let dir = KeyDir::open(key_dir)?;
    let mut plan: Vec<&LoadedKey> = Vec::new();
    let mut result = ImportSummary::default();
    for key in &manifest.keys {
        let path = key.path_in(&dir);
        match std::fs::read(&path) {
            Ok(existing) => {
                let existing = Zeroizing::new(existing);
                if existing.as_slice() == key.file_bytes().as_slice() {
                    result.unchanged.push(key.fingerprint.clone());
                } else {
                    return Err(Error::KeyFileConflict {
                        fingerprint: key.fingerprint.clone(),
                        path,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => plan.push(key),
            Err(source) => {
                return Err(Error::File {
                    action: "read the existing key file",
                    path,
                    source,
                });
            }
        }
    }
    // Stage every file, then move them all into place (dropping a staged
    // file removes it, so a failure leaves no temporary file behind).
    let mut staged = Vec::with_capacity(plan.len());
    for key in plan {
        let path = key.path_in(&dir);
        let file = files::stage(dir.path(), &key.file_bytes()).map_err(|source| Error::File {
            action: "write the key file",
            path: path.clone(),
            source,
        })?;
        staged.push((file, path, key.fingerprint.clone()));
    }
    for (file, path, fp) in staged {
        file.persist(&path, true).map_err(|source| Error::File {
            action: "move the key file into place",
            path,
            source,
        })?;
        result.written.push(fp);
    }
    let details = serde_json::json!({
        "file_sha256": summary.digest,
        "written": result.written,
        "unchanged": result.unchanged,
    });
    vault
        .append_audit(&AuditEvent {
            at: Timestamp::now(),
            actor: "rekey cert import".to_owned(),
            action: CERTIFICATE_IMPORT.to_owned(),
            details: details.to_string(),
        })
        .await?;
    Ok(result)
}

/// Reads, decrypts and checks a backup against the vault.
async fn open_for_vault(
    vault: &Vault,
    file: &Path,
    passphrase: &Passphrase,
) -> Result<(BackupSummary, Manifest)> {
    passphrase.secret()?;
    let ciphertext = std::fs::read(file).map_err(|source| Error::File {
        action: "read the backup",
        path: file.to_path_buf(),
        source,
    })?;
    let digest = hex::encode(Sha256::digest(&ciphertext));
    let plaintext = decrypt(&ciphertext, passphrase, MAX_WORK_FACTOR)?;
    let manifest = decode(&plaintext)?;
    let expected = vault.vault_id().await?;
    if manifest.vault != expected {
        return Err(Error::OtherVault {
            expected,
            found: manifest.vault,
        });
    }
    let fingerprints: Vec<String> = manifest
        .keys
        .iter()
        .map(|k| k.fingerprint.clone())
        .collect();
    let certificates = vault.certificates().await?;
    let missing = certificates
        .iter()
        .filter(|c| !fingerprints.contains(&c.fingerprint))
        .map(|c| c.fingerprint.clone())
        .collect();
    let covered: Vec<_> = certificates
        .iter()
        .filter(|c| fingerprints.contains(&c.fingerprint))
        .collect();
    let recorded = !covered.is_empty()
        && covered
            .iter()
            .all(|c| c.backup_digest.as_deref() == Some(digest.as_str()));
    Ok((
        BackupSummary {
            digest,
            vault: manifest.vault,
            created_at: manifest.created_at,
            fingerprints,
            missing,
            recorded,
        },
        manifest,
    ))
}

/// Encrypts to the passphrase with scrypt work factor `log_n` (clamped to
/// 1..=[`MAX_WORK_FACTOR`]).
fn encrypt(secret: SecretString, log_n: u8, plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut recipient = age::scrypt::Recipient::new(secret);
    recipient.set_work_factor(log_n.clamp(1, MAX_WORK_FACTOR));
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|e| Error::Encrypt {
                reason: e.to_string(),
            })?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| Error::Encrypt {
            reason: e.to_string(),
        })?;
    writer
        .write_all(plaintext)
        .and_then(|()| writer.finish().map(|_| ()))
        .map_err(|e| Error::Encrypt {
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// Decrypts an age passphrase file whose scrypt work factor is at most
/// `max_work_factor` (a larger one is refused before any scrypt work).
fn decrypt(
    ciphertext: &[u8],
    passphrase: &Passphrase,
    max_work_factor: u8,
) -> Result<Zeroizing<Vec<u8>>> {
    let secret = passphrase.secret()?;
    let decryptor = age::Decryptor::new_buffered(ciphertext).map_err(|e| match e {
        // An age v1 file whose header no longer parses was altered.
        age::DecryptError::UnknownFormat if ciphertext.starts_with(AGE_V1_MAGIC) => {
            Error::DamagedBackup {
                reason: "its header is malformed".to_owned(),
            }
        }
        e => map_decrypt_error(e),
    })?;
    if !decryptor.is_scrypt() {
        return Err(Error::NotABackup {
            reason: "it is not encrypted to a passphrase".to_owned(),
        });
    }
    // Made only now: age measures this machine's scrypt speed when an
    // identity is made, which is wasted on a file that is not even age.
    let mut identity = age::scrypt::Identity::new(secret);
    identity.set_max_work_factor(max_work_factor);
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(map_decrypt_error)?;
    let mut plaintext = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut plaintext)
        .map_err(|e| map_decrypt_error(age::DecryptError::Io(e)))?;
    Ok(plaintext)
}

fn map_decrypt_error(e: age::DecryptError) -> Error {
    use age::DecryptError as D;
    match e {
        D::DecryptionFailed | D::KeyDecryptionFailed => Error::WrongPassphrase,
        D::NoMatchingKeys => Error::NotABackup {
            reason: "it is not encrypted to a passphrase".to_owned(),
        },
        D::InvalidMac => Error::DamagedBackup {
            reason: "its header does not authenticate".to_owned(),
        },
        D::InvalidHeader => Error::DamagedBackup {
            reason: "its header is malformed".to_owned(),
        },
        D::UnknownFormat => Error::NotABackup {
            reason: "it is not an age file".to_owned(),
        },
        D::ExcessiveWork { required, .. } => Error::DamagedBackup {
            reason: format!(
                "it asks for an scrypt work factor of {required}, more than the {MAX_WORK_FACTOR} rekey accepts and ever writes"
            ),
        },
        D::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Error::DamagedBackup {
            reason: "it ends too early".to_owned(),
        },
        D::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => Error::DamagedBackup {
            reason: "its contents do not authenticate".to_owned(),
        },
        D::Io(io) => Error::DamagedBackup {
            reason: io.to_string(),
        },
    }
}

fn encode(m: &Manifest) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::new());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&m.vault.to_bytes());
    out.extend_from_slice(&m.created_at.as_millis().to_be_bytes());
    let count = u32::try_from(m.keys.len()).map_err(|_| Error::Encrypt {
        reason: "too many keys".to_owned(),
    })?;
    out.extend_from_slice(&count.to_be_bytes());
    for k in &m.keys {
        let fp = hex::decode(&k.fingerprint).map_err(|_| Error::UnusableKey {
            fingerprint: k.fingerprint.clone(),
            reason: "its fingerprint is not hex".to_owned(),
        })?;
        out.extend_from_slice(&fp);
        out.push(k.kind);
        let len = u32::try_from(k.der.len()).map_err(|_| Error::Encrypt {
            reason: "a key is too large".to_owned(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&k.der);
    }
    Ok(out)
}

/// Parses a manifest; total (any bytes give a manifest or an error). Every
/// key is parsed and must have the fingerprint it is filed under.
fn decode(bytes: &[u8]) -> Result<Manifest> {
    let bad = |reason: &str| Error::NotABackup {
        reason: reason.to_owned(),
    };
    let mut r = Reader(bytes);
    if r.take(MAGIC.len()) != Some(MAGIC.as_slice()) {
        return Err(bad("its contents are not a rekey certificate backup"));
    }
    let with_kinds = match r.take(1) {
        Some([VERSION]) => true,
        Some([VERSION_RSA_ONLY]) => false,
        Some(_) => return Err(bad("it was made by an unknown version of rekey")),
        None => return Err(bad("it ends inside its header")),
    };
    let vault = r
        .array::<16>()
        .map(VaultId::from_bytes)
        .ok_or_else(|| bad("it ends inside its header"))?;
    let created_at = r
        .array::<8>()
        .map(|b| Timestamp(i64::from_be_bytes(b)))
        .ok_or_else(|| bad("it ends inside its header"))?;
    let count = r
        .array::<4>()
        .map(u32::from_be_bytes)
        .ok_or_else(|| bad("it ends inside its header"))?;
    let mut keys = Vec::new();
    for _ in 0..count {
        let fp = r.array::<32>().ok_or_else(|| bad("it ends inside a key"))?;
        let kind = if with_kinds {
            match r.take(1) {
                Some([k]) => *k,
                _ => return Err(bad("it ends inside a key")),
            }
        } else {
            RSA_KIND
        };
        let len = r
            .array::<4>()
            .map(u32::from_be_bytes)
            .ok_or_else(|| bad("it ends inside a key"))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_KEY_LEN {
            return Err(bad("a key is implausibly large"));
        }
        let der = r.take(len).ok_or_else(|| bad("it ends inside a key"))?;
        let fingerprint_hex = hex::encode(fp);
        let key =
            LoadedKey::parse(&fingerprint_hex, kind, der).map_err(|why| Error::UnusableKey {
                fingerprint: fingerprint_hex.clone(),
                reason: format!("the backup holds a key that cannot be used: {why}"),
            })?;
        keys.push(key);
    }
    if !r.0.is_empty() {
        return Err(bad("it has trailing bytes"));
    }
    Ok(Manifest {
        vault,
        created_at,
        keys,
    })
}

/// What a backup holds, without its key material: what the parsers below
/// answer.
#[doc(hidden)]
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BackupContents {
    /// The vault it belongs to.
    pub vault: VaultId,
    /// When it was made.
    pub created_at: Timestamp,
    /// The fingerprints of its keys, in file order.
    pub fingerprints: Vec<String>,
}

impl From<&Manifest> for BackupContents {
    fn from(m: &Manifest) -> Self {
        Self {
            vault: m.vault,
            created_at: m.created_at,
            fingerprints: m.keys.iter().map(|k| k.fingerprint.clone()).collect(),
        }
    }
}

/// Parses a decrypted manifest: exactly what [`verify`] and [`import`] do
/// after decryption. For the fuzz targets and property tests.
#[doc(hidden)]
pub fn parse_manifest(plaintext: &[u8]) -> Result<BackupContents> {
    decode(plaintext).map(|m| BackupContents::from(&m))
}

/// Decrypts and parses the bytes of a backup file: exactly what [`verify`]
/// and [`import`] do before comparing with the vault, except that the
/// work factor cap can be lowered below [`MAX_WORK_FACTOR`] (the fuzz
/// target lowers it so that no input costs more than a millisecond).
#[doc(hidden)]
pub fn open_backup_bytes(
    ciphertext: &[u8],
    passphrase: &Passphrase,
    max_work_factor: u8,
) -> Result<BackupContents> {
    let plaintext = decrypt(ciphertext, passphrase, max_work_factor.min(MAX_WORK_FACTOR))?;
    parse_manifest(&plaintext)
}

/// Encodes a manifest from `(fingerprint hex, RSA PKCS#8 DER)` pairs, as
/// [`backup`] does (the pairs are not checked: the fuzz seeds and property
/// tests also write wrong ones).
#[doc(hidden)]
pub fn encode_manifest(
    vault: VaultId,
    created_at: Timestamp,
    keys: &[(&str, &[u8])],
) -> Result<Zeroizing<Vec<u8>>> {
    encode(&Manifest {
        vault,
        created_at,
        keys: keys
            .iter()
            .map(|(fp, der)| LoadedKey {
                fingerprint: (*fp).to_owned(),
                kind: RSA_KIND,
                der: Zeroizing::new(der.to_vec()),
            })
            .collect(),
    })
}

/// Encrypts `plaintext` to `passphrase` as [`backup`] does, with scrypt
/// work factor `log_n` (clamped to 1..=[`MAX_WORK_FACTOR`]).
#[doc(hidden)]
pub fn seal_backup_bytes(plaintext: &[u8], passphrase: &Passphrase, log_n: u8) -> Result<Vec<u8>> {
    encrypt(passphrase.secret()?, log_n, plaintext)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|b| b.try_into().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_core::{LegacyRsaPrivateKey, NewPrivateKey, Target};

    const KEY_A: &[u8] = include_bytes!("../../rekey-core/tests/fixtures/rsa-2048-a.pk8");

    fn manifest() -> Manifest {
        let key = LegacyRsaPrivateKey::from_pkcs8_der(KEY_A).unwrap();
        Manifest {
            vault: VaultId::from_bytes([9; 16]),
            created_at: Timestamp(1234),
            keys: vec![LoadedKey {
                fingerprint: key.public_key().fingerprint(),
                kind: RSA_KIND,
                der: Zeroizing::new(KEY_A.to_vec()),
            }],
        }
    }

    #[test]
    fn manifest_round_trips() {
        let bytes = encode(&manifest()).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(back.vault, VaultId::from_bytes([9; 16]));
        assert_eq!(back.created_at, Timestamp(1234));
        assert_eq!(back.keys.len(), 1);
        assert_eq!(back.keys[0].der.as_slice(), KEY_A);
        assert_eq!(encode(&back).unwrap().as_slice(), bytes.as_slice());
    }

    #[test]
    fn decode_is_total() {
        let bytes = encode(&manifest()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert!(matches!(decode(&trailing), Err(Error::NotABackup { .. })));
        let mut wrong_fp = bytes.to_vec();
        wrong_fp[MAGIC.len() + 1 + 16 + 8 + 4] ^= 1;
        assert!(matches!(decode(&wrong_fp), Err(Error::UnusableKey { .. })));
        let mut wrong_kind = bytes.to_vec();
        wrong_kind[MAGIC.len() + 1 + 16 + 8 + 4 + 32] = 9;
        assert!(matches!(
            decode(&wrong_kind),
            Err(Error::UnusableKey { .. })
        ));
        assert!(matches!(decode(b"hello"), Err(Error::NotABackup { .. })));
    }

    #[test]
    fn new_keys_round_trip_and_version_1_is_still_read() {
        let mut m = manifest();
        for target in [Target::HpkeP256, Target::HpkeMlKem768X25519] {
            let key = NewPrivateKey::generate(target, &mut rand_core::OsRng).unwrap();
            m.keys.push(LoadedKey {
                fingerprint: key.public_key().fingerprint(),
                kind: target.key_byte(),
                der: Zeroizing::new(key.dangerous_to_bytes().dangerous_as_bytes().to_vec()),
            });
        }
        let bytes = encode(&m).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(back.keys.len(), 3);
        for (a, b) in m.keys.iter().zip(&back.keys) {
            assert_eq!(a.fingerprint, b.fingerprint);
            assert_eq!(a.kind, b.kind);
            assert_eq!(a.der.as_slice(), b.der.as_slice());
        }
        // A new key filed under the fingerprint of another is refused.
        let mut swapped = m;
        let fp = swapped.keys[1].fingerprint.clone();
        swapped.keys[2].fingerprint = fp;
        assert!(matches!(
            decode(&encode(&swapped).unwrap()),
            Err(Error::UnusableKey { .. })
        ));
        // Version 1: no kind byte, every key RSA.
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC);
        v1.push(VERSION_RSA_ONLY);
        v1.extend_from_slice(&[9; 16]);
        v1.extend_from_slice(&1234i64.to_be_bytes());
        v1.extend_from_slice(&1u32.to_be_bytes());
        let key = LegacyRsaPrivateKey::from_pkcs8_der(KEY_A).unwrap();
        v1.extend_from_slice(&hex::decode(key.public_key().fingerprint()).unwrap());
        v1.extend_from_slice(&u32::try_from(KEY_A.len()).unwrap().to_be_bytes());
        v1.extend_from_slice(KEY_A);
        let back = decode(&v1).unwrap();
        assert_eq!(back.keys[0].kind, RSA_KIND);
        assert_eq!(back.keys[0].der.as_slice(), KEY_A);
    }

    #[test]
    fn passphrase_is_redacted() {
        let p = Passphrase::new("correct horse".to_owned());
        assert_eq!(format!("{p:?}"), "Passphrase([redacted])");
        assert!(matches!(
            Passphrase::new(String::new()).secret(),
            Err(Error::EmptyPassphrase)
        ));
    }
}
