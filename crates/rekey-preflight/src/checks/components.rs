//! Check 1: every component speaks the new scheme.

use crate::check::{Check, CheckResult, Findings, NOTHING_TO_DO, Outcome};
use crate::facts::Facts;
use crate::version::{REQUIRED_COMPONENTS, Version};

/// Server, desktop client and web client are at or above the first
/// version that speaks ECC (block below), and at the latest known version
/// (warn below). A component that does not report its version, or reports
/// one that cannot be read, warns.
#[derive(Clone, Copy, Debug, Default)]
pub struct ComponentVersions;

impl Check for ComponentVersions {
    fn name(&self) -> &'static str {
        "component-versions"
    }

    fn run(&self, facts: &Facts) -> CheckResult {
        let mut f = Findings::new();
        for req in REQUIRED_COMPONENTS {
            let Some(component) = facts.components.iter().find(|c| c.name == req.name) else {
                f.note(Outcome::Warn, format!("{}: version not reported", req.name));
                continue;
            };
            let shown = &component.version;
            let (Some(found), Some(minimum), Some(latest)) = (
                Version::parse(shown),
                Version::parse(req.minimum),
                Version::parse(req.latest),
            ) else {
                f.note(
                    Outcome::Warn,
                    format!("{}: version {shown:?} cannot be read", req.name),
                );
                continue;
            };
            if found < minimum {
                f.note(
                    Outcome::Block,
                    format!(
                        "{}: {shown} does not speak ECC (needs {} or later)",
                        req.name, req.minimum
                    ),
                );
            } else if found < latest {
                f.note(
                    Outcome::Warn,
                    format!("{}: {shown} (latest known {})", req.name, req.latest),
                );
            } else {
                f.note(Outcome::Pass, format!("{}: {shown}", req.name));
            }
        }
        f.finish(self.name(), |o| match o {
            Outcome::Block => "Upgrade the components listed to version 10.0.0 or later before starting.".to_owned(),
            Outcome::Warn => "Upgrade the components listed to the latest version, and make sure every component reports its version.".to_owned(),
            Outcome::Pass => NOTHING_TO_DO.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::NOW;
    use rekey_core::model::Component;

    fn facts(versions: &[(&str, &str)]) -> Facts {
        let mut f = Facts::new(NOW);
        f.components = versions
            .iter()
            .map(|(n, v)| Component {
                name: (*n).to_owned(),
                version: (*v).to_owned(),
            })
            .collect();
        f
    }

    #[test]
    fn latest_everywhere_passes() {
        let r = ComponentVersions.run(&facts(&[
            ("server", "10.1.0"),
            ("desktop_client", "v10.2"),
            ("web_client", "10.1.0"),
            ("browser_extension", "1.0"),
        ]));
        assert_eq!(r.outcome, Outcome::Pass, "{r:?}");
        assert_eq!(r.evidence.len(), 3);
    }

    #[test]
    fn not_latest_or_unknown_warns() {
        let r = ComponentVersions.run(&facts(&[("server", "10.0.3"), ("desktop_client", "ten")]));
        assert_eq!(r.outcome, Outcome::Warn);
        assert_eq!(
            r.evidence,
            [
                "server: 10.0.3 (latest known 10.1.0)",
                "desktop_client: version \"ten\" cannot be read",
                "web_client: version not reported"
            ]
        );
    }

    #[test]
    fn below_minimum_blocks() {
        let r = ComponentVersions.run(&facts(&[
            ("server", "10.1.0"),
            ("desktop_client", "10.0.0-rc1"),
            ("web_client", "9.8.1"),
        ]));
        assert_eq!(r.outcome, Outcome::Block);
        assert!(r.evidence[1].contains("web_client: 9.8.1 does not speak ECC"));
        assert!(r.evidence[0].contains("desktop_client: 10.0.0-rc1 does not speak ECC"));
    }
}
