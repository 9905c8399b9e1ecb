//! Building, encoding, checking and applying bundles against the in-memory
//! model vault: every user migrates, nobody gains or loses access, and each
//! kind of tampering is refused with its own error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use proptest::prelude::*;
use rekey_core::bundle::wire::WireError;
use rekey_core::bundle::*;
use rekey_core::*;
use support::{MemVault, master_of};

fn small_vault() -> MemVault {
    // 4 users, 2 roles: role0 = {0,1,2}, role1 = {2,3}. Records readable by
    // single users, by roles, by both, and one by nobody.
    MemVault::seed(
        4,
        2,
        &[vec![0, 1, 2], vec![2, 3]],
        &[
            vec![0],
            vec![1],
            vec![0, 3],
            vec![4],
            vec![5],
            vec![4, 5],
            vec![3, 4],
            vec![],
        ],
    )
}

fn master(v: &MemVault, u: PrincipalId) -> MasterSecret {
    MasterSecret::from_slice(&master_of(v.name(u))).unwrap()
}

fn build(v: &MemVault, u: PrincipalId) -> BuildOutput {
    build_bundle(
        &v.package(u),
        Unlock::MasterSecret(&master(v, u)),
        BuildOptions::default(),
    )
    .unwrap()
}

fn submit(v: &mut MemVault, u: PrincipalId, signed: &SignedBundle) -> Result<(), CheckError> {
    // Through the wire, as a server receives it.
    let received = SignedBundle::parse(&signed.encode()).unwrap();
    let ctx = v.context(u, received.bundle());
    let checked = check_bundle(&received, &ctx)?;
    // The consuming check (the server's) accepts the same bundle with the
    // same preconditions, and keeps the decoded bundle unchanged.
    let owned = check_signed(received, &ctx).expect("check_signed agrees with check_bundle");
    assert_eq!(owned.preconditions(), checked.preconditions());
    let (bundle, pre) = owned.into_parts();
    assert_eq!(&bundle, checked.bundle());
    assert_eq!(&pre, checked.preconditions());
    v.apply(&checked).unwrap();
    Ok(())
}

#[test]
fn every_user_migrates_and_access_is_unchanged_through_finalize() {
    let mut v = small_vault();
    let before = v.access_map();
    assert!(
        before.values().any(|s| s.len() >= 2),
        "the vault gives real access"
    );
    let users = v.users.clone();
    for u in &users {
        let out = build(&v, *u);
        assert_eq!(out.report.non_migratable, 0);
        submit(&mut v, *u, &out.bundle).unwrap();
        assert_eq!(v.access_map(), before, "after {} migrated", v.name(*u));
    }
    assert!(
        v.principals
            .values()
            .all(|p| p.state == model::MigrationState::Migrated)
    );
    v.finalize();
    assert!(v.key_pairs.values().all(|k| !k.legacy));
    assert!(v.grants.values().all(|g| !g.legacy));
    assert_eq!(
        v.access_map(),
        before,
        "after finalize, through new keys only"
    );
}

#[test]
fn a_run_to_the_hybrid_target_writes_hybrid_keys_and_grants_only() {
    let mut v = small_vault();
    v.target = Target::HpkeMlKem768X25519;
    let before = v.access_map();
    let users = v.users.clone();
    for u in &users {
        let out = build(&v, *u);
        for part in &out.bundle.bundle().parts {
            assert_eq!(
                part.new_key_pair.public_key.target(),
                Target::HpkeMlKem768X25519
            );
            assert!(
                part.grants
                    .iter()
                    .all(|g| g.envelope.scheme() == Scheme::HpkeMlKem768X25519Export)
            );
        }
        submit(&mut v, *u, &out.bundle).unwrap();
        assert_eq!(v.access_map(), before, "after {} migrated", v.name(*u));
    }
    v.finalize();
    assert!(
        v.key_pairs
            .values()
            .all(|k| matches!(k.public, PublicKey::Hybrid(_)))
    );
    assert_eq!(v.access_map(), before, "through hybrid keys only");
}

