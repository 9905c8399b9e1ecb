//! Check 6: exactly one active server; check 7: every server holds every
//! certificate's private key.

use crate::check::{Check, CheckResult, Findings, NOTHING_TO_DO, Outcome};
use crate::facts::Facts;
use crate::time::{MINUTE_MS, age};

/// A server whose last heartbeat is at most this old (5 minutes) counts as
/// active.
pub const HEARTBEAT_WINDOW_MS: i64 = 5 * MINUTE_MS;

/// Exactly one server has sent a heartbeat within
/// [`HEARTBEAT_WINDOW_MS`]: pass. None, or more than one: block, listed.
/// Servers with older heartbeats are listed as inactive.
#[derive(Clone, Copy, Debug, Default)]
pub struct ActiveServer;

impl Check for ActiveServer {
    fn name(&self) -> &'static str {
        "active-server"
    }

    fn run(&self, facts: &Facts) -> CheckResult {
        let mut active = Vec::new();
        let mut inactive = Vec::new();
        for s in &facts.servers {
            let line = format!("{} (heartbeat {})", s.name, age(facts.now, s.heartbeat_at));
            if facts.now.0.saturating_sub(s.heartbeat_at.0) <= HEARTBEAT_WINDOW_MS {
                active.push(line);
            } else {
                inactive.push(line);
            }
        }
        let mut f = Findings::new();
        match active.len() {
            0 => f.note(
                Outcome::Block,
                "no server sent a heartbeat in the last 5 minutes",
            ),
            1 => f.note_list(Outcome::Pass, "active", &active),
            _ => f.note_list(Outcome::Block, "more than one server active", &active),
        }
        f.note_list(Outcome::Pass, "inactive", &inactive);
        let none = active.is_empty();
        f.finish(self.name(), move |o| match o {
            Outcome::Block if none => "Start the rekey server that will run the migration (it registers with a heartbeat), then run preflight again.".to_owned(),
            Outcome::Block => "Stop every server but the one that will run the migration, wait 5 minutes, and run preflight again.".to_owned(),
            _ => NOTHING_TO_DO.to_owned(),
        })
    }
}

/// Every server in the vault's server list reported (with its last
/// heartbeat, or `rekey cert import` on it) the fingerprint of every
/// server-held certificate: pass. A server that lacks one warns, listing
/// what it lacks: it cannot serve those keys, and finalize refuses while a
/// server lacks a new certificate. No certificates, or no servers, pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerCertificates;

impl Check for ServerCertificates {
    fn name(&self) -> &'static str {
        "server-certificates"
    }

    fn run(&self, facts: &Facts) -> CheckResult {
        let mut lacking = Vec::new();
        let mut complete = Vec::new();
        for s in &facts.servers {
            let missing: Vec<String> = facts
                .certificates
                .iter()
                .filter(|c| {
                    !s.certificate_fingerprints
                        .contains(&c.certificate.fingerprint)
                })
                .map(|c| format!("{} {}", c.owner, short(&c.certificate.fingerprint)))
                .collect();
            if missing.is_empty() {
                complete.push(s.name.clone());
            } else {
                lacking.push(format!(
                    "{} lacks {} of {}: {}",
                    s.name,
                    missing.len(),
                    facts.certificates.len(),
                    missing.join(", ")
                ));
            }
        }
        let mut f = Findings::new();
        f.note_list(
            Outcome::Warn,
            "servers without every certificate key",
            &lacking,
        );
        f.note_list(
            Outcome::Pass,
            "servers with every certificate key",
            &complete,
        );
        f.finish(self.name(), |o| match o {
            Outcome::Warn => "On each listed server, run `rekey cert import BACKUP --server-name NAME` with the latest backup (its key directory then holds every certificate key, and the vault records it).".to_owned(),
            _ => NOTHING_TO_DO.to_owned(),
        })
    }
}

/// A fingerprint shortened for evidence: `3f2a0000…c901`.
fn short(fp: &str) -> String {
    if fp.len() > 16 && fp.is_ascii() {
        format!("{}…{}", &fp[..8], &fp[fp.len() - 4..])
    } else {
        fp.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::NOW;
    use rekey_core::model::{Server, Timestamp};

    fn server(name: &str, ago_ms: i64) -> Server {
        Server {
            name: name.to_owned(),
            heartbeat_at: Timestamp(NOW.0 - ago_ms),
            certificate_fingerprints: Vec::new(),
        }
    }

    fn facts(servers: Vec<Server>) -> Facts {
        let mut f = Facts::new(NOW);
        f.servers = servers;
        f
    }

    #[test]
    fn one_active_server_passes() {
        let r = ActiveServer.run(&facts(vec![
            server("a", 30_000),
            server("b", 2 * 24 * 3_600_000),
        ]));
        assert_eq!(r.outcome, Outcome::Pass);
        assert_eq!(
            r.evidence,
            [
                "active (1): a (heartbeat 30 s ago)",
                "inactive (1): b (heartbeat 2 days ago)"
            ]
        );
    }

    #[test]
    fn none_active_blocks() {
        let r = ActiveServer.run(&facts(vec![server("a", HEARTBEAT_WINDOW_MS + 1)]));
        assert_eq!(r.outcome, Outcome::Block);
        assert!(r.remedy.starts_with("Start the rekey server"));
        assert_eq!(ActiveServer.run(&facts(vec![])).outcome, Outcome::Block);
    }

    #[test]
    fn two_active_block() {
        let r = ActiveServer.run(&facts(vec![
            server("a", 0),
            server("b", HEARTBEAT_WINDOW_MS),
        ]));
        assert_eq!(r.outcome, Outcome::Block);
        assert_eq!(
            r.evidence[0],
            "more than one server active (2): a (heartbeat 0 s ago), b (heartbeat 5 min ago)"
        );
        assert!(r.remedy.starts_with("Stop every server"));
    }

    #[test]
    fn a_server_without_a_certificate_key_warns_naming_it() {
        use crate::facts::CertificateFacts;
        use rekey_core::ids::{KeyPairId, PrincipalId};
        use rekey_core::model::Certificate;
        let cert = |fp: &str| CertificateFacts {
            certificate: Certificate {
                key_pair: KeyPairId::from_bytes([2; 16]),
                principal: PrincipalId::from_bytes([3; 16]),
                fingerprint: fp.to_owned(),
                backup_digest: None,
                backup_verified_at: None,
            },
            owner: "vault-key".to_owned(),
            created_at: None,
            key_file: rekey_keys::KeyFileState::NotChecked,
        };
        let fp1 = "11".repeat(32);
        let fp2 = "22".repeat(32);
        let mut f = facts(vec![server("a", 0), server("b", 0)]);
        f.servers[0].certificate_fingerprints = vec![fp1.clone(), fp2.clone()];
        f.servers[1].certificate_fingerprints = vec![fp1.clone()];
        f.certificates = vec![cert(&fp1), cert(&fp2)];
        let r = ServerCertificates.run(&f);
        assert_eq!(r.outcome, Outcome::Warn);
        assert_eq!(
            r.evidence,
            [
                "servers without every certificate key (1): b lacks 1 of 2: vault-key 22222222…2222",
                "servers with every certificate key (1): a"
            ]
        );
        assert!(r.remedy.contains("rekey cert import"));
        f.servers[1].certificate_fingerprints.push(fp2);
        assert_eq!(ServerCertificates.run(&f).outcome, Outcome::Pass);
        f.servers.clear();
        assert_eq!(ServerCertificates.run(&f).outcome, Outcome::Pass);
    }
}
