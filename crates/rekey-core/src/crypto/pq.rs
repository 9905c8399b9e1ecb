//! The post-quantum HPKE KEMs of draft-ietf-hpke-pq: ML-KEM-768 (0x0041)
//! and the PQ/T hybrids MLKEM768-X25519, also called X-Wing (0x647a), and
//! MLKEM768-P256 (0x0050), as the hybrids are defined in
//! draft-irtf-cfrg-hybrid-kems and draft-irtf-cfrg-concrete-hybrid-kems.
//!
//! rekey writes grants with X-Wing only ([`XWingPrivateKey`],
//! [`XWingPublicKey`]); the other two are here because X-Wing is built from
//! the same parts and the official vectors exercise them.
//!
//! ML-KEM-768 runs on AWS-LC (the crate's `mlkem` module), X25519 on
//! AWS-LC through aws-lc-rs, P-256 through [`super::ec`]; the combiner is
//! SHA3-256 and the seed expansion SHAKE256 (RustCrypto `sha3`).
//!
//! A hybrid key pair is its 32-byte seed. Expanding it:
//!
//! ```text
//! seed_full = SHAKE256(seed, 64 + Nseed_T)
//! ML-KEM key  = KeyGen_internal(d = seed_full[0..32], z = seed_full[32..64])
//! group key   = RandomScalar(seed_full[64..64 + Nseed_T])
//! public key  = ML-KEM encapsulation key ‖ group public element
//! ```
//!
//! and the shared secret of an encapsulation is
//! `SHA3-256(ss_PQ ‖ ss_T ‖ ct_T ‖ ek_T ‖ label)`: the ML-KEM secret, the
//! group secret, the group part of `enc`, the group part of the public key,
//! and the KEM's label. The HPKE `shared_secret` is that value itself (no
//! DHKEM `ExtractAndExpand`).
//!
//! One deliberate difference from the drafts: AWS-LC's X25519 refuses an
//! all-zero result, so an X25519 half that is a low-order point makes
//! encapsulation fail with [`CryptoError::InvalidPublicKey`] and
//! decapsulation with [`CryptoError::Decrypt`], where the drafts would
//! derive a secret from it. Honest keys and ciphertexts never hit this.

use super::ec::{Curve, EcPrivateKey, EcPublicKey};
use super::hpke::{Kem, KemId, shake256_labeled_derive};
use super::mlkem::{self, MlKem768Secret};
use crate::error::CryptoError;
use crate::secret::SecretBytes;
use aws_lc_rs::agreement;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

/// Label of the X-Wing combiner: the six ASCII characters `\.//^\`.
const XWING_LABEL: &[u8] = b"\\.//^\\";
/// Label of the MLKEM768-P256 combiner.
const P256_LABEL: &[u8] = b"MLKEM768-P256";
/// Length of a hybrid seed (the private key).
const SEED_LEN: usize = 32;

/// The traditional half of a hybrid KEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
    /// Curve25519 (X-Wing).
    X25519,
    /// NIST P-256.
    P256,
}

impl Group {
    fn kem_id(self) -> KemId {
        match self {
            Group::X25519 => KemId::XWing,
            Group::P256 => KemId::MlKem768P256,
        }
    }

