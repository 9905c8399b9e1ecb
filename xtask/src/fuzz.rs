//! `cargo xtask fuzz [--seconds N] [--target NAME]... [--write-seeds]`:
//! runs every cargo-fuzz target in `fuzz/` (as `cargo fuzz list` names
//! them) for N seconds each, one after the other, and prints a summary.
//!
//! Each target runs on two corpus directories: `fuzz/corpus/<target>`
//! (writable, not committed: what the fuzzer finds accumulates there across
//! runs) and `fuzz/seeds/<target>` (committed, real inputs written by the
//! owning crates' tests: see `--write-seeds`), with the dictionary
//! `fuzz/dicts/<target>.dict` when there is one. Without the seeds a target
//! starts from nothing and rarely gets past a format's magic bytes or a
//! public key that must be a point on its curve.
//!
//! A crash (panic, timeout, out of memory) stops that target; its input is
//! written to `fuzz/artifacts/<target>/`, the other targets still run and
//! the command fails at the end. Turn each crash into a regression test in
//! the owning crate (`cargo fuzz fmt <target> <artifact>` prints it).
//!
//! `--write-seeds` regenerates the seeds first (the ignored seed-writing
//! tests of rekey-server and rekey-keys, [`SEED_WRITERS`]).
//!
//! cargo-fuzz is installed if missing; it needs nightly flags, which the
//! stable toolchain accepts under `RUSTC_BOOTSTRAP=1` (no other toolchain
//! can be fetched here).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The (ignored) tests that write the seeds: package, test file, test
/// name. `cargo xtask ci` leaves them out (`--skip write_fuzz_seeds`).
pub(crate) const SEED_WRITERS: &[(&str, &str, &str)] = &[
    ("rekey-server", "request_bodies", "write_fuzz_seeds"),
    ("rekey-keys", "backup_parsers", "write_fuzz_seeds"),
];

/// What one run of a target reached (from libFuzzer's last status line).
#[derive(Debug, Default)]
struct Outcome {
    target: String,
    seconds: f64,
    runs: u64,
    cov: u64,
    ft: u64,
    corpus: String,
    crashed: Option<String>,
}

/// Options of one run.
struct Options {
    /// Seconds of fuzzing per target.
    seconds: u64,
    /// The targets to run (`--target`); empty: every target.
    only: Vec<String>,
    /// Regenerate the seeds first.
    write_seeds: bool,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let opts = Options::parse(args)?;
    let root = crate::root();
    if opts.write_seeds {
        write_seeds(&root)?;
    }
    install_cargo_fuzz()?;
    let all = list_targets(&root)?;
    let targets = select_targets(&all, &opts.only)?;
    // One build for every target, so that the time given to each is spent
    // fuzzing.
    println!("building {} fuzz targets …", targets.len());
    crate::status(
        Command::new("cargo")
            .args(["fuzz", "build"])
            .current_dir(&root)
            .env("RUSTC_BOOTSTRAP", "1"),
    )?;
    let mut outcomes = Vec::new();
    for target in targets {
        println!("fuzzing {target} for {} s", opts.seconds);
        outcomes.push(fuzz_one(&root, target, opts.seconds)?);
    }
    print_summary(&outcomes);
    let crashed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.crashed.is_some())
        .map(|o| o.target.as_str())
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "crashes in {}: inputs in fuzz/artifacts/<target>/; make each a regression test in the owning crate",
            crashed.join(", ")
        ))
    }
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            seconds: 60,
            only: Vec::new(),
            write_seeds: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--seconds" => {
                    o.seconds = it
                        .next()
                        .and_then(|s| s.parse().ok())
                        .ok_or("--seconds needs a whole number")?;
                }
                "--target" => {
                    let name = it.next().ok_or("--target needs a name")?;
                    o.only.push(name.clone());
                }
                "--write-seeds" => o.write_seeds = true,
                other => return Err(format!("unknown fuzz option `{other}`")),
            }
        }
        Ok(o)
    }
}

/// Runs the seed-writing tests ([`SEED_WRITERS`]).
fn write_seeds(root: &Path) -> Result<(), String> {
    for (package, test, name) in SEED_WRITERS {
        println!("writing seeds: {package} --test {test} {name}");
        crate::status(
            Command::new("cargo")
                .args([
                    "test",
                    "-p",
                    package,
                    "--test",
                    test,
                    "--",
                    name,
                    "--exact",
                    "--ignored",
                ])
                .current_dir(root),
        )?;
    }
    Ok(())
}

