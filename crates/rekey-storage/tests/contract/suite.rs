// The storage contract, written once; `contract.rs` includes it once per
// database, in modules `sqlite`, `postgres` and `mysql`, each with its own
// `contract_test!`.

use crate::fixtures::*;
use rekey_test_support::db::{Backend, TestDb};
use rekey_test_support::lifecycle::step;
use rekey_core::Target;
use rekey_core::ids::{GrantId, PrincipalId, RecordId, RunId};
use rekey_core::model::{
    Component, Device, DeviceKind, DirectoryProfile, GrantRecord, MigrationState, NonMigratable,
    Phase, RecordRow, Resolution, Server, Settings, Timestamp, UserStatus,
};
use rekey_storage::{Error, GroupOutcome, SchemaStatus, Vault};
use sea_orm::ConnectionTrait;

async fn all_pending(vault: &Vault, p: PrincipalId) -> Vec<GrantRecord> {
    let mut out = Vec::new();
    let mut cursor = vault.pending_grants(p, 1000);
    while let Some(page) = cursor.next_page().await.unwrap() {
        out.extend(page);
    }
    out
}

/// Legacy → server_phase → user_phase.
async fn start_user_phase(vault: &Vault) {
    rekey_test_support::lifecycle::start_user_phase(vault, &audit("start"), &audit("server_done"))
        .await;
}

contract_test!(schema_up_down_up, |t| {
    let vault = Vault::connect(&t.url).await.unwrap();
    assert_eq!(vault.schema_status().await.unwrap(), SchemaStatus::Empty);
    assert!(matches!(
        Vault::open(&t.url).await.unwrap_err(),
        Error::NotInitialised { .. }
    ));
    let vault = t.vault().await;
    assert_eq!(vault.schema_status().await.unwrap(), SchemaStatus::Current);
    let f = fixture(2, 3);
    vault.seed(&f.data, 1000).await.unwrap();

    vault.drop_schema().await.unwrap();
    assert_eq!(vault.schema_status().await.unwrap(), SchemaStatus::Empty);

    let vault = t.vault().await;
    assert_eq!(vault.schema_status().await.unwrap(), SchemaStatus::Current);
    let m = vault.migration().await.unwrap();
    assert_eq!((m.phase, m.version), (Phase::Legacy, 0));
    vault.seed(&f.data, 1000).await.unwrap();
    assert_eq!(all_pending(&vault, f.users[0].id).await.len(), 3);
    Vault::open(&t.url).await.unwrap();
});