    fn label(self) -> &'static [u8] {
        match self {
            Group::X25519 => XWING_LABEL,
            Group::P256 => P256_LABEL,
        }
    }

    /// Length of a public element (`ek_T`, `ct_T`).
    fn element_len(self) -> usize {
        match self {
            Group::X25519 => 32,
            Group::P256 => 65,
        }
    }

    /// Bytes of seed the key expansion gives the group (`Group.Nseed`).
    fn seed_len(self) -> usize {
        match self {
            Group::X25519 => 32,
            Group::P256 => 128,
        }
    }

    /// Length of the hybrid public key.
    pub(crate) fn public_key_len(self) -> usize {
        mlkem::EK_LEN + self.element_len()
    }

    /// Length of the hybrid `enc`.
    pub(crate) fn enc_len(self) -> usize {
        mlkem::CT_LEN + self.element_len()
    }

    /// Length of the encapsulation randomness rekey draws: 32 bytes for
    /// ML-KEM, then the group's seed (`Nrandom` of draft -05).
    fn randomness_len(self) -> usize {
        mlkem::RANDOMNESS_LEN + self.seed_len()
    }

    /// Whether `len` bytes of encapsulation randomness are acceptable: the
    /// exact length for X25519; for P-256, ML-KEM's 32 bytes and then one
    /// or more 32-byte candidates for rejection sampling (draft -04 gives
    /// three, draft -05 four).
    fn randomness_len_ok(self, len: usize) -> bool {
        match self {
            Group::X25519 => len == self.randomness_len(),
            Group::P256 => len > mlkem::RANDOMNESS_LEN && (len - mlkem::RANDOMNESS_LEN) % 32 == 0,
        }
    }

    /// `Group.RandomScalar`: X25519 takes its seed as the scalar; P-256 takes
    /// the first 32-byte candidate that is neither zero nor above the group
    /// order.
    fn scalar_from_seed(self, seed: &[u8]) -> Result<GroupSecret, CryptoError> {
        match self {
            Group::X25519 => agreement::PrivateKey::from_private_key(&agreement::X25519, seed)
                .map(GroupSecret::X25519)
                .map_err(|_| CryptoError::Library("X25519 key from seed")),
            Group::P256 => seed
                .chunks_exact(32)
                .find_map(|candidate| EcPrivateKey::from_scalar_bytes(Curve::P256, candidate).ok())
                .map(|sk| GroupSecret::P256(Box::new(sk)))
                .ok_or(CryptoError::Library(
                    "rejection sampling found no P-256 scalar",
                )),
        }
    }
}

/// A group private key.
enum GroupSecret {
    /// Held by AWS-LC, which wipes it when freeing it.
    X25519(agreement::PrivateKey),
    /// Zeroized on drop.
    P256(Box<EcPrivateKey>),
}

impl GroupSecret {
    /// `Group.Exp(G, sk)`: the public element.
    fn public_element(&self) -> Result<Vec<u8>, CryptoError> {
        match self {
            GroupSecret::X25519(sk) => sk
                .compute_public_key()
                .map(|pk| pk.as_ref().to_vec())
                .map_err(|_| CryptoError::Library("X25519 public key")),
            GroupSecret::P256(sk) => Ok(sk.public_key_ref().to_sec1()),
        }
    }

    /// `ElementToSharedSecret(Exp(element, sk))`. `element` comes from the
    /// peer; a bad one gives `bad`.
    fn shared_secret(
        &self,
        element: &[u8],
        bad: CryptoError,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match self {
            GroupSecret::X25519(sk) => agreement::agree(
                sk,
                agreement::UnparsedPublicKey::new(&agreement::X25519, element),
                bad,
                |ss| Ok(Zeroizing::new(ss.to_vec())),
            ),
            GroupSecret::P256(sk) => {
                let pk = EcPublicKey::from_sec1(Curve::P256, element).map_err(|_| bad.clone())?;
                sk.dh(&pk).map_err(|_| bad)
            }
        }
    }
}

/// `SHA3-256(ss_PQ ‖ ss_T ‖ ct_T ‖ ek_T ‖ label)`.
fn combine(
    group: Group,
    ss_pq: &[u8],
    ss_t: &[u8],
    ct_t: &[u8],
    ek_t: &[u8],
) -> Zeroizing<Vec<u8>> {
    use sha3::Digest;
    let mut h = sha3::Sha3_256::new();
    h.update(ss_pq);
    h.update(ss_t);
    h.update(ct_t);
    h.update(ek_t);
    h.update(group.label());
    Zeroizing::new(h.finalize().to_vec())
}

/// A hybrid private key: its seed and the expanded halves.
pub(crate) struct HybridSecret {
    group: Group,
    seed: Zeroizing<[u8; SEED_LEN]>,
    pq: MlKem768Secret,
    t: GroupSecret,
    public: HybridPublic,
}

impl std::fmt::Debug for HybridSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HybridSecret({:?}, [redacted])", self.group)
    }
}

/// A hybrid public key: `ek_PQ ‖ ek_T`, length-checked, with the ML-KEM
/// encapsulation key checked (FIPS 203 §7.2).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HybridPublic {
    group: Group,
    bytes: Box<[u8]>,
}

