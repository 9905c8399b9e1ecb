//! Certificate backups: round trip, and every bad file refused with
//! nothing written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rekey_test_support::seeded as support;

use rekey_keys::{BackupOptions, Error, KeyDir, Passphrase, backup_with, import, verify};
use std::path::Path;
use support::{CERT_KEY, TempDir, seeded_vault};

fn fast() -> BackupOptions {
    BackupOptions {
        work_factor: Some(10),
        ..BackupOptions::default()
    }
}

fn pass() -> Passphrase {
    Passphrase::new("correct horse battery staple".to_owned())
}

fn is_empty_or_absent(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[tokio::test]
async fn backup_verify_import_round_trip() {
    let s = seeded_vault().await;
    let out = s.dir.path().join("certs.age");
    let made = backup_with(
        &s.vault,
        &KeyDir::existing(&s.key_dir).unwrap(),
        &out,
        &pass(),
        &fast(),
    )
    .await
    .unwrap();
    assert_eq!(
        made.fingerprints,
        std::slice::from_ref(&s.certificate.fingerprint)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Recorded in the vault: digest on the certificate, audit event.
    let certs = s.vault.certificates().await.unwrap();
    assert_eq!(
        certs[0].backup_digest.as_deref(),
        Some(made.digest.as_str())
    );
    assert!(certs[0].backup_verified_at.is_some());
    let events = s.vault.audit_events(0, 100).await.unwrap();
    let audit = events
        .iter()
        .find(|(_, e)| e.action == "certificate_backup")
        .unwrap();
    assert!(audit.1.details.contains(&s.certificate.fingerprint));

    let checked = verify(&s.vault, &out, &pass()).await.unwrap();
    assert_eq!(checked.digest, made.digest);
    assert_eq!(checked.vault, made.vault);
    assert!(checked.recorded);
    assert!(checked.missing.is_empty());

    let restore = TempDir::new("restore");
    let key_dir = restore.path().join("keys");
    let done = import(&s.vault, &out, &pass(), &key_dir).await.unwrap();
    assert_eq!(
        done.written,
        std::slice::from_ref(&s.certificate.fingerprint)
    );
    let path = KeyDir::existing(&key_dir)
        .unwrap()
        .legacy_key_path(&s.certificate.fingerprint);
    assert_eq!(std::fs::read(&path).unwrap(), CERT_KEY);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&key_dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    // Again: nothing to do.
    let again = import(&s.vault, &out, &pass(), &key_dir).await.unwrap();
    assert!(again.written.is_empty());
    assert_eq!(
        again.unchanged,
        std::slice::from_ref(&s.certificate.fingerprint)
    );
    // No stray temporary files.
    assert_eq!(std::fs::read_dir(&key_dir).unwrap().count(), 1);
}

#[tokio::test]
async fn bad_files_are_refused_and_nothing_is_written() {
    let s = seeded_vault().await;
    let out = s.dir.path().join("certs.age");
    backup_with(
        &s.vault,
        &KeyDir::existing(&s.key_dir).unwrap(),
        &out,
        &pass(),
        &fast(),
    )
    .await
    .unwrap();
    let good = std::fs::read(&out).unwrap();
    let restore = TempDir::new("bad");
    let key_dir = restore.path().join("keys");

    // Wrong passphrase.
    let wrong = Passphrase::new("Tr0ub4dor&3".to_owned());
    let e = import(&s.vault, &out, &wrong, &key_dir).await.unwrap_err();
    assert!(matches!(e, Error::WrongPassphrase), "{e:?}");
    assert!(!e.to_string().contains("Tr0ub4dor"));
    assert!(matches!(
        verify(&s.vault, &out, &wrong).await,
        Err(Error::WrongPassphrase)
    ));
    assert!(is_empty_or_absent(&key_dir));

    // Truncated, at several places.
    for cut in [10, good.len() / 2, good.len() - 1] {
        let f = restore.path().join(format!("cut-{cut}.age"));
        std::fs::write(&f, &good[..cut]).unwrap();
        let e = import(&s.vault, &f, &pass(), &key_dir).await.unwrap_err();
        assert!(matches!(e, Error::DamagedBackup { .. }), "cut {cut}: {e:?}");
        assert!(is_empty_or_absent(&key_dir));
    }

    // Altered: every byte of the header MAC, bytes of the payload.
    let header_end = good.windows(4).position(|w| w == b"\n---").unwrap();
    let mut places: Vec<usize> = (header_end + 5..header_end + 48).collect();
    places.extend([
        header_end + 50,
        good.len() / 2,
        good.len() - 20,
        good.len() - 1,
    ]);
    for at in places {
        let mut altered = good.clone();
        altered[at] ^= 0x01;
        let f = restore.path().join(format!("altered-{at}.age"));
        std::fs::write(&f, &altered).unwrap();
        let e = import(&s.vault, &f, &pass(), &key_dir).await.unwrap_err();
        assert!(matches!(e, Error::DamagedBackup { .. }), "at {at}: {e:?}");
        assert!(e.to_string().contains("truncated or altered"));
        assert!(is_empty_or_absent(&key_dir));
    }
    // Altered passphrase stanza (`-> scrypt SALT LOG_N` and its body): the
    // scrypt key changes, so it reads as a wrong passphrase, a damaged
    // file, or not a passphrase file; always refused, nothing written.
    let stanza = good.windows(4).position(|w| w == b"-> s").unwrap();
    for at in stanza + 3..header_end {
        let mut altered = good.clone();
        altered[at] ^= 0x01;
        let f = restore.path().join(format!("stanza-{at}.age"));
        std::fs::write(&f, &altered).unwrap();
        let e = import(&s.vault, &f, &pass(), &key_dir).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::WrongPassphrase | Error::DamagedBackup { .. } | Error::NotABackup { .. }
            ),
            "at {at}: {e:?}"
        );
        assert!(is_empty_or_absent(&key_dir));
    }

    // Not an age file at all.
    let f = restore.path().join("plain.txt");
    std::fs::write(&f, b"hello").unwrap();
    let e = verify(&s.vault, &f, &pass()).await.unwrap_err();
    assert!(
        matches!(e, Error::DamagedBackup { .. } | Error::NotABackup { .. }),
        "{e:?}"
    );

    // Another vault's backup.
    let other = seeded_vault().await;
    let e = import(&other.vault, &out, &pass(), &key_dir)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::OtherVault { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("this backup belongs to another vault")
    );
    assert!(is_empty_or_absent(&key_dir));

    // Empty passphrase.
    assert!(matches!(
        verify(&s.vault, &out, &Passphrase::new(String::new())).await,
        Err(Error::EmptyPassphrase)
    ));
}

