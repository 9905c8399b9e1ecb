//! `cargo xtask <command>`: the workshop. One module per command.

mod baseline;
mod bench_report;
mod ci;
mod crash;
mod fuzz;
mod profile;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci                  format check, clippy (warnings denied), all tests
  fixtures [--force]  make missing RSA test fixtures (--force: all anew)
  format-doc          regenerate the worked examples in docs/FORMAT.md
  protocol-vectors    write PROTOCOL.md's conformance vectors (vectors/protocol/)
  fuzz [--seconds N]  run every cargo-fuzz target for N seconds (default 60)
  crash-test          kill the migration at random moments, resume, verify
  bench-report        measure the RSA floor and whole-vault migration, write docs/BENCHMARKS.md
  baseline            run the Python peers (parallel batch-form and one-process scripts)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("fixtures") => example("rekey-demo", "fixtures", &args[1..]),
        Some("format-doc") => example("rekey-core", "format-doc", &[]),
        Some("protocol-vectors") => example("rekey-demo", "protocol_vectors", &[]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("crash-test") => crash::run(&args[1..]),
        Some("bench-report") => bench_report::run(&args[1..]),
        Some("baseline") => baseline::run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the root) or
/// `target/`.
/// Runs a generator kept as an example of the crate it belongs to (so the
/// workshop itself compiles nothing of rekey's: `cargo xtask ci` checks the
/// format before anything is built).
fn example(package: &str, name: &str, args: &[String]) -> Result<(), String> {
    status(
        std::process::Command::new(env!("CARGO"))
            .args([
                "run",
                "--quiet",
                "--release",
                "--package",
                package,
                "--example",
                name,
                "--",
            ])
            .args(args)
            .current_dir(root()),
    )
}

pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        Some(p) => root().join(p),
        None => root().join("target"),
    }
}

/// Runs `cmd`; an error names it and how it failed.
pub(crate) fn status(cmd: &mut std::process::Command) -> Result<(), String> {
    let s = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if s.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {s}"))
    }
}

/// The workspace root (xtask's parent directory).
pub(crate) fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

#[cfg(test)]
mod layering {
    /// rekey-core stays pure: no database, async runtime, HTTP or CLI crate
    /// anywhere in its dependency tree.
    #[test]
    fn core_has_no_io_dependencies() {
        let out = std::process::Command::new(env!("CARGO"))
            .args([
                "tree",
                "-p",
                "rekey-core",
                "-e",
                "normal",
                "--prefix",
                "none",
                "--offline",
            ])
            .current_dir(super::root())
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(tree.contains("rekey-core"), "{tree}");
        for forbidden in ["sea-orm", "sqlx", "tokio", "clap", "axum", "hyper"] {
            assert!(
                !tree
                    .lines()
                    .any(|l| l.starts_with(&format!("{forbidden} "))),
                "rekey-core depends on {forbidden}"
            );
        }
    }
}
