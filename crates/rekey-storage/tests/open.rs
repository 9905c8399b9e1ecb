//! Opening a vault writes nothing: a missing SQLite file is not created
//! (whatever `mode` the URL asks for), a foreign database is left byte for
//! byte as it was (no switch to WAL), and `init` creates its file readable
//! by its owner only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rekey_storage::{Error, Vault};
use rekey_test_support::seeded::TempDir;
use sea_orm::ConnectionTrait;

/// SQLite's header: bytes 18 and 19 are 2 in WAL mode, 1 otherwise.
fn wal(path: &std::path::Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes[18] == 2 && bytes[19] == 2
}

#[tokio::test]
async fn open_creates_no_file() {
    let dir = TempDir::new("open-missing");
    let path = dir.path().join("typo.db");
    for url in [
        format!("sqlite://{}", path.display()),
        format!("sqlite://{}?mode=rwc", path.display()),
    ] {
        let err = Vault::open(&url).await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err}");
        assert!(!path.exists(), "{url} created {}", path.display());
    }
}

#[tokio::test]
async fn open_leaves_a_foreign_database_untouched() {
    let dir = TempDir::new("open-foreign");
    let path = dir.path().join("other-app.db");
    {
        let db = sea_orm::Database::connect(format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        db.execute_unprepared("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            .await
            .unwrap();
        db.close().await.unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    assert!(!wal(&path));
    let err = Vault::open(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotAVault { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
    assert!(!dir.path().join("other-app.db-wal").exists());
}

#[tokio::test]
async fn init_creates_an_owner_only_file_in_wal_mode() {
    let dir = TempDir::new("init-mode");
    let path = dir.path().join("vault.db");
    let vault = Vault::init(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    drop(vault);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    assert!(wal(&path), "the vault is in WAL mode");
    // And it opens again without `init`.
    Vault::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
}
