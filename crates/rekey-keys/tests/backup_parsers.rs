//! The certificate backup's parsers against untrusted bytes: the age file
//! (`open_backup_bytes`) and the manifest inside it (`parse_manifest`), the
//! same functions `cert verify` / `cert import` run and the `backup_file` /
//! `backup_manifest` fuzz targets call.
//!
//! - Property tests: arbitrary and mutated bytes give contents or a clear
//!   error, never a panic; manifests and files round-trip.
//! - A file asking for a huge scrypt work factor is refused at once, before
//!   any scrypt work (it would otherwise cost hours and tens of GiB).
//! - The fuzz seeds (`fuzz/seeds/backup_file`, `fuzz/seeds/backup_manifest`)
//!   are real backups and their manifests; every run checks the committed
//!   ones still open; `cargo xtask fuzz --write-seeds` writes them anew.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rekey_test_support::seeded as support;

use proptest::prelude::*;
use rekey_core::ids::VaultId;
use rekey_core::model::Timestamp;
use rekey_keys::{
    BackupContents, BackupOptions, Error, KeyDir, MAX_WORK_FACTOR, Passphrase, backup_with,
    encode_manifest, open_backup_bytes, parse_manifest, seal_backup_bytes,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{CERT_KEY, OTHER_KEY, USER_KEY, key_fingerprint, seeded_vault};

/// The passphrase of the `backup_file` seeds (the fuzz target uses it).
const FUZZ_PASSPHRASE: &str = "rekey fuzz seed passphrase";
/// The work factor cap of the `backup_file` fuzz target.
const FUZZ_MAX_WORK_FACTOR: u8 = 2;

fn pass() -> Passphrase {
    Passphrase::new(FUZZ_PASSPHRASE.to_owned())
}

fn keys() -> Vec<(String, &'static [u8])> {
    [CERT_KEY, USER_KEY, OTHER_KEY]
        .into_iter()
        .map(|der| (key_fingerprint(der), der))
        .collect()
}

fn manifest(vault: [u8; 16], at: i64, which: &[usize]) -> (Vec<u8>, BackupContents) {
    let all = keys();
    let chosen: Vec<(&str, &[u8])> = which
        .iter()
        .map(|&i| (all[i].0.as_str(), all[i].1))
        .collect();
    let bytes = encode_manifest(VaultId::from_bytes(vault), Timestamp(at), &chosen).unwrap();
    let contents = BackupContents {
        vault: VaultId::from_bytes(vault),
        created_at: Timestamp(at),
        fingerprints: chosen.iter().map(|(fp, _)| (*fp).to_owned()).collect(),
    };
    (bytes.to_vec(), contents)
}

/// Replaces the work factor of the file's scrypt stanza (`-> scrypt SALT N`).
fn with_work_factor(file: &[u8], log_n: &str) -> Vec<u8> {
    let start = file
        .windows(10)
        .position(|w| w == b"-> scrypt ")
        .expect("an scrypt stanza");
    let end = start + file[start..].iter().position(|&b| b == b'\n').unwrap();
    let last_space = start + file[start..end].iter().rposition(|&b| b == b' ').unwrap();
    let mut out = file[..=last_space].to_vec();
    out.extend_from_slice(log_n.as_bytes());
    out.extend_from_slice(&file[end..]);
    out
}

fn assert_clear(e: &Error) {
    assert!(
        matches!(
            e,
            Error::WrongPassphrase
                | Error::DamagedBackup { .. }
                | Error::NotABackup { .. }
                | Error::UnusableKey { .. }
        ),
        "{e:?}"
    );
    assert!(!e.to_string().is_empty());
}

#[test]
fn a_huge_work_factor_is_refused_before_any_work() {
    let (plain, _) = manifest([1; 16], 5, &[0]);
    let file = seal_backup_bytes(&plain, &pass(), 1).unwrap();
    assert!(open_backup_bytes(&file, &pass(), MAX_WORK_FACTOR).is_ok());
    // 21 is one above the cap: age's own default cap (its measured target
    // plus 4) would have run it, for several seconds and 2 GiB. 63 is the
    // largest scrypt takes; 64 and 255 fail in scrypt itself; 256 is not a
    // u8.
    for log_n in ["21", "24", "40", "63", "64", "255"] {
        let evil = with_work_factor(&file, log_n);
        let started = Instant::now();
        let e = open_backup_bytes(&evil, &pass(), MAX_WORK_FACTOR).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "work factor {log_n} took {:?}",
            started.elapsed()
        );
        assert!(matches!(e, Error::DamagedBackup { .. }), "{log_n}: {e:?}");
        assert!(
            e.to_string()
                .contains(&format!("scrypt work factor of {log_n}")),
            "{e}"
        );
    }
    let e =
        open_backup_bytes(&with_work_factor(&file, "256"), &pass(), MAX_WORK_FACTOR).unwrap_err();
    assert!(matches!(e, Error::DamagedBackup { .. }), "{e:?}");
}

