//! Check 9: room for the new grants.

use crate::check::{Check, CheckResult, Findings, NOTHING_TO_DO, Outcome};
use crate::facts::{Facts, StorageFacts};

/// Bytes a grant row costs beyond its envelope (three ids as text, the
/// scheme name, flags, timestamps, index entries): an estimate.
pub const GRANT_ROW_OVERHEAD_BYTES: u64 = 200;

/// Free space asked for, as a multiple of the estimated growth: the new
/// grants themselves, plus as much again for SQLite's journal while a
/// large bundle is written.
pub const GROWTH_SAFETY_FACTOR: u64 = 2;

/// Envelope bytes of one new grant of `target` carrying a 32-byte secret
/// (a record key or a KEK): header, `enc`, nonce, secret, tag
/// (docs/FORMAT.md §1).
#[must_use]
pub(crate) fn new_grant_bytes(target: rekey_core::Target) -> u64 {
    let enc = target.batch_scheme().enc_len().unwrap_or(0) as u64;
    4 + enc + 12 + 32 + 16
}

/// Bytes the new grants add until finalization removes the legacy ones.
/// Each legacy grant is re-wrapped once: the larger of the legacy grant
/// table and as many grants of the target's size (an elliptic-curve grant
/// is smaller than an RSA one, and membership grants make up the
/// difference; a post-quantum hybrid grant is about 4.5 times an
/// RSA-2048 one), plus each row's overhead.
#[must_use]
pub fn estimated_growth(facts: &Facts) -> u64 {
    let grants = facts.legacy.legacy_grants;
    facts
        .legacy
        .legacy_grant_bytes
        .max(grants.saturating_mul(new_grant_bytes(facts.target)))
        .saturating_add(grants.saturating_mul(GRANT_ROW_OVERHEAD_BYTES))
}

/// For a SQLite file: free space on its file system at least
/// [`GROWTH_SAFETY_FACTOR`] times the [`estimated_growth`], warn otherwise
/// (or if the free space cannot be read). Other databases pass, with the
/// estimate as evidence for the database administrator.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskSpace;

impl Check for DiskSpace {
    fn name(&self) -> &'static str {
        "disk-space"
    }

    fn run(&self, facts: &Facts) -> CheckResult {
        let growth = estimated_growth(facts);
        let needed = growth.saturating_mul(GROWTH_SAFETY_FACTOR);
        let mut f = Findings::new();
        f.note(
            Outcome::Pass,
            format!(
                "new grants ({}) add about {} until finalization ({} legacy grants)",
                facts.target,
                bytes(growth),
                facts.legacy.legacy_grants
            ),
        );
        match &facts.storage {
            StorageFacts::SqliteFile { path, free_bytes } => match free_bytes {
                Ok(free) if *free >= needed => f.note(
                    Outcome::Pass,
                    format!("{} free next to {}", bytes(*free), path.display()),
                ),
                Ok(free) => f.note(
                    Outcome::Warn,
                    format!(
                        "only {} free next to {}; {} recommended",
                        bytes(*free),
                        path.display(),
                        bytes(needed)
                    ),
                ),
                Err(why) => f.note(
                    Outcome::Warn,
                    format!("free space next to {} unknown: {why}", path.display()),
                ),
            },
            StorageFacts::InMemory => f.note(Outcome::Pass, "in-memory database: no file to grow"),
            StorageFacts::Remote { backend } => f.note(
                Outcome::Pass,
                format!(
                    "not a local SQLite file ({backend}): make sure the database server has {} free",
                    bytes(needed)
                ),
            ),
        }
        f.finish(self.name(), |o| match o {
            Outcome::Warn => "Free disk space next to the vault file (or move it to a larger disk) before starting.".to_owned(),
            _ => NOTHING_TO_DO.to_owned(),
        })
    }
}

/// `1.5 MiB`, `312 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::NOW;

    fn facts(free: Result<u64, String>) -> Facts {
        let mut f = Facts::new(NOW);
        f.legacy.legacy_grants = 1000;
        f.legacy.legacy_grant_bytes = 260_000;
        f.storage = StorageFacts::SqliteFile {
            path: "/var/lib/rekey/vault.db".into(),
            free_bytes: free,
        };
        f
    }

    #[test]
    fn enough_room_passes() {
        let f = facts(Ok(10 << 20));
        assert_eq!(estimated_growth(&f), 460_000);
        let r = DiskSpace.run(&f);
        assert_eq!(r.outcome, Outcome::Pass);
        assert_eq!(
            r.evidence,
            [
                "new grants (hpke-p256) add about 449.2 KiB until finalization (1000 legacy grants)",
                "10.0 MiB free next to /var/lib/rekey/vault.db"
            ]
        );
    }

    #[test]
    fn the_hybrid_target_needs_room_for_its_larger_grants() {
        let mut f = facts(Ok(10 << 20));
        f.target = rekey_core::Target::HpkeMlKem768X25519;
        assert_eq!(new_grant_bytes(f.target), 1184);
        assert_eq!(new_grant_bytes(rekey_core::Target::HpkeP256), 129);
        assert_eq!(estimated_growth(&f), 1000 * (1184 + 200));
        let r = DiskSpace.run(&f);
        assert!(r.evidence[0].starts_with("new grants (hpke-mlkem768-x25519) add about 1.3 MiB"));
    }

    #[test]
    fn little_room_or_unknown_warns() {
        let r = DiskSpace.run(&facts(Ok(500_000)));
        assert_eq!(r.outcome, Outcome::Warn);
        assert_eq!(
            r.evidence[0],
            "only 488.3 KiB free next to /var/lib/rekey/vault.db; 898.4 KiB recommended"
        );
        let r = DiskSpace.run(&facts(Err("permission denied".to_owned())));
        assert_eq!(r.outcome, Outcome::Warn);
    }

    #[test]
    fn other_databases_pass() {
        let mut f = facts(Ok(0));
        f.storage = StorageFacts::Remote {
            backend: "postgres".to_owned(),
        };
        let r = DiskSpace.run(&f);
        assert_eq!(r.outcome, Outcome::Pass);
        assert!(r.evidence[1].starts_with("not a local SQLite file (postgres)"));
        f.storage = StorageFacts::InMemory;
        assert_eq!(DiskSpace.run(&f).outcome, Outcome::Pass);
    }
}