#[test]
fn a_bundle_for_another_target_is_refused_before_anything_else() {
    let mut v = small_vault();
    let u = v.users[0];
    // Built for P-256, submitted to a run that moves to the hybrid target.
    let out = build(&v, u);
    v.target = Target::HpkeMlKem768X25519;
    let err = submit(&mut v, u, &out.bundle).unwrap_err();
    assert_eq!(
        err,
        CheckError::WrongTarget {
            expected: Target::HpkeMlKem768X25519,
            found: Target::HpkeP256
        }
    );
    assert_eq!(err.code(), "wrong_target");
    // And the other way round.
    let out = build(&v, u);
    v.target = Target::HpkeP521;
    assert_eq!(
        submit(&mut v, u, &out.bundle).unwrap_err().code(),
        "wrong_target"
    );
    v.target = Target::HpkeMlKem768X25519;
    submit(&mut v, u, &out.bundle).unwrap();
}

#[test]
fn the_first_member_migrates_the_role_for_everyone() {
    let mut v = small_vault();
    let before = v.access_map();
    let (u0, role0) = (v.users[0], v.roles[0]);
    let out = build(&v, u0);
    assert_eq!(out.report.candidates_migrated, vec![role0]);
    submit(&mut v, u0, &out.bundle).unwrap();
    // Pending members got the role's new key under their legacy keys.
    let pending_member = v.users[1];
    assert!(v.grants.values().any(|g| g.recipient == pending_member
        && g.legacy
        && g.subject == Subject::PrivateKey(v.principals[&role0].current_kp.unwrap())));
    assert_eq!(v.access_map(), before);
    // The next member's package no longer offers the role.
    assert!(v.package(pending_member).candidates.is_empty());
}

/// user0 stands in for a directory master key: it holds user1's key (as
/// the directory key holds a managed user's), and role0's only member is
/// user1. Nobody else will ever carry role0, so user0's bundle must.
fn held_vault() -> (MemVault, PrincipalId, PrincipalId, PrincipalId) {
    let mut v = MemVault::seed(2, 1, &[vec![1]], &[vec![2], vec![1], vec![0]]);
    let (holder, held, role) = (v.users[0], v.users[1], v.roles[0]);
    v.hold(holder, held);
    (v, holder, held, role)
}

#[test]
fn a_role_held_only_through_a_migrating_principal_migrates_in_the_same_bundle() {
    let (mut v, holder, held, role) = held_vault();
    let before = v.readable(holder);
    assert_eq!(
        before.len(),
        3,
        "the holder reads its own, the held user's and the role's record"
    );
    let out = build(&v, holder);
    assert_eq!(out.report.candidates_migrated, vec![held, role]);
    assert!(out.report.candidates_skipped.is_empty());
    let bundle = out.bundle.bundle();
    let order: Vec<PrincipalId> = bundle.parts.iter().map(|p| p.principal).collect();
    assert_eq!(order, vec![holder, held, role], "the role after its holder");
    // The role's new KEK goes to the held principal's new key, not its
    // legacy one (which finalize deletes).
    let role_part = &bundle.parts[2];
    assert_eq!(role_part.holder_grants.len(), 1);
    assert_eq!(role_part.holder_grants[0].holder, held);
    assert_eq!(
        role_part.holder_grants[0].holder_key_pair,
        bundle.parts[1].new_key_pair.id
    );
    assert!(role_part.holder_grants[0].envelope.scheme().is_hpke());

    submit(&mut v, holder, &out.bundle).unwrap();
    for p in [holder, held, role] {
        assert_eq!(v.principals[&p].state, model::MigrationState::Migrated);
    }
    assert_eq!(v.readable(holder), before);
    v.finalize();
    assert_eq!(v.readable(holder), before, "through new keys only");
}

