//! `cargo xtask fuzz [--seconds N]`: runs every cargo-fuzz target in
//! `fuzz/` for N seconds each (installs cargo-fuzz and the nightly-free
//! `RUSTC_BOOTSTRAP` route if needed).

use std::process::Command;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds: u64 = 60;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seconds needs a whole number")?;
            }
            other => return Err(format!("unknown fuzz option `{other}`")),
        }
    }
    let root = crate::root();
    if Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        println!("installing cargo-fuzz …");
        status(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))?;
    }
    let list = Command::new("cargo")
        .args(["fuzz", "list"])
        .current_dir(&root)
        .env("RUSTC_BOOTSTRAP", "1")
        .output()
        .map_err(|e| format!("cargo fuzz list: {e}"))?;
    let targets = String::from_utf8_lossy(&list.stdout).to_string();
    for target in targets.lines().filter(|l| !l.trim().is_empty()) {
        println!("fuzzing {target} for {seconds} s");
        status(
            Command::new("cargo")
                .args([
                    "fuzz",
                    "run",
                    target,
                    "--",
                    &format!("-max_total_time={seconds}"),
                ])
                .current_dir(&root)
                // cargo-fuzz needs nightly flags; the stable toolchain
                // accepts them with RUSTC_BOOTSTRAP (no other toolchain can
                // be fetched here).
                .env("RUSTC_BOOTSTRAP", "1"),
        )?;
    }
    Ok(())
}

fn status(cmd: &mut Command) -> Result<(), String> {
    let s = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if s.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed: {s}"))
    }
}