/// Installs cargo-fuzz unless `cargo fuzz --version` works.
fn install_cargo_fuzz() -> Result<(), String> {
    if Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        println!("installing cargo-fuzz …");
        crate::status(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))?;
    }
    Ok(())
}

/// Every fuzz target, as `cargo fuzz list` names them.
fn list_targets(root: &Path) -> Result<Vec<String>, String> {
    let list = Command::new("cargo")
        .args(["fuzz", "list"])
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .output()
        .map_err(|e| format!("cargo fuzz list: {e}"))?;
    if !list.status.success() {
        return Err(format!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&list.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The targets of `all` named in `only` (all of them when `only` is
/// empty), in the order of `all`; an error for a name that is no target.
fn select_targets<'a>(all: &'a [String], only: &[String]) -> Result<Vec<&'a String>, String> {
    for t in only {
        if !all.contains(t) {
            return Err(format!(
                "no fuzz target `{t}` (targets: {})",
                all.join(", ")
            ));
        }
    }
    Ok(all
        .iter()
        .filter(|t| only.is_empty() || only.contains(t))
        .collect())
}

/// Prints one line per target: how far it got and whether it crashed.
fn print_summary(outcomes: &[Outcome]) {
    println!();
    println!(
        "{:<18} {:>8} {:>12} {:>7} {:>8}  {:<14} result",
        "target", "seconds", "runs", "edges", "features", "corpus"
    );
    for o in outcomes {
        println!(
            "{:<18} {:>8.0} {:>12} {:>7} {:>8}  {:<14} {}",
            o.target,
            o.seconds,
            o.runs,
            o.cov,
            o.ft,
            o.corpus,
            o.crashed.as_deref().unwrap_or("no crash")
        );
    }
}

fn fuzz_one(root: &Path, target: &str, seconds: u64) -> Result<Outcome, String> {
    let fuzz = root.join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let mut cmd = Command::new("cargo");
    cmd.args(["fuzz", "run", target])
        .arg(&corpus)
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1");
    let seeds = fuzz.join("seeds").join(target);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // A single input that takes seconds is a bug worth a regression
        // test (e.g. an unbounded scrypt work factor), not noise.
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1");
    let dict = fuzz.join("dicts").join(format!("{target}.dict"));
    if dict.is_file() {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    // libFuzzer reports on stderr: pass it through and keep the last
    // status line.
    let started = Instant::now();
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo fuzz run {target}: {e}"))?;
    let mut outcome = Outcome {
        target: target.to_owned(),
        ..Outcome::default()
    };
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            read_status(&line, &mut outcome);
            if line.starts_with("==") && line.contains("ERROR: libFuzzer") {
                outcome.crashed = Some(line.clone());
            }
            if line.contains("panicked at") && outcome.crashed.is_none() {
                outcome.crashed = Some(line.trim().to_owned());
            }
        }
    }
    let exit = child
        .wait()
        .map_err(|e| format!("cargo fuzz run {target}: {e}"))?;
    outcome.seconds = started.elapsed().as_secs_f64();
    if !exit.success() && outcome.crashed.is_none() {
        outcome.crashed = Some(format!("exited with {exit}"));
    }
    Ok(outcome)
}

/// Reads `#RUNS <event> cov: N ft: N corp: N/SIZE …` lines.
fn read_status(line: &str, o: &mut Outcome) {
    let Some(rest) = line.strip_prefix('#') else {
        return;
    };
    let mut words = rest.split_whitespace();
    let Some(runs) = words.next().and_then(|w| w.parse().ok()) else {
        return;
    };
    o.runs = runs;
    let words: Vec<&str> = words.collect();
    for pair in words.windows(2) {
        match pair[0] {
            "cov:" => o.cov = pair[1].parse().unwrap_or(o.cov),
            "ft:" => o.ft = pair[1].parse().unwrap_or(o.ft),
            "corp:" => pair[1].clone_into(&mut o.corpus),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_status_lines() {
        let mut o = Outcome::default();
        read_status(
            "#1575340\tDONE   cov: 246 ft: 351 corp: 40/3996b lim: 4096 exec/s: 50817 rss: 526Mb",
            &mut o,
        );
        assert_eq!((o.runs, o.cov, o.ft), (1_575_340, 246, 351));
        assert_eq!(o.corpus, "40/3996b");
        read_status("INFO: Seed: 1539743562", &mut o);
        read_status(
            "#2\tINITED cov: 101 ft: 101 corp: 1/71b exec/s: 0 rss: 35Mb",
            &mut o,
        );
        assert_eq!((o.runs, o.cov), (2, 101));
    }
}