contract_test!(init_upgrades_a_vault_two_schema_steps_behind, |t| {
    // A vault made by the build before the grant (legacy, id) index (step
    // 5) and the writer-first guard (step 6): the index, the row triggers
    // (SQLite, MySQL) and both history rows missing, the data in place.
    let vault = t.vault().await;
    let f = fixture(2, 3);
    vault.seed(&f.data, 1000).await.unwrap();
    let raw = t.raw().await;
    let drop = match t.backend {
        Backend::MySql => format!("DROP INDEX grant_legacy_id ON {}", t.q("grant")),
        _ => "DROP INDEX grant_legacy_id".to_owned(),
    };
    raw.execute_unprepared(&drop).await.unwrap();
    if t.backend != Backend::Postgres {
        for table in ["record", "grant", "key_pair", "membership"] {
            for event in ["insert", "update", "delete"] {
                raw.execute_unprepared(&format!("DROP TRIGGER rekey_ro_{table}_{event}"))
                    .await
                    .unwrap();
            }
        }
    }
    raw.execute_unprepared(
        "DELETE FROM seaql_migrations WHERE version IN \
         ('m20261201_000005_grant_legacy_index', 'm20261201_000006_guard_writer_first')",
    )
    .await
    .unwrap();
    assert_eq!(
        vault.schema_status().await.unwrap(),
        SchemaStatus::Behind { pending: 2 }
    );
    let err = Vault::open(&t.url).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaOutdated { pending: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("rekey init"), "{err}");

    let vault = t.vault().await;
    assert_eq!(vault.schema_status().await.unwrap(), SchemaStatus::Current);
    assert_eq!(all_pending(&vault, f.users[0].id).await.len(), 3);
    // The guard is back: another writer is refused while users migrate,
    // the migration's own transaction writes.
    start_user_phase(&vault).await;
    let err = raw
        .execute_unprepared(&format!(
            "DELETE FROM {} WHERE id = '{}'",
            t.q("grant"),
            f.data.grants[0].id
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("vault is being migrated"), "{err}");
    let pending = all_pending(&vault, f.users[1].id).await;
    vault
        .apply(&write_set(f.users[1].id, &pending))
        .await
        .unwrap();
    // Step 5 really ran: dropping the index again succeeds.
    raw.execute_unprepared(&drop).await.unwrap();
});

contract_test!(open_refuses_foreign_and_newer_databases, |t| {
    let raw = t.raw().await;
    raw.execute_unprepared("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    let err = Vault::open(&t.url).await.unwrap_err();
    assert!(matches!(err, Error::NotAVault { .. }), "{err:?}");
    assert!(err.to_string().contains("not a rekey vault"), "{err}");
    assert!(matches!(
        Vault::init(&t.url).await.unwrap_err(),
        Error::NotAVault { .. }
    ));
    raw.execute_unprepared("DROP TABLE customers")
        .await
        .unwrap();

    t.vault().await;
    raw.execute_unprepared(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m29990101_000001_from_the_future', 0)",
    )
    .await
    .unwrap();
    let err = Vault::open(&t.url).await.unwrap_err();
    assert!(matches!(err, Error::SchemaTooNew { .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade rekey"), "{err}");
    assert!(matches!(
        Vault::init(&t.url).await.unwrap_err(),
        Error::SchemaTooNew { .. }
    ));
});

contract_test!(seeding_and_loading, |t| {
    let vault = t.vault().await;
    let mut f = fixture(5, 4);
    let gone = user("gone", UserStatus::Deactivated);
    f.data.principals.push(gone.clone());
    f.data.devices.push(Device {
        id: "phone-1".into(),
        owner: f.users[0].id,
        kind: DeviceKind::Mobile,
        last_sync_at: Some(Timestamp(5)),
        unsynced_changes: 3,
        written_off: false,
    });
    f.data.servers.push(Server {
        name: "srv-a".into(),
        heartbeat_at: Timestamp(10),
        certificate_fingerprints: vec!["aa".into(), "bb".into()],
    });
    f.data.directory_profiles.push(DirectoryProfile {
        name: "entra".into(),
        kind: "entra_id".into(),
        token_issued_at: None,
    });
    f.data.components.push(Component {
        name: "server".into(),
        version: "9.1".into(),
    });
    // Small chunks: one transaction per chunk.
    let report = vault.seed(&f.data, 7).await.unwrap();
    let rows = f.data.principals.len()
        + f.data.key_pairs.len()
        + f.data.records.len()
        + f.data.grants.len()
        + f.data.memberships.len()
        + 4;
    assert_eq!(report.rows, rows as u64);
    assert!(report.transactions >= (f.data.grants.len() / 7) as u64);

    let u = vault.principal(f.users[1].id).await.unwrap().unwrap();
    assert_eq!(u, f.users[1]);
    let kps = vault.key_pairs(f.users[1].id).await.unwrap();
    assert_eq!(kps.len(), 1);
    assert_eq!(kps[0], f.data.key_pairs[1]);
    assert_eq!(
        vault
            .users_by_status(UserStatus::Deactivated)
            .await
            .unwrap(),
        vec![gone]
    );
    assert_eq!(
        vault.roles_of(f.users[0].id).await.unwrap(),
        vec![f.role.id]
    );
    assert_eq!(vault.members_of(f.role.id).await.unwrap().len(), 2);
    // The batched forms agree with the one-principal reads, in
    // (role, member) order, and skip principals without memberships.
    let mut pairs: Vec<_> = f.users[..2].iter().map(|u| (f.role.id, u.id)).collect();
    pairs.sort();
    assert_eq!(
        vault
            .memberships_of_roles(&[f.role.id, f.users[0].id])
            .await
            .unwrap(),
        pairs
    );
    let all_users: Vec<_> = f.users.iter().map(|u| u.id).collect();
    assert_eq!(
        vault.memberships_of_members(&all_users).await.unwrap(),
        pairs
    );
    assert!(vault.memberships_of_members(&[]).await.unwrap().is_empty());
    assert_eq!(vault.devices().await.unwrap(), f.data.devices);
    assert_eq!(vault.servers().await.unwrap(), f.data.servers);
    assert_eq!(
        vault.directory_profiles().await.unwrap(),
        f.data.directory_profiles
    );
    assert_eq!(vault.components().await.unwrap(), f.data.components);

    vault
        .heartbeat(&Server {
            name: "srv-a".into(),
            heartbeat_at: Timestamp(20),
            certificate_fingerprints: vec![],
        })
        .await
        .unwrap();
    assert_eq!(
        vault.servers().await.unwrap()[0].heartbeat_at,
        Timestamp(20)
    );
    assert_eq!(vault.settings().await.unwrap(), Settings::default());
    let s = Settings {
        offline_access_allowed: true,
        mobile_sync_allowed: false,
    };
    vault.set_settings(&s).await.unwrap();
    vault.set_settings(&s).await.unwrap();
    assert_eq!(vault.settings().await.unwrap(), s);
    let g = &f.data.grants[0];
    let loaded = all_pending(&vault, g.recipient).await;
    assert!(loaded.contains(g));
});

contract_test!(pending_grants_come_in_pages, |t| {
    let vault = t.vault().await;
    let f = fixture(2, 2500);
    vault.seed(&f.data, 5000).await.unwrap();
    let me = f.users[0].id;
    let mut cursor = vault.pending_grants(me, 1000);
    let mut sizes = Vec::new();
    let mut ids: Vec<GrantId> = Vec::new();
    while let Some(page) = cursor.next_page().await.unwrap() {
        sizes.push(page.len());
        assert!(page.iter().all(|g| g.recipient == me));
        ids.extend(page.iter().map(|g| g.id));
    }
    assert_eq!(sizes, vec![1000, 1000, 500]);
    let mut sorted = ids.clone();
    sorted.sort_by_key(|g| g.to_string());
    sorted.dedup();
    assert_eq!(sorted.len(), 2500);
    assert_eq!(ids, sorted, "pages come in id order without overlap");
    // Exactly a page multiple ends cleanly too.
    let mut cursor = vault.pending_grants(me, 500);
    let mut n = 0;
    while let Some(page) = cursor.next_page().await.unwrap() {
        n += page.len();
    }
    assert_eq!(n, 2500);
    // Ids and subjects alone, in pages of 1,000 and in one page: the same
    // grants in the same order as the full rows.
    let full: Vec<_> = all_pending(&vault, me)
        .await
        .into_iter()
        .map(|g| (g.id, g.subject))
        .collect();
    assert_eq!(vault.pending_grant_subjects(me, 1000).await.unwrap(), full);
    assert_eq!(vault.pending_grant_subjects(me, 2500).await.unwrap(), full);
    assert_eq!(
        vault.pending_grant_subjects(me, 10_000).await.unwrap(),
        full
    );
    assert!(
        vault
            .pending_grant_subjects(f.users[1].id, 1000)
            .await
            .unwrap()
            .iter()
            .all(|(id, _)| !ids.contains(id))
    );
});

contract_test!(apply_migrates_and_counts_progress, |t| {
    let vault = t.vault().await;
    let f = fixture(3, 20);
    vault.seed(&f.data, 1000).await.unwrap();
    // Not before the migration started.
    let pending = all_pending(&vault, f.users[0].id).await;
    let ws = write_set(f.users[0].id, &pending);
    assert!(matches!(
        vault.apply(&ws).await.unwrap_err(),
        Error::WrongPhase {
            phase: Phase::Legacy,
            ..
        }
    ));
    start_user_phase(&vault).await;
    let m = vault.migration().await.unwrap();
    let snap = m.snapshot.unwrap();
    assert_eq!((snap.users, snap.roles, snap.grants), (3, 1, 80));
    assert_eq!(m.started_by.as_deref(), Some("test"));

    let before = vault.progress().await.unwrap();
    assert_eq!((before.users.migrated, before.users.remaining), (0, 3));
    assert_eq!((before.grants.migrated, before.grants.remaining), (0, 80));

    vault.apply(&ws).await.unwrap();
    let p = vault.principal(f.users[0].id).await.unwrap().unwrap();
    assert_eq!(p.migration, MigrationState::Migrated);
    assert_eq!(vault.key_pairs(f.users[0].id).await.unwrap().len(), 2);
    assert_eq!(
        vault.migrated_grants(f.users[0].id).await.unwrap().len(),
        20
    );
    let after = vault.progress().await.unwrap();
    assert_eq!((after.users.migrated, after.users.remaining), (1, 2));
    assert_eq!((after.roles.migrated, after.roles.remaining), (0, 1));
    assert_eq!((after.grants.migrated, after.grants.remaining), (20, 60));

    // The same bundle again: conflict, nothing written.
    let err = vault.apply(&ws).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("already migrated"), "{err}");

    // A bundle that misses a pending grant: conflict.
    let pending = all_pending(&vault, f.users[1].id).await;
    let stale = write_set(f.users[1].id, &pending[1..]);
    let err = vault.apply(&stale).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    // One that covers a grant that is not pending for this principal.
    let mut foreign = write_set(f.users[1].id, &pending);
    foreign.principals[0].covered_grants[0] = GrantId::random();
    assert!(matches!(
        vault.apply(&foreign).await.unwrap_err(),
        Error::Conflict { .. }
    ));
    assert_eq!(vault.progress().await.unwrap(), after);

    // With a non-migratable grant.
    let mut ws = write_set(f.users[1].id, &pending[1..]);
    ws.principals[0].covered_grants.push(pending[0].id);
    ws.non_migratable.push(NonMigratable {
        grant: pending[0].id,
        recipient: f.users[1].id,
        reason: "could not decrypt".into(),
        resolution: Resolution::Unresolved,
        resolved_by: None,
    });
    vault.apply(&ws).await.unwrap();
    let p = vault.progress().await.unwrap();
    assert_eq!(p.unresolved_non_migratable, 1);
    assert_eq!(p.grants.migrated, 40);
    vault
        .resolve_non_migratable(pending[0].id, Resolution::WrittenOff, &audit("write_off"))
        .await
        .unwrap();
    let nm = vault.non_migratable().await.unwrap();
    assert_eq!(nm[0].resolution, Resolution::WrittenOff);
    assert_eq!(nm[0].resolved_by.as_deref(), Some("test"));
    assert_eq!(vault.progress().await.unwrap().unresolved_non_migratable, 0);
    assert!(matches!(
        vault
            .resolve_non_migratable(GrantId::random(), Resolution::Reshared, &audit("x"))
            .await
            .unwrap_err(),
        Error::NotFound { .. }
    ));

    let events = vault.audit_events(0, 100).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|(_, e)| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "start",
            "server_done",
            "migrate_principal",
            "migrate_principal",
            "write_off"
        ]
    );
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0));
    let tail = vault.audit_events(events[2].0, 100).await.unwrap();
    assert_eq!(tail.len(), 2);
});