#[tokio::test]
async fn import_never_replaces_a_different_key() {
    let s = seeded_vault().await;
    let out = s.dir.path().join("certs.age");
    backup_with(
        &s.vault,
        &KeyDir::existing(&s.key_dir).unwrap(),
        &out,
        &pass(),
        &fast(),
    )
    .await
    .unwrap();
    let restore = TempDir::new("conflict");
    let path = KeyDir::existing(restore.path())
        .unwrap()
        .legacy_key_path(&s.certificate.fingerprint);
    std::fs::write(&path, b"something else").unwrap();
    let e = import(&s.vault, &out, &pass(), restore.path())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::KeyFileConflict { .. }), "{e:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"something else");
}

#[tokio::test]
async fn backup_needs_every_key_and_writes_nothing_without() {
    let s = seeded_vault().await;
    let empty = TempDir::new("nokeys");
    let out = s.dir.path().join("certs.age");
    let e = backup_with(
        &s.vault,
        &KeyDir::existing(empty.path()).unwrap(),
        &out,
        &pass(),
        &fast(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, Error::MissingKey { ref owner, .. } if owner == "vault-key"),
        "{e:?}"
    );
    assert!(!out.exists());
    let certs = s.vault.certificates().await.unwrap();
    assert_eq!(certs[0].backup_digest, None);

    // A key file holding another certificate's key is refused too.
    std::fs::write(
        KeyDir::existing(empty.path())
            .unwrap()
            .legacy_key_path(&s.certificate.fingerprint),
        support::OTHER_KEY,
    )
    .unwrap();
    let e = backup_with(
        &s.vault,
        &KeyDir::existing(empty.path()).unwrap(),
        &out,
        &pass(),
        &fast(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::UnusableKey { .. }), "{e:?}");
    assert!(!out.exists());
}
