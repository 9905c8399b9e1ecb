//! Checks 2 and 3: offline add-ons and mobile apps holding changes that
//! never reached the vault.

use crate::check::{Check, CheckResult, Findings, NOTHING_TO_DO, Outcome};
use crate::facts::Facts;
use crate::time::iso8601;
use rekey_core::model::{Device, DeviceKind};

/// When offline access is allowed: offline add-ons with unsynchronised
/// changes block (the changes are lost once the vault is read-only),
/// devices never synchronised (sync state unknown) warn, devices written
/// off by the administrator pass. When offline access is not allowed,
/// devices still reporting unsynchronised changes warn.
#[derive(Clone, Copy, Debug, Default)]
pub struct OfflineDevices;

/// The same as [`OfflineDevices`] for mobile apps, when mobile sync is
/// allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct MobileDevices;

impl Check for OfflineDevices {
    fn name(&self) -> &'static str {
        "offline-devices"
    }

    fn run(&self, facts: &Facts) -> CheckResult {
        run(
            self.name(),
            facts,
            DeviceKind::OfflineAddon,
            facts.settings.offline_access_allowed,
            "offline access",
            "offline add-on",
        )
    }
}

impl Check for MobileDevices {
    fn name(&self) -> &'static str {
        "mobile-devices"
    }

    fn run(&self, facts: &Facts) -> CheckResult {
        run(
            self.name(),
            facts,
            DeviceKind::Mobile,
            facts.settings.mobile_sync_allowed,
            "mobile sync",
            "mobile app",
        )
    }
}

fn run(
    name: &str,
    facts: &Facts,
    kind: DeviceKind,
    allowed: bool,
    setting: &str,
    device_word: &str,
) -> CheckResult {
    let devices: Vec<&Device> = facts.devices.iter().filter(|d| d.kind == kind).collect();
    let describe = |d: &Device| {
        let last = d.last_sync_at.map_or_else(
            || "never synchronised".to_owned(),
            |t| format!("last sync {}", iso8601(t)),
        );
        format!(
            "{} of {} ({} changes, {last})",
            d.id,
            facts.name_of(d.owner),
            d.unsynced_changes
        )
    };
    let unsynced: Vec<String> = devices
        .iter()
        .filter(|d| !d.written_off && d.unsynced_changes > 0)
        .map(|d| describe(d))
        .collect();
    let unknown: Vec<String> = devices
        .iter()
        .filter(|d| !d.written_off && d.unsynced_changes == 0 && d.last_sync_at.is_none())
        .map(|d| describe(d))
        .collect();
    let written_off: Vec<String> = devices
        .iter()
        .filter(|d| d.written_off)
        .map(|d| d.id.clone())
        .collect();

    let mut f = Findings::new();
    if allowed {
        f.note(
            Outcome::Pass,
            format!("{setting} is allowed; {device_word}s: {}", devices.len()),
        );
        f.note_list(Outcome::Block, "unsynchronised changes", &unsynced);
        f.note_list(Outcome::Warn, "sync state unknown", &unknown);
    } else {
        f.note(Outcome::Pass, format!("{setting} is not allowed"));
        f.note_list(
            Outcome::Warn,
            "still reporting unsynchronised changes",
            &unsynced,
        );
    }
    f.note_list(Outcome::Pass, "written off", &written_off);
    let device_word = device_word.to_owned();
    f.finish(name, move |o| match o {
        Outcome::Block => format!(
            "Have each listed {device_word} synchronise, or write it off with `rekey device write-off DEVICE` (recorded in the audit log), then run preflight again."
        ),
        Outcome::Warn => format!(
            "Have each listed {device_word} synchronise once, or write it off with `rekey device write-off DEVICE`."
        ),
        Outcome::Pass => NOTHING_TO_DO.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::NOW;
    use rekey_core::ids::PrincipalId;
    use rekey_core::model::Timestamp;

    fn device(id: &str, kind: DeviceKind, changes: u32, synced: bool, off: bool) -> Device {
        Device {
            id: id.to_owned(),
            owner: PrincipalId::from_bytes([1; 16]),
            kind,
            last_sync_at: synced.then_some(Timestamp(NOW.0 - 3_600_000)),
            unsynced_changes: changes,
            written_off: off,
        }
    }

    fn facts(offline: bool, mobile: bool, devices: Vec<Device>) -> Facts {
        let mut f = Facts::new(NOW);
        f.settings.offline_access_allowed = offline;
        f.settings.mobile_sync_allowed = mobile;
        f.names
            .insert(PrincipalId::from_bytes([1; 16]), "alice".to_owned());
        f.devices = devices;
        f
    }

    #[test]
    fn synced_or_written_off_passes() {
        let f = facts(
            true,
            true,
            vec![
                device("laptop", DeviceKind::OfflineAddon, 0, true, false),
                device("old-laptop", DeviceKind::OfflineAddon, 7, false, true),
                device("phone", DeviceKind::Mobile, 0, true, false),
            ],
        );
        let r = OfflineDevices.run(&f);
        assert_eq!(r.outcome, Outcome::Pass, "{r:?}");
        assert_eq!(
            r.evidence,
            [
                "offline access is allowed; offline add-ons: 2",
                "written off (1): old-laptop"
            ]
        );
        assert_eq!(MobileDevices.run(&f).outcome, Outcome::Pass);
    }

    #[test]
    fn unsynchronised_changes_block() {
        let f = facts(
            true,
            true,
            vec![
                device("laptop", DeviceKind::OfflineAddon, 3, true, false),
                device("phone", DeviceKind::Mobile, 2, false, false),
            ],
        );
        let r = OfflineDevices.run(&f);
        assert_eq!(r.outcome, Outcome::Block);
        assert_eq!(
            r.evidence[0],
            "unsynchronised changes (1): laptop of alice (3 changes, last sync 2025-06-01T11:00:00Z)"
        );
        let r = MobileDevices.run(&f);
        assert_eq!(r.outcome, Outcome::Block);
        assert!(r.evidence[0].contains("phone of alice (2 changes, never synchronised)"));
    }

    #[test]
    fn unknown_sync_state_warns() {
        let f = facts(
            true,
            true,
            vec![device("phone", DeviceKind::Mobile, 0, false, false)],
        );
        let r = MobileDevices.run(&f);
        assert_eq!(r.outcome, Outcome::Warn);
        assert!(r.evidence[0].starts_with("sync state unknown (1): phone"));
    }

    #[test]
    fn not_allowed_passes_but_warns_about_stranded_changes() {
        let clean = facts(
            false,
            false,
            vec![device("phone", DeviceKind::Mobile, 0, false, false)],
        );
        assert_eq!(MobileDevices.run(&clean).outcome, Outcome::Pass);
        let stranded = facts(
            false,
            false,
            vec![device("laptop", DeviceKind::OfflineAddon, 1, true, false)],
        );
        let r = OfflineDevices.run(&stranded);
        assert_eq!(r.outcome, Outcome::Warn);
        assert_eq!(r.evidence[1], "offline access is not allowed");
    }
}
