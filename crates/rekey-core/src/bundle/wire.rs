//! The bundle's binary encoding. Total parser: any bytes give a
//! [`SignedBundle`] or a [`WireError`], never a panic, and allocation is
//! bounded by the input length. Layout (all integers big-endian):
//!
//! ```text
//! signed   = "rekey-bundle" ‖ 01 ‖ u32 body_len ‖ body ‖ u16 n ‖ signature*n
//! body     = vault(16) ‖ run(16) ‖ submitter(16) ‖ u32 n ‖ part*n
//! part     = principal(16) ‖ legacy key pair(16) ‖ new key pair(16) ‖ key kind(1)
//!            ‖ public key (65 | 133 | 1281) ‖ has_wrapped(1) ‖ [u32 len ‖ envelope]
//!            ‖ u32 n ‖ grant*n ‖ u32 n ‖ non_migratable*n ‖ u32 n ‖ holder*n
//! grant    = replaces(16) ‖ subject kind(1) ‖ subject id(16) ‖ u32 len ‖ envelope
//! non_migratable = grant(16) ‖ reason(1)
//! holder   = holder(16) ‖ holder key pair(16) ‖ u32 len ‖ envelope
//! signature = principal(16) ‖ kind(1) ‖ u16 len ‖ bytes
//! ```
//!
//! A signature covers `"rekey/v1/bundle-signature" ‖ kind ‖ principal ‖
//! SHA-256(body)`.

use super::{
    Bundle, BundleSignature, HolderGrant, NewGrant, NewKeyPair, NonMigratableEntry,
    NonMigratableReason, PrincipalPart, SignatureKind, SignedBundle,
};
use crate::crypto::target::{NewPublicKey, Target};
use crate::envelope::Envelope;
use crate::error::EnvelopeError;
use crate::ids::{GrantId, KeyPairId, PrincipalId, RecordId, RunId, Subject, VaultId};
use sha2::{Digest, Sha256};

/// Magic bytes of an encoded bundle.
pub const MAGIC: &[u8; 12] = b"rekey-bundle";
/// Encoding version.
pub const VERSION: u8 = 1;
/// Prefix of every signed message.
pub const SIGNATURE_LABEL: &[u8] = b"rekey/v1/bundle-signature";

/// What is wrong with a bundle's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes end inside a field.
    #[error("bundle is truncated inside {0}")]
    Truncated(&'static str),
    /// Not a bundle.
    #[error("not a rekey bundle (bad magic bytes)")]
    BadMagic,
    /// Another encoding version.
    #[error("bundle encoding version {0} is not supported (this build reads 1)")]
    UnsupportedVersion(u8),
    /// Bytes after the end.
    #[error("{0} unexpected bytes after the end of the bundle")]
    TrailingBytes(usize),
    /// A byte that must be one of a few values is not.
    #[error("invalid {what}: {value}")]
    BadTag {
        /// Which field.
        what: &'static str,
        /// The byte found.
        value: u8,
    },
    /// A public key that is not a valid key of its kind (a point off its
    /// curve, a hybrid key whose halves do not parse).
    #[error("a new public key is not a valid key of its kind")]
    BadPublicKey,
    /// An envelope that does not parse.
    #[error("invalid envelope in {what}: {source}")]
    BadEnvelope {
        /// Where.
        what: &'static str,
        /// Why.
        source: EnvelopeError,
    },
    /// A count larger than the bundle could hold.
    #[error("bundle declares more {0} than its bytes can hold")]
    CountTooLarge(&'static str),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated(what));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<usize, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn id(&mut self, what: &'static str) -> Result<[u8; 16], WireError> {
        let b = self.take(16, what)?;
        let mut out = [0u8; 16];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A count of items of at least `min_len` bytes each.
    fn count(&mut self, what: &'static str, min_len: usize) -> Result<usize, WireError> {
        let n = self.u32(what)?;
        if n.saturating_mul(min_len) > self.remaining() {
            return Err(WireError::CountTooLarge(what));
        }
        Ok(n)
    }

    fn envelope(&mut self, what: &'static str) -> Result<Envelope, WireError> {
        let len = self.u32(what)?;
        let bytes = self.take(len, what)?;
        Envelope::parse(bytes).map_err(|source| WireError::BadEnvelope { what, source })
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Counts and lengths are bounded far below 4 GiB by the server's body
    // limit; saturate rather than wrap if a caller ever exceeds it.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_envelope(out: &mut Vec<u8>, env: &Envelope) {
    put_u32(out, env.as_bytes().len());
    out.extend_from_slice(env.as_bytes());
}

fn put_subject(out: &mut Vec<u8>, s: Subject) {
    out.extend_from_slice(&s.to_bytes());
}

/// Encodes a bundle body.
#[must_use]
pub fn encode_body(bundle: &Bundle) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + bundle.grant_count() * 140);
    out.extend_from_slice(&bundle.vault.to_bytes());
    out.extend_from_slice(&bundle.run.to_bytes());
    out.extend_from_slice(&bundle.submitter.to_bytes());
    put_u32(&mut out, bundle.parts.len());
    for part in &bundle.parts {
        out.extend_from_slice(&part.principal.to_bytes());
        out.extend_from_slice(&part.legacy_key_pair.to_bytes());
        out.extend_from_slice(&part.new_key_pair.id.to_bytes());
        out.push(part.new_key_pair.public_key.target().key_byte());
        out.extend_from_slice(&part.new_key_pair.public_key.to_bytes());
        match &part.new_key_pair.wrapped_private {
            Some(env) => {
                out.push(1);
                put_envelope(&mut out, env);
            }
            None => out.push(0),
        }
        put_u32(&mut out, part.grants.len());
        for g in &part.grants {
            out.extend_from_slice(&g.replaces.to_bytes());
            put_subject(&mut out, g.subject);
            put_envelope(&mut out, &g.envelope);
        }
        put_u32(&mut out, part.non_migratable.len());
        for nm in &part.non_migratable {
            out.extend_from_slice(&nm.grant.to_bytes());
            out.push(nm.reason.to_byte());
        }
        put_u32(&mut out, part.holder_grants.len());
        for h in &part.holder_grants {
            out.extend_from_slice(&h.holder.to_bytes());
            out.extend_from_slice(&h.holder_key_pair.to_bytes());
            put_envelope(&mut out, &h.envelope);
        }
    }
    out
}

