//! Conformance: RFC 9180, draft-ietf-hpke-pq and Wycheproof vectors from the repository's
//! `vectors/` folder (provenance in `vectors/README.md`; `$REKEY_VECTORS_DIR`
//! points elsewhere). Every case of the selected groups runs; a missing file
//! fails loudly rather than passing silently.

use super::aead::Aead;
use super::ec::{Curve, EcPrivateKey, EcPublicKey};
use super::hpke::{self, DhKem, Kem, KemId, Suite};
use super::kdf::Kdf;
use super::mlkem::MlKem768Secret;
use super::pq::{Group, HybridKem, MlKem768, XWing, XWingPrivateKey, XWingPublicKey};
use super::rsa::LegacyRsaPrivateKey;
use crate::envelope::Scheme;
use crate::error::CryptoError;
use serde_json::Value;
use std::path::PathBuf;

fn vectors_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("REKEY_VECTORS_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.join("../../vectors")
}

fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "test vectors missing at {} ({e}): they ship in the repository's vectors/ \
             folder (or set REKEY_VECTORS_DIR)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

fn run_hpke_file(name: &str, curve: Curve) -> usize {
    let entries = load(name);
    let mut checked = 0;
    for entry in entries.as_array().unwrap() {
        if entry["mode"].as_u64() != Some(0) {
            continue;
        }
        let aead = match entry["aead_id"].as_u64() {
            Some(1) => Aead::Aes128Gcm,
            Some(2) => Aead::Aes256Gcm,
            other => panic!("unexpected aead {other:?}"),
        };
        let kdf = match entry["kdf_id"].as_u64() {
            Some(1) => Kdf::Sha256,
            Some(3) => Kdf::Sha512,
            other => panic!("unexpected kdf {other:?}"),
        };
        let kem = DhKem(curve);
        let suite = Suite {
            kem: kem.id(),
            kdf,
            aead,
        };
        let sk_r = kem.derive_key_pair(&h(&entry["ikmR"])).unwrap();
        let sk_e = kem.derive_key_pair(&h(&entry["ikmE"])).unwrap();
        assert_eq!(
            sk_r.dangerous_to_scalar_bytes().dangerous_as_bytes(),
            &h(&entry["skRm"])[..]
        );
        assert_eq!(
            sk_e.dangerous_to_scalar_bytes().dangerous_as_bytes(),
            &h(&entry["skEm"])[..]
        );
        let pk_r = sk_r.public_key();
        assert_eq!(pk_r.to_sec1(), h(&entry["pkRm"]));
        assert_eq!(sk_e.public_key().to_sec1(), h(&entry["pkEm"]));

        let (shared, enc) = kem.encap_with(&pk_r, &sk_e).unwrap();
        assert_eq!(enc, h(&entry["enc"]));
        assert_eq!(&shared[..], &h(&entry["shared_secret"])[..]);
        let shared_r = kem.decap(&enc, &sk_r).unwrap();
        assert_eq!(&shared_r[..], &shared[..]);
        checked += run_key_schedule(entry, suite, &shared, &shared_r);
    }
    checked
}

/// Key schedule, every encryption (seal and open) and every export of one
/// base-mode entry. Returns the number of encryptions and exports checked.
fn run_key_schedule(entry: &Value, suite: Suite, shared_s: &[u8], shared_r: &[u8]) -> usize {
    let mut checked = 0;
    // `info` is hex; decoded once it is the ASCII text the key schedule uses
    // (in the draft-ietf-hpke-pq files that text is itself hex digits).
    let info = h(&entry["info"]);
    let mut sender = hpke::key_schedule_base(suite, shared_s, &info).unwrap();
    let mut receiver = hpke::key_schedule_base(suite, shared_r, &info).unwrap();
    assert_eq!(&sender.key[..], &h(&entry["key"])[..]);
    assert_eq!(&sender.base_nonce[..], &h(&entry["base_nonce"])[..]);
    assert_eq!(
        &sender.exporter_secret[..],
        &h(&entry["exporter_secret"])[..]
    );

    for (seq, enc_case) in entry["encryptions"].as_array().unwrap().iter().enumerate() {
        let aad = h(&enc_case["aad"]);
        let pt = h(&enc_case["pt"]);
        let ct = h(&enc_case["ct"]);
        assert_eq!(sender.seal(&aad, &pt).unwrap(), ct, "seal seq {seq}");
        assert_eq!(
            &receiver.open(&aad, &ct).unwrap()[..],
            &pt[..],
            "open seq {seq}"
        );
        checked += 1;
    }
    for export in entry["exports"].as_array().unwrap() {
        let len = usize::try_from(export["L"].as_u64().unwrap()).unwrap();
        let got = receiver
            .export(&h(&export["exporter_context"]), len)
            .unwrap();
        assert_eq!(&got[..], &h(&export["exported_value"])[..]);
        checked += 1;
    }
    checked
}