impl HybridPublic {
    fn parse(group: Group, bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != group.public_key_len() {
            return Err(CryptoError::InvalidPublicKey(
                "wrong length for the hybrid KEM's public key",
            ));
        }
        if !mlkem::encapsulation_key_is_valid(&bytes[..mlkem::EK_LEN]) {
            return Err(CryptoError::InvalidPublicKey(
                "ML-KEM encapsulation key fails its modulus check",
            ));
        }
        if group == Group::P256 {
            EcPublicKey::from_sec1(Curve::P256, &bytes[mlkem::EK_LEN..])?;
        }
        Ok(Self {
            group,
            bytes: bytes.into(),
        })
    }

    fn ek_pq(&self) -> &[u8] {
        &self.bytes[..mlkem::EK_LEN]
    }

    fn ek_t(&self) -> &[u8] {
        &self.bytes[mlkem::EK_LEN..]
    }
}

impl HybridSecret {
    /// `expandKey(seed)` of the generic hybrid construction.
    fn from_seed(group: Group, seed: &[u8]) -> Result<Self, CryptoError> {
        let seed: [u8; SEED_LEN] = seed.try_into().map_err(|_| {
            CryptoError::InvalidPrivateKey("a hybrid KEM private key is a 32-byte seed")
        })?;
        let seed = Zeroizing::new(seed);
        let mut full = Zeroizing::new(vec![0u8; mlkem::SEED_LEN + group.seed_len()]);
        {
            use sha3::digest::{ExtendableOutput, Update, XofReader};
            let mut xof = sha3::Shake256::default();
            xof.update(&seed[..]);
            xof.finalize_xof().read(&mut full);
        }
        let mut pq_seed = Zeroizing::new([0u8; mlkem::SEED_LEN]);
        pq_seed.copy_from_slice(&full[..mlkem::SEED_LEN]);
        let pq = MlKem768Secret::from_seed(&pq_seed)
            .ok_or(CryptoError::Library("ML-KEM-768 key generation"))?;
        let t = group.scalar_from_seed(&full[mlkem::SEED_LEN..])?;
        let mut public = pq.encapsulation_key().to_vec();
        public.extend_from_slice(&t.public_element()?);
        Ok(Self {
            group,
            seed,
            pq,
            t,
            public: HybridPublic {
                group,
                bytes: public.into(),
            },
        })
    }

    /// HPKE `DeriveKeyPair`: the seed is
    /// `SHAKE256.LabeledDerive(ikm, "DeriveKeyPair", "", 32)`.
    fn derive(group: Group, ikm: &[u8]) -> Result<Self, CryptoError> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        shake256_labeled_derive(group.kem_id(), ikm, b"DeriveKeyPair", b"", &mut seed[..])?;
        Self::from_seed(group, &seed[..])
    }

    fn generate(group: Group, rng: &mut impl CryptoRngCore) -> Result<Self, CryptoError> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rng.try_fill_bytes(&mut seed[..])
            .map_err(|_| CryptoError::Library("random source"))?;
        Self::from_seed(group, &seed[..])
    }

    /// `Decaps`: a malformed `enc` gives [`CryptoError::Decrypt`].
    fn decap(&self, enc: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if enc.len() != self.group.enc_len() {
            return Err(CryptoError::Decrypt);
        }
        let (ct_pq, ct_t) = enc.split_at(mlkem::CT_LEN);
        let ss_pq = self.pq.decapsulate(ct_pq).ok_or(CryptoError::Decrypt)?;
        let ss_t = self.t.shared_secret(ct_t, CryptoError::Decrypt)?;
        Ok(combine(
            self.group,
            &ss_pq[..],
            &ss_t,
            ct_t,
            self.public.ek_t(),
        ))
    }
}

