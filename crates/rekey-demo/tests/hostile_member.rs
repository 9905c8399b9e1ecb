//! The attack of a hostile role member: the first member to log in
//! migrates the role and, through a client of its own, hands the other
//! members a new role KEK that is garbage (or re-wraps the role's grants
//! wrongly). The server cannot open any of it and accepts the bundle. The
//! defence (`rekey_core::confirm`): each other member's client checks the
//! role at its login and refuses to sign a receipt; finalize refuses while
//! a member has not confirmed, naming it; an abort gives everyone back the
//! exact legacy vault. An honest run confirms every member and finalizes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rand_core::{OsRng, RngCore};
use rekey_core::bundle::{
    HolderKey, NonMigratableEntry, NonMigratableReason, Unlock, build_unsigned,
};
use rekey_core::grant::wrap_legacy_grant;
use rekey_core::lifecycle::TransitionError;
use rekey_core::model::PrincipalKind;
use rekey_core::{PrincipalId, Scheme};
use rekey_demo::password::master_secret;
use rekey_engine::{Engine, EngineError};
use rekey_storage::Vault;
use support::{login, seeded, temp, verify};

/// A role with at least two e2ee members: (role, first member's name,
/// the other members' names).
async fn role_with_two_members(
    vault: &Vault,
    creds: &rekey_demo::Credentials,
) -> (PrincipalId, String, Vec<String>) {
    for role in vault.principals_of_kind(PrincipalKind::Role).await.unwrap() {
        let members = vault.members_of(role.id).await.unwrap();
        let names: Vec<String> = creds
            .users
            .iter()
            .filter(|(_, u)| members.contains(&u.id))
            .map(|(n, _)| n.clone())
            .collect();
        if names.len() >= 2 {
            return (role.id, names[0].clone(), names[1..].to_vec());
        }
    }
    panic!("the demo vault has a role with two e2ee members");
}

/// How the hostile member breaks the role for the others.
#[derive(Clone, Copy)]
enum Attack {
    /// Every other member's grant of the new role KEK carries random bytes.
    GarbageKek,
    /// Two of the role's re-wrapped grants trade envelopes.
    SwappedGrants,
    /// A readable grant of the role is declared unreadable (dropped).
    Disowned,
}

/// The first member logs in with a hostile client: it builds the bundle
/// (its own part and the role's), breaks the role as `attack` says, signs
/// it and submits it. The server accepts it.
async fn hostile_login(
    engine: &Engine,
    creds: &rekey_demo::Credentials,
    name: &str,
    role: PrincipalId,
    attack: Attack,
) {
    let u = &creds.users[name];
    let package = engine.package(u.id).await.unwrap();
    let master = master_secret(&u.password, creds.vault, u.id, &creds.kdf).unwrap();
    let mut unsigned =
        build_unsigned(&package, Unlock::MasterSecret(&master), Default::default()).unwrap();
    let part = unsigned
        .bundle
        .parts
        .iter_mut()
        .find(|p| p.principal == role)
        .expect("the first member migrates the role");
    match attack {
        Attack::GarbageKek => {
            let candidate = package
                .candidates
                .iter()
                .find(|c| c.principal == role)
                .unwrap();
            let mut broken = 0;
            for g in part.holder_grants.iter_mut().filter(|g| g.holder != u.id) {
                let key = candidate
                    .holders
                    .iter()
                    .find_map(|h| match h {
                        HolderKey::Pending {
                            principal,
                            public_key: rekey_core::PublicKey::Rsa(k),
                            ..
                        } if *principal == g.holder => Some(k.clone()),
                        _ => None,
                    })
                    .expect("the other members have not migrated");
                let mut garbage = [0u8; 32];
                OsRng.fill_bytes(&mut garbage);
                g.envelope = wrap_legacy_grant(&key, Scheme::RsaOaepSha256, &garbage).unwrap();
                broken += 1;
            }
            assert!(broken > 0, "the role has other members");
        }
        Attack::SwappedGrants => {
            assert!(part.grants.len() >= 2, "the role holds two grants");
            let first = part.grants[0].envelope.clone();
            part.grants[0].envelope = part.grants[1].envelope.clone();
            part.grants[1].envelope = first;
        }
        Attack::Disowned => {
            let dropped = part.grants.remove(0);
            part.non_migratable.push(NonMigratableEntry {
                grant: dropped.replaces,
                reason: NonMigratableReason::CouldNotDecrypt,
            });
        }
    }
    let signed = unsigned.sign().unwrap().bundle;
    let applied = engine.submit(u.id, &signed.encode()).await.unwrap();
    assert!(applied.principals.contains(&role), "the server accepted it");
}

