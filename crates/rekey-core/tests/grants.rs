#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Wrap → unwrap for every scheme, and bindings that refuse moved grants.

use proptest::prelude::*;
use rand_core::OsRng;
use rekey_core::kek::{
    unwrap_hybrid_private_key, unwrap_private_key, wrap_hybrid_private_key, wrap_private_key,
};
use rekey_core::record::{decrypt_record, encrypt_record};
use rekey_core::*;
use std::sync::LazyLock;

static RSA_2048: LazyLock<PrivateKey> = LazyLock::new(|| {
    PrivateKey::Rsa(
        LegacyRsaPrivateKey::from_pkcs8_der(include_bytes!("fixtures/rsa-2048-a.pk8")).unwrap(),
    )
});
static RSA_2048_OTHER: LazyLock<PrivateKey> = LazyLock::new(|| {
    PrivateKey::Rsa(
        LegacyRsaPrivateKey::from_pkcs8_der(include_bytes!("fixtures/rsa-2048-b.pk8")).unwrap(),
    )
});
static RSA_4096: LazyLock<PrivateKey> = LazyLock::new(|| {
    PrivateKey::Rsa(
        LegacyRsaPrivateKey::from_pkcs8_der(include_bytes!("fixtures/rsa-4096-a.pk8")).unwrap(),
    )
});

fn rsa_public(key: &PrivateKey) -> LegacyRsaPublicKey {
    match key.public_key() {
        PublicKey::Rsa(pk) => pk,
        PublicKey::Ec(_) | PublicKey::Hybrid(_) => unreachable!(),
    }
}

fn id_bytes() -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>()
}

fn binding() -> impl Strategy<Value = GrantBinding> {
    (id_bytes(), id_bytes(), id_bytes(), any::<bool>()).prop_map(|(v, r, s, record)| GrantBinding {
        vault: VaultId::from_bytes(v),
        recipient: PrincipalId::from_bytes(r),
        subject: if record {
            Subject::RecordKey(RecordId::from_bytes(s))
        } else {
            Subject::PrivateKey(KeyPairId::from_bytes(s))
        },
    })
}

/// A binding that differs from `b` in exactly one place.
fn moved(b: GrantBinding, which: u8) -> GrantBinding {
    let flip = |mut bytes: [u8; 16]| {
        bytes[0] ^= 1;
        bytes
    };
    let mut m = b;
    match which % 4 {
        0 => m.vault = VaultId::from_bytes(flip(b.vault.to_bytes())),
        1 => m.recipient = PrincipalId::from_bytes(flip(b.recipient.to_bytes())),
        2 => {
            m.subject = match b.subject {
                Subject::RecordKey(id) => {
                    Subject::RecordKey(RecordId::from_bytes(flip(id.to_bytes())))
                }
                Subject::PrivateKey(id) => {
                    Subject::PrivateKey(KeyPairId::from_bytes(flip(id.to_bytes())))
                }
            }
        }
        _ => {
            // Same id, other kind of subject.
            m.subject = match b.subject {
                Subject::RecordKey(id) => Subject::PrivateKey(KeyPairId::from_bytes(id.to_bytes())),
                Subject::PrivateKey(id) => Subject::RecordKey(RecordId::from_bytes(id.to_bytes())),
            }
        }
    }
    m
}

fn ec_key(curve: Curve) -> PrivateKey {
    PrivateKey::Ec(EcPrivateKey::generate(curve, &mut OsRng))
}

