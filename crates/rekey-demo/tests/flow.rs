//! The whole migration through the engine on a real database: seed a demo
//! vault (fixture RSA keys), start (server phase), every user logs in,
//! finalize, verify; plus abort restoring the legacy rows. SQLite always,
//! PostgreSQL when reachable.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; its steps are commented in place"
)]

mod support;

use rekey_core::grant::wrap_legacy_grant;
use rekey_core::model::{
    GrantOrigin, GrantRecord, KeyCustody, MigrationState, Phase, PrincipalKind, ServiceKind,
};
use rekey_core::{GrantId, Kek, LegacyRsaPublicKey, PrincipalId, Scheme, Subject};
use rekey_demo::password::master_secret;
use rekey_demo::reader::Reader;
use rekey_demo::{DemoSpec, KeySource, generate};
use rekey_engine::{Engine, KeyDir};
use rekey_storage::Vault;
use rekey_test_support::db::{Backend, TestDb};
use rekey_test_support::lifecycle::step;
use support::{back_up, fixture_keys, login, seeded, seeded_with, spec, temp, verify};

async fn full_flow(url: &str) {
    let dir = temp("full");
    let (engine, vault, creds) = seeded(url, &dir.join("keys")).await;
    let before = verify(&engine, &creds).await;
    assert!(before.passed(), "{before:?}");
    assert!(before.records_read > 0);

    // Wrong code word: nothing changes.
    assert!(engine.start("start", &|_, _, _| {}).await.is_err());
    assert_eq!(vault.migration().await.unwrap().phase, Phase::Legacy);
    let start = engine.start("Start", &|_, _, _| {}).await.unwrap();
    assert_eq!(start.phase, Phase::UserPhase);
    let server = start.server_phase.clone().unwrap();
    assert_eq!(server.migrated.len(), 3, "every service migrated");
    assert!(
        server.migrated_along >= 1,
        "managed users migrate with the directory key"
    );
    // Start twice is refused.
    assert!(engine.start("Start", &|_, _, _| {}).await.is_err());

    // Finalize refused while users are pending, naming them.
    let err = engine.finalize(&|_| {}).await.unwrap_err();
    assert!(err.to_string().contains("still pending"), "{err}");

    // A wrong password changes nothing.
    let (name, _) = creds.users.iter().next().unwrap();
    assert!(
        login(&engine, name, "wrong password", Some(1))
            .await
            .is_err()
    );
    for (name, u) in &creds.users {
        let r = login(&engine, name, &u.password, Some(2)).await.unwrap();
        assert_eq!(r.build.non_migratable, 0);
    }
    // Verified through the mixed state, then finalized.
    assert!(verify(&engine, &creds).await.passed());
    let progress = vault.progress().await.unwrap();
    assert_eq!(progress.users.remaining, 0, "{progress:?}");
    let deleted = engine.finalize(&|_| {}).await.unwrap().deleted_legacy_rows;
    assert!(deleted > 0);
    assert_eq!(vault.migration().await.unwrap().phase, Phase::Completed);
    let after = verify(&engine, &creds).await;
    assert!(after.passed(), "{after:?}");
    assert_eq!(after.records_read, before.records_read);
    // Abort after completion is refused.
    assert!(engine.abort().await.is_err());
    std::fs::remove_dir_all(dir).ok();
}

async fn abort_flow(url: &str) {
    let dir = temp("abort");
    let (engine, vault, creds) = seeded(url, &dir.join("keys")).await;
    let before = verify(&engine, &creds).await;
    engine.start("Start", &|_, _, _| {}).await.unwrap();
    let (name, u) = creds.users.iter().next().unwrap();
    login(&engine, name, &u.password, None).await.unwrap();
    engine.abort().await.unwrap();
    assert_eq!(vault.migration().await.unwrap().phase, Phase::Legacy);
    let p = vault.principal(u.id).await.unwrap().unwrap();
    assert_eq!(p.migration, MigrationState::Pending);
    let after = verify(&engine, &creds).await;
    assert_eq!(
        after, before,
        "every user reads everything with the legacy keys"
    );
    // And the migration can start again.
    engine.start("Start", &|_, _, _| {}).await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}