/// What one draft-ietf-hpke-pq file exercised.
#[derive(Debug, Default, PartialEq, Eq)]
struct PqCounts {
    /// Entries whose KEM checks (key pair, `enc`, secret, decapsulation)
    /// passed, by KEM: ML-KEM-768, MLKEM768-P256, X-Wing.
    kem_entries: [usize; 3],
    /// Entries whose key schedule was checked too (the HKDF-SHA256 ones).
    schedules: usize,
    /// Encryptions and exports checked.
    encryptions_and_exports: usize,
}

/// The KEM part of one entry: `enc` and `shared_secret` from `ikmE` by
/// derandomised encapsulation to `pkRm`, and decapsulation with the
/// recipient key. Returns the two secrets.
fn run_pq_kem<K: Kem<Ephemeral = zeroize::Zeroizing<Vec<u8>>>>(
    kem: &K,
    entry: &Value,
    pk: &K::PublicKey,
    sk: &K::PrivateKey,
) -> (Vec<u8>, Vec<u8>) {
    let randomness = zeroize::Zeroizing::new(h(&entry["ikmE"]));
    let (shared, enc) = kem.encap_with(pk, &randomness).unwrap();
    assert_eq!(enc, h(&entry["enc"]), "enc");
    assert_eq!(
        &shared[..],
        &h(&entry["shared_secret"])[..],
        "shared_secret"
    );
    let shared_r = kem.decap(&enc, sk).unwrap();
    assert_eq!(&shared_r[..], &shared[..], "decapsulation");
    (shared.to_vec(), shared_r.to_vec())
}

