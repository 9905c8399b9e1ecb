//! Random sequences of start (right and wrong code words), logins in random
//! order (including two members of one role at once), aborts and finalize
//! attempts, run against the in-memory model vault. After every step every
//! user reads exactly what it read before the migration; finalize succeeds
//! only when nothing is pending; abort restores the legacy rows exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use proptest::prelude::*;
use rekey_core::bundle::*;
use rekey_core::lifecycle::{FinalizeFacts, Legacy, Lifecycle, TransitionError};
use rekey_core::model::MigrationState;
use rekey_core::*;
use support::{MemVault, master_of};

#[derive(Debug, Clone)]
enum Op {
    Start(&'static str),
    Login(usize),
    Race(usize, usize),
    Abort,
    Finalize,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Start("Start")),
        1 => proptest::sample::select(vec!["start", "START", "Start ", " Start", "", "Stop"]).prop_map(Op::Start),
        4 => (0usize..4).prop_map(Op::Login),
        2 => (0usize..4, 0usize..4).prop_map(|(a, b)| Op::Race(a, b)),
        1 => Just(Op::Abort),
        2 => Just(Op::Finalize),
    ]
}

fn build(v: &MemVault, u: PrincipalId) -> SignedBundle {
    let master = MasterSecret::from_slice(&master_of(v.name(u))).unwrap();
    build_bundle(
        &v.package(u),
        Unlock::MasterSecret(&master),
        BuildOptions { threads: Some(2) },
    )
    .unwrap()
    .bundle
}

fn submit(v: &mut MemVault, u: PrincipalId, b: &SignedBundle) -> Result<(), CheckError> {
    let checked = check_bundle(b, &v.context(u, b.bundle()))?;
    v.apply(&checked).map_err(|_| CheckError::StaleRun)
}

fn pending(v: &MemVault) -> u64 {
    v.principals
        .values()
        .filter(|p| p.state != MigrationState::Migrated)
        .count() as u64
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences_keep_every_key(ops in proptest::collection::vec(op(), 1..14)) {
        let mut v = MemVault::seed(
            4,
            2,
            &[vec![0, 1, 2], vec![1, 3]],
            &[vec![0], vec![1, 4], vec![2], vec![3, 5], vec![4], vec![5], vec![0, 4, 5]],
        );
        let access = v.access_map();
        let snapshot = v.legacy_snapshot();
        let mut state = Lifecycle::Legacy(Legacy);

        for op in ops {
            match (op, state.clone()) {
                (Op::Start(answer), Lifecycle::Legacy(l)) => {
                    match l.start(answer, &[], v.run) {
                        Ok(server) => {
                            prop_assert_eq!(answer, "Start");
                            // No server-held keys in this model vault.
                            state = Lifecycle::UserPhase(server.server_keys_done(0, vec![]).unwrap());
                        }
                        Err(e) => {
                            prop_assert_ne!(answer, "Start");
                            prop_assert_eq!(e, TransitionError::WrongCodeWord);
                        }
                    }
                }
                (Op::Start(_), _) => {}
                (Op::Login(i), Lifecycle::UserPhase(_)) => {
                    let u = v.users[i];
                    if v.principals[&u].state == MigrationState::Pending {
                        let b = build(&v, u);
                        submit(&mut v, u, &b).unwrap();
                        prop_assert_eq!(v.principals[&u].state, MigrationState::Migrated);
                    }
                }
                (Op::Race(i, j), Lifecycle::UserPhase(_)) => {
                    let (a, b) = (v.users[i], v.users[j]);
                    if v.principals[&a].state == MigrationState::Pending
                        && v.principals[&b].state == MigrationState::Pending
                    {
                        let ba = build(&v, a);
                        let bb = build(&v, b);
                        submit(&mut v, a, &ba).unwrap();
                        match submit(&mut v, b, &bb) {
                            Ok(()) => prop_assert!(a != b),
                            Err(e) => {
                                // A conflict, never a half-applied bundle:
                                // b is still pending and rebuilds. The same
                                // user twice: its second bundle is refused
                                // for good.
                                let settled = a == b
                                    && matches!(e, rekey_core::bundle::CheckError::SubmitterMigrated(_));
                                prop_assert!(e.is_conflict() || settled, "{}", e);
                                if v.principals[&b].state == MigrationState::Pending {
                                    let again = build(&v, b);
                                    submit(&mut v, b, &again).unwrap();
                                }
                            }
                        }
                    }
                }
                (Op::Login(_) | Op::Race(..), _) => {}
                (Op::Abort, s) => match s.abort() {
                    Ok(_) => {
                        v.abort();
                        prop_assert_eq!(v.legacy_snapshot(), snapshot.clone());
                        prop_assert!(v.principals.values().all(|p| p.state == MigrationState::Pending));
                        state = Lifecycle::Legacy(Legacy);
                    }
                    Err(e) => {
                        let expected = matches!(
                            e,
                            TransitionError::WrongPhase { .. } | TransitionError::TooLateToAbort(_)
                        );
                        prop_assert!(expected);
                    }
                },
                (Op::Finalize, Lifecycle::UserPhase(u)) => {
                    let facts = FinalizeFacts { pending: pending(&v), ..FinalizeFacts::default() };
                    match u.finalize(&facts) {
                        Ok(fin) => {
                            prop_assert_eq!(pending(&v), 0);
                            v.finalize();
                            state = Lifecycle::Completed(fin.complete(0).unwrap());
                        }
                        Err(e) => {
                            prop_assert!(pending(&v) > 0);
                            let is_pending_error = matches!(e, TransitionError::PrincipalsPending { .. });
                            prop_assert!(is_pending_error);
                        }
                    }
                }
                (Op::Finalize, _) => {}
            }
            prop_assert_eq!(&v.access_map(), &access, "access changed after a step");
        }
    }
}