contract_test!(writers_of_one_vault_take_turns_and_a_refused_one_gives_its_turn_back, |t| {
    // On SQLite one process's writers queue for the file's write lock
    // (`Vault::write_turn`); a turn kept by a refused write would hold
    // every later writer for the busy timeout (60 s), far past the bound
    // below.
    let within = std::time::Duration::from_secs(20);
    let vault = t.vault().await;
    let f = fixture(6, 10);
    vault.seed(&f.data, 1000).await.unwrap();
    start_user_phase(&vault).await;
    let pending = all_pending(&vault, f.users[0].id).await;
    for _ in 0..3 {
        let stale = write_set(f.users[0].id, &pending[1..]);
        let err = tokio::time::timeout(within, vault.apply(&stale))
            .await
            .expect("a refused write set came back in time")
            .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    }
    // Every user's write set at once, through clones of one vault.
    let mut tasks = Vec::new();
    for u in &f.users {
        let ws = write_set(u.id, &all_pending(&vault, u.id).await);
        let v = vault.clone();
        tasks.push(tokio::spawn(async move { v.apply(&ws).await }));
    }
    let all = tokio::time::timeout(within, async {
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out
    })
    .await
    .expect("six concurrent write sets landed in time");
    assert!(all.iter().all(Result::is_ok), "{all:?}");
    let p = vault.progress().await.unwrap();
    assert_eq!((p.users.migrated, p.users.remaining), (6, 0));
    assert_eq!(p.grants.migrated, 60);
});

contract_test!(a_write_set_checked_for_an_aborted_run_is_a_conflict_in_the_next, |t| {
    // A bundle checked against run 1, applied after the administrator
    // aborted and started run 2 (another target, perhaps): refused, and
    // nothing of it lands; run 2's own write sets apply beside it.
    let vault = t.vault().await;
    let f = fixture(2, 5);
    vault.seed(&f.data, 1000).await.unwrap();
    start_user_phase(&vault).await;
    let (a, b) = (f.users[0].id, f.users[1].id);
    let old = write_set(a, &all_pending(&vault, a).await);
    let m = vault.migration().await.unwrap();
    let m = vault.abort(m.version, &audit("abort")).await.unwrap();
    let run2 = RunId::random();
    let m = vault
        .start(step(Phase::Legacy, Phase::ServerPhase), m.version, run2, Target::HpkeP256, &[], &[], &audit("start again"))
        .await
        .unwrap();
    vault
        .transition(step(Phase::ServerPhase, Phase::UserPhase), m.version, &audit("server_done"))
        .await
        .unwrap();
    let err = vault.apply(&old).await.unwrap_err();
    match &err {
        Error::Conflict { principal, reason } => {
            assert_eq!(*principal, a);
            assert!(reason.contains("aborted and started again"), "{reason}");
            assert!(reason.contains(&run2.to_string()), "{reason}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let fresh = write_set_in(run2, b, &all_pending(&vault, b).await);
    let outcomes = vault.apply_group(&[&old, &fresh]).await.unwrap();
    assert!(matches!(outcomes[0], GroupOutcome::Refused(Error::Conflict { .. })), "{outcomes:?}");
    assert!(matches!(outcomes[1], GroupOutcome::Applied), "{outcomes:?}");
    let state = |p| {
        let vault = &vault;
        async move { vault.principal(p).await.unwrap().unwrap().migration }
    };
    assert_eq!(state(a).await, MigrationState::Pending, "nothing of run 1's write set landed");
    assert_eq!(vault.key_pairs(a).await.unwrap().len(), 1, "only a's legacy key pair");
    assert_eq!(all_pending(&vault, a).await.len(), 5);
    assert_eq!(state(b).await, MigrationState::Migrated);
    // The same write set made for run 2 applies.
    vault.apply(&write_set_in(run2, a, &all_pending(&vault, a).await)).await.unwrap();
    assert_eq!(state(a).await, MigrationState::Migrated);
});

contract_test!(a_group_commits_what_passes_and_defers_what_meets_an_earlier_write_set, |t| {
    let vault = t.vault().await;
    let f = fixture(5, 10);
    vault.seed(&f.data, 1000).await.unwrap();
    start_user_phase(&vault).await;
    let mut pending = Vec::new();
    for u in &f.users {
        pending.push(all_pending(&vault, u.id).await);
    }
    let good0 = write_set(f.users[0].id, &pending[0]);
    let stale1 = write_set(f.users[1].id, &pending[1][1..]);
    let again0 = write_set(f.users[0].id, &pending[0]);
    let good2 = write_set(f.users[2].id, &pending[2]);
    let mut legacy3 = write_set(f.users[3].id, &pending[3]);
    legacy3.key_pairs[0].state = rekey_core::model::KeyState::Legacy;
    let outcomes = vault
        .apply_group(&[&good0, &stale1, &again0, &good2, &legacy3])
        .await
        .unwrap();
    let shape: Vec<&str> = outcomes
        .iter()
        .map(|o| match o {
            GroupOutcome::Applied => "applied",
            GroupOutcome::Refused(Error::Conflict { .. }) => "conflict",
            GroupOutcome::Refused(_) => "refused otherwise",
            GroupOutcome::Deferred => "deferred",
        })
        .collect();
    assert_eq!(
        shape,
        ["applied", "conflict", "deferred", "applied", "conflict"]
    );
    // Exactly the two accepted write sets were written.
    let p = vault.progress().await.unwrap();
    assert_eq!((p.users.migrated, p.users.remaining), (2, 3));
    assert_eq!(p.grants.migrated, 20);
    for (i, migrated) in [(0, true), (1, false), (2, true), (3, false)] {
        let id = f.users[i].id;
        let state = vault.principal(id).await.unwrap().unwrap().migration;
        assert_eq!(state == MigrationState::Migrated, migrated, "user{i}");
        assert_eq!(vault.key_pairs(id).await.unwrap().len(), if migrated { 2 } else { 1 });
        assert_eq!(vault.migrated_grants(id).await.unwrap().len(), if migrated { 10 } else { 0 });
    }
    let actions = vault.audit_events(0, 100).await.unwrap().len();
    assert_eq!(actions, 4, "one audit event per applied write set");
    // The deferred one, applied after the group, meets what the group
    // committed, as it would have one after the other.
    let err = vault.apply(&again0).await.unwrap_err();
    assert!(err.to_string().contains("already migrated"), "{err}");
    // A group that only refuses writes nothing.
    let outcomes = vault.apply_group(&[&stale1, &legacy3]).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, GroupOutcome::Refused(_))));
    assert_eq!(vault.audit_events(0, 100).await.unwrap().len(), 4);
    // A database error fails the whole group: the honest write set beside
    // the one whose grant id collides is not written either.
    let mut colliding = write_set(f.users[3].id, &pending[3]);
    colliding.grants[9].id = f.data.grants[0].id;
    let honest = write_set(f.users[4].id, &pending[4]);
    let err = vault.apply_group(&[&honest, &colliding]).await.unwrap_err();
    assert!(matches!(err, Error::Constraint { .. }), "{err:?}");
    assert_eq!(vault.progress().await.unwrap(), p);
    // Alone, each gets its own answer.
    assert!(vault.apply(&colliding).await.is_err());
    vault.apply(&honest).await.unwrap();
    assert_eq!(vault.progress().await.unwrap().users.migrated, 3);
    // Out of the user phase a group is refused as a whole.
    let m = vault.migration().await.unwrap();
    vault
        .transition(step(Phase::UserPhase, Phase::Finalizing), m.version, &audit("finalize"))
        .await
        .unwrap();
    let err = vault.apply_group(&[&stale1]).await.unwrap_err();
    assert!(matches!(err, Error::WrongPhase { .. }), "{err:?}");
});