#[test]
fn backups_never_ask_for_more_than_the_cap() {
    let (plain, contents) = manifest([2; 16], 6, &[0]);
    // Asking for 40 writes MAX_WORK_FACTOR (and the file opens).
    let file = seal_backup_bytes(&plain, &pass(), 40).unwrap();
    let line = format!(" {MAX_WORK_FACTOR}\n");
    assert!(
        file.windows(line.len()).any(|w| w == line.as_bytes()),
        "the stanza names work factor {MAX_WORK_FACTOR}"
    );
    assert_eq!(
        open_backup_bytes(&file, &pass(), MAX_WORK_FACTOR).unwrap(),
        contents
    );
    // A lowered cap refuses it without work.
    let started = Instant::now();
    assert!(matches!(
        open_backup_bytes(&file, &pass(), 10),
        Err(Error::DamagedBackup { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
}

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(seeds_dir(target))
        .unwrap_or_else(|e| panic!("fuzz/seeds/{target}: {e}"))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn committed_fuzz_seeds_open() {
    let files = seeds("backup_file");
    assert!(!files.is_empty());
    for (name, bytes) in &files {
        open_backup_bytes(bytes, &pass(), FUZZ_MAX_WORK_FACTOR)
            .unwrap_or_else(|e| panic!("backup_file/{name}: {e}"));
    }
    let manifests = seeds("backup_manifest");
    assert!(!manifests.is_empty());
    for (name, bytes) in &manifests {
        parse_manifest(bytes).unwrap_or_else(|e| panic!("backup_manifest/{name}: {e}"));
    }
}

/// Writes the seeds: a backup made by `backup_with` from a seeded vault
/// (work factor 1), files of 0 and 3 keys, and their manifests.
#[tokio::test]
#[ignore = "writes fuzz/seeds anew: cargo xtask fuzz --write-seeds"]
async fn write_fuzz_seeds() {
    let s = seeded_vault().await;
    let out = s.dir.path().join("certs.age");
    let options = BackupOptions {
        work_factor: Some(1),
        actor: "fuzz seeds".to_owned(),
    };
    backup_with(
        &s.vault,
        &KeyDir::existing(&s.key_dir).unwrap(),
        &out,
        &pass(),
        &options,
    )
    .await
    .unwrap();
    let made = std::fs::read(&out).unwrap();
    let vault = open_backup_bytes(&made, &pass(), FUZZ_MAX_WORK_FACTOR)
        .unwrap()
        .vault;
    let mut files = vec![("cert-backup-1-key.age".to_owned(), made)];
    let mut manifests = Vec::new();
    for (name, which) in [
        ("0-keys", vec![]),
        ("1-key", vec![0]),
        ("3-keys", vec![0, 1, 2]),
    ] {
        let (plain, _) = manifest(vault.to_bytes(), 1_764_000_000_000, &which);
        if name != "1-key" {
            files.push((
                format!("sealed-{name}.age"),
                seal_backup_bytes(&plain, &pass(), 1).unwrap(),
            ));
        }
        manifests.push((format!("manifest-{name}"), plain));
    }
    for (target, list) in [("backup_file", files), ("backup_manifest", manifests)] {
        let dir = seeds_dir(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in list {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_manifests_are_refused(tail in proptest::collection::vec(any::<u8>(), 0..256), magic in any::<bool>()) {
        let mut bytes = if magic { b"rekey-cert-backup\0\x01".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        match parse_manifest(&bytes) {
            // Only a header with no keys can parse from random bytes.
            Ok(c) => prop_assert!(c.fingerprints.is_empty()),
            Err(e) => assert_clear(&e),
        }
    }

    #[test]
    fn manifests_round_trip(vault in any::<[u8; 16]>(), at in any::<i64>(), which in proptest::sample::subsequence(vec![0usize, 1, 2], 0..=3)) {
        let (bytes, contents) = manifest(vault, at, &which);
        prop_assert_eq!(parse_manifest(&bytes).unwrap(), contents.clone());
        // The wrong fingerprint for a key is refused.
        if !which.is_empty() {
            let all = keys();
            let mut wrong: Vec<(&str, &[u8])> = which.iter().map(|&i| (all[i].0.as_str(), all[i].1)).collect();
            let other = &all[(which[0] + 1) % 3].0;
            wrong[0].0 = other.as_str();
            let bad = encode_manifest(contents.vault, contents.created_at, &wrong).unwrap();
            let refused = matches!(parse_manifest(&bad), Err(Error::UnusableKey { .. }));
            prop_assert!(refused);
        }
    }

    #[test]
    fn mutated_manifests_parse_or_are_refused(
        which in proptest::sample::subsequence(vec![0usize, 1, 2], 0..=2),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (mut bytes, _) = manifest([3; 16], 7, &which);
        for (at, b) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        match parse_manifest(&bytes) {
            Ok(c) => prop_assert!(c.fingerprints.len() <= which.len()),
            Err(e) => assert_clear(&e),
        }
    }

    #[test]
    fn arbitrary_files_are_refused(tail in proptest::collection::vec(any::<u8>(), 0..256), age in any::<bool>()) {
        let mut bytes = if age { b"age-encryption.org/v1\n-> scrypt ".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        let e = open_backup_bytes(&bytes, &pass(), MAX_WORK_FACTOR).unwrap_err();
        assert_clear(&e);
    }
}

proptest! {
    // Each case runs scrypt (age measures the machine at work factor 10 for
    // every identity): fewer cases.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn files_round_trip(log_n in 1u8..=4, which in proptest::sample::subsequence(vec![0usize, 1, 2], 0..=3)) {
        let (plain, contents) = manifest([4; 16], 8, &which);
        let file = seal_backup_bytes(&plain, &pass(), log_n).unwrap();
        prop_assert_eq!(open_backup_bytes(&file, &pass(), MAX_WORK_FACTOR).unwrap(), contents);
        let wrong = Passphrase::new("not it".to_owned());
        prop_assert!(matches!(open_backup_bytes(&file, &wrong, MAX_WORK_FACTOR), Err(Error::WrongPassphrase)));
    }

    #[test]
    fn altered_files_are_refused(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..3),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let (plain, _) = manifest([5; 16], 9, &[0]);
        let good = seal_backup_bytes(&plain, &pass(), 1).unwrap();
        let mut file = good.clone();
        for (at, x) in &edits {
            let i = at.index(file.len());
            file[i] ^= x;
        }
        if truncate {
            file.truncate(cut.index(file.len()));
        }
        // Two edits of one byte can cancel out.
        prop_assume!(file != good);
        // age authenticates the header and every chunk: any change is
        // refused (a changed work factor either way, without long work).
        let e = open_backup_bytes(&file, &pass(), MAX_WORK_FACTOR).unwrap_err();
        assert_clear(&e);
    }
}