fn run_pq_file(name: &str) -> PqCounts {
    let mut counts = PqCounts::default();
    for entry in load(name).as_array().unwrap() {
        assert_eq!(entry["mode"].as_u64(), Some(0));
        let (ikm_r, sk_rm, pk_rm) = (h(&entry["ikmR"]), h(&entry["skRm"]), h(&entry["pkRm"]));
        let (kem_id, (shared_s, shared_r)) = match entry["kem_id"].as_u64() {
            Some(0x0041) => {
                let (dk, sk) = MlKem768.derive_key_pair(&ikm_r).unwrap();
                assert_eq!(&dk[..], &sk_rm[..], "skRm from ikmR");
                assert_eq!(&sk.encapsulation_key()[..], &pk_rm[..], "pkRm");
                let seed: [u8; 64] = sk_rm.clone().try_into().unwrap();
                let from_seed = MlKem768Secret::from_seed(&seed).unwrap();
                assert_eq!(&from_seed.encapsulation_key()[..], &pk_rm[..]);
                counts.kem_entries[0] += 1;
                (
                    KemId::MlKem768,
                    run_pq_kem(&MlKem768, entry, &pk_rm, &from_seed),
                )
            }
            Some(0x0050) => {
                let kem = HybridKem(Group::P256);
                let sk = kem.derive_key_pair(&ikm_r).unwrap();
                assert_eq!(sk.seed(), &sk_rm[..], "skRm from ikmR");
                assert_eq!(sk.public().as_bytes(), &pk_rm[..], "pkRm");
                let from_seed = kem.key_pair_from_seed(&sk_rm).unwrap();
                let pk = kem.public_key(&pk_rm).unwrap();
                assert!(from_seed.public() == &pk);
                counts.kem_entries[1] += 1;
                (kem.id(), run_pq_kem(&kem, entry, &pk, &from_seed))
            }
            Some(0x647a) => {
                let sk = XWingPrivateKey::derive_from_ikm(&ikm_r).unwrap();
                assert_eq!(
                    sk.dangerous_to_seed_bytes().dangerous_as_bytes(),
                    &sk_rm[..],
                    "skRm from ikmR"
                );
                assert_eq!(sk.public_key().as_bytes(), &pk_rm[..], "pkRm");
                let from_seed = XWingPrivateKey::from_seed(&sk_rm).unwrap();
                let pk = XWingPublicKey::from_bytes(&pk_rm).unwrap();
                assert_eq!(from_seed.public_key(), pk);
                counts.kem_entries[2] += 1;
                (KemId::XWing, run_pq_kem(&XWing, entry, &pk, &from_seed))
            }
            other => panic!("unexpected kem {other:?}"),
        };
        if entry["kdf_id"].as_u64() != Some(1) {
            // SHAKE KDFs: rekey implements HKDF only; the KEM part is done.
            continue;
        }
        let aead = match entry["aead_id"].as_u64() {
            Some(1) => Aead::Aes128Gcm,
            Some(2) => Aead::Aes256Gcm,
            Some(3) => Aead::ChaCha20Poly1305,
            other => panic!("unexpected aead {other:?}"),
        };
        let suite = Suite {
            kem: kem_id,
            kdf: Kdf::Sha256,
            aead,
        };
        counts.encryptions_and_exports += run_key_schedule(entry, suite, &shared_s, &shared_r);
        counts.schedules += 1;
    }
    counts
}

/// Both drafts' files: each has 1 ML-KEM-768, 2 MLKEM768-P256 and 2 X-Wing
/// entries; 3 of them use HKDF-SHA256 (10 encryptions and 5 exports each).
const PQ_EXPECTED: PqCounts = PqCounts {
    kem_entries: [1, 2, 2],
    schedules: 3,
    encryptions_and_exports: 3 * 15,
};

#[test]
fn hpke_pq_draft05_vectors() {
    assert_eq!(run_pq_file("hpke_pq.json"), PQ_EXPECTED);
}

#[test]
fn hpke_pq_draft04_vectors() {
    assert_eq!(run_pq_file("hpke_pq_draft04.json"), PQ_EXPECTED);
}

#[test]
fn hpke_pq_vectors_fail_when_changed() {
    // The checks above would notice a changed vector: flip one bit of the
    // X-Wing `enc` and of its `ikmE`, and the secret no longer matches.
    let entries = load("hpke_pq.json");
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kem_id"].as_u64() == Some(0x647a))
        .unwrap();
    let sk = XWingPrivateKey::from_seed(&h(&entry["skRm"])).unwrap();
    let mut enc = h(&entry["enc"]);
    enc[0] ^= 1;
    assert_ne!(
        &XWing.decap(&enc, &sk).unwrap()[..],
        &h(&entry["shared_secret"])[..]
    );
    let mut ikm_e = h(&entry["ikmE"]);
    ikm_e[40] ^= 1;
    let pk = XWingPublicKey::from_bytes(&h(&entry["pkRm"])).unwrap();
    let (ss, _) = XWing
        .encap_with(&pk, &zeroize::Zeroizing::new(ikm_e))
        .unwrap();
    assert_ne!(&ss[..], &h(&entry["shared_secret"])[..]);
}

#[test]
fn rfc9180_p256_base_mode_aes128_and_aes256() {
    // 2 base-mode entries x (257 encryptions + 3 exports).
    assert_eq!(run_hpke_file("hpke_p256.json", Curve::P256), 2 * 260);
}

#[test]
fn rfc9180_p521_base_mode() {
    assert_eq!(run_hpke_file("hpke_p521.json", Curve::P521), 260);
}