async fn attack_is_caught_before_anything_is_deleted(attack: Attack, tag: &str) {
    let dir = temp(tag);
    let url = format!("sqlite://{}", dir.join("vault.db").display());
    let (engine, vault, creds) = seeded(&url, &dir.join("keys")).await;
    let before = verify(&engine, &creds).await;
    assert!(before.passed(), "{before:?}");
    engine.start("Start", &|_, _, _| {}).await.unwrap();
    let (role, hostile, others) = role_with_two_members(&vault, &creds).await;
    hostile_login(&engine, &creds, &hostile, role, attack).await;

    // The other members log in. Their own migration goes through; their
    // clients refuse to confirm the role and say so.
    for name in &others {
        let r = login(&engine, name, &creds.users[name].password, Some(1))
            .await
            .unwrap();
        assert_eq!(r.roles.confirmed, 0, "{name} confirmed a broken role");
        assert_eq!(r.roles.refused.len(), 1, "{name}: {:?}", r.roles);
        assert_eq!(r.roles.refused[0].0, role);
        let expected = match attack {
            Attack::GarbageKek => "grant of the role's new key does not open it",
            Attack::SwappedGrants => "migrated grants do not open what they name",
            Attack::Disowned => "declared unreadable opens",
        };
        assert!(
            r.roles.refused[0].1.contains(expected),
            "{name}: {}",
            r.roles.refused[0].1
        );
    }
    for (name, u) in &creds.users {
        if name != &hostile && !others.contains(name) {
            let _ = login(&engine, name, &u.password, Some(1)).await;
        }
    }
    let status = engine.status(rekey_engine::Names::First).await.unwrap();
    assert_eq!(status.progress.users.remaining, 0);
    // Status counts the members who have not confirmed and says what to do.
    assert_eq!(
        status.progress.unconfirmed_role_members as usize,
        others.len()
    );

    // An administrator who believed a "lost" grant and wrote it off still
    // cannot finalize.
    for n in vault.non_migratable().await.unwrap() {
        engine
            .resolve_non_migratable(n.grant, rekey_core::model::Resolution::WrittenOff)
            .await
            .unwrap();
    }
    let status = engine.status(rekey_engine::Names::First).await.unwrap();
    assert!(
        status.next_step.contains("waive-role"),
        "{}",
        status.next_step
    );
    // Finalize refuses, naming every unconfirmed member, and deletes
    // nothing.
    let legacy_rows = vault
        .count_grants(rekey_core::model::GrantOrigin::Legacy)
        .await
        .unwrap();
    match engine.finalize(&|_| {}).await.unwrap_err() {
        EngineError::Transition(TransitionError::RoleMembersUnconfirmed { count, first }) => {
            assert_eq!(count as usize, others.len(), "{first:?}");
            for name in &others {
                assert!(
                    first.iter().any(|f| f.starts_with(name.as_str())),
                    "{first:?}"
                );
            }
        }
        other => panic!("finalize did not refuse for the role: {other}"),
    }
    assert_eq!(
        vault
            .count_grants(rekey_core::model::GrantOrigin::Legacy)
            .await
            .unwrap(),
        legacy_rows,
        "finalize deleted something"
    );

    // The administrator aborts: everyone reads everything again, the
    // victims included.
    engine.abort().await.unwrap();
    let after = verify(&engine, &creds).await;
    assert!(after.passed(), "{after:?}");
    assert_eq!(after.records_read, before.records_read);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_role_key_for_the_other_members_is_caught_and_abort_restores_them() {
    attack_is_caught_before_anything_is_deleted(Attack::GarbageKek, "hostile-kek").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_role_grants_are_caught_and_abort_restores_them() {
    attack_is_caught_before_anything_is_deleted(Attack::SwappedGrants, "hostile-swap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readable_role_grant_declared_unreadable_is_caught_and_abort_restores_it() {
    attack_is_caught_before_anything_is_deleted(Attack::Disowned, "hostile-disown").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_members_confirm_their_roles_and_finalize_goes_through() {
    let dir = temp("honest-members");
    let url = format!("sqlite://{}", dir.join("vault.db").display());
    let (engine, vault, creds) = seeded(&url, &dir.join("keys")).await;
    engine.start("Start", &|_, _, _| {}).await.unwrap();
    let (role, first, others) = role_with_two_members(&vault, &creds).await;
    let r = login(&engine, &first, &creds.users[&first].password, Some(1))
        .await
        .unwrap();
    assert!(
        r.applied.principals.contains(&role),
        "the first member migrates the role"
    );
    assert_eq!(r.roles.confirmed, 0, "its own bundle confirmed the role");
    // Before the others log in, finalize names them.
    for name in &others {
        let r = login(&engine, name, &creds.users[name].password, Some(1))
            .await
            .unwrap();
        assert!(r.roles.confirmed >= 1, "{name}: {:?}", r.roles);
        assert!(r.roles.refused.is_empty(), "{name}: {:?}", r.roles);
        // A receipt is kept once: nothing left to confirm.
        assert!(
            engine
                .role_checks(creds.users[name].id)
                .await
                .unwrap()
                .is_empty()
        );
    }
    for (name, u) in &creds.users {
        if name != &first && !others.contains(name) {
            let _ = login(&engine, name, &u.password, Some(1)).await;
        }
    }
    engine.finalize(&|_| {}).await.unwrap();
    assert!(verify(&engine, &creds).await.passed());
    std::fs::remove_dir_all(&dir).ok();
}