#[test]
fn a_part_before_the_part_that_holds_it_is_refused() {
    let (v, holder, _, role) = held_vault();
    let out = build(&v, holder);
    let mut bundle = out.bundle.bundle().clone();
    bundle.parts.swap(1, 2);
    // As signed: the signatures cover the old order.
    let reordered = reencode(&bundle, &out.bundle);
    let err = check_bundle(&reordered, &v.context(holder, reordered.bundle())).unwrap_err();
    assert!(matches!(err, CheckError::BadSignature { .. }), "{err}");
    // Signed in the new order: the order itself is refused.
    let reordered = resign(&bundle, &v);
    let err = check_bundle(&reordered, &v.context(holder, reordered.bundle())).unwrap_err();
    assert_eq!(err, CheckError::NotAHolder(v.name(role).to_owned()));
}

#[test]
fn a_holder_in_the_bundle_must_get_its_new_key() {
    let (v, holder, held, _) = held_vault();
    let out = build(&v, holder);
    let mut bundle = out.bundle.bundle().clone();
    // The role's KEK to the held principal's legacy key instead.
    let legacy = v.principals[&held].legacy_kp;
    bundle.parts[2].holder_grants[0].holder_key_pair = legacy;
    let forged = resign(&bundle, &v);
    assert!(matches!(
        check_bundle(&forged, &v.context(holder, forged.bundle())),
        Err(CheckError::HolderGrantInvalid { .. })
    ));
}

#[test]
fn wrong_password_is_refused_before_anything_is_built() {
    let v = small_vault();
    let u = v.users[0];
    let wrong = MasterSecret::from_slice(b"not the right master secret").unwrap();
    let err = build_bundle(
        &v.package(u),
        Unlock::MasterSecret(&wrong),
        BuildOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err, BuildError::WrongMasterSecret);
}

#[test]
fn a_replayed_bundle_is_refused_for_good() {
    let mut v = small_vault();
    let u = v.users[3];
    let out = build(&v, u);
    submit(&mut v, u, &out.bundle).unwrap();
    let err = submit(&mut v, u, &out.bundle).unwrap_err();
    assert!(matches!(err, CheckError::SubmitterMigrated(_)), "{err}");
    // Rebuilding cannot help an account that has migrated.
    assert!(!err.is_conflict());
    assert_eq!(err.code(), "already_migrated");
}

#[test]
fn a_new_key_pair_id_the_vault_has_is_refused_but_a_replay_is_told_it_is_done() {
    let mut v = small_vault();
    let u = v.users[0];
    let out = build(&v, u);
    // A client that reused an existing key pair's id (its legacy one).
    let mut bundle = out.bundle.bundle().clone();
    let legacy = bundle.parts[0].legacy_key_pair;
    bundle.parts[0].new_key_pair.id = legacy;
    let clash = resign(&bundle, &v);
    let err = check_bundle(&clash, &v.context(u, clash.bundle())).unwrap_err();
    assert_eq!(err, CheckError::KeyPairIdTaken(legacy));
    assert_eq!(err.code(), "key_pair_id_taken");
    assert!(!err.is_conflict());
    // The genuine bundle applies; sent again, it creates no clash: the
    // account is simply done.
    submit(&mut v, u, &out.bundle).unwrap();
    let again = submit(&mut v, u, &out.bundle).unwrap_err();
    assert!(matches!(again, CheckError::SubmitterMigrated(_)), "{again}");
}

#[test]
fn a_bundle_from_an_aborted_run_is_stale() {
    let mut v = small_vault();
    let u = v.users[0];
    let out = build(&v, u);
    v.abort();
    assert_eq!(
        submit(&mut v, u, &out.bundle).unwrap_err(),
        CheckError::StaleRun
    );
}