/// `EncapsDerand(ek, randomness)`: `(shared_secret, enc)`.
fn encap_derand(
    pk: &HybridPublic,
    randomness: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CryptoError> {
    let group = pk.group;
    if !group.randomness_len_ok(randomness.len()) {
        return Err(CryptoError::Library(
            "wrong length of encapsulation randomness",
        ));
    }
    let (r_pq, r_t) = randomness.split_at(mlkem::RANDOMNESS_LEN);
    let mut m = Zeroizing::new([0u8; mlkem::RANDOMNESS_LEN]);
    m.copy_from_slice(r_pq);
    let (ct_pq, ss_pq) = mlkem::encapsulate_derand(pk.ek_pq(), &m).ok_or(
        CryptoError::InvalidPublicKey("ML-KEM encapsulation key refused"),
    )?;
    let sk_e = group.scalar_from_seed(r_t)?;
    let ct_t = sk_e.public_element()?;
    let ss_t = sk_e.shared_secret(
        pk.ek_t(),
        CryptoError::InvalidPublicKey("group half of the public key refused"),
    )?;
    let ss = combine(group, &ss_pq[..], &ss_t, &ct_t, pk.ek_t());
    let mut enc = ct_pq;
    enc.extend_from_slice(&ct_t);
    Ok((ss, enc))
}

fn fresh_randomness(
    len: usize,
    rng: &mut impl CryptoRngCore,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut r = Zeroizing::new(vec![0u8; len]);
    rng.try_fill_bytes(&mut r)
        .map_err(|_| CryptoError::Library("random source"))?;
    Ok(r)
}

/// A hybrid KEM over ML-KEM-768 and a group, on the crate-internal key
/// types (MLKEM768-P256 in the vectors; X-Wing's public face is [`XWing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HybridKem(pub(crate) Group);

#[cfg_attr(not(test), allow(dead_code))]
impl HybridKem {
    /// HPKE `DeriveKeyPair`.
    pub(crate) fn derive_key_pair(self, ikm: &[u8]) -> Result<HybridSecret, CryptoError> {
        HybridSecret::derive(self.0, ikm)
    }

    /// A key pair from its 32-byte seed.
    pub(crate) fn key_pair_from_seed(self, seed: &[u8]) -> Result<HybridSecret, CryptoError> {
        HybridSecret::from_seed(self.0, seed)
    }

    /// Parses a public key.
    pub(crate) fn public_key(self, bytes: &[u8]) -> Result<HybridPublic, CryptoError> {
        HybridPublic::parse(self.0, bytes)
    }
}

#[cfg_attr(not(test), allow(dead_code))]
impl HybridSecret {
    pub(crate) fn seed(&self) -> &[u8] {
        &self.seed[..]
    }

    pub(crate) fn public(&self) -> &HybridPublic {
        &self.public
    }
}

#[cfg_attr(not(test), allow(dead_code))]
impl HybridPublic {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Kem for HybridKem {
    type PublicKey = HybridPublic;
    type PrivateKey = HybridSecret;
    type Ephemeral = Zeroizing<Vec<u8>>;

    fn id(&self) -> KemId {
        self.0.kem_id()
    }

    fn generate_ephemeral(
        &self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        fresh_randomness(self.0.randomness_len(), rng)
    }

    fn encap_with(
        &self,
        pk_r: &HybridPublic,
        randomness: &Zeroizing<Vec<u8>>,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CryptoError> {
        if pk_r.group != self.0 {
            return Err(CryptoError::InvalidPublicKey("public key of another KEM"));
        }
        encap_derand(pk_r, randomness)
    }

    fn decap(&self, enc: &[u8], sk_r: &HybridSecret) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sk_r.group != self.0 {
            return Err(CryptoError::Decrypt);
        }
        sk_r.decap(enc)
    }
}

/// An X-Wing (MLKEM768-X25519) private key: a 32-byte seed, expanded once
/// into its ML-KEM-768 and X25519 keys. The seed is wiped on drop and
/// AWS-LC wipes the expanded keys as it frees them; `Debug` prints
/// `[redacted]`.
pub struct XWingPrivateKey(HybridSecret);

impl std::fmt::Debug for XWingPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XWingPrivateKey([redacted])")
    }
}

/// An X-Wing public key: the ML-KEM-768 encapsulation key (1,184 bytes)
/// followed by the X25519 public key (32 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct XWingPublicKey(HybridPublic);

impl std::fmt::Debug for XWingPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head: String = self.0.bytes[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        write!(f, "XWingPublicKey({head}…)")
    }
}

impl XWingPrivateKey {
    /// Length of the seed that is the private key.
    pub const SEED_LEN: usize = SEED_LEN;

