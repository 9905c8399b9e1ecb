//! The lifecycle's steps between two phases, as the core guards allow them
//! (with empty facts: nothing pending, nothing missing), for tests that
//! move a vault's phase by hand through `Vault::transition`.

use rekey_core::lifecycle::{CODE_WORD, FinalizeFacts, Legacy, Lifecycle, Transition};
use rekey_core::model::{AuditEvent, Phase};
use rekey_core::{RunId, Target};
use rekey_storage::Vault;

/// The run [`start_user_phase`] starts: write sets made for a vault it
/// started name it.
#[must_use]
pub fn test_run() -> RunId {
    RunId::from_bytes(*b"rekey test run 1")
}

/// Starts a legacy vault (run [`test_run`] to the default target, nothing
/// blocked or exempt) and moves it on to the user phase, recording
/// `start` and then `done` as the two steps' audit events.
pub async fn start_user_phase(vault: &Vault, start: &AuditEvent, done: &AuditEvent) {
    let m = vault.migration().await.expect("the migration row");
    let m = vault
        .start(
            step(Phase::Legacy, Phase::ServerPhase),
            m.version,
            test_run(),
            Target::HpkeP256,
            &[],
            &[],
            start,
        )
        .await
        .expect("start");
    vault
        .transition(step(Phase::ServerPhase, Phase::UserPhase), m.version, done)
        .await
        .expect("to the user phase");
}

/// The transition from `from` to `to`, made by the core lifecycle. Panics
/// for a move the lifecycle has no transition for.
#[must_use]
pub fn step(from: Phase, to: Phase) -> Transition {
    let run = RunId::random();
    let missing = vec!["a certificate".to_owned()];
    let state = Lifecycle::load(from, Some(run), missing.clone()).expect("a known phase");
    match (state, to) {
        (Lifecycle::Legacy(l), Phase::ServerPhase) => {
            let next = Legacy::start(l, CODE_WORD, &[], run).expect("start");
            Transition::between(&l, &next)
        }
        (Lifecycle::Completed(c), Phase::ServerPhase) => {
            let next = c.start(CODE_WORD, &[], run).expect("start again");
            Transition::between(&c, &next)
        }
        (Lifecycle::ServerPhase(s), Phase::UserPhase) => {
            let next = s.server_keys_done(0, Vec::new()).expect("server keys done");
            Transition::between(&s, &next)
        }
        (Lifecycle::ServerPhase(s), Phase::AwaitingCertificates) => {
            let next = s
                .certificates_missing(missing)
                .expect("certificates missing");
            Transition::between(&s, &next)
        }
        (Lifecycle::AwaitingCertificates(a), Phase::ServerPhase) => {
            let next = a
                .clone()
                .certificates_imported(Vec::new())
                .expect("imported");
            Transition::between(&a, &next)
        }
        (Lifecycle::UserPhase(u), Phase::Finalizing) => {
            let next = u.finalize(&FinalizeFacts::default()).expect("finalize");
            Transition::between(&u, &next)
        }
        (Lifecycle::Finalizing(f), Phase::Completed) => {
            let next = f.complete(0).expect("complete");
            Transition::between(&f, &next)
        }
        (state, to) => panic!("the lifecycle has no step from {} to {to}", state.phase()),
    }
}