#[test]
fn a_dropped_grant_is_refused() {
    let mut v = small_vault();
    let u = v.users[0];
    let out = build(&v, u);
    // Dropping a grant changes the body: the old signatures fail, and they
    // are checked before anything else is said about the account.
    let mut bundle = out.bundle.bundle().clone();
    bundle.parts[0].grants.pop();
    let tampered = reencode(&bundle, &out.bundle);
    let ctx = v.context(u, tampered.bundle());
    let err = check_bundle(&tampered, &ctx).unwrap_err();
    assert!(matches!(err, CheckError::BadSignature { .. }), "{err}");
    assert_eq!(check_signed(tampered, &ctx).unwrap_err(), err);
    // A signed bundle that misses a grant the vault holds now (one given
    // after the package was built) is a coverage conflict: rebuild.
    let record = *v.records.keys().next().unwrap();
    let env = rekey_core::wrap_legacy_grant(
        &v.rsa_public(u),
        rekey_core::Scheme::RsaOaepSha256,
        &[7u8; 32],
    )
    .unwrap();
    v.add_grant(
        u,
        rekey_core::Subject::RecordKey(record),
        env.as_bytes().to_vec(),
        true,
    );
    let err = check_bundle(&out.bundle, &v.context(u, out.bundle.bundle())).unwrap_err();
    assert!(
        matches!(err, CheckError::CoverageChanged { missing: 1, .. }),
        "{err}"
    );
    assert!(err.is_conflict());
    // Nothing was written.
    assert_eq!(v.principals[&u].state, model::MigrationState::Pending);
}