fn subject(r: &mut Reader<'_>) -> Result<Subject, WireError> {
    let kind = r.u8("subject kind")?;
    let id = r.id("subject id")?;
    match kind {
        1 => Ok(Subject::RecordKey(RecordId::from_bytes(id))),
        2 => Ok(Subject::PrivateKey(KeyPairId::from_bytes(id))),
        value => Err(WireError::BadTag {
            what: "subject kind",
            value,
        }),
    }
}

/// Decodes a bundle body.
pub fn decode_body(bytes: &[u8]) -> Result<Bundle, WireError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let vault = VaultId::from_bytes(r.id("vault id")?);
    let run = RunId::from_bytes(r.id("run id")?);
    let submitter = PrincipalId::from_bytes(r.id("submitter id")?);
    let n_parts = r.count("parts", 16 * 3 + 1 + 65 + 1 + 12)?;
    let mut parts = Vec::with_capacity(n_parts);
    for _ in 0..n_parts {
        let principal = PrincipalId::from_bytes(r.id("part principal")?);
        let legacy_key_pair = KeyPairId::from_bytes(r.id("legacy key pair id")?);
        let new_id = KeyPairId::from_bytes(r.id("new key pair id")?);
        let key_byte = r.u8("key kind")?;
        let target = Target::from_key_byte(key_byte).ok_or(WireError::BadTag {
            what: "key kind",
            value: key_byte,
        })?;
        let point = r.take(target.public_key_len(), "new public key")?;
        let public_key =
            NewPublicKey::from_bytes(target, point).map_err(|_| WireError::BadPublicKey)?;
        let wrapped_private = match r.u8("wrapped-key flag")? {
            0 => None,
            1 => Some(r.envelope("wrapped private key")?),
            value => {
                return Err(WireError::BadTag {
                    what: "wrapped-key flag",
                    value,
                });
            }
        };
        let n = r.count("grants", 16 + 17 + 4)?;
        let mut grants = Vec::with_capacity(n);
        for _ in 0..n {
            let replaces = GrantId::from_bytes(r.id("grant id")?);
            let subject = subject(&mut r)?;
            let envelope = r.envelope("grant envelope")?;
            grants.push(NewGrant {
                replaces,
                subject,
                envelope,
            });
        }
        let n = r.count("non-migratable grants", 17)?;
        let mut non_migratable = Vec::with_capacity(n);
        for _ in 0..n {
            let grant = GrantId::from_bytes(r.id("non-migratable grant id")?);
            let value = r.u8("non-migratable reason")?;
            let reason = NonMigratableReason::from_byte(value).ok_or(WireError::BadTag {
                what: "non-migratable reason",
                value,
            })?;
            non_migratable.push(NonMigratableEntry { grant, reason });
        }
        let n = r.count("holder grants", 16 + 16 + 4)?;
        let mut holder_grants = Vec::with_capacity(n);
        for _ in 0..n {
            let holder = PrincipalId::from_bytes(r.id("holder id")?);
            let holder_key_pair = KeyPairId::from_bytes(r.id("holder key pair id")?);
            let envelope = r.envelope("holder grant envelope")?;
            holder_grants.push(HolderGrant {
                holder,
                holder_key_pair,
                envelope,
            });
        }
        parts.push(PrincipalPart {
            principal,
            legacy_key_pair,
            new_key_pair: NewKeyPair {
                id: new_id,
                public_key,
                wrapped_private,
            },
            grants,
            non_migratable,
            holder_grants,
        });
    }
    if r.remaining() > 0 {
        return Err(WireError::TrailingBytes(r.remaining()));
    }
    Ok(Bundle {
        vault,
        run,
        submitter,
        parts,
    })
}

