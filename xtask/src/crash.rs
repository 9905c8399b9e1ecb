//! `cargo xtask crash-test`: the crash tests of the `rekey` binary
//! (`crates/rekey-cli/tests/crash.rs`) with large counts. The same test
//! code runs in CI with small counts; this only sets the counts through
//! the environment, builds optimised by default, and prints the summary
//! lines the tests write.

use std::process::Command;
use std::time::Instant;

const USAGE: &str = "usage: cargo xtask crash-test [--kills N] [--server-kills N] [--db sqlite|postgres|both] [--seed S] [--debug]

  --kills N          SIGKILLs of rekey start / demo login-all / finalize per database (default 200)
  --server-kills N   SIGKILLs of rekey serve under its clients per database (default 20)
  --db WHICH         sqlite, postgres or both (default both; PostgreSQL at 127.0.0.1:5432
                     or $REKEY_TEST_POSTGRES_URL, required)
  --seed S           seed of the kill moments and of the demo vaults (default 1)
  --debug            run a debug build instead of a release build";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut kills = 200usize;
    let mut server_kills = 20usize;
    let mut db = "both".to_owned();
    let mut seed = 1u64;
    let mut release = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match a.as_str() {
            "--kills" => kills = number(&value("--kills")?)?,
            "--server-kills" => server_kills = number(&value("--server-kills")?)?,
            "--seed" => seed = number(&value("--seed")?)? as u64,
            "--db" => {
                db = value("--db")?;
                if !["sqlite", "postgres", "both"].contains(&db.as_str()) {
                    return Err(format!("--db must be sqlite, postgres or both\n\n{USAGE}"));
                }
            }
            "--debug" => release = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown option `{other}`\n\n{USAGE}")),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::root())
        .args(["test", "-p", "rekey-cli", "--test", "crash"]);
    if release {
        cmd.arg("--release");
    }
    // One campaign at a time: each uses both cores on its own. The
    // PostgreSQL campaigns are ignored by default (they need the server):
    // include them, and pick the databases by test name.
    cmd.args([
        "--",
        "--nocapture",
        "--test-threads",
        "1",
        "--include-ignored",
    ]);
    if db != "both" {
        cmd.arg(format!("{db}_"));
    }
    cmd.env("REKEY_CRASH_KILLS", kills.to_string())
        .env("REKEY_CRASH_SERVER_KILLS", server_kills.to_string())
        .env("REKEY_CRASH_SEED", seed.to_string());
    println!(
        "crash test: {kills} process kills and {server_kills} server kills per database ({db}), seed {seed}, {} build",
        if release { "release" } else { "debug" }
    );
    let started = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    println!(
        "crash test: {} in {:.0} s (build included)",
        if status.success() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if status.success() {
        Ok(())
    } else {
        Err("the crash test failed (see above)".into())
    }
}

fn number(s: &str) -> Result<usize, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not a number\n\n{USAGE}"))
}