fn wycheproof_tests(name: &str) -> Vec<(Value, Value)> {
    let file = load(&format!("wycheproof/{name}"));
    let mut out = Vec::new();
    for group in file["testGroups"].as_array().unwrap() {
        for test in group["tests"].as_array().unwrap() {
            out.push((group.clone(), test.clone()));
        }
    }
    assert_eq!(
        out.len() as u64,
        file["numberOfTests"].as_u64().unwrap(),
        "every test of {name} is visited"
    );
    out
}

fn run_oaep(name: &str, scheme: Scheme) -> (usize, usize) {
    let (mut valid, mut invalid) = (0, 0);
    let mut key_cache: Option<(Vec<u8>, LegacyRsaPrivateKey)> = None;
    for (group, test) in wycheproof_tests(name) {
        let der = h(&group["privateKeyPkcs8"]);
        if key_cache.as_ref().map(|(d, _)| d != &der).unwrap_or(true) {
            key_cache = Some((
                der.clone(),
                LegacyRsaPrivateKey::from_pkcs8_der(&der).unwrap(),
            ));
        }
        let key = &key_cache.as_ref().unwrap().1;
        let got = key.decrypt_with_label(scheme, &h(&test["ct"]), &h(&test["label"]));
        match s(&test["result"]) {
            "valid" => {
                assert_eq!(
                    got.unwrap().dangerous_as_bytes(),
                    &h(&test["msg"])[..],
                    "tcId {}",
                    test["tcId"]
                );
                valid += 1;
            }
            "invalid" => {
                assert_eq!(
                    got.unwrap_err(),
                    CryptoError::Decrypt,
                    "tcId {}",
                    test["tcId"]
                );
                invalid += 1;
            }
            _ => {}
        }
    }
    (valid, invalid)
}

#[test]
fn wycheproof_rsa_oaep_2048_sha1() {
    assert_eq!(
        run_oaep("rsa_oaep_2048_sha1_mgf1sha1_test.json", Scheme::RsaOaepSha1),
        (17, 19)
    );
}

#[test]
fn wycheproof_rsa_oaep_2048_sha256() {
    assert_eq!(
        run_oaep(
            "rsa_oaep_2048_sha256_mgf1sha256_test.json",
            Scheme::RsaOaepSha256
        ),
        (18, 19)
    );
}

#[test]
fn wycheproof_rsa_oaep_2048_sha256_mgf1sha1() {
    assert_eq!(
        run_oaep(
            "rsa_oaep_2048_sha256_mgf1sha1_test.json",
            Scheme::RsaOaepSha256Mgf1Sha1
        ),
        (13, 18)
    );
}

/// Wycheproof private scalars may carry a sign byte or be short.
fn p256_scalar(bytes: &[u8]) -> Option<EcPrivateKey> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    if trimmed.len() > 32 {
        return None;
    }
    let mut padded = vec![0u8; 32 - trimmed.len()];
    padded.extend_from_slice(&trimmed);
    EcPrivateKey::from_scalar_bytes(Curve::P256, &padded).ok()
}

fn run_ecdh(name: &str, parse: impl Fn(&[u8]) -> Option<EcPublicKey>) -> (usize, usize) {
    let (mut valid, mut invalid) = (0, 0);
    for (_, test) in wycheproof_tests(name) {
        let sk = p256_scalar(&h(&test["private"])).expect("test private keys are valid");
        let shared = parse(&h(&test["public"])).and_then(|pk| sk.dh(&pk).ok());
        match s(&test["result"]) {
            "valid" => {
                assert_eq!(
                    shared.as_deref().map(|v| &v[..]),
                    Some(&h(&test["shared"])[..]),
                    "tcId {}",
                    test["tcId"]
                );
                valid += 1;
            }
            "invalid" => {
                assert!(shared.is_none(), "tcId {} must be refused", test["tcId"]);
                invalid += 1;
            }
            _ => {
                // acceptable: either outcome, but a result must be right.
                if let Some(shared) = shared {
                    assert_eq!(&shared[..], &h(&test["shared"])[..]);
                }
            }
        }
    }
    (valid, invalid)
}

#[test]
fn wycheproof_ecdh_p256_ecpoint() {
    let counts = run_ecdh("ecdh_secp256r1_ecpoint_test.json", |b| {
        EcPublicKey::from_sec1(Curve::P256, b).ok()
    });
    assert_eq!(counts, (330, 24));
}