#[test]
fn a_grant_of_another_user_is_refused() {
    let mut v = small_vault();
    let (u0, u1) = (v.users[0], v.users[1]);
    let out = build(&v, u0);
    let other = build(&v, u1);
    let mut bundle = out.bundle.bundle().clone();
    bundle.parts[0]
        .grants
        .push(other.bundle.bundle().parts[0].grants[0].clone());
    let forged = reencode(&bundle, &out.bundle);
    let err = check_bundle(&forged, &v.context(u0, forged.bundle())).unwrap_err();
    assert!(matches!(err, CheckError::BadSignature { .. }), "{err}");
    // A signed bundle covering a grant the vault no longer holds for the
    // account: the grant is unknown, rebuild.
    let gone = out.bundle.bundle().parts[0].grants[0].replaces;
    v.grants.remove(&gone);
    let err = check_bundle(&out.bundle, &v.context(u0, out.bundle.bundle())).unwrap_err();
    assert!(
        matches!(err, CheckError::CoverageChanged { unknown: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_signature_by_the_wrong_key_is_refused() {
    let v = small_vault();
    let (u0, u1) = (v.users[0], v.users[1]);
    let out = build(&v, u0);
    // Sign u0's body with u1's legacy key.
    let u1_key = LegacyRsaPrivateKey::from_pkcs8_der(support::FIXTURES[1]).unwrap();
    let mut sigs = out.bundle.signatures().to_vec();
    for s in &mut sigs {
        if s.principal == u0 && s.kind == SignatureKind::LegacyKey {
            s.bytes = u1_key
                .sign_pss(&wire::signed_message(out.bundle.body(), s.kind, u0))
                .unwrap();
        }
    }
    let forged = with_signatures(&out.bundle, &sigs);
    let err = check_bundle(&forged, &v.context(u0, forged.bundle())).unwrap_err();
    assert!(matches!(err, CheckError::BadSignature { .. }), "{err}");
    assert!(err.is_signature());
    // And a bundle submitted by someone else is refused outright.
    let err = check_bundle(&out.bundle, &v.context(u1, out.bundle.bundle())).unwrap_err();
    assert_eq!(err, CheckError::NotSubmitter);
    // Missing signature.
    let forged = with_signatures(&out.bundle, &sigs[1..]);
    assert!(matches!(
        check_bundle(&forged, &v.context(u0, forged.bundle())),
        Err(CheckError::MissingSignature { .. })
    ));
}

fn reencode(bundle: &Bundle, original: &SignedBundle) -> SignedBundle {
    let body = wire::encode_body(bundle);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(wire::MAGIC);
    bytes.push(wire::VERSION);
    bytes.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    bytes.extend_from_slice(&body);
    let enc = original.encode();
    bytes.extend_from_slice(&enc[wire::MAGIC.len() + 5 + original.body().len()..]);
    SignedBundle::parse(&bytes).unwrap()
}

/// `bundle`, changed after it was built, signed anew as a client that
/// built it so would have: each part gets a fresh new key and both of its
/// signatures (its legacy fixture key's, and the fresh key's). What the
/// structural checks after the signatures see.
fn resign(bundle: &Bundle, v: &support::MemVault) -> SignedBundle {
    let mut bundle = bundle.clone();
    let mut new_keys = Vec::new();
    for part in &mut bundle.parts {
        let key = rekey_core::NewPrivateKey::generate(
            part.new_key_pair.public_key.target(),
            &mut rand_core::OsRng,
        )
        .unwrap();
        part.new_key_pair.public_key = key.public_key();
        new_keys.push(key);
    }
    let body = wire::encode_body(&bundle);
    let mut sigs = Vec::new();
    for (part, new_key) in bundle.parts.iter().zip(&new_keys) {
        let legacy_public = &v.key_pairs[&part.legacy_key_pair].public;
        let legacy = support::FIXTURES
            .iter()
            .map(|der| LegacyRsaPrivateKey::from_pkcs8_der(der).unwrap())
            .find(|k| &rekey_core::PublicKey::Rsa(k.public_key()) == legacy_public)
            .expect("a fixture key");
        let p = part.principal;
        sigs.push(BundleSignature {
            principal: p,
            kind: SignatureKind::LegacyKey,
            bytes: legacy
                .sign_pss(&wire::signed_message(&body, SignatureKind::LegacyKey, p))
                .unwrap(),
        });
        sigs.push(BundleSignature {
            principal: p,
            kind: SignatureKind::NewKeyEcdsa,
            bytes: new_key.sign(&wire::signed_message(&body, SignatureKind::NewKeyEcdsa, p)),
        });
    }
    let mut bytes = Vec::new();
    bytes.extend_from_slice(wire::MAGIC);
    bytes.push(wire::VERSION);
    bytes.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(&u16::try_from(sigs.len()).unwrap().to_be_bytes());
    for s in &sigs {
        bytes.extend_from_slice(&s.principal.to_bytes());
        bytes.push(s.kind.to_byte());
        bytes.extend_from_slice(&u16::try_from(s.bytes.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(&s.bytes);
    }
    SignedBundle::parse(&bytes).unwrap()
}

fn with_signatures(original: &SignedBundle, sigs: &[BundleSignature]) -> SignedBundle {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(wire::MAGIC);
    bytes.push(wire::VERSION);
    bytes.extend_from_slice(&u32::try_from(original.body().len()).unwrap().to_be_bytes());
    bytes.extend_from_slice(original.body());
    bytes.extend_from_slice(&u16::try_from(sigs.len()).unwrap().to_be_bytes());
    for s in sigs {
        bytes.extend_from_slice(&s.principal.to_bytes());
        bytes.push(s.kind.to_byte());
        bytes.extend_from_slice(&u16::try_from(s.bytes.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(&s.bytes);
    }
    SignedBundle::parse(&bytes).unwrap()
}

#[test]
fn two_members_migrating_one_role_one_wins_the_other_rebuilds() {
    let mut v = small_vault();
    let before = v.access_map();
    let (u0, u1) = (v.users[0], v.users[1]);
    let a = build(&v, u0);
    let b = build(&v, u1);
    submit(&mut v, u0, &a.bundle).unwrap();
    let err = submit(&mut v, u1, &b.bundle).unwrap_err();
    assert!(err.is_conflict(), "{err}");
    // Rebuild from a fresh package: succeeds, access intact.
    let b = build(&v, u1);
    submit(&mut v, u1, &b.bundle).unwrap();
    assert_eq!(v.access_map(), before);
}

#[test]
fn the_rebuild_after_a_conflict_reuses_the_grants_opened_before() {
    let mut v = small_vault();
    let before = v.access_map();
    let (u0, u1) = (v.users[0], v.users[1]);
    let memo = OpenedGrants::new();
    let build_with_memo = |v: &MemVault| {
        build_bundle_reusing(
            &v.package(u1),
            Unlock::MasterSecret(&master(v, u1)),
            BuildOptions::default(),
            &|_, _| {},
            &memo,
        )
        .unwrap()
    };
    let loser = build_with_memo(&v);
    let package = v.package(u1);
    let opened_first = package.pending_grants.len()
        + package
            .candidates
            .iter()
            .map(|c| c.pending_grants.len())
            .sum::<usize>();
    assert!(opened_first > 0);
    assert_eq!(memo.len(), opened_first, "every opened grant is remembered");
    assert!(!format!("{memo:?}").contains("0x"), "{memo:?}");

    let winner = build(&v, u0);
    submit(&mut v, u0, &winner.bundle).unwrap();
    assert!(submit(&mut v, u1, &loser.bundle).unwrap_err().is_conflict());
    // The role went with u0: the rebuild has only u1's own grants. Those
    // it had before come from the memo; only the role key's new grant to
    // u1 (written by u0's bundle) is opened anew.
    let seen: std::collections::BTreeSet<GrantId> = package
        .pending_grants
        .iter()
        .chain(package.candidates.iter().flat_map(|c| &c.pending_grants))
        .map(|g| g.id)
        .collect();
    let again = v.package(u1);
    let new = again
        .pending_grants
        .iter()
        .filter(|g| !seen.contains(&g.id))
        .count();
    assert!(again.pending_grants.len() > new, "some grants are reused");
    let rebuilt = build_with_memo(&v);
    assert_eq!(memo.len(), opened_first + new, "only new grants are opened");
    assert_eq!(
        rebuilt.report.grants_rewrapped,
        v.package(u1).pending_grants.len()
    );
    submit(&mut v, u1, &rebuilt.bundle).unwrap();
    assert_eq!(v.access_map(), before);
}

#[test]
fn a_corrupt_legacy_grant_is_listed_and_the_rest_migrates() {
    let mut v = small_vault();
    let u = v.users[0];
    let (gid, g) = v
        .grants
        .iter()
        .find(|(_, g)| g.recipient == u && matches!(g.subject, Subject::RecordKey(_)))
        .map(|(i, g)| (*i, g.clone()))
        .unwrap();
    let mut bytes = g.bytes.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    v.grants.get_mut(&gid).unwrap().bytes = bytes;
    let broken: Vec<u8> = vec![1, 2, 3];
    let junk = v.add_grant(u, Subject::RecordKey(RecordId::random()), broken, true);
    let before = v.access_map();
    let out = build(&v, u);
    assert_eq!(out.report.non_migratable, 2);
    let nm = &out.bundle.bundle().parts[0].non_migratable;
    assert!(nm.contains(&NonMigratableEntry {
        grant: gid,
        reason: NonMigratableReason::CouldNotDecrypt
    }));
    assert!(nm.contains(&NonMigratableEntry {
        grant: junk,
        reason: NonMigratableReason::MalformedEnvelope
    }));
    submit(&mut v, u, &out.bundle).unwrap();
    assert_eq!(v.non_migratable.len(), 2);
    // What was readable after the corruption still is; the rest migrated.
    assert_eq!(v.access_map(), before);
}

#[test]
fn parsing_truncations_and_bit_flips_of_a_real_bundle_never_panics() {
    let v = small_vault();
    let out = build(&v, v.users[2]);
    let bytes = out.bundle.encode();
    let again = SignedBundle::parse(&bytes).unwrap();
    assert_eq!(again, out.bundle);
    assert_eq!(again.encode(), bytes);
    for cut in (0..bytes.len()).step_by(7) {
        assert!(SignedBundle::parse(&bytes[..cut]).is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        SignedBundle::parse(&longer),
        Err(WireError::TrailingBytes(1))
    );
    for i in (0..bytes.len()).step_by(13) {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x80;
        let _ = SignedBundle::parse(&flipped);
    }
}

proptest! {
    #[test]
    fn bundle_parse_of_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = SignedBundle::parse(&bytes);
        let mut prefixed = wire::MAGIC.to_vec();
        prefixed.push(1);
        prefixed.extend_from_slice(&bytes);
        let _ = SignedBundle::parse(&prefixed);
    }
}