    /// A fresh key from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Result<Self, CryptoError> {
        HybridSecret::generate(Group::X25519, rng).map(Self)
    }

    /// The key with this 32-byte seed (what [`Self::dangerous_to_seed_bytes`]
    /// returns and what a KEK wraps).
    pub fn from_seed(seed: &[u8]) -> Result<Self, CryptoError> {
        HybridSecret::from_seed(Group::X25519, seed).map(Self)
    }

    /// The key HPKE `DeriveKeyPair` derives from `ikm` (deterministic
    /// fixtures and the official vectors).
    pub fn derive_from_ikm(ikm: &[u8]) -> Result<Self, CryptoError> {
        HybridSecret::derive(Group::X25519, ikm).map(Self)
    }

    /// The 32-byte seed: the whole private key.
    #[must_use]
    pub fn dangerous_to_seed_bytes(&self) -> SecretBytes {
        SecretBytes::from_slice(&self.0.seed[..])
    }

    /// The matching public key.
    #[must_use]
    pub fn public_key(&self) -> XWingPublicKey {
        XWingPublicKey(self.0.public.clone())
    }
}

impl XWingPublicKey {
    /// Length of an encoded public key.
    pub const LEN: usize = mlkem::EK_LEN + 32;
    /// Length of an X-Wing `enc`.
    pub const ENC_LEN: usize = mlkem::CT_LEN + 32;

    /// Parses `ek_ML-KEM ‖ pk_X25519`. Refuses a wrong length and an
    /// ML-KEM key that fails the FIPS 203 modulus check.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        HybridPublic::parse(Group::X25519, bytes).map(Self)
    }

    /// The encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// Lowercase hex SHA-256 of the encoding.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        super::fingerprint(self.as_bytes())
    }
}

/// X-Wing as an HPKE KEM on the public key types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct XWing;

impl Kem for XWing {
    type PublicKey = XWingPublicKey;
    type PrivateKey = XWingPrivateKey;
    type Ephemeral = Zeroizing<Vec<u8>>;

    fn id(&self) -> KemId {
        KemId::XWing
    }

    fn generate_ephemeral(
        &self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        HybridKem(Group::X25519).generate_ephemeral(rng)
    }

    fn encap_with(
        &self,
        pk_r: &XWingPublicKey,
        randomness: &Zeroizing<Vec<u8>>,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CryptoError> {
        HybridKem(Group::X25519).encap_with(&pk_r.0, randomness)
    }

    fn decap(&self, enc: &[u8], sk_r: &XWingPrivateKey) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        HybridKem(Group::X25519).decap(enc, &sk_r.0)
    }
}

/// ML-KEM-768 alone as an HPKE KEM (draft-ietf-hpke-pq §3); the private key
/// is the 64-byte seed `d ‖ z`. Only the vectors use it.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MlKem768;

#[cfg(test)]
impl MlKem768 {
    /// HPKE `DeriveKeyPair`: the private key is the seed
    /// `dk = SHAKE256.LabeledDerive(ikm, "DeriveKeyPair", "", 64)`.
    pub(crate) fn derive_key_pair(
        self,
        ikm: &[u8],
    ) -> Result<(Zeroizing<[u8; mlkem::SEED_LEN]>, MlKem768Secret), CryptoError> {
        let mut dk = Zeroizing::new([0u8; mlkem::SEED_LEN]);
        shake256_labeled_derive(KemId::MlKem768, ikm, b"DeriveKeyPair", b"", &mut dk[..])?;
        let sk = MlKem768Secret::from_seed(&dk)
            .ok_or(CryptoError::Library("ML-KEM-768 key generation"))?;
        Ok((dk, sk))
    }
}

#[cfg(test)]
impl Kem for MlKem768 {
    type PublicKey = Vec<u8>;
    type PrivateKey = MlKem768Secret;
    type Ephemeral = Zeroizing<Vec<u8>>;

    fn id(&self) -> KemId {
        KemId::MlKem768
    }

    fn generate_ephemeral(
        &self,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        fresh_randomness(mlkem::RANDOMNESS_LEN, rng)
    }