contract_test!(apply_is_all_or_nothing, |t| {
    let vault = t.vault().await;
    let f = fixture(1, 1500);
    vault.seed(&f.data, 5000).await.unwrap();
    start_user_phase(&vault).await;
    let me = f.users[0].id;
    let pending = all_pending(&vault, me).await;
    let mut ws = write_set(me, &pending);
    // The very last row collides with an existing grant's id.
    let last = ws.grants.len() - 1;
    ws.grants[last].id = f.data.grants[0].id;
    let err = vault.apply(&ws).await.unwrap_err();
    assert!(matches!(err, Error::Constraint { .. }), "{err:?}");
    assert!(err.to_string().contains("nothing was written"), "{err}");

    assert_eq!(vault.migrated_grants(me).await.unwrap().len(), 0);
    assert_eq!(vault.key_pairs(me).await.unwrap().len(), 1);
    let p = vault.principal(me).await.unwrap().unwrap();
    assert_eq!(p.migration, MigrationState::Pending);
    assert_eq!(vault.audit_events(0, 100).await.unwrap().len(), 2);
    // A last row addressed to a principal that does not exist: same.
    let mut ws = write_set(me, &pending);
    ws.membership_grants.push(GrantRecord {
        recipient: PrincipalId::random(),
        ..ws.grants[0].clone()
    });
    ws.membership_grants[0].id = GrantId::random();
    assert!(vault.apply(&ws).await.is_err());
    assert_eq!(vault.migrated_grants(me).await.unwrap().len(), 0);
    // And the honest write set still goes through.
    vault.apply(&write_set(me, &pending)).await.unwrap();
    assert_eq!(vault.migrated_grants(me).await.unwrap().len(), 1500);
});

contract_test!(concurrent_transitions_exactly_one_wins, |t| {
    let a = t.vault().await;
    let b = Vault::open(&t.url).await.unwrap();
    for round in 0..3 {
        let m = a.migration().await.unwrap();
        let (from, to) = match m.phase {
            Phase::Legacy => (Phase::Legacy, Phase::ServerPhase),
            Phase::ServerPhase => (Phase::ServerPhase, Phase::AwaitingCertificates),
            _ => (Phase::AwaitingCertificates, Phase::ServerPhase),
        };
        let (a2, b2, v) = (a.clone(), b.clone(), m.version);
        let ta = tokio::spawn(async move { a2.transition(step(from, to), v, &audit("a")).await });
        let tb = tokio::spawn(async move { b2.transition(step(from, to), v, &audit("b")).await });
        let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
        let wins = [ra.is_ok(), rb.is_ok()].iter().filter(|w| **w).count();
        assert_eq!(wins, 1, "round {round}: {ra:?} / {rb:?}");
        let loser = if ra.is_ok() { rb } else { ra };
        assert!(
            matches!(loser, Err(Error::PhaseConflict { expected_version, found_version, .. })
                if found_version == expected_version + 1),
            "{loser:?}"
        );
        let now = a.migration().await.unwrap();
        assert_eq!((now.phase, now.version), (to, m.version + 1));
    }
    // A stale version loses even when the phase matches.
    let m = a.migration().await.unwrap();
    assert!(matches!(
        a.transition(step(m.phase, Phase::UserPhase), m.version - 1, &audit("stale"))
            .await
            .unwrap_err(),
        Error::PhaseConflict { .. }
    ));
});

contract_test!(read_only_triggers_refuse_other_writers, |t| {
    let vault = t.vault().await;
    let f = fixture(2, 3);
    vault.seed(&f.data, 1000).await.unwrap();
    let raw = t.raw().await;
    let records: Vec<&RecordRow> = f.data.records.iter().collect();
    let record_q = t.q("record");
    let grant_q = t.q("grant");
    let update =
        |id: RecordId| format!("UPDATE {record_q} SET ciphertext = ciphertext WHERE id = '{id}'");
    let delete_grant = |id: GrantId| format!("DELETE FROM {grant_q} WHERE id = '{id}'");

    // Before: allowed.
    raw.execute_unprepared(&update(records[0].id))
        .await
        .unwrap();
    raw.execute_unprepared(&delete_grant(f.data.grants[0].id))
        .await
        .unwrap();

    start_user_phase(&vault).await;
    // During: a second connection is refused, on every guarded table.
    let err = raw
        .execute_unprepared(&update(records[1].id))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("vault is being migrated"), "{err}");
    let err = raw
        .execute_unprepared(&delete_grant(f.data.grants[1].id))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("vault is being migrated"), "{err}");
    for sql in [
        format!(
            "DELETE FROM {} WHERE role_id = '{}'",
            t.q("membership"),
            f.role.id
        ),
        format!("UPDATE {} SET state = 'retired'", t.q("key_pair")),
        format!("DELETE FROM {record_q}"),
    ] {
        let err = raw.execute_unprepared(&sql).await.unwrap_err();
        assert!(
            err.to_string().contains("vault is being migrated"),
            "{sql}: {err}"
        );
    }
    if t.backend == Backend::Postgres {
        let err = raw
            .execute_unprepared(&format!("TRUNCATE {record_q} CASCADE"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("vault is being migrated"), "{err}");
    }
    // The vault's own record API says so in its type.
    let err = vault
        .put_record(&RecordRow {
            id: records[1].id,
            ciphertext: vec![1, 2, 3],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReadOnly), "{err:?}");
    assert!(matches!(
        vault.delete_record(records[2].id).await.unwrap_err(),
        Error::ReadOnly
    ));
    // …while the migration's own transaction writes.
    let pending = all_pending(&vault, f.users[1].id).await;
    vault
        .apply(&write_set(f.users[1].id, &pending))
        .await
        .unwrap();
    // Still refused after the migration's transaction committed.
    assert!(
        raw.execute_unprepared(&update(records[1].id))
            .await
            .is_err()
    );
    assert!(vault.audit_events(0, 10).await.is_ok());

    // After abort: allowed again.
    let m = vault.migration().await.unwrap();
    vault.abort(m.version, &audit("abort")).await.unwrap();
    raw.execute_unprepared(&update(records[1].id))
        .await
        .unwrap();
    vault
        .put_record(&RecordRow {
            id: records[1].id,
            ciphertext: vec![1, 2, 3],
        })
        .await
        .unwrap();
    assert_eq!(
        vault
            .record(records[1].id)
            .await
            .unwrap()
            .unwrap()
            .ciphertext,
        vec![1, 2, 3]
    );
});

contract_test!(abort_restores_the_legacy_vault, |t| {
    let vault = t.vault().await;
    let f = fixture(3, 10);
    vault.seed(&f.data, 1000).await.unwrap();
    let before_pending = all_pending(&vault, f.users[0].id).await;
    let before_progress = vault.progress().await.unwrap();
    start_user_phase(&vault).await;
    vault
        .apply(&write_set(f.users[0].id, &before_pending))
        .await
        .unwrap();
    let role_pending = all_pending(&vault, f.role.id).await;
    let mut ws = write_set(f.role.id, &role_pending);
    ws.membership_grants.push(GrantRecord {
        id: GrantId::random(),
        recipient: f.users[1].id,
        subject: rekey_core::ids::Subject::PrivateKey(ws.key_pairs[0].id),
        envelope: legacy_envelope(3),
        origin: rekey_core::model::GrantOrigin::Migration,
        created_at: None,
    });
    vault.apply(&ws).await.unwrap();
    assert_eq!(all_pending(&vault, f.users[1].id).await.len(), 11);

    let m = vault.migration().await.unwrap();
    let back = vault.abort(m.version, &audit("abort")).await.unwrap();
    assert_eq!(back.phase, Phase::Legacy);
    assert!(back.snapshot.is_none() && back.started_at.is_none());
    assert_eq!(all_pending(&vault, f.users[0].id).await, before_pending);
    assert_eq!(all_pending(&vault, f.users[1].id).await.len(), 10);
    assert_eq!(vault.key_pairs(f.users[0].id).await.unwrap().len(), 1);
    assert_eq!(vault.key_pairs(f.role.id).await.unwrap().len(), 1);
    assert_eq!(vault.progress().await.unwrap(), before_progress);
    assert!(
        vault
            .migrated_grants(f.users[0].id)
            .await
            .unwrap()
            .is_empty()
    );
    // Abort from legacy is refused.
    assert!(matches!(
        vault
            .abort(back.version, &audit("again"))
            .await
            .unwrap_err(),
        Error::WrongPhase { .. }
    ));
});

