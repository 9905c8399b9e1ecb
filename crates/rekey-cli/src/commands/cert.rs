//! `cert backup | verify | import`.

use super::{Ctx, Keys, prompt};
use crate::cli::CertAction;
use crate::error::CliError;
use rekey_keys::Passphrase;
use std::path::Path;

pub(super) async fn run(
    ctx: &Ctx,
    action: &CertAction,
    passphrase_file: Option<&Path>,
) -> Result<u8, CliError> {
    let new_backup = matches!(action, CertAction::Backup { .. });
    let pass = Passphrase::new(passphrase(passphrase_file, new_backup)?);
    match action {
        CertAction::Backup { out } => {
            let engine = ctx.engine(Keys::IfPresent).await?;
            let s = engine.backup_certificates(out, &pass).await?;
            ctx.out.report(&s, |s| {
                format!(
                    "backed up {} certificate key(s) to {} (sha256 {})",
                    s.fingerprints.len(),
                    out.display(),
                    s.digest
                )
            });
        }
        CertAction::Verify { file } => {
            let engine = ctx.engine(Keys::IfPresent).await?;
            let s = engine.verify_backup(file, &pass).await?;
            ctx.out.report(&s, |s| {
                let mut t = format!(
                    "{} verifies: {} certificate key(s), sha256 {}",
                    file.display(),
                    s.fingerprints.len(),
                    s.digest
                );
                if !s.missing.is_empty() {
                    t.push_str(&format!("\nnot in this backup: {}", s.missing.join(", ")));
                }
                t
            });
        }
        CertAction::Import { file, server_name } => {
            let engine = ctx.engine(Keys::Create).await?;
            let s = engine
                .import_backup(file, &pass, server_name.as_deref())
                .await?;
            ctx.out.report(&s, |s| {
                let server = if s.server_recorded {
                    format!("the vault now lists server {} with these keys", s.server)
                } else {
                    format!(
                        "no server named {} in the vault's server list yet (its first heartbeat reports its keys; --server-name names another)",
                        s.server
                    )
                };
                format!(
                    "imported into {}: {} written, {} already there; {server}",
                    ctx.key_dir.display(),
                    s.written.len(),
                    s.unchanged.len()
                )
            });
        }
    }
    Ok(0)
}

/// The backup passphrase: a file, the environment, or a prompt (typed
/// twice for a new backup).
fn passphrase(file: Option<&Path>, confirm: bool) -> Result<String, CliError> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| CliError::Io(format!("{}: {e}", f.display())))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Ok(p) = std::env::var("REKEY_BACKUP_PASSPHRASE") {
        return Ok(p);
    }
    let first = prompt("backup passphrase: ")?;
    if confirm && prompt("again: ")? != first {
        return Err(CliError::Declined(
            "the two passphrases differ; nothing written".into(),
        ));
    }
    Ok(first)
}
