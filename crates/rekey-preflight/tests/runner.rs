//! The runner against a real SQLite vault: facts loaded from the database,
//! every check, and the administrator's remedies clearing them.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; its steps are commented in place"
)]

use rekey_keys::{BackupOptions, KeyDir, Passphrase, backup_with};
use rekey_test_support::seeded as support;

use rekey_preflight::{
    Options, Outcome, preparation_began, renew_directory_token, run, write_off_device,
};
use support::seeded_vault;

fn fast() -> BackupOptions {
    BackupOptions {
        work_factor: Some(10),
        ..BackupOptions::default()
    }
}

#[tokio::test]
async fn preflight_on_a_seeded_vault_blocks_then_clears() {
    let s = seeded_vault().await;
    let options = Options {
        key_dir: Some(KeyDir::existing(&s.key_dir).unwrap()),
        ..Options::default()
    };

    let report = run(&s.vault, &options).await.unwrap();
    assert_eq!(
        report.blocking(),
        [
            "offline-devices",
            "certificates",
            "users",
            "directory-tokens"
        ],
        "{}",
        report.to_text()
    );
    assert_eq!(report.exit_code(), 2);
    let r = |name: &str| report.result(name).unwrap().clone();
    assert_eq!(r("component-versions").outcome, Outcome::Pass);
    assert_eq!(r("mobile-devices").outcome, Outcome::Pass);
    assert_eq!(r("active-server").outcome, Outcome::Pass);
    assert_eq!(
        r("legacy-data").outcome,
        Outcome::Pass,
        "{:?}",
        r("legacy-data")
    );
    assert!(r("legacy-data").evidence[0].starts_with("2 legacy grants ("));
    assert_eq!(
        r("disk-space").outcome,
        Outcome::Pass,
        "{:?}",
        r("disk-space")
    );
    assert!(r("offline-devices").evidence[0].contains("alice-laptop of alice (2 changes"));
    assert!(r("users").evidence[0].contains("bob (deactivated)"));
    // `ops` has an active member; `finance` only the deactivated `bob`.
    assert_eq!(
        r("users").evidence[1],
        "roles no active user belongs to (1): finance"
    );
    assert!(r("users").remedy.contains("Add an active member"));
    assert!(r("directory-tokens").evidence[0].contains("corp-scim"));
    assert!(
        r("certificates")
            .evidence
            .iter()
            .any(|e| e.starts_with("no backup made by"))
    );

    // The first run recorded when preparation began.
    let began = preparation_began(&s.vault).await.unwrap().unwrap();
    assert_eq!(began, report.checked_at);

    // The administrator's remedies.
    write_off_device(&s.vault, "alice-laptop", "admin")
        .await
        .unwrap();
    let token = renew_directory_token(&s.vault, "corp-scim", "admin")
        .await
        .unwrap();
    assert_eq!(token.expose().len(), 64);
    assert_eq!(format!("{token:?}"), "DirectoryToken([redacted])");
    let out = s.dir.path().join("certs.age");
    let summary = backup_with(
        &s.vault,
        &KeyDir::existing(&s.key_dir).unwrap(),
        &out,
        &Passphrase::new("correct horse battery".to_owned()),
        &fast(),
    )
    .await
    .unwrap();

    let with_file = Options {
        backup_file: Some(out.clone()),
        ..options.clone()
    };
    let report = run(&s.vault, &with_file).await.unwrap();
    assert_eq!(report.blocking(), ["users"], "{}", report.to_text());
    assert!(
        report
            .result("certificates")
            .unwrap()
            .evidence
            .iter()
            .any(|e| e.contains(&summary.digest))
    );
    // Preparation start did not move.
    assert_eq!(preparation_began(&s.vault).await.unwrap(), Some(began));

    // The token's hash, never the token, is in the audit log.
    let events = s.vault.audit_events(0, 100).await.unwrap();
    let renewed = events
        .iter()
        .find(|(_, e)| e.action == "directory_token_renewed")
        .unwrap();
    assert!(renewed.1.details.contains(&token.sha256_hex()));
    assert!(
        events
            .iter()
            .all(|(_, e)| !e.details.contains(token.expose()))
    );
    assert!(events.iter().any(|(_, e)| e.action == "device_written_off"));

    // Without the key directory, the certificates cannot be confirmed.
    let report = run(&s.vault, &Options::default()).await.unwrap();
    assert_eq!(report.blocking(), ["certificates", "users"]);

    // JSON and text render the same report.
    let json = report.to_json();
    assert_eq!(rekey_preflight::Report::from_json(&json).unwrap(), report);
    assert!(
        report
            .to_text()
            .ends_with("overall: block (exit 2); blocking: certificates, users\n")
    );
}

#[tokio::test]
async fn unknown_profile_or_device_is_a_clear_error() {
    let s = seeded_vault().await;
    let e = renew_directory_token(&s.vault, "nope", "admin")
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no directory-sync profile is named \"nope\"; `rekey preflight` lists the profiles"
    );
    assert!(matches!(
        write_off_device(&s.vault, "nope", "admin").await,
        Err(rekey_preflight::Error::UnknownDevice { .. })
    ));
}

#[tokio::test]
async fn a_missing_key_file_blocks() {
    let s = seeded_vault().await;
    std::fs::remove_file(
        KeyDir::existing(&s.key_dir)
            .unwrap()
            .legacy_key_path(&s.certificate.fingerprint),
    )
    .unwrap();
    let report = run(
        &s.vault,
        &Options {
            key_dir: Some(KeyDir::existing(&s.key_dir).unwrap()),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let certs = report.result("certificates").unwrap();
    assert_eq!(certs.outcome, Outcome::Block);
    assert!(
        certs
            .evidence
            .iter()
            .any(|e| e.starts_with("private key missing from the key directory (1): vault-key"))
    );
}

#[tokio::test]
async fn a_record_without_any_grant_blocks() {
    let s = seeded_vault().await;
    let orphan = rekey_core::model::RecordRow {
        id: rekey_core::ids::RecordId::random(),
        ciphertext: vec![9],
    };
    s.vault.put_record(&orphan).await.unwrap();
    let report = run(&s.vault, &Options::default()).await.unwrap();
    let legacy = report.result("legacy-data").unwrap();
    assert_eq!(legacy.outcome, Outcome::Block);
    assert_eq!(
        legacy.evidence[0],
        format!("records without any grant (1): {}", orphan.id)
    );
}