/// Everything a principal's rows say, for comparing a vault with itself.
async fn rows_of(vault: &Vault, p: PrincipalId) -> (MigrationState, Vec<rekey_core::model::KeyPairRecord>, Vec<GrantRecord>) {
    let state = vault.principal(p).await.unwrap().unwrap().migration;
    let mut grants = vault.grants_to(p).await.unwrap();
    grants.sort_by_key(|g| g.id);
    (state, vault.key_pairs(p).await.unwrap(), grants)
}

/// A first run to the end (every principal of `who` migrated, the
/// `exempt` ones set aside, finalized, completed).
async fn complete_a_run(vault: &Vault, who: &[PrincipalId], exempt: &[PrincipalId]) {
    let first = RunId::random();
    let m = vault.migration().await.unwrap();
    let m = vault
        .start(
            step(Phase::Legacy, Phase::ServerPhase),
            m.version,
            first,
            Target::HpkeP256,
            &[],
            exempt,
            &audit("start"),
        )
        .await
        .unwrap();
    vault
        .transition(
            step(Phase::ServerPhase, Phase::UserPhase),
            m.version,
            &audit("server_done"),
        )
        .await
        .unwrap();
    for p in who {
        let pending = all_pending(vault, *p).await;
        vault.apply(&write_set_in(first, *p, &pending)).await.unwrap();
    }
    let m = vault.migration().await.unwrap();
    let m = vault
        .transition(step(Phase::UserPhase, Phase::Finalizing), m.version, &audit("finalize"))
        .await
        .unwrap();
    while vault.delete_legacy_batch(100).await.unwrap() > 0 {}
    vault
        .transition(step(Phase::Finalizing, Phase::Completed), m.version, &audit("done"))
        .await
        .unwrap();
}

contract_test!(a_completed_vault_migrates_again_and_aborts_to_itself, |t| {
    let vault = t.vault().await;
    let f = fixture(4, 10);
    vault.seed(&f.data, 1000).await.unwrap();
    // user3 is set aside in the first run (as a written-off user is): its
    // keys go at finalize and it stays exempt through the next run.
    let gone = f.users[3].id;
    let who: Vec<PrincipalId> = f.users[..3].iter().map(|u| u.id).chain([f.role.id]).collect();
    complete_a_run(&vault, &who, &[gone]).await;
    assert!(vault.key_pairs(gone).await.unwrap().is_empty());
    let completed = vault.migration().await.unwrap();
    let mut before = Vec::new();
    for p in &who {
        before.push(rows_of(&vault, *p).await);
    }
    assert!(all_pending(&vault, f.users[0].id).await.is_empty());

    let again = RunId::random();
    // The next run: the completed run's keys and grants become legacy.
    let m = vault
        .start(step(Phase::Completed, Phase::ServerPhase), completed.version, again, Target::HpkeMlKem768X25519, &[gone], &[], &audit("start again"))
        .await
        .unwrap();
    // Named blocked (its account is not active), but exempt in the
    // completed vault and without a key: it stays exempt.
    let state_of = |p: PrincipalId| {
        let vault = &vault;
        async move { vault.principal(p).await.unwrap().unwrap().migration }
    };
    assert_eq!(state_of(gone).await, MigrationState::Exempt);
    assert_eq!(m.snapshot.unwrap().users, 3);
    let progress = vault.progress().await.unwrap();
    assert_eq!((progress.grants.remaining, progress.grants.migrated), (40, 0), "{progress:?}");
    assert_eq!(m.previous.as_ref().map(|p| (p.run, p.target)), Some((completed.run.unwrap(), Target::HpkeP256)));
    assert_eq!(m.snapshot.unwrap().grants, 40, "every grant is to re-wrap");
    for p in &who {
        let pending = all_pending(&vault, *p).await;
        assert_eq!(pending.len(), 10, "the completed run's grants are pending");
        assert!(pending.iter().all(|g| g.origin == rekey_core::model::GrantOrigin::Earlier));
        let kps = vault.key_pairs(*p).await.unwrap();
        assert!(kps.iter().all(|k| k.state == rekey_core::model::KeyState::Legacy));
    }
    let m = vault
        .transition(step(Phase::ServerPhase, Phase::UserPhase), m.version, &audit("server_done"))
        .await
        .unwrap();
    // user 0 migrates; the role's new KEK goes to user 1, still pending,
    // as an HPKE grant under its legacy key: stored flagged legacy.
    let pending = all_pending(&vault, f.users[0].id).await;
    vault.apply(&write_set_in(again, f.users[0].id, &pending)).await.unwrap();
    let role_pending = all_pending(&vault, f.role.id).await;
    let mut ws = write_set_in(again, f.role.id, &role_pending);
    ws.membership_grants.push(GrantRecord {
        id: GrantId::random(),
        recipient: f.users[1].id,
        subject: rekey_core::ids::Subject::PrivateKey(ws.key_pairs[0].id),
        envelope: hpke_envelope(3),
        origin: rekey_core::model::GrantOrigin::Migration,
        created_at: None,
    });
    ws.pending_holders.push(f.users[1].id);
    vault.apply(&ws).await.unwrap();
    assert_eq!(all_pending(&vault, f.users[1].id).await.len(), 11, "the pending holder's HPKE grant is pending");

    let back = vault.abort(m.version, &audit("abort")).await.unwrap();
    assert_eq!(back.phase, Phase::Completed);
    assert_eq!(
        (back.run, back.target, back.started_at, back.started_by.clone(), back.snapshot, back.previous.clone()),
        (completed.run, completed.target, completed.started_at, completed.started_by.clone(), completed.snapshot, completed.previous.clone())
    );
    for (p, rows) in who.iter().zip(&before) {
        assert_eq!(&rows_of(&vault, *p).await, rows, "{p}: rows as the completed vault had them");
    }
    assert_eq!(state_of(gone).await, MigrationState::Exempt);
    // Abort from completed is refused; the vault is writable again.
    assert!(matches!(vault.abort(back.version, &audit("again")).await.unwrap_err(), Error::WrongPhase { .. }));
    vault
        .put_record(&RecordRow { id: RecordId::random(), ciphertext: vec![9; 40] })
        .await
        .unwrap();
});

/// Seeds `f` (30 grants each), starts, and migrates every user and the
/// role: what the finalize tests begin from.
async fn migrate_everyone(vault: &Vault, f: &Fixture) {
    vault.seed(&f.data, 1000).await.unwrap();
    start_user_phase(vault).await;
    for p in f.users.iter().map(|u| u.id).chain([f.role.id]) {
        let pending = all_pending(vault, p).await;
        vault.apply(&write_set(p, &pending)).await.unwrap();
    }
}

/// After finalize: nothing pending, one current key pair and the 30 new
/// grants for every principal of `f`.
async fn assert_only_new_material(vault: &Vault, f: &Fixture) {
    for p in f.users.iter().map(|u| u.id).chain([f.role.id]) {
        assert!(all_pending(vault, p).await.is_empty());
        let kps = vault.key_pairs(p).await.unwrap();
        assert_eq!(kps.len(), 1);
        assert_eq!(kps[0].state, rekey_core::model::KeyState::Current);
        assert_eq!(vault.migrated_grants(p).await.unwrap().len(), 30);
    }
}

