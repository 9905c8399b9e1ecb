//! `cargo xtask ci`: the test command README.md gives and `.ci/run` runs —
//! format check, clippy with warnings denied, then every test.
//!
//! The format check comes first and compiles nothing of rekey's (this
//! workshop depends on none of its crates). The tests run with
//! `--include-ignored`: the tests that need PostgreSQL, MariaDB, Chromium
//! or root are `#[ignore]`d so that a plain `cargo test` without them
//! reports them as ignored; here they run, and a missing service fails
//! them. Only the fuzz-seed writers stay out (`--skip write_fuzz_seeds`):
//! they rewrite committed files.
//!
//! Before the tests, `npm ci` installs the browser client's pinned packages
//! (clients/web, from its package-lock.json) so that its tests, which the
//! Rust test `rekey-server --test web_client` runs, find them.

use std::process::Command;
use std::time::Instant;

pub(crate) fn run() -> Result<(), String> {
    let root = crate::root();
    let steps: [(&str, &[&str]); 3] = [
        ("format check", &["fmt", "--all", "--", "--check"]),
        (
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        ),
        (
            "tests",
            &[
                "test",
                "--workspace",
                "--locked",
                // Every failing test binary, not only the first.
                "--no-fail-fast",
                "--",
                "--include-ignored",
                "--skip",
                "write_fuzz_seeds",
            ],
        ),
    ];
    let all = Instant::now();
    for (name, args) in steps {
        if name == "tests" {
            npm_ci(&root)?;
        }
        println!("==> {name}: cargo {}", args.join(" "));
        let started = Instant::now();
        let status = Command::new(env!("CARGO"))
            .args(args)
            .current_dir(&root)
            .status()
            .map_err(|e| format!("could not run cargo: {e}"))?;
        println!("==> {name}: {:.0} s", started.elapsed().as_secs_f64());
        if !status.success() {
            return Err(format!("{name} failed ({status})"));
        }
    }
    println!(
        "==> all checks passed in {:.0} s",
        all.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `npm ci` in clients/web when it has a lock file: its exact packages,
/// fresh. A failure (no npm, no registry) fails the step.
fn npm_ci(root: &std::path::Path) -> Result<(), String> {
    let web = root.join("clients").join("web");
    if !web.join("package-lock.json").is_file() {
        return Ok(());
    }
    println!("==> web client packages: npm ci (in clients/web)");
    let started = Instant::now();
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&web)
        .status()
        .map_err(|e| format!("could not run npm (Node.js 20.19 or later is needed): {e}"))?;
    println!(
        "==> web client packages: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("npm ci in clients/web failed ({status})"))
    }
}
