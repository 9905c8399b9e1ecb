//! Nothing lost when the process dies: `rekey start`, `rekey demo
//! login-all` and `rekey finalize` are killed with SIGKILL at random
//! moments (seeded) and run again until they finish; `rekey serve` is
//! killed under its clients and restarted. Afterwards `rekey verify`
//! passes and the ledger (tests/support/ledger.rs) finds every holding of
//! the seed, every grant opening, every principal migrated exactly once
//! by the audit log. A second campaign kills the second migration of a
//! vault already migrated to P-256 (to the hybrid target) the same way.
//!
//! Small counts here (CI); `cargo xtask crash-test --kills N` runs the same
//! tests with large counts through the environment:
//! `REKEY_CRASH_KILLS` (process kills per database, default 10),
//! `REKEY_CRASH_SERVER_KILLS` (server kills, default 3), `REKEY_CRASH_SEED`,
//! the test name (`cargo xtask crash-test --db sqlite|postgres|both`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; its steps are commented in place"
)]

mod support;

use rekey_core::model::Phase;
use std::time::{Duration, Instant};
use support::ledger::{Report, check_completed, snapshot};
use support::{Backend, End, Guard, Rekey, Rng, VaultDb, env_usize, kill_after, temp};

fn seed() -> u64 {
    env_usize("REKEY_CRASH_SEED", 1) as u64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What a campaign did.
#[derive(Debug, Default)]
struct Tally {
    rounds: usize,
    kills: usize,
    kills_by_stage: [usize; 3],
    runs: usize,
    resumes: usize,
    finished_before_kill: usize,
    conflict_exits: usize,
    earliest_kill: Duration,
    latest_kill: Duration,
    grants_checked: usize,
    lost: usize,
    corrupt: usize,
    duplicated: usize,
    bad_principals: usize,
    audit_mismatches: usize,
    bundles_applied: usize,
    missing_certificates: usize,
}

impl Tally {
    fn add(&mut self, r: &Report) {
        self.grants_checked += r.grants_checked;
        self.lost += r.lost;
        self.corrupt += r.corrupt;
        self.duplicated += r.duplicated;
        self.bad_principals += r.bad_principals;
        self.audit_mismatches += r.audit_mismatches;
        self.bundles_applied += r.bundles_applied;
        self.missing_certificates += r.missing_certificates.len();
    }
}

const STAGES: [&str; 3] = ["start", "login-all", "finalize"];

/// Runs one stage's command until `done`, killing it at random moments
/// (at most `budget` kills). `estimate` is how long the last run that
/// finished took: kill moments are uniform from the process start to
/// there, so they cover start-up, the work and the last commit.
#[allow(clippy::too_many_arguments)]
fn stage(
    rt: &tokio::runtime::Runtime,
    rk: &Rekey,
    vault: &rekey_storage::Vault,
    rng: &mut Rng,
    tally: &mut Tally,
    which: usize,
    budget: usize,
    estimate: &mut Duration,
    again: bool,
) {
    let args: &[&str] = match which {
        0 if again => &[
            "start",
            "--code-word",
            "Start",
            "--target-scheme",
            "hpke-mlkem768-x25519",
        ],
        0 => &["start", "--code-word", "Start"],
        1 => &["demo", "login-all", "--credentials", "c.json"],
        _ => &["finalize"],
    };
    let done = |v: &rekey_storage::Vault| {
        rt.block_on(async {
            let row = v.migration().await.unwrap();
            match which {
                0 => row.phase == Phase::UserPhase,
                1 => {
                    let p = v.progress().await.unwrap();
                    // A login killed after its bundle but before its role
                    // receipts leaves a member to confirm: logins go on.
                    p.users.remaining == 0
                        && p.roles.remaining == 0
                        && p.unconfirmed_role_members == 0
                }
                _ => row.phase == Phase::Completed,
            }
        })
    };
    let mut kills = 0;
    let mut after_kill = false;
    let mut attempts = 0;
    while !done(vault) {
        attempts += 1;
        assert!(
            attempts < 100,
            "{} does not finish after {attempts} runs",
            STAGES[which]
        );
        let delay = (kills < budget && rng.chance(85))
            .then(|| Duration::from_micros(rng.below(estimate.as_micros() as u64 + 1000)));
        if after_kill {
            tally.resumes += 1;
        }
        tally.runs += 1;
        let t0 = Instant::now();
        match kill_after(rk.spawn(args), delay) {
            End::Killed => {
                let at = t0.elapsed();
                tally.earliest_kill = tally.earliest_kill.min(at);
                tally.latest_kill = tally.latest_kill.max(at);
                kills += 1;
                tally.kills += 1;
                tally.kills_by_stage[which] += 1;
                after_kill = true;
            }
            End::Exited(status, stderr) => {
                after_kill = false;
                if delay.is_some() {
                    tally.finished_before_kill += 1;
                }
                if status.success() {
                    *estimate = t0.elapsed().max(Duration::from_millis(10));
                } else if status.code() == Some(4) {
                    // "The vault changed meanwhile; run again."
                    tally.conflict_exits += 1;
                } else {
                    panic!(
                        "rekey {} after {} kill(s): {status:?}\n{stderr}",
                        STAGES[which], tally.kills
                    );
                }
            }
        }
    }
}

/// Kills the migration of fresh demo vaults on `db` until `target` kills
/// interrupted a running process; checks each vault when it is done.
/// `again`: each vault first migrates to P-256 undisturbed (and its P-256
/// server keys are backed up), then the kills hit its second migration,
/// to the hybrid target.
fn crash_campaign(db: Backend, again: bool) {
    let target = env_usize("REKEY_CRASH_KILLS", 10);
    let rt = runtime();
    let mut rng = Rng::new(seed() ^ (db as u64) << 32);
    let mut tally = Tally {
        earliest_kill: Duration::MAX,
        ..Tally::default()
    };
    let mut estimates = [
        Duration::from_millis(300),
        Duration::from_millis(500),
        Duration::from_millis(100),
    ];
    let began = Instant::now();
    while tally.kills < target {
        tally.rounds += 1;
        let dir = temp("crash");
        let tdb = VaultDb::new(db, &dir);
        let rk = Rekey::new(&dir, &tdb.url);
        rk.seed(seed() + tally.rounds as u64);
        if again {
            rk.ok(&["start", "--code-word", "Start"]);
            rk.ok(&["demo", "login-all", "--credentials", "c.json"]);
            rk.ok(&["finalize"]);
            rk.back_up();
        }
        let vault = rt.block_on(rk.vault());
        let before = rt.block_on(snapshot(&vault));
        let left = target.saturating_sub(tally.kills);
        let budgets = [
            1 + rng.below(2) as usize,
            1 + rng.below(10) as usize,
            1 + rng.below(3) as usize,
        ];
        for (which, budget) in budgets.iter().enumerate() {
            stage(
                &rt,
                &rk,
                &vault,
                &mut rng,
                &mut tally,
                which,
                (*budget).min(left),
                &mut estimates[which],
                again,
            );
        }
        rk.ok(&["verify", "--credentials", "c.json"]);
        let report = rt.block_on(check_completed(
            &vault,
            &before,
            &rk.key_dir(),
            &rk.credentials(),
        ));
        tally.add(&report);
        // Every service migrated in a round has the certificate of its new
        // key: a kill between its bundle and its certificate is repaired
        // when `start` resumes the server phase.
        assert!(
            report.clean(),
            "round {} on {}: {:#?} {:?}",
            tally.rounds,
            db.name(),
            report.problems,
            report.missing_certificates
        );
        rt.block_on(vault.close()).ok();
        drop(tdb);
        std::fs::remove_dir_all(&dir).ok();
    }
    println!(
        "crash test ({}{}): {} kills survived in {} rounds (start {}, login-all {}, finalize {}; \
         {:.1} to {:.1} ms after the process started), \
         {} runs, {} resumes after a kill, {} finished before their kill, {} conflict exits; \
         verify passed every round; {} grants checked: {} lost, {} corrupt, {} duplicated; \
         {} bad principals, {} audit mismatches, {} bundles applied; \
         {} service certificate(s) missing; {:.1} s",
        db.name(),
        if again {
            ", second migration to the hybrid target"
        } else {
            ""
        },
        tally.kills,
        tally.rounds,
        tally.kills_by_stage[0],
        tally.kills_by_stage[1],
        tally.kills_by_stage[2],
        tally.earliest_kill.as_secs_f64() * 1000.0,
        tally.latest_kill.as_secs_f64() * 1000.0,
        tally.runs,
        tally.resumes,
        tally.finished_before_kill,
        tally.conflict_exits,
        tally.grants_checked,
        tally.lost,
        tally.corrupt,
        tally.duplicated,
        tally.bad_principals,
        tally.audit_mismatches,
        tally.bundles_applied,
        tally.missing_certificates,
        began.elapsed().as_secs_f64()
    );
    assert_eq!(
        (tally.lost, tally.corrupt, tally.duplicated),
        (0, 0, 0),
        "{tally:?}"
    );
}

#[test]
fn sqlite_migration_survives_random_kills() {
    crash_campaign(Backend::Sqlite, false);
}

#[test]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
fn postgres_migration_survives_random_kills() {
    crash_campaign(Backend::Postgres, false);
}

#[test]
fn sqlite_second_migration_survives_random_kills() {
    crash_campaign(Backend::Sqlite, true);
}

#[test]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
fn postgres_second_migration_survives_random_kills() {
    crash_campaign(Backend::Postgres, true);
}

const TOKEN: &str = "crash-test-admin-token-0123456789";

fn serve(rk: &Rekey, port: u16) -> Guard {
    let child = rk
        .command(&["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("REKEY_ADMIN_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    support::wait_for_port(port);
    Guard(child)
}

/// `rekey serve` killed with SIGKILL while clients migrate through it,
/// restarted on the same port; the clients (`rekey demo login-all
/// --server`) retry and finish; every user is migrated exactly once.
fn server_kill_campaign(db: Backend) {
    let target = env_usize("REKEY_CRASH_SERVER_KILLS", 3);
    let rt = runtime();
    let mut rng = Rng::new(seed() ^ 0x5e7e ^ (db as u64) << 32);
    let mut tally = Tally::default();
    let began = Instant::now();
    while tally.kills < target {
        tally.rounds += 1;
        let dir = temp("server-crash");
        let tdb = VaultDb::new(db, &dir);
        let rk = Rekey::new(&dir, &tdb.url);
        rk.seed(seed() + 1000 + tally.rounds as u64);
        let vault = rt.block_on(rk.vault());
        let before = rt.block_on(snapshot(&vault));
        rk.ok(&["start", "--code-word", "Start"]);
        let port = support::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut server = serve(&rk, port);
        // Text output: an error and its hint go to stderr, which the
        // assertion below shows.
        let mut client = Guard(rk.spawn(&[
            "demo",
            "login-all",
            "--server",
            &url,
            "--credentials",
            "c.json",
        ]));
        let budget = 1 + rng.below(4) as usize;
        let mut kills = 0;
        let status = loop {
            let pause = Duration::from_millis(50 + rng.below(700));
            let t = Instant::now();
            let mut exited = None;
            while t.elapsed() < pause {
                if let Some(s) = client.0.try_wait().unwrap() {
                    exited = Some(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if let Some(s) = exited {
                break s;
            }
            if kills >= budget || tally.kills >= target {
                break client.0.wait().unwrap();
            }
            drop(server);
            kills += 1;
            tally.kills += 1;
            std::thread::sleep(Duration::from_millis(rng.below(300)));
            server = serve(&rk, port);
            tally.resumes += 1;
        };
        let stderr = {
            use std::io::Read;
            let mut s = String::new();
            if let Some(mut e) = client.0.stderr.take() {
                let _ = e.read_to_string(&mut s);
            }
            s
        };
        assert!(
            status.success(),
            "login-all through a killed server: {status:?}\n{stderr}"
        );
        drop(server);
        rk.ok(&["finalize"]);
        rk.ok(&["verify", "--credentials", "c.json"]);
        let report = rt.block_on(check_completed(
            &vault,
            &before,
            &rk.key_dir(),
            &rk.credentials(),
        ));
        tally.add(&report);
        assert!(
            report.clean(),
            "{:#?} {:?}",
            report.problems,
            report.missing_certificates
        );
        rt.block_on(vault.close()).ok();
        drop(tdb);
        std::fs::remove_dir_all(&dir).ok();
    }
    println!(
        "server crash test ({}): {} server kills survived in {} rounds, {} restarts; \
         clients retried and finished; {} grants checked: {} lost, {} corrupt, {} duplicated; \
         {} bad principals, {} audit mismatches (every principal in exactly one applied \
         bundle), {} bundles applied; {:.1} s",
        db.name(),
        tally.kills,
        tally.rounds,
        tally.resumes,
        tally.grants_checked,
        tally.lost,
        tally.corrupt,
        tally.duplicated,
        tally.bad_principals,
        tally.audit_mismatches,
        tally.bundles_applied,
        began.elapsed().as_secs_f64()
    );
}

#[test]
fn sqlite_clients_outlive_a_killed_server() {
    server_kill_campaign(Backend::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
fn postgres_clients_outlive_a_killed_server() {
    server_kill_campaign(Backend::Postgres);
}
