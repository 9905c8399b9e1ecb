//! Component versions: the minimum that speaks the new (P-256) scheme and
//! the latest known release, compared semver-style.

use std::cmp::Ordering;

/// The components preparation requires, with the first version that speaks
/// the new scheme and the latest version known to this build of rekey.
///
/// | component        | minimum (block below) | latest known (warn below) |
/// |------------------|-----------------------|---------------------------|
/// | `server`         | 10.0.0                | 10.1.0                    |
/// | `desktop_client` | 10.0.0                | 10.1.0                    |
/// | `web_client`     | 10.0.0                | 10.1.0                    |
pub const REQUIRED_COMPONENTS: &[ComponentRequirement] = &[
    ComponentRequirement {
        name: "server",
        minimum: "10.0.0",
        latest: "10.1.0",
    },
    ComponentRequirement {
        name: "desktop_client",
        minimum: "10.0.0",
        latest: "10.1.0",
    },
    ComponentRequirement {
        name: "web_client",
        minimum: "10.0.0",
        latest: "10.1.0",
    },
];

/// What one component must run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ComponentRequirement {
    /// The component's name as it reports it.
    pub name: &'static str,
    /// The first version that speaks ECC: below it, preparation blocks.
    pub minimum: &'static str,
    /// The latest version known: below it, preparation warns.
    pub latest: &'static str,
}

/// A version number: `MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`, with an
/// optional leading `v`. Missing parts are 0; a pre-release sorts before its
/// release (`10.0.0-rc1 < 10.0.0`); build metadata is ignored; pre-release
/// labels are compared as text.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Version {
    numbers: [u64; 3],
    pre: Option<String>,
}

impl Version {
    /// Parses a version, or `None` if it is not one.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
        let t = t.split('+').next().unwrap_or(t);
        let (core, pre) = match t.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => (core, Some(pre.to_owned())),
            Some(_) => return None,
            None => (t, None),
        };
        let mut numbers = [0u64; 3];
        let mut parts = core.split('.');
        for (i, slot) in numbers.iter_mut().enumerate() {
            match parts.next() {
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    *slot = p.parse().ok()?;
                }
                None if i > 0 => break,
                _ => return None,
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(Self { numbers, pre })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers
            .cmp(&other.numbers)
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parses_and_orders() {
        assert_eq!(v("10"), v("10.0.0"));
        assert_eq!(v("v10.1"), v("10.1.0"));
        assert_eq!(v("10.1.0+build.7"), v("10.1.0"));
        assert!(v("9.9.9") < v("10.0.0"));
        assert!(v("10.0.0-rc1") < v("10.0.0"));
        assert!(v("10.0.0-rc1") < v("10.0.0-rc2"));
        assert!(v("10.0.10") > v("10.0.9"));
        for bad in ["", "x", "10.a", "1.2.3.4", "10.-1", "10.0.0-", ".1"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn requirements_parse() {
        for r in REQUIRED_COMPONENTS {
            assert!(v(r.minimum) <= v(r.latest), "{}", r.name);
        }
    }
}
