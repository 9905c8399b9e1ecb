//! Group commit of checked bundles: write sets that arrive while another
//! group is being written wait in a queue, and the first of them to get
//! the writer's turn applies everything queued in one transaction
//! (`Vault::apply_group`).
//!
//! Why: a bundle took about 17 statements, 12 of them in its own
//! transaction (begin, writer marker, phase, lock, pending re-read, inserts,
//! update, audit, commit), and on SQLite every bundle also waited its turn
//! for the file's one write lock. A group of N write sets takes the fixed
//! statements and the commit once instead of N times. Measured with
//! `cargo bench -p rekey-server --bench submit` (900 prebuilt bundles of
//! about 100 grants, 2-core Intel Xeon, old and new binaries alternated,
//! two rounds each): SQLite with 64 submitters 249-264 -> 353-380
//! bundles/s (p99 370-418 -> 312-320 ms), with 8 submitters 279-289 ->
//! 348-368; PostgreSQL with 64 submitters 272-330 -> 332-354 (p99 about
//! the same), with 8 the same within the noise. Bundles of about 1,000
//! grants: the same within the noise on both (their rows dominate).
//!
//! A lone writer still commits at once: it finds the turn free and its
//! group is itself. Nothing waits for a group to fill.

use rekey_storage::{GroupOutcome, MigrationWrite, Vault};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// Write sets applied in one group at most.
const MAX_WRITES: usize = 64;
/// Rows one group inserts at most (the first write set goes in whatever
/// its size), so a group's transaction stays about as long as a large
/// bundle's.
const MAX_ROWS: usize = 20_000;

/// Groups written at once on a database server. One at a time left
/// PostgreSQL's row work (index inserts, foreign-key checks) on one core:
/// 266 bundles/s with 64 submitters in the submit bench (see the module
/// comment) against 310 without groups; two and four at once measured the
/// same within the noise (340 and 338); four leaves room for a database
/// with more cores than the benchmark's.
const SERVER_WRITERS: usize = 4;

/// A write set waiting for its group, with where its answer goes.
struct Waiting {
    write: Arc<MigrationWrite>,
    answer: oneshot::Sender<rekey_storage::Result<()>>,
}

/// The queue and the writers' turns of one engine (shared by its clones).
pub(crate) struct GroupCommit {
    queue: Mutex<VecDeque<Waiting>>,
    turns: tokio::sync::Semaphore,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// A queue for `vault`: groups are written one at a time on SQLite
    /// (one writer per file anyway), up to [`SERVER_WRITERS`] at once
    /// elsewhere.
    pub(crate) fn new(vault: &Vault) -> Self {
        let writers = match vault.backend() {
            rekey_storage::Backend::Sqlite => 1,
            _ => SERVER_WRITERS,
        };
        Self {
            queue: Mutex::new(VecDeque::new()),
            turns: tokio::sync::Semaphore::new(writers),
        }
    }

    /// Applies `write`, in a group with whatever else is queued; answers
    /// what [`Vault::apply`] would have answered for it alone.
    pub(crate) async fn apply(
        &self,
        vault: &Vault,
        write: MigrationWrite,
    ) -> rekey_storage::Result<()> {
        let write = Arc::new(write);
        let (answer, mut answered) = oneshot::channel();
        self.queue().push_back(Waiting {
            write: Arc::clone(&write),
            answer,
        });
        loop {
            let Ok(turn) = self.turns.acquire().await else {
                // Never closed; were it, the write set goes alone.
                return vault.apply(&write).await;
            };
            match answered.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Empty) => {
                    let group = self.take();
                    if group.is_empty() {
                        // Another writer took ours and is writing it.
                        drop(turn);
                        return match answered.await {
                            Ok(result) => result,
                            Err(_) => vault.apply(&write).await,
                        };
                    }
                    run(vault, group).await;
                }
                // The writer that took ours was cancelled before it
                // answered: its transaction was rolled back unless it had
                // committed, in which case the principals are migrated now
                // and this answers a conflict saying so.
                Err(oneshot::error::TryRecvError::Closed) => return vault.apply(&write).await,
            }
        }
    }

    /// The queue; a panic elsewhere while it was held leaves it whole
    /// (each change is one push or pop).
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next group: queued write sets in arrival order, up to the
    /// limits.
    fn take(&self) -> Vec<Waiting> {
        let mut queue = self.queue();
        let mut group = Vec::new();
        let mut rows = 0;
        while let Some(next) = queue.front() {
            let n = next.write.row_count();
            if !group.is_empty() && (group.len() == MAX_WRITES || rows + n > MAX_ROWS) {
                break;
            }
            rows += n;
            group.extend(queue.pop_front());
        }
        group
    }
}