contract_test!(finalize_removes_all_legacy_material_with_progress, |t| {
    // `delete_legacy`: SQLite in one transaction with the grant indexes
    // dropped and rebuilt, the others batch by batch. Same rows go, the
    // progress ends at the total, and the grant table keeps its indexes
    // (and, on SQLite, its statement and triggers).
    let vault = t.vault().await;
    let f = fixture(2, 30);
    migrate_everyone(&vault, &f).await;
    let index_sql = async || -> Vec<String> {
        let raw = t.raw().await;
        let sql = match t.backend {
            // The table, its indexes and its triggers.
            Backend::Sqlite => "SELECT type || ' ' || name || ': ' || COALESCE(sql, '') \
                                FROM sqlite_master WHERE tbl_name = 'grant' ORDER BY type, name"
                .to_owned(),
            Backend::Postgres => "SELECT indexdef FROM pg_indexes WHERE tablename = 'grant' \
                                  AND schemaname = current_schema() ORDER BY indexname"
                .to_owned(),
            Backend::MySql => "SELECT CONCAT(INDEX_NAME, ':', COLUMN_NAME) \
                               FROM information_schema.STATISTICS WHERE TABLE_NAME = 'grant' \
                               AND TABLE_SCHEMA = DATABASE() ORDER BY INDEX_NAME, SEQ_IN_INDEX"
                .to_owned(),
        };
        raw.query_all_raw(sea_orm::Statement::from_string(raw.get_database_backend(), sql))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index::<Option<String>>(0).unwrap().unwrap_or_default())
            .collect()
    };
    let indexes = index_sql().await;
    assert!(indexes.len() >= 5, "{indexes:?}");
    if t.backend == Backend::Sqlite {
        assert!(indexes.iter().any(|s| s.starts_with("trigger ")), "{indexes:?}");
    }
    let seen = std::sync::Mutex::new(Vec::new());
    let note = |n: u64| seen.lock().unwrap().push(n);
    // Refused before finalizing, and nothing goes.
    assert!(matches!(
        vault.delete_legacy(25, &note).await.unwrap_err(),
        Error::WrongPhase { .. }
    ));
    assert_eq!(index_sql().await, indexes);
    assert_eq!(all_pending(&vault, f.users[0].id).await.len(), 30);
    let m = vault.migration().await.unwrap();
    let m = vault
        .transition(step(Phase::UserPhase, Phase::Finalizing), m.version, &audit("finalize"))
        .await
        .unwrap();
    // 90 legacy grants and 3 legacy key pairs.
    assert_eq!(vault.delete_legacy(25, &note).await.unwrap(), 93);
    if let Some(file) = t.sqlite_file() {
        // The deletes' pages do not stay behind in the write-ahead log.
        let wal = std::fs::metadata(format!("{}-wal", file.display())).map(|m| m.len());
        assert_eq!(wal.ok(), Some(0), "the write-ahead log is truncated after the deletes");
    }
    let seen = seen.into_inner().unwrap();
    assert!(seen.len() >= 4, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&93));
    assert_eq!(index_sql().await, indexes, "the grant indexes are back as they were");
    assert_only_new_material(&vault, &f).await;
    // Nothing left: a second call deletes nothing.
    assert_eq!(vault.delete_legacy(25, &|_| {}).await.unwrap(), 0);
    vault
        .transition(step(Phase::Finalizing, Phase::Completed), m.version, &audit("done"))
        .await
        .unwrap();
});

contract_test!(finalize_removes_legacy_material_in_batches, |t| {
    let vault = t.vault().await;
    let f = fixture(2, 30);
    migrate_everyone(&vault, &f).await;
    let progress = vault.progress().await.unwrap();
    assert_eq!(progress.grants.remaining, 0);
    assert_eq!(progress.users.remaining + progress.roles.remaining, 0);
    assert!(matches!(
        vault.delete_legacy_batch(10).await.unwrap_err(),
        Error::WrongPhase { .. }
    ));
    let m = vault.migration().await.unwrap();
    let m = vault
        .transition(step(Phase::UserPhase, Phase::Finalizing), m.version, &audit("finalize"),
        )
        .await
        .unwrap();
    let mut batches = 0;
    let mut total = 0;
    loop {
        let n = vault.delete_legacy_batch(25).await.unwrap();
        assert!(n <= 25);
        if n == 0 {
            break;
        }
        total += n;
        batches += 1;
    }
    // 90 legacy grants and 3 legacy key pairs.
    assert_eq!(total, 93);
    assert!(batches >= 4);
    assert_only_new_material(&vault, &f).await;
    vault
        .transition(step(Phase::Finalizing, Phase::Completed), m.version, &audit("done"),
        )
        .await
        .unwrap();
    // Writable again.
    vault
        .put_record(&RecordRow {
            id: RecordId::random(),
            ciphertext: vec![5],
        })
        .await
        .unwrap();
});

contract_test!(start_snapshots_and_marks_blocked_and_exempt, |t| {
    let vault = t.vault().await;
    let mut f = fixture(2, 5);
    let deactivated = user("off", UserStatus::Deactivated);
    let purged = user("purged", UserStatus::Purged);
    f.data.principals.push(deactivated.clone());
    f.data.principals.push(purged.clone());
    f.data
        .grants
        .push(legacy_grant(purged.id, f.data.records[0].id));
    f.data
        .grants
        .push(legacy_grant(deactivated.id, f.data.records[0].id));
    vault.seed(&f.data, 1000).await.unwrap();
    let m = vault
        .start(step(Phase::Legacy, Phase::ServerPhase), 0,
            RunId::random(),
            Target::HpkeP256,
            &[deactivated.id],
            &[purged.id],
            &audit("start"),
        )
        .await
        .unwrap();
    let snap = m.snapshot.unwrap();
    assert_eq!((snap.users, snap.roles, snap.grants), (3, 1, 16));
    let p = vault.progress().await.unwrap();
    assert_eq!(p.blocked, 1);
    assert_eq!(p.users.remaining, 3);
    assert_eq!(p.grants.remaining, 16);
    let blocked = vault
        .principals_in_state(MigrationState::Blocked, None, 10)
        .await
        .unwrap();
    assert_eq!(
        blocked,
        vec![rekey_core::model::Principal {
            migration: MigrationState::Blocked,
            ..deactivated.clone()
        }]
    );
    vault
        .set_migration_state(&[deactivated.id], MigrationState::Exempt, &audit("exempt"))
        .await
        .unwrap();
    assert_eq!(vault.progress().await.unwrap().blocked, 0);
    // Starting twice loses the compare-and-swap.
    assert!(matches!(
        vault
            .start(step(Phase::Legacy, Phase::ServerPhase), 0, RunId::random(), Target::HpkeP256, &[], &[], &audit("again"))
            .await
            .unwrap_err(),
        Error::PhaseConflict { .. }
    ));
});

contract_test!(identity_and_run_are_persisted, |t| {
    let vault = t.vault().await;
    let id = vault.vault_id().await.unwrap();
    // An empty vault takes the identity its seed data was made for.
    let wanted = rekey_core::ids::VaultId::random();
    assert_ne!(id, wanted);
    vault.set_vault_id(wanted).await.unwrap();
    assert_eq!(vault.vault_id().await.unwrap(), wanted);
    let f = fixture(1, 1);
    vault.seed(&f.data, 100).await.unwrap();
    // Not once it holds data.
    assert!(
        vault
            .set_vault_id(rekey_core::ids::VaultId::random())
            .await
            .is_err()
    );
    assert_eq!(vault.vault_id().await.unwrap(), wanted);
    assert_eq!(vault.migration().await.unwrap().run, None);
    let run = RunId::random();
    let m = vault.migration().await.unwrap();
    let m = vault
        .start(step(Phase::Legacy, Phase::ServerPhase), m.version, run, Target::HpkeMlKem768X25519, &[], &[], &audit("start"))
        .await
        .unwrap();
    assert_eq!(m.run, Some(run));
    assert_eq!(vault.migration().await.unwrap().target, Target::HpkeMlKem768X25519, "the target is stored with the run");
    let m = vault.abort(m.version, &audit("abort")).await.unwrap();
    assert_eq!(m.run, None);
    assert_eq!(m.target, Target::HpkeP256, "abort clears the target with the run");
});