/// After the server phase: a role with an active e2ee member is left to
/// that member's login (its grants are re-wrapped on a client, not while
/// the administrator waits for `start`), even when the directory key
/// reaches it through a managed member; a role with a managed member and
/// no active e2ee member has migrated.
async fn roles_left_to_members(vault: &Vault) {
    let roles = vault.principals_of_kind(PrincipalKind::Role).await.unwrap();
    let role_ids: Vec<PrincipalId> = roles.iter().map(|r| r.id).collect();
    let memberships = vault.memberships_of_roles(&role_ids).await.unwrap();
    let member_ids: Vec<PrincipalId> = memberships.iter().map(|(_, m)| *m).collect();
    let members = vault.principals(&member_ids).await.unwrap();
    let is = |id: PrincipalId, custody: KeyCustody| {
        members.iter().any(|m| {
            m.id == id && m.custody == custody && m.status == rekey_core::model::UserStatus::Active
        })
    };
    let (mut mixed_left, mut managed_only_migrated) = (0, 0);
    for r in &roles {
        let of_role: Vec<PrincipalId> = memberships
            .iter()
            .filter(|(role, _)| *role == r.id)
            .map(|(_, m)| *m)
            .collect();
        let e2ee = of_role.iter().any(|m| is(*m, KeyCustody::E2ee));
        let managed = of_role.iter().any(|m| is(*m, KeyCustody::Managed));
        if e2ee {
            assert_eq!(r.migration, MigrationState::Pending, "{}", r.name);
            mixed_left += usize::from(managed);
        } else if managed {
            assert_eq!(r.migration, MigrationState::Migrated, "{}", r.name);
            managed_only_migrated += 1;
        }
    }
    assert!(
        mixed_left > 0,
        "the demo has a role with managed and e2ee members ({managed_only_migrated} managed-only)"
    );
}