    fn encap_with(
        &self,
        pk_r: &Vec<u8>,
        randomness: &Zeroizing<Vec<u8>>,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CryptoError> {
        let m: [u8; mlkem::RANDOMNESS_LEN] = randomness[..]
            .try_into()
            .map_err(|_| CryptoError::Library("wrong length of encapsulation randomness"))?;
        let m = Zeroizing::new(m);
        let (ct, ss) = mlkem::encapsulate_derand(pk_r, &m).ok_or(CryptoError::InvalidPublicKey(
            "ML-KEM encapsulation key refused",
        ))?;
        Ok((Zeroizing::new(ss.to_vec()), ct))
    }

    fn decap(&self, enc: &[u8], sk_r: &MlKem768Secret) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        sk_r.decapsulate(enc)
            .map(|ss| Zeroizing::new(ss.to_vec()))
            .ok_or(CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn xwing_round_trip_and_sizes() {
        let sk = XWingPrivateKey::generate(&mut OsRng).unwrap();
        let pk = sk.public_key();
        assert_eq!(pk.as_bytes().len(), XWingPublicKey::LEN);
        assert_eq!(XWingPublicKey::LEN, 1216);
        let eph = XWing.generate_ephemeral(&mut OsRng).unwrap();
        let (ss, enc) = XWing.encap_with(&pk, &eph).unwrap();
        assert_eq!(enc.len(), XWingPublicKey::ENC_LEN);
        assert_eq!(XWingPublicKey::ENC_LEN, 1120);
        assert_eq!(XWing.decap(&enc, &sk).unwrap(), ss);
        // The seed is the whole key.
        let again =
            XWingPrivateKey::from_seed(sk.dangerous_to_seed_bytes().dangerous_as_bytes()).unwrap();
        assert_eq!(again.public_key(), pk);
        // Another key gets another secret (ML-KEM rejects implicitly).
        let other = XWingPrivateKey::generate(&mut OsRng).unwrap();
        assert_ne!(XWing.decap(&enc, &other).unwrap(), ss);
    }

    #[test]
    fn malformed_lengths_are_refused() {
        let sk = XWingPrivateKey::generate(&mut OsRng).unwrap();
        let pk = sk.public_key();
        let eph = XWing.generate_ephemeral(&mut OsRng).unwrap();
        let (_, enc) = XWing.encap_with(&pk, &eph).unwrap();
        for bad in [
            &enc[..enc.len() - 1],
            &[enc.as_slice(), &[0]].concat()[..],
            &[][..],
        ] {
            assert_eq!(XWing.decap(bad, &sk).unwrap_err(), CryptoError::Decrypt);
        }
        let bytes = pk.as_bytes();
        assert!(matches!(
            XWingPublicKey::from_bytes(&bytes[..bytes.len() - 1]),
            Err(CryptoError::InvalidPublicKey(_))
        ));
        assert!(matches!(
            XWingPublicKey::from_bytes(&[bytes, &[0]].concat()),
            Err(CryptoError::InvalidPublicKey(_))
        ));
        let mut unreduced = bytes.to_vec();
        unreduced[0] = 0xff;
        unreduced[1] |= 0x0f;
        assert!(matches!(
            XWingPublicKey::from_bytes(&unreduced),
            Err(CryptoError::InvalidPublicKey(_))
        ));
        assert!(XWingPrivateKey::from_seed(&[1u8; 31]).is_err());
        assert!(XWingPrivateKey::from_seed(&[1u8; 33]).is_err());
        let short = Zeroizing::new(vec![0u8; 63]);
        assert!(XWing.encap_with(&pk, &short).is_err());
    }

    #[test]
    fn low_order_x25519_half_is_refused_not_used() {
        let sk = XWingPrivateKey::generate(&mut OsRng).unwrap();
        let pk = sk.public_key();
        // An all-zero X25519 public key is a low-order point.
        let mut bytes = pk.as_bytes().to_vec();
        bytes[mlkem::EK_LEN..].fill(0);
        let weak = XWingPublicKey::from_bytes(&bytes).unwrap();
        let eph = XWing.generate_ephemeral(&mut OsRng).unwrap();
        assert!(matches!(
            XWing.encap_with(&weak, &eph),
            Err(CryptoError::InvalidPublicKey(_))
        ));
        let (_, mut enc) = XWing.encap_with(&pk, &eph).unwrap();
        enc[mlkem::CT_LEN..].fill(0);
        assert_eq!(XWing.decap(&enc, &sk).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn debug_is_redacted() {
        let sk = XWingPrivateKey::generate(&mut OsRng).unwrap();
        let seed = sk.dangerous_to_seed_bytes();
        let hex: String = seed
            .dangerous_as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let printed = format!("{sk:?}");
        assert!(printed.contains("[redacted]"));
        assert!(!printed.contains(&hex[..8]));
    }
}
