//! Check 4: every server-held certificate is backed up by `rekey cert
//! backup` and its private key is in the key directory.

use crate::check::{Check, CheckResult, Findings, NOTHING_TO_DO, Outcome};
use crate::facts::{CertificateFacts, Facts};
use crate::time::iso8601;
use rekey_keys::KeyFileState;

/// For every certificate: a backup digest recorded by `rekey cert backup`
/// (which only records after decrypting the file it wrote), newer than the
/// certificate where the vault records its creation time; if a backup file
/// was given, its SHA-256 equals the recorded digest; and its private key
/// is in the key directory as `<fingerprint>.pk8` and matches. Anything
/// else blocks; no key directory given blocks too (the keys cannot be
/// confirmed). No certificates passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Certificates;

impl Check for Certificates {
    fn name(&self) -> &'static str {
        "certificates"
    }

    fn run(&self, facts: &Facts) -> CheckResult {
        let mut f = Findings::new();
        let mut no_backup = Vec::new();
        let mut stale_backup = Vec::new();
        let mut file_mismatch = Vec::new();
        let mut missing_key = Vec::new();
        let mut unusable_key = Vec::new();
        let mut fine = Vec::new();
        for c in &facts.certificates {
            let label = label(c);
            let cert = &c.certificate;
            let mut ok = true;
            match (&cert.backup_digest, cert.backup_verified_at) {
                (Some(digest), Some(at)) => {
                    if c.created_at.is_some_and(|created| at <= created) {
                        stale_backup.push(format!("{label} (backup {})", iso8601(at)));
                        ok = false;
                    }
                    if let Some(Ok(file_digest)) = facts.backup_file.as_ref().map(|b| &b.digest) {
                        if file_digest != digest {
                            file_mismatch.push(label.clone());
                            ok = false;
                        }
                    }
                }
                _ => {
                    no_backup.push(label.clone());
                    ok = false;
                }
            }
            match &c.key_file {
                KeyFileState::Present => {}
                KeyFileState::NotChecked => {}
                KeyFileState::Missing => {
                    missing_key.push(label.clone());
                    ok = false;
                }
                KeyFileState::Unusable(why) => {
                    unusable_key.push(format!("{label}: {why}"));
                    ok = false;
                }
            }
            if ok {
                fine.push(label);
            }
        }
        f.note(
            Outcome::Pass,
            format!("server-held certificates: {}", facts.certificates.len()),
        );
        if let Some(b) = &facts.backup_file {
            match &b.digest {
                Ok(d) => f.note(
                    Outcome::Pass,
                    format!("backup file {} (sha256 {d})", b.path.display()),
                ),
                Err(why) => f.note(
                    Outcome::Block,
                    format!("backup file {} cannot be read: {why}", b.path.display()),
                ),
            }
        }
        f.note_list(
            Outcome::Block,
            "no backup made by `rekey cert backup`",
            &no_backup,
        );
        f.note_list(
            Outcome::Block,
            "backup older than the certificate",
            &stale_backup,
        );
        f.note_list(
            Outcome::Block,
            "not in the given backup file (digest differs)",
            &file_mismatch,
        );
        if facts.key_dir.is_none() && !facts.certificates.is_empty() {
            f.note(
                Outcome::Block,
                "no key directory given: the private keys were not looked for",
            );
        } else if let Some(dir) = &facts.key_dir {
            f.note(Outcome::Pass, format!("key directory {}", dir.display()));
        }
        f.note_list(
            Outcome::Block,
            "private key missing from the key directory",
            &missing_key,
        );
        f.note_list(Outcome::Block, "private key unusable", &unusable_key);
        f.note_list(Outcome::Pass, "backed up, key present", &fine);
        f.finish(self.name(), |o| match o {
            Outcome::Block => "Put each listed certificate's private key in the key directory as <fingerprint>.pk8 (`rekey cert import FILE` restores them from a backup), then run `rekey cert backup --out FILE`.".to_owned(),
            _ => NOTHING_TO_DO.to_owned(),
        })
    }
}