#[test]
fn wycheproof_ecdh_p256_asn() {
    use p256::pkcs8::DecodePublicKey;
    let counts = run_ecdh("ecdh_secp256r1_test.json", |b| {
        p256::PublicKey::from_public_key_der(b)
            .ok()
            .map(EcPublicKey::P256)
    });
    assert_eq!(counts, (330, 52));
}

#[test]
fn wycheproof_ecdsa_p256_sha256_verify() {
    let (mut valid, mut invalid) = (0, 0);
    for (group, test) in wycheproof_tests("ecdsa_secp256r1_sha256_test.json") {
        let pk = EcPublicKey::from_sec1(Curve::P256, &h(&group["publicKey"]["uncompressed"]))
            .expect("group key");
        // Our signatures are fixed-width r ‖ s; Wycheproof's are DER.
        let fixed = p256::ecdsa::Signature::from_der(&h(&test["sig"]))
            .ok()
            .map(|sig| sig.to_bytes().to_vec());
        let ok = fixed.is_some_and(|sig| pk.verify(&h(&test["msg"]), &sig).is_ok());
        match s(&test["result"]) {
            "valid" => {
                assert!(ok, "tcId {} must verify", test["tcId"]);
                valid += 1;
            }
            "invalid" => {
                assert!(!ok, "tcId {} must be refused", test["tcId"]);
                invalid += 1;
            }
            _ => {}
        }
    }
    assert_eq!((valid, invalid), (174, 310));
}

#[test]
fn wycheproof_aes_gcm_96_bit_iv() {
    let (mut valid, mut invalid) = (0, 0);
    for (group, test) in wycheproof_tests("aes_gcm_test.json") {
        if group["ivSize"] != 96 || group["tagSize"] != 128 {
            continue;
        }
        let aead = match group["keySize"].as_u64() {
            Some(128) => Aead::Aes128Gcm,
            Some(256) => Aead::Aes256Gcm,
            _ => continue,
        };
        let (key, iv, aad) = (h(&test["key"]), h(&test["iv"]), h(&test["aad"]));
        let mut ct_tag = h(&test["ct"]);
        ct_tag.extend_from_slice(&h(&test["tag"]));
        let opened = aead.open(&key, &iv, &aad, &ct_tag);
        match s(&test["result"]) {
            "valid" => {
                assert_eq!(
                    &opened.unwrap()[..],
                    &h(&test["msg"])[..],
                    "tcId {}",
                    test["tcId"]
                );
                let nonce: [u8; 12] = iv.try_into().unwrap();
                assert_eq!(
                    aead.seal(&key, &nonce, &aad, &h(&test["msg"])).unwrap(),
                    ct_tag
                );
                valid += 1;
            }
            "invalid" => {
                assert_eq!(
                    opened.unwrap_err(),
                    CryptoError::Decrypt,
                    "tcId {}",
                    test["tcId"]
                );
                invalid += 1;
            }
            _ => {}
        }
    }
    assert_eq!(
        valid + invalid,
        67 + 66,
        "the 96-bit-IV subsets of 128- and 256-bit keys"
    );
}

#[test]
fn wycheproof_hkdf_sha256() {
    let (mut valid, mut invalid) = (0, 0);
    for (_, test) in wycheproof_tests("hkdf_sha256_test.json") {
        let size = usize::try_from(test["size"].as_u64().unwrap()).unwrap();
        let got = Kdf::Sha256.derive(&h(&test["salt"]), &h(&test["ikm"]), &h(&test["info"]), size);
        match s(&test["result"]) {
            "valid" => {
                assert_eq!(
                    &got.unwrap()[..],
                    &h(&test["okm"])[..],
                    "tcId {}",
                    test["tcId"]
                );
                valid += 1;
            }
            _ => {
                assert!(got.is_err(), "tcId {} must be refused", test["tcId"]);
                invalid += 1;
            }
        }
    }
    assert_eq!((valid, invalid), (83, 3));
}