contract_test!(holder_preconditions_are_rechecked_when_applying, |t| {
    let vault = t.vault().await;
    let f = fixture(3, 2);
    vault.seed(&f.data, 1000).await.unwrap();
    start_user_phase(&vault).await;
    let (a, b, c) = (f.users[0].id, f.users[1].id, f.users[2].id);
    // a's write set gives b a legacy grant (b pending) and c an HPKE grant
    // to a key c does not have.
    let mut ws = write_set(a, &all_pending(&vault, a).await);
    ws.pending_holders = vec![b];
    // b migrates first.
    vault
        .apply(&write_set(b, &all_pending(&vault, b).await))
        .await
        .unwrap();
    let err = vault.apply(&ws).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict { principal, .. } if principal == b),
        "{err:?}"
    );
    ws.pending_holders = vec![];
    ws.current_keys = vec![(c, rekey_core::ids::KeyPairId::random())];
    let err = vault.apply(&ws).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict { principal, .. } if principal == c),
        "{err:?}"
    );
    // With b's real current key it applies.
    let b_current = vault
        .key_pairs(b)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.state == rekey_core::model::KeyState::Current)
        .unwrap();
    ws.current_keys = vec![(b, b_current.id)];
    vault.apply(&ws).await.unwrap();
    assert_eq!(
        vault.principal(a).await.unwrap().unwrap().migration,
        MigrationState::Migrated
    );
});

contract_test!(finalize_removes_grants_of_legacy_keys, |t| {
    let vault = t.vault().await;
    let f = fixture(1, 1);
    vault.seed(&f.data, 100).await.unwrap();
    start_user_phase(&vault).await;
    let me = f.users[0].id;
    let legacy = vault.key_pairs(me).await.unwrap()[0].id;
    let mut ws = write_set(me, &all_pending(&vault, me).await);
    // A re-wrapped grant of a legacy key pair's KEK (a role's old key for
    // a member): new scheme, legacy subject.
    ws.membership_grants.push(GrantRecord {
        id: GrantId::random(),
        recipient: me,
        subject: rekey_core::ids::Subject::PrivateKey(legacy),
        envelope: hpke_envelope(9),
        origin: rekey_core::model::GrantOrigin::Migration,
        created_at: None,
    });
    vault.apply(&ws).await.unwrap();
    let role = f.role.id;
    vault
        .apply(&write_set(role, &all_pending(&vault, role).await))
        .await
        .unwrap();
    let m = vault.migration().await.unwrap();
    vault
        .transition(step(Phase::UserPhase, Phase::Finalizing), m.version, &audit("finalize"),
        )
        .await
        .unwrap();
    // The whole finalize (SQLite: its one-transaction form).
    vault.delete_legacy(3, &|_| {}).await.unwrap();
    let left = vault.grants_to(me).await.unwrap();
    assert!(
        left.iter()
            .all(|g| g.subject != rekey_core::ids::Subject::PrivateKey(legacy))
    );
    assert!(
        vault
            .key_pairs(me)
            .await
            .unwrap()
            .iter()
            .all(|k| k.state != rekey_core::model::KeyState::Legacy)
    );
    assert_eq!(left.len(), 1, "only the re-wrapped record grant remains");
});

// A raw SQL session during the migration: the principals' states, the
// non-migratable entries and the migration row are guarded like the
// vault's rows, and TRUNCATE empties nothing. Nothing changes.
contract_test!(a_raw_session_can_neither_fake_progress_nor_empty_the_vault, |t| {
    let vault = t.vault().await;
    let f = fixture(2, 3);
    vault.seed(&f.data, 1000).await.unwrap();
    let raw = t.raw().await;
    let (principal_q, nm_q) = (t.q("principal"), t.q("non_migratable"));
    // In the legacy phase the migration row is already rekey's alone.
    let err = raw
        .execute_unprepared("UPDATE migration SET phase = 'user_phase'")
        .await
        .unwrap_err();
    assert!(err.to_string().contains(rekey_storage::GUARD_MESSAGE), "{err}");
    start_user_phase(&vault).await;
    let me = f.users[0].id;
    let pending = all_pending(&vault, me).await;
    vault
        .add_non_migratable(&[NonMigratable {
            grant: pending[0].id,
            recipient: me,
            reason: "test".into(),
            resolution: Resolution::Unresolved,
            resolved_by: None,
        }])
        .await
        .unwrap();
    let before = (vault.progress().await.unwrap(), vault.migration().await.unwrap());
    let refused = [
        format!("UPDATE {principal_q} SET migration_state = 'migrated' WHERE migration_state = 'pending'"),
        format!("DELETE FROM {principal_q}"),
        format!("UPDATE {nm_q} SET resolution = 'written_off'"),
        format!("DELETE FROM {nm_q}"),
        "UPDATE migration SET phase = 'legacy'".to_owned(),
        "DELETE FROM migration".to_owned(),
    ];
    for sql in &refused {
        let err = raw.execute_unprepared(sql).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("vault is being migrated") || text.contains(rekey_storage::GUARD_MESSAGE),
            "{sql}: {text}"
        );
    }
    // TRUNCATE: refused on PostgreSQL (statement triggers) and MariaDB (the
    // guard table's foreign keys); SQLite has no TRUNCATE.
    if t.backend != Backend::Sqlite {
        for table in ["record", "grant", "key_pair", "principal", "non_migratable", "migration"] {
            let sql = format!("TRUNCATE TABLE {}", t.q(table));
            let err = raw.execute_unprepared(&sql).await.unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("vault is being migrated")
                    || text.contains(rekey_storage::GUARD_MESSAGE)
                    || text.contains("foreign key"),
                "{sql}: {text}"
            );
        }
    }
    let after = (vault.progress().await.unwrap(), vault.migration().await.unwrap());
    assert_eq!(after, before, "a refused statement changed something");
    assert_eq!(vault.non_migratable().await.unwrap().len(), 1);
    assert_eq!(vault.records_page(None, 1000).await.unwrap().len(), f.data.records.len());
    // The vault's own resolution still goes through.
    vault
        .resolve_non_migratable(pending[0].id, Resolution::WrittenOff, &audit("resolve"))
        .await
        .unwrap();
});

// Finalize's evidence: the rows, not the flags. A principal marked
// migrated around the guard (as only the database administrator can, by
// forging the writer marker) shows up with its uncovered grants.
/// A write around the guard, as a hostile SQL session makes it: the
/// migration writer's marker forged, then `who` flagged migrated.
async fn forge_migrated_flag(t: &TestDb, who: PrincipalId) {
    let raw = t.raw().await;
    let marker = match t.backend {
        Backend::Postgres => "SET rekey.migration_writer = 'on'",
        Backend::MySql => "INSERT INTO migration_session (conn_id) VALUES (CONNECTION_ID())",
        Backend::Sqlite => "INSERT INTO migration_session (conn_id) VALUES (0)",
    };
    raw.execute_unprepared(marker).await.unwrap();
    raw.execute_unprepared(&format!(
        "UPDATE {} SET migration_state = 'migrated' WHERE id = '{}'",
        t.q("principal"),
        who
    ))
    .await
    .unwrap();
}

