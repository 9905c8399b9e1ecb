//! Rewrites the generated worked examples in docs/FORMAT.md (run through
//! `cargo xtask format-doc`). A test in rekey-core fails when they are
//! stale.
#![allow(clippy::print_stdout)]

use rekey_core::worked_examples;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("format-doc: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixtures = root.join("crates/rekey-core/tests/fixtures");
    let read =
        |name: &str| std::fs::read(fixtures.join(name)).map_err(|e| format!("fixture {name}: {e}"));
    let generated = worked_examples::markdown(
        &read("rsa-2048-a.pk8")?,
        &read("worked-example-rsa-oaep-sha256.bin")?,
    )
    .map_err(|e| e.to_string())?;
    let path = root.join("docs/FORMAT.md");
    let doc = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let updated = worked_examples::splice(&doc, &generated)
        .ok_or("docs/FORMAT.md lacks the worked-examples markers")?;
    std::fs::write(&path, updated).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("updated {}", path.display());
    Ok(())
}