fn ec_public(key: &PrivateKey) -> EcPublicKey {
    match key.public_key() {
        PublicKey::Ec(pk) => pk,
        PublicKey::Rsa(_) | PublicKey::Hybrid(_) => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn hpke_single_round_trips_and_refuses_moved_grants(
        b in binding(),
        secret in proptest::collection::vec(any::<u8>(), 0..200),
        p521 in any::<bool>(),
        which in any::<u8>(),
    ) {
        let curve = if p521 { Curve::P521 } else { Curve::P256 };
        let key = ec_key(curve);
        let env = seal_grant(&mut OsRng, &ec_public(&key), &b, &secret).unwrap();
        prop_assert_eq!(env.scheme(), rekey_core::crypto::hpke_scheme(curve));
        let parsed = Envelope::parse(env.as_bytes()).unwrap();
        prop_assert_eq!(open_grant(&key, &b, &parsed).unwrap().dangerous_as_bytes().to_vec(), secret.clone());
        prop_assert_eq!(open_grant(&key, &moved(b, which), &parsed).unwrap_err(), CryptoError::Decrypt);
        let other = ec_key(curve);
        prop_assert_eq!(open_grant(&other, &b, &parsed).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn hpke_batch_round_trips_and_refuses_moved_grants(
        b in binding(),
        secrets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 32), 1..8),
        p521 in any::<bool>(),
        which in any::<u8>(),
    ) {
        let curve = if p521 { Curve::P521 } else { Curve::P256 };
        let key = ec_key(curve);
        let sealer = BatchSealer::new(&mut OsRng, &ec_public(&key), b.vault, b.recipient).unwrap();
        let mut opener = GrantOpener::new(&key);
        for (i, secret) in secrets.iter().enumerate() {
            let subject = Subject::RecordKey(RecordId::from_bytes([i as u8; 16]));
            let bi = sealer.binding(subject);
            let env = sealer.seal(&mut OsRng, subject, secret).unwrap();
            prop_assert_eq!(env.scheme(), rekey_core::crypto::hpke_export_scheme(curve));
            let parsed = Envelope::parse(env.as_bytes()).unwrap();
            prop_assert_eq!(opener.open(&bi, &parsed).unwrap().dangerous_as_bytes().to_vec(), secret.clone());
            prop_assert_eq!(opener.open(&moved(bi, which), &parsed).unwrap_err(), CryptoError::Decrypt);
        }
    }

    #[test]
    fn kek_round_trips_and_refuses_other_key_pair(
        master in proptest::collection::vec(any::<u8>(), 16..64),
        secret in proptest::collection::vec(any::<u8>(), 0..300),
        v in id_bytes(), o in id_bytes(), k in id_bytes(),
    ) {
        let binding = KeyBinding {
            vault: VaultId::from_bytes(v),
            owner: PrincipalId::from_bytes(o),
            key_pair: KeyPairId::from_bytes(k),
        };
        let master = MasterSecret::from_slice(&master).unwrap();
        let kek = Kek::derive(&master, binding.vault, binding.owner).unwrap();
        let env = wrap_private_key(&mut OsRng, &kek, &binding, &secret).unwrap();
        let parsed = Envelope::parse(env.as_bytes()).unwrap();
        prop_assert_eq!(unwrap_private_key(&kek, &binding, &parsed).unwrap().dangerous_as_bytes().to_vec(), secret.clone());
        let mut other = binding;
        other.key_pair = KeyPairId::from_bytes([k[0] ^ 1; 16]);
        if other.key_pair != binding.key_pair {
            prop_assert_eq!(unwrap_private_key(&kek, &other, &parsed).unwrap_err(), CryptoError::Decrypt);
        }
        // Another user's KEK (same master secret) does not open it.
        let kek_other = Kek::derive(&master, binding.vault, PrincipalId::from_bytes([o[0] ^ 1; 16])).unwrap();
        if o != [o[0] ^ 1; 16] {
            prop_assert_eq!(unwrap_private_key(&kek_other, &binding, &parsed).unwrap_err(), CryptoError::Decrypt);
        }
    }

    #[test]
    fn record_content_round_trips_and_is_bound_to_its_record(
        text in proptest::collection::vec(any::<u8>(), 0..500),
        v in id_bytes(), r in id_bytes(),
    ) {
        let key = RecordKey::generate(&mut OsRng);
        let (vault, record) = (VaultId::from_bytes(v), RecordId::from_bytes(r));
        let ct = encrypt_record(&mut OsRng, &key, vault, record, &text).unwrap();
        prop_assert_eq!(decrypt_record(&key, vault, record, &ct).unwrap().dangerous_as_bytes().to_vec(), text.clone());
        let mut r2 = r;
        r2[15] ^= 0x80;
        prop_assert!(decrypt_record(&key, vault, RecordId::from_bytes(r2), &ct).is_err());
    }
}

fn hybrid_key() -> PrivateKey {
    PrivateKey::Hybrid(HybridPrivateKey::generate(&mut OsRng).unwrap())
}

fn xwing_public(key: &PrivateKey) -> XWingPublicKey {
    match key.public_key() {
        PublicKey::Hybrid(pk) => pk.kem_key().clone(),
        PublicKey::Rsa(_) | PublicKey::Ec(_) => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn hybrid_single_round_trips_and_refuses_moved_grants(
        b in binding(),
        secret in proptest::collection::vec(any::<u8>(), 0..200),
        which in any::<u8>(),
    ) {
        let key = hybrid_key();
        let env = seal_hybrid_grant(&mut OsRng, &xwing_public(&key), &b, &secret).unwrap();
        prop_assert_eq!(env.scheme(), Scheme::HpkeMlKem768X25519);
        prop_assert_eq!(env.scheme(), rekey_core::crypto::hybrid_hpke_scheme());
        prop_assert_eq!(env.as_bytes().len(), 4 + 1120 + secret.len() + 16);
        let parsed = Envelope::parse(env.as_bytes()).unwrap();
        prop_assert_eq!(parsed.enc().len(), XWingPublicKey::ENC_LEN);
        prop_assert_eq!(open_grant(&key, &b, &parsed).unwrap().dangerous_as_bytes().to_vec(), secret.clone());
        prop_assert_eq!(open_grant(&key, &moved(b, which), &parsed).unwrap_err(), CryptoError::Decrypt);
        prop_assert_eq!(open_grant(&hybrid_key(), &b, &parsed).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn hybrid_batch_round_trips_and_refuses_moved_grants(
        b in binding(),
        secrets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 32), 1..8),
        which in any::<u8>(),
    ) {
        let key = hybrid_key();
        let sealer = BatchSealer::new_hybrid(&mut OsRng, &xwing_public(&key), b.vault, b.recipient).unwrap();
        prop_assert_eq!(sealer.scheme(), Scheme::HpkeMlKem768X25519Export);
        let mut opener = GrantOpener::new(&key);
        let other = hybrid_key();
        let mut enc = None;
        for (i, secret) in secrets.iter().enumerate() {
            let subject = Subject::RecordKey(RecordId::from_bytes([i as u8; 16]));
            let bi = sealer.binding(subject);
            let env = sealer.seal(&mut OsRng, subject, secret).unwrap();
            prop_assert_eq!(env.scheme(), rekey_core::crypto::hybrid_hpke_export_scheme());
            prop_assert_eq!(env.as_bytes().len(), 4 + 1120 + 12 + 32 + 16);
            let parsed = Envelope::parse(env.as_bytes()).unwrap();
            // Every grant of the batch repeats the batch's encapsulation.
            let this_enc = parsed.enc().to_vec();
            prop_assert_eq!(enc.get_or_insert_with(|| this_enc.clone()), &this_enc);
            prop_assert_eq!(opener.open(&bi, &parsed).unwrap().dangerous_as_bytes().to_vec(), secret.clone());
            // A grant opens on its own too, without the opener's cache.
            prop_assert_eq!(open_grant(&key, &bi, &parsed).unwrap().dangerous_as_bytes().to_vec(), secret.clone());
            prop_assert_eq!(opener.open(&moved(bi, which), &parsed).unwrap_err(), CryptoError::Decrypt);
            prop_assert_eq!(open_grant(&other, &bi, &parsed).unwrap_err(), CryptoError::Decrypt);
        }
    }

    #[test]
    fn hybrid_key_under_kek_round_trips_and_is_bound(
        master in proptest::collection::vec(any::<u8>(), 16..64),
        v in id_bytes(), o in id_bytes(), k in id_bytes(),
    ) {
        let binding = KeyBinding {
            vault: VaultId::from_bytes(v),
            owner: PrincipalId::from_bytes(o),
            key_pair: KeyPairId::from_bytes(k),
        };
        let master = MasterSecret::from_slice(&master).unwrap();
        let kek = Kek::derive(&master, binding.vault, binding.owner).unwrap();
        let key = HybridPrivateKey::generate(&mut OsRng).unwrap();
        let env = wrap_hybrid_private_key(&mut OsRng, &kek, &binding, &key).unwrap();
        prop_assert_eq!(env.scheme(), Scheme::Aes256GcmKek);
        prop_assert_eq!(env.as_bytes().len(), 4 + 12 + HybridPrivateKey::LEN + 16);
        let parsed = Envelope::parse(env.as_bytes()).unwrap();
        let back = unwrap_hybrid_private_key(&kek, &binding, &parsed).unwrap();
        prop_assert_eq!(back.public_key(), key.public_key());
        let mut other = binding;
        other.key_pair = KeyPairId::from_bytes([k[0] ^ 1; 16]);
        if other.key_pair != binding.key_pair {
            prop_assert_eq!(unwrap_hybrid_private_key(&kek, &other, &parsed).unwrap_err(), CryptoError::Decrypt);
        }
        // A P-256 scalar under the same KEK is not a hybrid key.
        let ec = EcPrivateKey::generate(Curve::P256, &mut OsRng);
        let ec_env = wrap_private_key(&mut OsRng, &kek, &binding, ec.dangerous_to_scalar_bytes().dangerous_as_bytes()).unwrap();
        prop_assert!(matches!(
            unwrap_hybrid_private_key(&kek, &binding, &ec_env),
            Err(CryptoError::InvalidPrivateKey(_))
        ));
    }
}

#[test]
fn hybrid_and_ec_keys_refuse_each_others_schemes() {
    let b = GrantBinding {
        vault: VaultId::random(),
        recipient: PrincipalId::random(),
        subject: Subject::RecordKey(RecordId::random()),
    };
    let hybrid = hybrid_key();
    let ec = ec_key(Curve::P256);
    let hybrid_env = seal_hybrid_grant(&mut OsRng, &xwing_public(&hybrid), &b, &[5u8; 32]).unwrap();
    let ec_env = seal_grant(&mut OsRng, &ec_public(&ec), &b, &[5u8; 32]).unwrap();
    assert!(matches!(
        open_grant(&ec, &b, &hybrid_env),
        Err(CryptoError::WrongScheme { .. })
    ));
    assert!(matches!(
        open_grant(&hybrid, &b, &ec_env),
        Err(CryptoError::WrongScheme { .. })
    ));
    assert!(matches!(
        open_grant(&RSA_2048, &b, &hybrid_env),
        Err(CryptoError::WrongScheme { .. })
    ));
}

#[test]
fn hybrid_envelopes_tampered_or_relabelled_fail_opaquely() {
    let key = hybrid_key();
    let b = GrantBinding {
        vault: VaultId::random(),
        recipient: PrincipalId::random(),
        subject: Subject::RecordKey(RecordId::random()),
    };
    let env = seal_hybrid_grant(&mut OsRng, &xwing_public(&key), &b, &[1u8; 40]).unwrap();
    let bytes = env.as_bytes().to_vec();
    // One bit of the ML-KEM ciphertext, of the X25519 half, of the AEAD
    // ciphertext: each gives the same opaque error.
    for at in [4 + 10, 4 + 1088 + 3, bytes.len() - 1] {
        let mut t = bytes.clone();
        t[at] ^= 1;
        let tampered = Envelope::parse(&t).unwrap();
        assert_eq!(
            open_grant(&key, &b, &tampered).unwrap_err(),
            CryptoError::Decrypt,
            "byte {at}"
        );
    }
    // Relabelled as the batch form (the lengths happen to fit): refused.
    let mut relabelled = bytes.clone();
    relabelled[3] = Scheme::HpkeMlKem768X25519Export.id();
    let relabelled = Envelope::parse(&relabelled).unwrap();
    assert_eq!(
        open_grant(&key, &b, &relabelled).unwrap_err(),
        CryptoError::Decrypt
    );
    // A truncated encapsulation is not an envelope at all.
    assert!(Envelope::parse(&bytes[..4 + 1119]).is_err());
    // Seal refuses a secret above the format's limit.
    assert!(matches!(
        seal_hybrid_grant(&mut OsRng, &xwing_public(&key), &b, &vec![0u8; 8193]),
        Err(CryptoError::SecretTooLong { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn legacy_rsa_round_trips_every_scheme(
        secret in proptest::collection::vec(any::<u8>(), 0..150),
        scheme_index in 0usize..3,
        big in any::<bool>(),
    ) {
        let scheme = [Scheme::RsaOaepSha1, Scheme::RsaOaepSha256, Scheme::RsaOaepSha256Mgf1Sha1][scheme_index];
        let key: &PrivateKey = if big { &RSA_4096 } else { &RSA_2048 };
        let env = wrap_legacy_grant(&rsa_public(key), scheme, &secret).unwrap();
        let parsed = Envelope::parse(env.as_bytes()).unwrap();
        prop_assert_eq!(parsed.ciphertext().len(), if big { 512 } else { 256 });
        let any_binding = GrantBinding {
            vault: VaultId::from_bytes([0; 16]),
            recipient: PrincipalId::from_bytes([0; 16]),
            subject: Subject::RecordKey(RecordId::from_bytes([0; 16])),
        };
        prop_assert_eq!(open_grant(key, &any_binding, &parsed).unwrap().dangerous_as_bytes().to_vec(), secret.clone());
        prop_assert_eq!(open_grant(&RSA_2048_OTHER, &any_binding, &parsed).unwrap_err(), CryptoError::Decrypt);
    }
}

#[test]
fn legacy_schemes_cannot_be_mixed_up() {
    let secret = [7u8; 32];
    let env = wrap_legacy_grant(&rsa_public(&RSA_2048), Scheme::RsaOaepSha256, &secret).unwrap();
    // Relabel the same ciphertext as another OAEP variant: refused.
    let mut bytes = env.as_bytes().to_vec();
    bytes[3] = Scheme::RsaOaepSha256Mgf1Sha1.id();
    let relabelled = Envelope::parse(&bytes).unwrap();
    let b = GrantBinding {
        vault: VaultId::random(),
        recipient: PrincipalId::random(),
        subject: Subject::RecordKey(RecordId::random()),
    };
    assert_eq!(
        open_grant(&RSA_2048, &b, &relabelled).unwrap_err(),
        CryptoError::Decrypt
    );
    // HPKE schemes refuse to wrap with legacy and vice versa.
    assert!(matches!(
        wrap_legacy_grant(&rsa_public(&RSA_2048), Scheme::HpkeP256, &secret),
        Err(CryptoError::WrongScheme { .. })
    ));
    let ec = ec_key(Curve::P256);
    assert!(matches!(
        open_grant(&ec, &b, &env),
        Err(CryptoError::WrongScheme { .. })
    ));
    // A secret too long for the RSA key is refused, not truncated.
    assert!(matches!(
        wrap_legacy_grant(&rsa_public(&RSA_2048), Scheme::RsaOaepSha256, &[0u8; 191]),
        Err(CryptoError::SecretTooLong { max: 190, .. })
    ));
}

#[test]
fn hpke_envelope_relabelled_as_other_scheme_fails() {
    let key = ec_key(Curve::P256);
    let b = GrantBinding {
        vault: VaultId::random(),
        recipient: PrincipalId::random(),
        subject: Subject::RecordKey(RecordId::random()),
    };
    let env = seal_grant(&mut OsRng, &ec_public(&key), &b, &[1u8; 32]).unwrap();
    let mut bytes = env.as_bytes().to_vec();
    // Flip one ciphertext bit: the tag catches it.
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = Envelope::parse(&bytes).unwrap();
    assert_eq!(
        open_grant(&key, &b, &tampered).unwrap_err(),
        CryptoError::Decrypt
    );
    // A P-521 key refuses a P-256 envelope by scheme.
    let other_curve = ec_key(Curve::P521);
    assert!(matches!(
        open_grant(&other_curve, &b, &env),
        Err(CryptoError::WrongScheme { .. })
    ));
}

#[test]
fn rsa_pss_signatures_verify_only_for_the_signer_and_message() {
    let PrivateKey::Rsa(signer) = &*RSA_2048 else {
        unreachable!()
    };
    let sig = signer.sign_pss(b"bundle").unwrap();
    rsa_public(&RSA_2048).verify_pss(b"bundle", &sig).unwrap();
    assert_eq!(
        rsa_public(&RSA_2048).verify_pss(b"bundlf", &sig),
        Err(CryptoError::BadSignature)
    );
    assert_eq!(
        rsa_public(&RSA_2048_OTHER).verify_pss(b"bundle", &sig),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn rsa_keys_round_trip_through_their_encodings() {
    let PrivateKey::Rsa(key) = &*RSA_4096 else {
        unreachable!()
    };
    assert_eq!(key.bits(), 4096);
    let again = LegacyRsaPrivateKey::from_pkcs8_der(key.dangerous_pkcs8_der()).unwrap();
    assert_eq!(again.public_key(), key.public_key());
    let pk = LegacyRsaPublicKey::from_spki_der(key.public_key().to_spki_der()).unwrap();
    assert_eq!(pk.bits(), 4096);
    assert!(LegacyRsaPrivateKey::from_pkcs8_der(b"not a key").is_err());
    assert!(format!("{key:?}").contains("[redacted]"));
}

/// Storage of a 10,000-grant user's batch: every batch grant carries the
/// whole `enc`, so X-Wing's 1,120-byte encapsulation dominates. Run with
/// `--nocapture` to see the figures; the asserts pin them.
#[test]
fn batch_storage_for_a_10000_grant_user() {
    const GRANTS: usize = 10_000;
    let vault = VaultId::random();
    let me = PrincipalId::random();
    let record_key = [0x42u8; 32];
    let measure = |sealer: &BatchSealer| -> usize {
        (0..GRANTS)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                let env = sealer
                    .seal(
                        &mut OsRng,
                        Subject::RecordKey(RecordId::from_bytes(id)),
                        &record_key,
                    )
                    .unwrap();
                env.as_bytes().len()
            })
            .sum()
    };
    let ec = ec_key(Curve::P256);
    let p256 = measure(&BatchSealer::new(&mut OsRng, &ec_public(&ec), vault, me).unwrap());
    let hybrid = hybrid_key();
    let xwing =
        measure(&BatchSealer::new_hybrid(&mut OsRng, &xwing_public(&hybrid), vault, me).unwrap());
    // header 4 ‖ enc ‖ nonce 12 ‖ 32-byte record key ‖ tag 16
    assert_eq!(p256, GRANTS * (4 + 65 + 12 + 32 + 16));
    assert_eq!(xwing, GRANTS * (4 + 1120 + 12 + 32 + 16));
    // The alternative layout (not implemented): the enc stored once per
    // batch (header 4 ‖ enc 1120), each grant naming it by its SHA-256.
    let referenced = (4 + 1120) + GRANTS * (4 + 32 + 12 + 32 + 16);
    eprintln!(
        "{GRANTS} batch grants: P-256 {p256} B ({} B/grant); X-Wing, enc repeated {xwing} B \
         ({} B/grant); X-Wing, enc once per batch {referenced} B ({:.1} B/grant)",
        p256 / GRANTS,
        xwing / GRANTS,
        referenced as f64 / GRANTS as f64,
    );
}