contract_test!(the_evidence_names_principals_the_rows_do_not_bear_out, |t| {
    let vault = t.vault().await;
    let f = fixture(2, 3);
    vault.seed(&f.data, 1000).await.unwrap();
    start_user_phase(&vault).await;
    // An honest migration: no evidence against it.
    let honest = f.users[1].id;
    let pending = all_pending(&vault, honest).await;
    vault.apply(&write_set(honest, &pending)).await.unwrap();
    let e = vault.finalize_evidence(5).await.unwrap();
    assert_eq!((e.without_key, e.uncovered), (0, 0), "{e:?}");
    // A forged flag.
    let forged = &f.users[0];
    let owned = all_pending(&vault, forged.id).await.len() as u64;
    forge_migrated_flag(&t, forged.id).await;
    let e = vault.finalize_evidence(5).await.unwrap();
    assert_eq!(e.without_key, 1, "{e:?}");
    assert_eq!(e.first_without_key, vec![forged.name.clone()]);
    assert_eq!(e.uncovered, owned, "{e:?}");
    assert_eq!(e.first_uncovered.len() as u64, owned.min(5), "{e:?}");
    assert!(e.first_uncovered.iter().all(|(n, _)| n == &forged.name));
});

// A legacy grant of a private key (a role's key held by a member) is
// covered only by a grant, to the same member, of the owner's current key
// pair; a re-wrap of the legacy key itself does not cover it.
contract_test!(the_evidence_covers_a_role_key_grant_only_with_the_new_role_key, |t| {
    let vault = t.vault().await;
    let mut f = fixture(2, 1);
    let role_legacy = f
        .data
        .key_pairs
        .iter()
        .find(|k| k.principal == f.role.id)
        .unwrap()
        .id;
    let record = f.data.records[0].id;
    for u in &f.users {
        let mut g = legacy_grant(u.id, record);
        g.subject = rekey_core::ids::Subject::PrivateKey(role_legacy);
        f.data.grants.push(g);
    }
    vault.seed(&f.data, 1000).await.unwrap();
    start_user_phase(&vault).await;
    let mut ws = write_set(f.role.id, &all_pending(&vault, f.role.id).await);
    ws.membership_grants.push(GrantRecord {
        id: GrantId::time_ordered(),
        recipient: f.users[1].id,
        subject: rekey_core::ids::Subject::PrivateKey(ws.key_pairs[0].id),
        envelope: hpke_envelope(3),
        origin: rekey_core::model::GrantOrigin::Migration,
        created_at: None,
    });
    vault.apply(&ws).await.unwrap();
    let mut role_key_grant = None;
    for u in &f.users {
        let pending = all_pending(&vault, u.id).await;
        if u.id == f.users[0].id {
            role_key_grant = pending
                .iter()
                .find(|g| g.subject == rekey_core::ids::Subject::PrivateKey(role_legacy))
                .map(|g| g.id);
        }
        // Every grant re-wrapped with its own subject: the record keys are
        // covered, the legacy role key is not.
        vault.apply(&write_set(u.id, &pending)).await.unwrap();
    }
    let e = vault.finalize_evidence(5).await.unwrap();
    assert_eq!(e.uncovered, 1, "{e:?}");
    assert_eq!(
        e.first_uncovered,
        vec![(f.users[0].name.clone(), role_key_grant.unwrap())]
    );
    assert_eq!(e.without_key, 0, "{e:?}");
});

contract_test!(the_evidence_of_a_second_run_covers_the_completed_runs_grants, |t| {
    let vault = t.vault().await;
    let f = fixture(2, 3);
    vault.seed(&f.data, 1000).await.unwrap();
    let who: Vec<PrincipalId> = f.users.iter().map(|u| u.id).chain([f.role.id]).collect();
    complete_a_run(&vault, &who, &[]).await;
    let again = RunId::random();
    let m = vault.migration().await.unwrap();
    let m = vault
        .start(step(Phase::Completed, Phase::ServerPhase), m.version, again, Target::HpkeMlKem768X25519, &[], &[], &audit("start again"))
        .await
        .unwrap();
    vault
        .transition(step(Phase::ServerPhase, Phase::UserPhase), m.version, &audit("server_done"))
        .await
        .unwrap();
    let honest = f.users[1].id;
    let pending = all_pending(&vault, honest).await;
    vault.apply(&write_set_in(again, honest, &pending)).await.unwrap();
    let e = vault.finalize_evidence(5).await.unwrap();
    assert_eq!((e.without_key, e.uncovered), (0, 0), "{e:?}");
    // A forged flag on a user whose pending grants are the completed run's
    // (origin `earlier`): the evidence counts every one of them.
    let forged = &f.users[0];
    let owned = all_pending(&vault, forged.id).await.len() as u64;
    assert_eq!(owned, 3);
    forge_migrated_flag(&t, forged.id).await;
    let e = vault.finalize_evidence(5).await.unwrap();
    assert_eq!((e.without_key, e.uncovered), (1, owned), "{e:?}");
});

// Preflight's remedy: a purge deletes the user's grants, key pairs and
// memberships and nothing of anyone else's; the sole-reader query finds
// the records it would orphan; once the migration runs the guards refuse
// both the purge and a status change.
contract_test!(purging_a_user_touches_only_its_own_rows, |t| {
    let vault = t.vault().await;
    let mut f = fixture(3, 2);
    // user1 also reads user0's first record.
    let rekey_core::ids::Subject::RecordKey(shared) = f.data.grants[0].subject else {
        panic!("the fixture's grants carry record keys");
    };
    assert_eq!(f.data.grants[0].recipient, f.users[0].id);
    f.data.grants.push(legacy_grant(f.users[1].id, shared));
    vault.seed(&f.data, 1000).await.unwrap();
    let (u0, u1, u2) = (f.users[0].id, f.users[1].id, f.users[2].id);
    let sole = vault.sole_reader_records(u0).await.unwrap();
    assert_eq!(sole.len(), 1, "{sole:?}");
    assert!(!sole.contains(&shared));
    let others = vault.grants_to(u1).await.unwrap().len();
    let counts = vault.purge_user(u0, &audit("user_purged")).await.unwrap();
    assert_eq!(
        (counts.grants, counts.key_pairs, counts.memberships),
        (2, 1, 1),
        "{counts:?}"
    );
    assert!(vault.grants_to(u0).await.unwrap().is_empty());
    assert!(vault.key_pairs(u0).await.unwrap().is_empty());
    assert_eq!(vault.grants_to(u1).await.unwrap().len(), others);
    assert_eq!(vault.members_of(f.role.id).await.unwrap(), vec![u1]);
    assert_eq!(
        vault.principal(u0).await.unwrap().unwrap().status,
        UserStatus::Purged
    );
    // The shared record now has its one reader left.
    assert_eq!(vault.sole_reader_records(u1).await.unwrap().len(), 3);

    start_user_phase(&vault).await;
    assert!(vault.purge_user(u2, &audit("user_purged")).await.is_err());
    assert!(
        vault
            .set_user_status(u2, UserStatus::Deactivated, &audit("user_restored"))
            .await
            .is_err()
    );
    assert_eq!(vault.grants_to(u2).await.unwrap().len(), 2);
    assert_eq!(
        vault.principal(u2).await.unwrap().unwrap().status,
        UserStatus::Active
    );
});

// The status page's history: events of one action counted per window, on
// every backend (integer division differs between them).
contract_test!(audit_events_are_counted_per_window, |t| {
    let vault = t.vault().await;
    let since = Timestamp(1_000_000);
    for (at, action) in [
        (999_999, "bundle applied"),
        (1_000_000, "bundle applied"),
        (1_059_999, "bundle applied"),
        (1_060_000, "bundle applied"),
        (1_060_001, "start"),
        (1_200_000, "bundle applied"),
        (9_999_999, "bundle applied"),
    ] {
        let mut e = audit(action);
        e.at = Timestamp(at);
        vault.append_audit(&e).await.unwrap();
    }
    let counts = vault
        .audit_counts("bundle applied", since, 60_000, 4)
        .await
        .unwrap();
    // 0–60 s: two; 60–120 s: one; 180–240 s: the event at 200 s; the one
    // long after lands in the last window.
    assert_eq!(counts, vec![2, 1, 0, 2]);
    assert_eq!(
        vault.audit_counts("nothing", since, 60_000, 3).await.unwrap(),
        vec![0, 0, 0]
    );
});