/// A role whose members are all directory-managed users: no member of it
/// ever logs in, so the server phase must migrate it with the managed users
/// it holds, or finalize would wait for ever.
async fn managed_only_role_flow(url: &str) {
    let dir = temp("managed-role");
    let engine = Engine::init(url, Some(KeyDir::open(dir.join("keys")).unwrap()), "test")
        .await
        .unwrap();
    let vault = Vault::open(url).await.unwrap();
    engine.begin_preparation().await.unwrap();
    let spec = spec();
    let mut demo = generate(&spec, &mut KeySource::preset(fixture_keys()), &|_, _, _| {}).unwrap();
    // Hand every e2ee member of the role to the directory: a grant of its
    // KEK to the directory master key, and no password any more.
    let data = &demo.data;
    let role = data
        .principals
        .iter()
        .find(|p| p.kind == PrincipalKind::Role)
        .unwrap()
        .id;
    let dmk = data
        .principals
        .iter()
        .find(|p| p.service == Some(ServiceKind::DirectoryMasterKey))
        .unwrap()
        .id;
    let dmk_public = data
        .key_pairs
        .iter()
        .find(|k| k.principal == dmk)
        .map(|k| LegacyRsaPublicKey::from_spki_der(&k.public_key).unwrap())
        .unwrap();
    let members: Vec<PrincipalId> = data
        .memberships
        .iter()
        .filter(|m| m.role == role)
        .map(|m| m.member)
        .collect();
    let mut handed = Vec::new();
    for (name, u) in demo.credentials.users.clone() {
        if !members.contains(&u.id) {
            continue;
        }
        let master = master_secret(&u.password, demo.vault, u.id, &demo.credentials.kdf).unwrap();
        let kek = Kek::derive(&master, demo.vault, u.id).unwrap();
        let kp = demo
            .data
            .key_pairs
            .iter()
            .find(|k| k.principal == u.id)
            .unwrap()
            .id;
        demo.data.grants.push(GrantRecord {
            id: GrantId::random(),
            recipient: dmk,
            subject: Subject::PrivateKey(kp),
            envelope: wrap_legacy_grant(
                &dmk_public,
                Scheme::RsaOaepSha256,
                kek.dangerous_as_bytes(),
            )
            .unwrap(),
            origin: GrantOrigin::Legacy,
            created_at: None,
        });
        let p = demo
            .data
            .principals
            .iter_mut()
            .find(|p| p.id == u.id)
            .unwrap();
        p.custody = KeyCustody::Managed;
        demo.credentials.users.remove(&name);
        handed.push(u.id);
    }
    assert!(
        !handed.is_empty(),
        "the role had an e2ee member to hand over"
    );
    let all_managed = members.iter().all(|m| {
        demo.data
            .principals
            .iter()
            .any(|p| p.id == *m && p.custody == KeyCustody::Managed)
    });
    assert!(all_managed, "every member of the role is managed now");
    assert!(!demo.credentials.users.is_empty(), "an e2ee user is left");
    demo.install(&engine).await.unwrap();
    back_up(&engine, &dir.join("keys")).await;
    let creds = demo.credentials;

    let reader = Reader::new(&engine);
    let directory_before = reader.readable_records_of_service(dmk).await.unwrap();
    let role_records = demo
        .data
        .grants
        .iter()
        .filter(|g| g.recipient == role && matches!(g.subject, Subject::RecordKey(_)))
        .count();
    assert!(role_records > 0, "the role is granted records");
    assert!(
        directory_before.len() >= role_records,
        "the directory key reads the role's records through its managed members"
    );

    let server = engine
        .start("Start", &|_, _, _| {})
        .await
        .unwrap()
        .server_phase
        .unwrap();
    let role_now = vault.principal(role).await.unwrap().unwrap();
    assert_eq!(
        role_now.migration,
        MigrationState::Migrated,
        "the server phase migrated the managed-only role"
    );
    assert!(server.migrated_along > handed.len(), "{server:?}");
    for (name, u) in &creds.users {
        login(&engine, name, &u.password, Some(2)).await.unwrap();
    }
    engine.finalize(&|_| {}).await.unwrap();
    assert_eq!(vault.migration().await.unwrap().phase, Phase::Completed);
    assert!(verify(&engine, &creds).await.passed());
    assert_eq!(
        reader.readable_records_of_service(dmk).await.unwrap(),
        directory_before,
        "through the new keys only, the directory key reads what it read before"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_managed_only_role_migrates_in_the_server_phase() {
    let dir = temp("sqlite-managed");
    let url = format!("sqlite://{}?mode=rwc", dir.join("vault.db").display());
    managed_only_role_flow(&url).await;
    std::fs::remove_dir_all(dir).ok();
}

/// A larger demo (managed users in roles with e2ee members): start leaves
/// those roles to their e2ee members, every user logs in, finalize and
/// verify pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_roles_with_an_e2ee_member_migrate_at_its_login() {
    let dir = temp("sqlite-roles-left");
    let url = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    let spec = DemoSpec {
        users: 40,
        roles: 6,
        records: 120,
        ..spec()
    };
    let (engine, vault, creds) = seeded_with(&url, &dir.join("keys"), &spec).await;
    let dmk = vault
        .principals_of_kind(PrincipalKind::Service)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.service == Some(ServiceKind::DirectoryMasterKey))
        .unwrap()
        .id;
    let reader = Reader::new(&engine);
    let directory_before = reader.readable_records_of_service(dmk).await.unwrap();
    assert!(!directory_before.is_empty());
    engine.start("Start", &|_, _, _| {}).await.unwrap();
    roles_left_to_members(&vault).await;
    for (name, u) in &creds.users {
        login(&engine, name, &u.password, Some(2)).await.unwrap();
    }
    for r in vault.principals_of_kind(PrincipalKind::Role).await.unwrap() {
        assert_eq!(r.migration, MigrationState::Migrated, "{}", r.name);
    }
    engine.finalize(&|_| {}).await.unwrap();
    assert!(verify(&engine, &creds).await.passed());
    // The members' logins gave the managed members of those roles the new
    // role keys: through the new keys only, the directory key reads what
    // it read before.
    assert_eq!(
        reader.readable_records_of_service(dmk).await.unwrap(),
        directory_before
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_flow() {
    let dir = temp("sqlite");
    full_flow(&format!("sqlite://{}?mode=rwc", dir.join("v.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_abort_flow() {
    let dir = temp("sqlite-abort");
    abort_flow(&format!("sqlite://{}?mode=rwc", dir.join("v.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
async fn postgres_full_flow() {
    let db = TestDb::create(Backend::Postgres).await;
    full_flow(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
async fn postgres_abort_flow() {
    let db = TestDb::create(Backend::Postgres).await;
    abort_flow(&db.url).await;
}

/// A start interrupted right after the vault entered the server phase, and
/// a certificate key lost meanwhile: resuming waits for the key, naming
/// it, and resumes again once it is imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_certificate_key_waits_for_its_import() {
    let dir = temp("awaiting");
    let keys = dir.join("keys");
    let url = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    let (engine, vault, creds) = seeded(&url, &keys).await;
    // The interrupted start: the phase moved, the server phase never ran.
    let m = vault.migration().await.unwrap();
    vault
        .start(
            step(Phase::Legacy, Phase::ServerPhase),
            m.version,
            rekey_core::RunId::random(),
            rekey_core::Target::default(),
            &[],
            &[],
            &audit(),
        )
        .await
        .unwrap();
    // Take one certificate's private key away.
    let cert = vault.certificates().await.unwrap().remove(0);
    let file = keys.join(format!("{}.pk8", cert.fingerprint));
    let aside = dir.join("aside.pk8");
    std::fs::rename(&file, &aside).unwrap();

    // Resuming needs no code word; it stops on the missing key.
    let report = engine.start("", &|_, _, _| {}).await.unwrap();
    assert!(report.resumed);
    assert_eq!(report.phase, Phase::AwaitingCertificates);
    let server = report.server_phase.unwrap();
    assert_eq!(server.missing_certificates.len(), 1);
    assert!(server.missing_certificates[0].contains(&cert.fingerprint));
    // Still missing: stays waiting, names it again.
    let err = engine.start("", &|_, _, _| {}).await.unwrap_err();
    assert!(err.to_string().contains(&cert.fingerprint), "{err}");
    assert_eq!(
        vault.migration().await.unwrap().phase,
        Phase::AwaitingCertificates
    );
    // Logins wait for the user phase.
    let (name, u) = creds.users.iter().next().unwrap();
    assert!(login(&engine, name, &u.password, None).await.is_err());

    // Imported: the server phase resumes and completes.
    std::fs::rename(&aside, &file).unwrap();
    let done = engine.start("", &|_, _, _| {}).await.unwrap();
    assert_eq!(done.phase, Phase::UserPhase);
    assert_eq!(done.server_phase.unwrap().migrated.len(), 3);
    login(&engine, name, &u.password, None).await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}

fn audit() -> rekey_core::model::AuditEvent {
    rekey_core::model::AuditEvent {
        at: rekey_core::model::Timestamp::now(),
        actor: "test".into(),
        action: "start".into(),
        details: "{}".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
async fn postgres_managed_only_role_migrates_in_the_server_phase() {
    let db = TestDb::create(Backend::Postgres).await;
    managed_only_role_flow(&db.url).await;
}

/// Verify reads a role's records once for all its members (a cache): a
/// record lost from the role must still show up as a mismatch for every
/// member that reads through it, not only the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_every_member_of_a_role_that_lost_a_record() {
    use sea_orm::ConnectionTrait;
    let dir = temp("verify-role");
    let url = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    // Seed 8: the role has two e2ee members, and one of its records
    // reaches both only through it.
    let spec = DemoSpec { seed: 8, ..spec() };
    let (engine, vault, creds) = seeded_with(&url, &dir.join("keys"), &spec).await;
    let before = verify(&engine, &creds).await;
    assert!(before.passed(), "{before:?}");

    let role = vault.principals_of_kind(PrincipalKind::Role).await.unwrap()[0].clone();
    let members = vault.members_of(role.id).await.unwrap();
    let members_in_creds: Vec<&str> = creds
        .users
        .iter()
        .filter(|(_, u)| members.contains(&u.id))
        .map(|(n, _)| n.as_str())
        .collect();
    // The role's record that the most members read only through the role.
    let mut direct = std::collections::HashMap::new();
    for (n, u) in &creds.users {
        let subjects: std::collections::HashSet<Subject> = vault
            .grants_to(u.id)
            .await
            .unwrap()
            .into_iter()
            .map(|g| g.subject)
            .collect();
        direct.insert(n.as_str(), subjects);
    }
    let (lost, readers) = vault
        .grants_to(role.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|g| matches!(g.subject, Subject::RecordKey(_)))
        .map(|g| {
            let only_via_role: Vec<&str> = members_in_creds
                .iter()
                .copied()
                .filter(|n| !direct[n].contains(&g.subject))
                .collect();
            (g, only_via_role)
        })
        .max_by_key(|(_, r)| r.len())
        .expect("the role holds record grants");
    assert!(
        readers.len() >= 2,
        "two members read one of the role's records only through it: {readers:?}"
    );
    let conn = sea_orm::Database::connect(&url).await.unwrap();
    conn.execute_unprepared(&format!("DELETE FROM \"grant\" WHERE id = '{}'", lost.id))
        .await
        .unwrap();

    let after = verify(&engine, &creds).await;
    assert!(!after.passed());
    let mut named: Vec<&str> = after
        .mismatches
        .iter()
        .map(|m| m.split(':').next().unwrap_or_default())
        .collect();
    named.sort_unstable();
    let mut expected = readers.clone();
    expected.sort_unstable();
    assert_eq!(named, expected, "{after:?}");
    assert_eq!(
        after.records_read,
        before.records_read - readers.len(),
        "each member reads one record fewer"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// A principal marked migrated around the guard (only the database's
/// administrator can: by forging the writer marker) does not get its legacy
/// keys deleted: finalize reads the rows, names it, and deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_refuses_a_forged_migrated_flag_and_deletes_nothing() {
    use sea_orm::ConnectionTrait;
    let dir = temp("forged");
    let url = format!("sqlite://{}?mode=rwc", dir.join("v.db").display());
    let (engine, vault, creds) = seeded(&url, &dir.join("keys")).await;
    engine.start("Start", &|_, _, _| {}).await.unwrap();
    let mut users = creds.users.iter();
    let (victim, _) = users.next().unwrap();
    for (name, u) in users {
        login(&engine, name, &u.password, Some(1)).await.unwrap();
    }
    // A raw session cannot fake it …
    let raw = sea_orm::Database::connect(&url).await.unwrap();
    let forge =
        format!("UPDATE principal SET migration_state = 'migrated' WHERE name = '{victim}'");
    assert!(raw.execute_unprepared(&forge).await.is_err());
    // … unless it forges the writer marker too.
    raw.execute_unprepared("INSERT INTO migration_session (conn_id) VALUES (0)")
        .await
        .unwrap();
    raw.execute_unprepared(&forge).await.unwrap();
    raw.execute_unprepared("DELETE FROM migration_session")
        .await
        .unwrap();
    let before = vault.progress().await.unwrap();
    assert_eq!(before.users.remaining, 0, "the flag says everyone migrated");

    let err = engine.finalize(&|_| {}).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no new key pair") && text.contains(victim.as_str()),
        "{text}"
    );
    assert_eq!(vault.migration().await.unwrap().phase, Phase::UserPhase);
    assert_eq!(
        vault.progress().await.unwrap(),
        before,
        "nothing was deleted"
    );
    // The victim still reads everything through its legacy keys.
    assert!(verify(&engine, &creds).await.passed());
    std::fs::remove_dir_all(dir).ok();
}
