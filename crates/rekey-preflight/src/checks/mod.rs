//! The ten preparation checks, one type each. See the crate docs for what
//! each one means.

mod certificates;
mod components;
mod devices;
mod directory;
mod disk;
mod legacy;
mod servers;
mod users;

pub use certificates::Certificates;
pub use components::ComponentVersions;
pub use devices::{MobileDevices, OfflineDevices};
pub use directory::DirectoryTokens;
pub use disk::{DiskSpace, GRANT_ROW_OVERHEAD_BYTES, GROWTH_SAFETY_FACTOR, estimated_growth};
pub use legacy::LegacyData;
pub use servers::{ActiveServer, HEARTBEAT_WINDOW_MS, ServerCertificates};
pub use users::{INACTIVE_AFTER_MS, Users};

use crate::check::Check;

/// Every check, in report order.
#[must_use]
pub fn all() -> Vec<Box<dyn Check>> {
    vec![
        Box::new(ComponentVersions),
        Box::new(OfflineDevices),
        Box::new(MobileDevices),
        Box::new(Certificates),
        Box::new(Users),
        Box::new(ActiveServer),
        Box::new(ServerCertificates),
        Box::new(DirectoryTokens),
        Box::new(LegacyData),
        Box::new(DiskSpace),
    ]
}

#[cfg(test)]
pub(crate) mod test_support {
    use rekey_core::model::Timestamp;

    /// A fixed "now" for check tests: 2025-06-01T12:00:00Z.
    pub(crate) const NOW: Timestamp = Timestamp(1_748_779_200_000);
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_stable() {
        let names: Vec<&str> = super::all().iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "component-versions",
                "offline-devices",
                "mobile-devices",
                "certificates",
                "users",
                "active-server",
                "server-certificates",
                "directory-tokens",
                "legacy-data",
                "disk-space"
            ]
        );
    }
}
