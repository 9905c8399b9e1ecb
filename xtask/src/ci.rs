//! `cargo xtask ci`: the test command README.md gives and `.ci/run` runs —
//! format check, clippy with warnings denied, then every test.

use std::process::Command;

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
        ("tests", &["test", "--workspace", "--locked"]),
    ];
    for (name, args) in steps {
        println!("==> {name}: cargo {}", args.join(" "));
        let status = Command::new("cargo")
            .args(args)
            .current_dir(&root)
            .status()
            .map_err(|e| format!("could not run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("{name} failed ({status})"));
        }
    }
    println!("==> all checks passed");
    Ok(())
}