/// `vault-key 3f2a…c901`: the owner and a shortened fingerprint.
fn label(c: &CertificateFacts) -> String {
    let fp = &c.certificate.fingerprint;
    let short = if fp.len() > 16 && fp.is_ascii() {
        format!("{}…{}", &fp[..8], &fp[fp.len() - 4..])
    } else {
        fp.clone()
    };
    format!("{} {short}", c.owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::NOW;
    use crate::facts::BackupFileFacts;
    use rekey_core::ids::{KeyPairId, PrincipalId};
    use rekey_core::model::{Certificate, Timestamp};

    const FP: &str = "3f2a000000000000000000000000000000000000000000000000000000c901";

    fn cert(digest: Option<&str>, key_file: KeyFileState) -> CertificateFacts {
        CertificateFacts {
            certificate: Certificate {
                key_pair: KeyPairId::from_bytes([2; 16]),
                principal: PrincipalId::from_bytes([3; 16]),
                fingerprint: format!("{FP}00"),
                backup_digest: digest.map(str::to_owned),
                backup_verified_at: digest.map(|_| Timestamp(NOW.0 - 1000)),
            },
            owner: "vault-key".to_owned(),
            created_at: None,
            key_file,
        }
    }

    fn facts(certs: Vec<CertificateFacts>) -> Facts {
        let mut f = Facts::new(NOW);
        f.key_dir = Some("/etc/rekey/keys".into());
        f.certificates = certs;
        f
    }

    #[test]
    fn backed_up_and_present_passes() {
        let r = Certificates.run(&facts(vec![cert(Some("d1"), KeyFileState::Present)]));
        assert_eq!(r.outcome, Outcome::Pass, "{r:?}");
        assert_eq!(
            r.evidence,
            [
                "server-held certificates: 1",
                "key directory /etc/rekey/keys",
                "backed up, key present (1): vault-key 3f2a0000…0100"
            ]
        );
        let mut none = Facts::new(NOW);
        none.certificates.clear();
        assert_eq!(Certificates.run(&none).outcome, Outcome::Pass);
    }

    #[test]
    fn missing_backup_blocks() {
        let r = Certificates.run(&facts(vec![cert(None, KeyFileState::Present)]));
        assert_eq!(r.outcome, Outcome::Block);
        assert!(
            r.evidence
                .iter()
                .any(|e| e.starts_with("no backup made by"))
        );
    }

    #[test]
    fn backup_older_than_certificate_blocks() {
        let mut c = cert(Some("d1"), KeyFileState::Present);
        c.created_at = Some(NOW);
        let r = Certificates.run(&facts(vec![c]));
        assert_eq!(r.outcome, Outcome::Block);
        assert!(r.evidence[0].starts_with("backup older than the certificate (1)"));
    }

    #[test]
    fn backup_file_with_another_digest_blocks() {
        let mut f = facts(vec![cert(Some("d1"), KeyFileState::Present)]);
        f.backup_file = Some(BackupFileFacts {
            path: "/b.age".into(),
            digest: Ok("d2".to_owned()),
        });
        let r = Certificates.run(&f);
        assert_eq!(r.outcome, Outcome::Block);
        f.backup_file = Some(BackupFileFacts {
            path: "/b.age".into(),
            digest: Ok("d1".to_owned()),
        });
        assert_eq!(Certificates.run(&f).outcome, Outcome::Pass);
        f.backup_file = Some(BackupFileFacts {
            path: "/b.age".into(),
            digest: Err("No such file".to_owned()),
        });
        assert_eq!(Certificates.run(&f).outcome, Outcome::Block);
    }

    #[test]
    fn missing_or_unusable_key_blocks() {
        let r = Certificates.run(&facts(vec![cert(Some("d"), KeyFileState::Missing)]));
        assert_eq!(r.outcome, Outcome::Block);
        assert!(
            r.evidence
                .iter()
                .any(|e| e.starts_with("private key missing"))
        );
        let r = Certificates.run(&facts(vec![cert(
            Some("d"),
            KeyFileState::Unusable("not an RSA key".to_owned()),
        )]));
        assert_eq!(r.outcome, Outcome::Block);
    }

    #[test]
    fn no_key_directory_blocks() {
        let mut f = facts(vec![cert(Some("d"), KeyFileState::NotChecked)]);
        f.key_dir = None;
        let r = Certificates.run(&f);
        assert_eq!(r.outcome, Outcome::Block);
        assert!(
            r.evidence
                .iter()
                .any(|e| e.starts_with("no key directory given"))
        );
    }
}