/// The bytes a signature of `kind` by `principal` covers.
#[must_use]
pub fn signed_message(body: &[u8], kind: SignatureKind, principal: PrincipalId) -> Vec<u8> {
    signed_message_of_digest(&body_digest(body), kind, principal)
}

/// SHA-256 of a bundle body: what every signature of the bundle covers.
/// A bundle carries two signatures per part, so builders and checkers hash
/// the body once and call [`signed_message_of_digest`] per signature
/// (hashing it per signature is quadratic in the parts of a large bundle).
#[must_use]
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// [`signed_message`] from the body's [`body_digest`].
#[must_use]
pub fn signed_message_of_digest(
    digest: &[u8; 32],
    kind: SignatureKind,
    principal: PrincipalId,
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNATURE_LABEL.len() + 1 + 16 + 32);
    msg.extend_from_slice(SIGNATURE_LABEL);
    msg.push(kind.to_byte());
    msg.extend_from_slice(&principal.to_bytes());
    msg.extend_from_slice(digest);
    msg
}

impl SignedBundle {
    /// Assembles a signed bundle from a body and its signatures.
    pub(crate) fn from_parts(
        body: Vec<u8>,
        bundle: Bundle,
        signatures: Vec<BundleSignature>,
    ) -> Self {
        Self {
            body,
            bundle,
            signatures,
        }
    }

    /// Encodes for transport.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64 + self.signatures.len() * 300);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        put_u32(&mut out, self.body.len());
        out.extend_from_slice(&self.body);
        out.extend_from_slice(
            &u16::try_from(self.signatures.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        for s in &self.signatures {
            out.extend_from_slice(&s.principal.to_bytes());
            out.push(s.kind.to_byte());
            out.extend_from_slice(
                &u16::try_from(s.bytes.len())
                    .unwrap_or(u16::MAX)
                    .to_be_bytes(),
            );
            out.extend_from_slice(&s.bytes);
        }
        out
    }

    /// Parses an encoded bundle. Total.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.take(MAGIC.len(), "magic")
            .map_err(|_| WireError::BadMagic)?
            != MAGIC
        {
            return Err(WireError::BadMagic);
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let body_len = r.u32("body length")?;
        let body = r.take(body_len, "body")?.to_vec();
        let bundle = decode_body(&body)?;
        let n = usize::from(r.u16("signature count")?);
        if n.saturating_mul(19) > r.remaining() {
            return Err(WireError::CountTooLarge("signatures"));
        }
        let mut signatures = Vec::with_capacity(n);
        for _ in 0..n {
            let principal = PrincipalId::from_bytes(r.id("signature principal")?);
            let value = r.u8("signature kind")?;
            let kind = SignatureKind::from_byte(value).ok_or(WireError::BadTag {
                what: "signature kind",
                value,
            })?;
            let len = usize::from(r.u16("signature length")?);
            let bytes = r.take(len, "signature")?.to_vec();
            signatures.push(BundleSignature {
                principal,
                kind,
                bytes,
            });
        }
        if r.remaining() > 0 {
            return Err(WireError::TrailingBytes(r.remaining()));
        }
        Ok(Self {
            body,
            bundle,
            signatures,
        })
    }
}
