//! Faults around the `rekey` binary: an abort after a partial migration
//! (interrupted by SIGKILL) gives back the legacy tables byte for byte
//! (checksums of every row, per table) and every user reads everything with
//! the legacy keys; a SQLite vault on a full file system (a small tmpfs)
//! refuses start, logins and finalize with a clear error, loses nothing,
//! and resumes once there is room again; a vault one schema step behind
//! in the middle of a migration is refused with the upgrade hint, and after
//! `rekey init` its users migrate and it finalizes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rekey_core::model::Phase;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::ledger::{check_completed, snapshot};
use support::{Backend, Rekey, VaultDb, temp};

/// The tables legacy material lives in (the migration's own tables --
/// migration, audit, non_migratable, server heartbeats -- change by design).
const LEGACY_TABLES: [&str; 6] = [
    "principal",
    "key_pair",
    "grant",
    "record",
    "membership",
    "certificate",
];

/// Every row of `table` as text, in primary-key order.
async fn rows(conn: &sea_orm::DatabaseConnection, table: &str) -> Vec<String> {
    let backend = conn.get_database_backend();
    let text = |sql: String| Statement::from_string(backend, sql);
    let strings = |rs: Vec<sea_orm::QueryResult>| -> Vec<String> {
        rs.iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect()
    };
    let sql = match backend {
        DbBackend::Sqlite => {
            let cols = strings(
                conn.query_all_raw(text(format!(
                    "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
                )))
                .await
                .unwrap(),
            );
            let pk = strings(
                conn.query_all_raw(text(format!(
                    "SELECT name FROM pragma_table_info('{table}') WHERE pk > 0 ORDER BY pk"
                )))
                .await
                .unwrap(),
            );
            assert!(
                !cols.is_empty() && !pk.is_empty(),
                "{table}: {cols:?} {pk:?}"
            );
            let row = cols
                .iter()
                .map(|c| format!("quote(\"{c}\")"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            let order = pk
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            format!("SELECT {row} FROM \"{table}\" ORDER BY {order}")
        }
        _ => {
            let pk = strings(
                conn.query_all_raw(text(format!(
                    "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
                     ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indrelid = '\"{table}\"'::regclass AND i.indisprimary \
                     ORDER BY array_position(i.indkey::int2[], a.attnum)"
                )))
                .await
                .unwrap(),
            );
            assert!(!pk.is_empty(), "{table} has a primary key");
            let order = pk
                .iter()
                .map(|c| format!("t.\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            format!("SELECT t::text FROM \"{table}\" t ORDER BY {order}")
        }
    };
    strings(conn.query_all_raw(text(sql)).await.unwrap())
}

/// FNV-1a over the rows, for the report.
fn checksum(rows: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in rows {
        for b in r.bytes().chain(std::iter::once(b'\n')) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

async fn dump(url: &str) -> BTreeMap<&'static str, Vec<String>> {
    let conn = sea_orm::Database::connect(url).await.unwrap();
    let mut out = BTreeMap::new();
    for t in LEGACY_TABLES {
        out.insert(t, rows(&conn, t).await);
    }
    conn.close().await.unwrap();
    out
}

fn records_read(rk: &Rekey) -> u64 {
    let out = rk.ok(&["--format", "json", "verify", "--credentials", "c.json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], true, "{v}");
    v["records_read"].as_u64().unwrap()
}

fn abort_after_partial_migration(db: Backend) {
    let dir = temp("abort");
    let tdb = VaultDb::new(db, &dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rk = Rekey::new(&dir, &tdb.url);
    rk.seed(31);
    let read_before = records_read(&rk);
    let before = rt.block_on(dump(&tdb.url));
    rk.ok(&["start", "--code-word", "Start"]);

    // Users log in until a few have migrated; then the process is killed.
    let vault = rt.block_on(rk.vault());
    let users = rt.block_on(vault.progress()).unwrap().users;
    let mut child = rk.spawn(&[
        "demo",
        "login-all",
        "--credentials",
        "c.json",
        "--concurrency",
        "1",
    ]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = rt.block_on(vault.progress()).unwrap();
        if p.users.migrated >= 2 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "login-all ended early");
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = rt.block_on(vault.progress()).unwrap();
    assert!(
        partial.users.migrated < users.migrated + users.remaining,
        "a partial migration: {partial:?}"
    );
    rk.ok(&["abort", "--yes"]);
    assert_eq!(rt.block_on(vault.migration()).unwrap().phase, Phase::Legacy);
    let after = rt.block_on(dump(&tdb.url));
    let mut sums = Vec::new();
    for t in LEGACY_TABLES {
        assert_eq!(before[t].len(), after[t].len(), "{t}: row count");
        assert!(before[t] == after[t], "{t}: rows differ after abort");
        sums.push(format!(
            "{t} {} rows {:016x}",
            before[t].len(),
            checksum(&before[t])
        ));
    }
    assert_eq!(
        records_read(&rk),
        read_before,
        "legacy keys read everything"
    );
    println!(
        "abort after a partial migration ({}; {} users migrated, killed, aborted): legacy tables identical: {}; \
         every user reads its {} records with the legacy keys",
        db.name(),
        partial.users.migrated,
        sums.join(", "),
        read_before
    );
    rt.block_on(vault.close()).ok();
    drop(tdb);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sqlite_abort_after_a_partial_migration_restores_the_legacy_tables() {
    abort_after_partial_migration(Backend::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
fn postgres_abort_after_a_partial_migration_restores_the_legacy_tables() {
    abort_after_partial_migration(Backend::Postgres);
}

/// A migrated vault migrates again (P-256, then the post-quantum hybrid):
/// an abort part-way gives back the completed P-256 vault byte for byte
/// (every legacy table, the run and target on the migration row) and its
/// users read everything with the P-256 keys; started again it migrates
/// to the end, finalizes, verifies, and holds hybrid keys and X-Wing
/// grants only.
fn second_migration(db: Backend) {
    let dir = temp("again");
    let tdb = VaultDb::new(db, &dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rk = Rekey::new(&dir, &tdb.url);
    rk.seed(37);
    let read_rsa = records_read(&rk);
    rk.ok(&["start", "--code-word", "Start"]);
    rk.ok(&["demo", "login-all", "--credentials", "c.json"]);
    rk.ok(&["finalize"]);
    assert_eq!(records_read(&rk), read_rsa, "P-256 keys read everything");
    // The server keys are P-256 now: backed up again before the next run.
    rk.back_up();
    let vault = rt.block_on(rk.vault());
    let completed_row = rt.block_on(vault.migration()).unwrap();
    assert_eq!(completed_row.phase, Phase::Completed);
    let completed = rt.block_on(dump(&tdb.url));

    let hybrid = "hpke-mlkem768-x25519";
    let again = ["start", "--code-word", "Start", "--target-scheme", hybrid];
    rk.ok(&again);
    let row = rt.block_on(vault.migration()).unwrap();
    assert_eq!(row.phase, Phase::UserPhase);
    assert_eq!(row.target.name(), hybrid);
    assert_eq!(row.previous.as_ref().map(|p| p.run), completed_row.run);
    // Two users migrate to the hybrid keys; then the operator aborts.
    let creds = rk.credentials();
    for (name, u) in creds.users.iter().take(2) {
        rk.ok(&["login", "--user", name, "--password", &u.password]);
    }
    let partial = rt.block_on(vault.progress()).unwrap();
    assert!(partial.users.migrated >= 2, "{partial:?}");
    let abort = rk.ok(&["--format", "json", "abort", "--yes"]);
    let abort: serde_json::Value = serde_json::from_slice(&abort.stdout).unwrap();
    assert_eq!(abort["phase"], "completed", "{abort}");
    let back = rt.block_on(vault.migration()).unwrap();
    assert_eq!(
        (
            back.phase,
            back.run,
            back.target,
            back.started_at,
            back.snapshot,
            back.previous
        ),
        (
            completed_row.phase,
            completed_row.run,
            completed_row.target,
            completed_row.started_at,
            completed_row.snapshot,
            completed_row.previous.clone()
        ),
        "the completed run is back on the migration row"
    );
    let after = rt.block_on(dump(&tdb.url));
    let mut sums = Vec::new();
    for t in LEGACY_TABLES {
        assert_eq!(completed[t].len(), after[t].len(), "{t}: row count");
        assert!(completed[t] == after[t], "{t}: rows differ after abort");
        sums.push(format!("{t} {:016x}", checksum(&completed[t])));
    }
    assert_eq!(records_read(&rk), read_rsa, "P-256 keys read everything");

    // Started again, to the end.
    rk.ok(&again);
    rk.ok(&["demo", "login-all", "--credentials", "c.json"]);
    rk.ok(&["finalize"]);
    assert_eq!(records_read(&rk), read_rsa, "hybrid keys read everything");
    let left = rt.block_on(async {
        let conn = sea_orm::Database::connect(&tdb.url).await.unwrap();
        let backend = conn.get_database_backend();
        let mut out = Vec::new();
        for sql in [
            "SELECT DISTINCT scheme FROM key_pair",
            "SELECT DISTINCT scheme FROM \"grant\"",
            "SELECT DISTINCT origin FROM \"grant\"",
        ] {
            let rows = conn
                .query_all_raw(Statement::from_string(backend, sql.to_owned()))
                .await
                .unwrap();
            out.push(
                rows.iter()
                    .map(|r| r.try_get_by_index::<String>(0).unwrap())
                    .collect::<Vec<_>>(),
            );
        }
        conn.close().await.unwrap();
        out
    });
    let scheme = "hpke-mlkem768-x25519-sha256-aes256gcm-export".to_owned();
    assert_eq!(left[0], vec![scheme.clone()], "key pairs left");
    assert_eq!(left[1], vec![scheme], "grants left");
    assert_eq!(left[2], vec!["migration".to_owned()], "grant origins left");
    println!(
        "{}: RSA -> P-256 -> hybrid; abort of the second run gave back the completed P-256 vault ({}); \
         every user reads its {read_rsa} records after each step",
        db.name(),
        sums.join(", ")
    );
    rt.block_on(vault.close()).ok();
    drop(tdb);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sqlite_a_migrated_vault_migrates_again_and_aborts_exactly() {
    second_migration(Backend::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL (cargo xtask ci runs it)"]
fn postgres_a_migrated_vault_migrates_again_and_aborts_exactly() {
    second_migration(Backend::Postgres);
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Self(at.to_owned()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Fills the file system to the last byte; answers the filler's size.
    fn fill(&self) -> u64 {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let mut written = 0u64;
        for chunk in [65536usize, 4096, 512, 1] {
            let buf = vec![0u8; chunk];
            while f.write_all(&buf).is_ok() {
                written += chunk as u64;
            }
        }
        let _ = f.sync_all();
        written
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Empties the write-ahead log into the database file and truncates it,
/// so the next write must grow a file.
async fn checkpoint(url: &str) {
    let conn = sea_orm::Database::connect(url).await.unwrap();
    conn.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[test]
#[ignore = "needs root to mount a small tmpfs (cargo xtask ci runs it)"]
fn sqlite_disk_full_refuses_clearly_loses_nothing_and_resumes() {
    let dir = temp("diskfull");
    let fs = Tmpfs::mount(&dir.join("fs"), "16m")
        .unwrap_or_else(|e| panic!("cannot mount a small tmpfs here ({e}): this test needs root"));
    let url = format!("sqlite://{}?mode=rwc", fs.0.join("vault.db").display());
    let rk = Rekey::new(&fs.0, &url);
    rk.seed(41);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vault = rt.block_on(rk.vault());
    let before = rt.block_on(snapshot(&vault));
    let state = || {
        rt.block_on(async {
            (
                vault.migration().await.unwrap(),
                vault.progress().await.unwrap(),
                vault.audit_events(0, 1_000_000).await.unwrap().len(),
            )
        })
    };
    let steps: [(&str, &[&str]); 3] = [
        ("start", &["start", "--code-word", "Start"]),
        (
            "login-all",
            &["demo", "login-all", "--credentials", "c.json"],
        ),
        ("finalize", &["finalize"]),
    ];
    let mut faults = Vec::new();
    for (name, args) in steps {
        rt.block_on(checkpoint(&url));
        let s0 = state();
        let filled = fs.fill();
        let out = rk.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "{name} on a full disk succeeded?\n{stderr}"
        );
        assert!(
            stderr.contains("full") || stderr.contains("No space left"),
            "{name}: the error says the disk is full: {stderr}"
        );
        assert!(stderr.contains("hint:"), "{name}: a hint: {stderr}");
        assert_eq!(state(), s0, "{name} on a full disk changed the vault");
        let first = stderr.lines().next().unwrap_or_default().to_owned();
        faults.push(format!(
            "{name} (disk full, {filled} filler bytes): exit {:?}: {first}",
            out.status.code()
        ));
        fs.free();
        rk.ok(args);
    }
    rk.ok(&["verify", "--credentials", "c.json"]);
    let report = rt.block_on(check_completed(
        &vault,
        &before,
        &rk.key_dir(),
        &rk.credentials(),
    ));
    assert!(
        report.clean(),
        "{:#?} {:?}",
        report.problems,
        report.missing_certificates
    );
    println!(
        "SQLite disk full (tmpfs): {} faults injected, each refused and resumed; {} grants checked, 0 lost, 0 corrupt:",
        faults.len(),
        report.grants_checked
    );
    for f in &faults {
        println!("  {f}");
    }
    rt.block_on(vault.close()).ok();
    drop(fs);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sqlite_vault_one_schema_step_behind_mid_migration_is_upgraded_by_init_and_carries_on() {
    let dir = temp("upgrade");
    let tdb = VaultDb::new(Backend::Sqlite, &dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rk = Rekey::new(&dir, &tdb.url);
    rk.seed(37);
    rk.ok(&["start", "--code-word", "Start"]);
    // As left by the build before the newest schema step.
    rt.block_on(async {
        use sea_orm::ConnectionTrait;
        let conn = sea_orm::Database::connect(&tdb.url).await.unwrap();
        conn.execute_unprepared(
            "DELETE FROM seaql_migrations WHERE version = (SELECT MAX(version) FROM seaql_migrations)",
        )
        .await
        .unwrap();
        conn.close().await.unwrap();
    });

    let out = rk.run(&["status"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("older schema"), "{err}");
    assert!(err.contains("upgrades the vault in place"), "{err}");

    rk.ok(&["init"]);
    let vault = rt.block_on(rk.vault());
    assert_eq!(
        rt.block_on(vault.migration()).unwrap().phase,
        Phase::UserPhase
    );
    rk.ok(&["demo", "login-all", "--credentials", "c.json"]);
    rk.ok(&["finalize"]);
    assert_eq!(
        rt.block_on(vault.migration()).unwrap().phase,
        Phase::Completed
    );
    rt.block_on(vault.close()).ok();
    drop(tdb);
    std::fs::remove_dir_all(&dir).ok();
}