/// Applies one group and answers each of its write sets, every one of
/// them: a waiter whose write set another writer took waits for nothing
/// else. A write set deferred by the group is applied alone once the group
/// has committed (it meets the group's rows, as one after the other would).
/// A database error fails the group's transaction; each write set is then
/// applied alone, so each gets its own answer.
async fn run(vault: &Vault, group: Vec<Waiting>) {
    let writes: Vec<&MigrationWrite> = group.iter().map(|w| w.write.as_ref()).collect();
    let outcomes = vault.apply_group(&writes).await;
    drop(writes);
    match outcomes {
        Ok(outcomes) => {
            let mut deferred = Vec::new();
            for (waiting, outcome) in group.into_iter().zip(outcomes) {
                match outcome {
                    GroupOutcome::Applied => answer(waiting, Ok(())),
                    GroupOutcome::Refused(e) => answer(waiting, Err(e)),
                    GroupOutcome::Deferred => deferred.push(waiting),
                }
            }
            for waiting in deferred {
                let result = vault.apply(&waiting.write).await;
                answer(waiting, result);
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some(waiting) = group.into_iter().next() {
                answer(waiting, Err(e));
            }
        }
        Err(_) => {
            for waiting in group {
                let result = vault.apply(&waiting.write).await;
                answer(waiting, result);
            }
        }
    }
}

/// Sends a write set's answer; a waiter that is gone needs none.
fn answer(waiting: Waiting, result: rekey_storage::Result<()>) {
    waiting.answer.send(result).ok();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekey_core::model::{AuditEvent, NonMigratable, Resolution, Timestamp};
    use rekey_core::{GrantId, PrincipalId};

    /// A write set of `rows` rows (its audit event and `rows - 1`
    /// non-migratable entries), tagged by its audit action.
    fn write(tag: &str, rows: usize) -> MigrationWrite {
        MigrationWrite {
            run: rekey_core::RunId::random(),
            principals: Vec::new(),
            key_pairs: Vec::new(),
            grants: Vec::new(),
            membership_grants: Vec::new(),
            non_migratable: (1..rows)
                .map(|_| NonMigratable {
                    grant: GrantId::random(),
                    recipient: PrincipalId::random(),
                    reason: String::new(),
                    resolution: Resolution::Unresolved,
                    resolved_by: None,
                })
                .collect(),
            pending_holders: Vec::new(),
            current_keys: Vec::new(),
            audit: AuditEvent {
                at: Timestamp::now(),
                actor: "test".to_owned(),
                action: tag.to_owned(),
                details: String::new(),
            },
        }
    }

    fn queued(commit: &GroupCommit, writes: Vec<MigrationWrite>) {
        for w in writes {
            let (answer, _) = oneshot::channel();
            commit.queue().push_back(Waiting {
                write: Arc::new(w),
                answer,
            });
        }
    }

    fn tags(group: &[Waiting]) -> Vec<String> {
        group.iter().map(|w| w.write.audit.action.clone()).collect()
    }

    fn commit() -> GroupCommit {
        GroupCommit {
            queue: Mutex::new(VecDeque::new()),
            turns: tokio::sync::Semaphore::new(1),
        }
    }

    #[test]
    fn a_group_takes_queued_write_sets_in_order_up_to_its_limits() {
        let c = commit();
        queued(
            &c,
            (0..MAX_WRITES + 3)
                .map(|i| write(&i.to_string(), 1))
                .collect(),
        );
        let first = c.take();
        assert_eq!(first.len(), MAX_WRITES);
        assert_eq!(tags(&first[..2]), ["0", "1"]);
        assert_eq!(
            tags(&c.take()),
            [MAX_WRITES, MAX_WRITES + 1, MAX_WRITES + 2].map(|i| i.to_string())
        );
        assert!(c.take().is_empty());

        // Rows: a group stops before it would pass MAX_ROWS, but its first
        // write set goes in whatever its size.
        queued(
            &c,
            vec![
                write("huge", MAX_ROWS + 5),
                write("a", MAX_ROWS / 2),
                write("b", MAX_ROWS / 2),
                write("c", 1),
            ],
        );
        assert_eq!(tags(&c.take()), ["huge"]);
        assert_eq!(tags(&c.take()), ["a", "b"]);
        assert_eq!(tags(&c.take()), ["c"]);
    }

    /// A legacy vault in the user phase, with alice's write set: her new
    /// key pair and her one pending grant re-wrapped (storage keeps
    /// envelopes without opening them).
    async fn alice_pending() -> (rekey_test_support::seeded::Seeded, MigrationWrite) {
        use rekey_core::model::{GrantOrigin, GrantRecord, KeyPairRecord, KeyState, PrincipalKind};
        use rekey_core::{Envelope, KeyPairId, Scheme};
        let s = rekey_test_support::seeded::seeded_vault().await;
        let v = &s.vault;
        let audit = write("step", 1).audit;
        rekey_test_support::lifecycle::start_user_phase(v, &audit, &audit).await;
        let alice = v
            .principals_of_kind(PrincipalKind::User)
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.name == "alice")
            .unwrap();
        let pending = v
            .pending_grants(alice.id, 100)
            .next_page()
            .await
            .unwrap()
            .unwrap();
        let kek = Envelope::from_parts(Scheme::Aes256GcmKek, &[7; 12], &[9; 64]).unwrap();
        let mut ws = write("alice", 1);
        ws.run = s.vault.migration().await.unwrap().run.unwrap();
        ws.principals.push(rekey_storage::PrincipalMigration {
            principal: alice.id,
            covered_grants: pending.iter().map(|g| g.id).collect(),
        });
        ws.key_pairs.push(KeyPairRecord {
            id: KeyPairId::random(),
            principal: alice.id,
            scheme: Scheme::HpkeP256,
            public_key: vec![4; 65],
            wrapped_private_key: Some(kek),
            state: KeyState::Current,
        });
        for g in &pending {
            ws.grants.push(GrantRecord {
                id: GrantId::time_ordered(),
                recipient: alice.id,
                subject: g.subject,
                envelope: Envelope::from_parts(Scheme::HpkeP256, &[4; 65], &[2; 48]).unwrap(),
                origin: GrantOrigin::Migration,
                created_at: Some(Timestamp::now()),
            });
        }
        (s, ws)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_of_a_group_answers_every_write_set_of_it_a_deferred_one_too() {
        let (s, ws) = alice_pending().await;
        let (first, mut first_answer) = oneshot::channel();
        let (again, mut again_answer) = oneshot::channel();
        let group = vec![
            Waiting {
                write: Arc::new(ws.clone()),
                answer: first,
            },
            Waiting {
                write: Arc::new(ws),
                answer: again,
            },
        ];
        run(&s.vault, group).await;
        // Both answered by the time the writer is done: the second was
        // deferred by the group and then applied alone, after the first.
        assert!(matches!(first_answer.try_recv(), Ok(Ok(()))));
        let err = again_answer.try_recv().unwrap().unwrap_err();
        assert!(err.to_string().contains("already migrated"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_sets_racing_through_one_queue_each_get_their_own_answer() {
        let (s, ws) = alice_pending().await;
        let commit = Arc::new(GroupCommit::new(&s.vault));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (commit, vault, ws) = (Arc::clone(&commit), s.vault.clone(), ws.clone());
                tokio::spawn(async move { commit.apply(&vault, ws).await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            let answer = tokio::time::timeout(std::time::Duration::from_secs(20), t)
                .await
                .expect("every waiter is answered")
                .unwrap();
            answers.push(answer);
        }
        assert_eq!(
            answers.iter().filter(|a| a.is_ok()).count(),
            1,
            "{answers:?}"
        );
        for err in answers.iter().filter_map(|a| a.as_ref().err()) {
            assert!(err.to_string().contains("already migrated"), "{err}");
        }
        assert!(commit.queue().is_empty());
    }
}
