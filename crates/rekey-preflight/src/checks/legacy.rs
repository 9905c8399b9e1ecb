//! Check 8: the legacy data itself is sound.

use crate::check::{Check, CheckResult, Findings, NOTHING_TO_DO, Outcome};
use crate::facts::Facts;

/// Every legacy grant parses as an envelope of a legacy scheme, every
/// grantee has a legacy RSA public key that parses, and no record is left
/// without any grant: block otherwise. Legacy keys whose modulus is not
/// 2048, 3072 or 4096 bits warn, and so does a vault that cannot list
/// records without a grant (not checked).
#[derive(Clone, Copy, Debug, Default)]
pub struct LegacyData;

impl Check for LegacyData {
    fn name(&self) -> &'static str {
        "legacy-data"
    }

    fn run(&self, facts: &Facts) -> CheckResult {
        let s = &facts.legacy;
        let mut f = Findings::new();
        f.note(
            Outcome::Pass,
            format!(
                "{} legacy grants ({} bytes) to {} grantees; {} principals scanned",
                s.legacy_grants, s.legacy_grant_bytes, s.grantees, s.principals
            ),
        );
        f.note_list(
            Outcome::Block,
            "grants that do not parse",
            &s.unreadable_grants,
        );
        f.note_list(
            Outcome::Block,
            "legacy grants of a non-legacy scheme",
            &s.non_legacy_grants,
        );
        f.note_list(
            Outcome::Block,
            "grantees without a usable legacy public key",
            &s.grantees_without_key,
        );
        f.note_list(
            Outcome::Block,
            "legacy public keys that do not parse",
            &s.unreadable_public_keys,
        );
        match &s.records_without_grant {
            Some(records) => {
                f.note_list(Outcome::Block, "records without any grant", records);
            }
            None => f.note(
                Outcome::Warn,
                "records without any grant: not checked (this vault cannot list them yet)",
            ),
        }
        f.note_list(
            Outcome::Warn,
            "RSA keys of an unusual size",
            &s.unusual_modulus,
        );
        f.finish(self.name(), |o| match o {
            Outcome::Block => "Repair or remove each listed grant, key or record in the legacy vault (or re-share the record), then run preflight again.".to_owned(),
            Outcome::Warn => "Review the listed items: they will migrate, but check them with the vault's vendor if unexpected.".to_owned(),
            Outcome::Pass => NOTHING_TO_DO.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_support::NOW;
    use crate::facts::LegacyScan;
    use rekey_core::envelope::{Envelope, Scheme};
    use rekey_core::ids::{GrantId, KeyPairId, PrincipalId, RecordId, Subject};
    use rekey_core::model::{
        GrantOrigin, GrantRecord, KeyCustody, KeyPairRecord, KeyState, MigrationState, Principal,
        PrincipalKind, UserStatus,
    };
    use rekey_core::{LegacyRsaPrivateKey, wrap_legacy_grant};

    const KEY: &[u8] = include_bytes!("../../../rekey-core/tests/fixtures/rsa-2048-a.pk8");

    fn principal(name: &str) -> Principal {
        Principal {
            id: PrincipalId::random(),
            kind: PrincipalKind::User,
            name: name.to_owned(),
            status: UserStatus::Active,
            custody: KeyCustody::E2ee,
            service: None,
            migration: MigrationState::Pending,
        }
    }

    fn legacy_key(p: &Principal, spki: Vec<u8>) -> KeyPairRecord {
        KeyPairRecord {
            id: KeyPairId::random(),
            principal: p.id,
            scheme: Scheme::RsaOaepSha256,
            public_key: spki,
            wrapped_private_key: None,
            state: KeyState::Legacy,
        }
    }

    fn grant(p: &Principal, envelope: Envelope) -> GrantRecord {
        GrantRecord {
            id: GrantId::random(),
            recipient: p.id,
            subject: Subject::RecordKey(RecordId::random()),
            envelope,
            origin: GrantOrigin::Legacy,
            created_at: None,
        }
    }

    fn legacy_envelope() -> Envelope {
        let key = LegacyRsaPrivateKey::from_pkcs8_der(KEY).unwrap();
        wrap_legacy_grant(&key.public_key(), Scheme::RsaOaepSha256, &[7u8; 32]).unwrap()
    }

    fn sound_scan() -> LegacyScan {
        let key = LegacyRsaPrivateKey::from_pkcs8_der(KEY).unwrap();
        let alice = principal("alice");
        let mut scan = LegacyScan {
            records_without_grant: Some(Vec::new()),
            ..LegacyScan::default()
        };
        let keys = [legacy_key(&alice, key.public_key().to_spki_der().to_vec())];
        let grants = [grant(&alice, legacy_envelope())];
        scan.observe(&alice, Ok(&keys), &grants, None);
        scan
    }

    fn facts(scan: LegacyScan) -> Facts {
        let mut f = Facts::new(NOW);
        f.legacy = scan;
        f
    }

    #[test]
    fn sound_data_passes() {
        let scan = sound_scan();
        assert_eq!(scan.legacy_grants, 1);
        assert_eq!(scan.grantees, 1);
        let r = LegacyData.run(&facts(scan));
        assert_eq!(r.outcome, Outcome::Pass, "{r:?}");
        assert!(r.evidence[0].starts_with("1 legacy grants ("));
    }

    #[test]
    fn unchecked_records_or_unusual_modulus_warn() {
        let mut scan = sound_scan();
        scan.records_without_grant = None;
        assert_eq!(LegacyData.run(&facts(scan)).outcome, Outcome::Warn);
        let mut scan = sound_scan();
        scan.unusual_modulus.push("bob: 3000 bits".to_owned());
        let r = LegacyData.run(&facts(scan));
        assert_eq!(r.outcome, Outcome::Warn);
        assert_eq!(
            r.evidence[0],
            "RSA keys of an unusual size (1): bob: 3000 bits"
        );
    }

    /// Two halves scanned apart and absorbed read as one scan of all.
    #[test]
    fn halves_absorbed_equal_one_scan() {
        let people: Vec<Principal> = ["ann", "ben", "cy", "dee"]
            .iter()
            .map(|n| principal(n))
            .collect();
        let grants: Vec<Vec<GrantRecord>> = people
            .iter()
            .enumerate()
            .map(|(i, p)| (0..=i).map(|_| grant(p, legacy_envelope())).collect())
            .collect();
        let observe = |scan: &mut LegacyScan, i: usize| {
            // No key pair: each grantee is listed, in the order observed.
            scan.observe(&people[i], Ok(&[]), &grants[i], None);
        };
        let mut whole = LegacyScan::default();
        (0..4).for_each(|i| observe(&mut whole, i));
        let (mut first, mut second) = (LegacyScan::default(), LegacyScan::default());
        (0..2).for_each(|i| observe(&mut first, i));
        (2..4).for_each(|i| observe(&mut second, i));
        first.absorb(second);
        assert_eq!(first, whole);
        assert_eq!(whole.legacy_grants, 10);
        assert_eq!(whole.grantees_without_key, ["ann", "ben", "cy", "dee"]);
    }

    #[test]
    fn grantee_without_key_blocks() {
        let mut scan = sound_scan();
        let bob = principal("bob");
        scan.observe(&bob, Ok(&[]), &[grant(&bob, legacy_envelope())], None);
        let r = LegacyData.run(&facts(scan));
        assert_eq!(r.outcome, Outcome::Block);
        assert_eq!(
            r.evidence[0],
            "grantees without a usable legacy public key (1): bob"
        );
    }

    #[test]
    fn bad_public_key_blocks() {
        let mut scan = sound_scan();
        let carol = principal("carol");
        let keys = [legacy_key(&carol, b"not a key".to_vec())];
        scan.observe(&carol, Ok(&keys), &[], None);
        let r = LegacyData.run(&facts(scan));
        assert_eq!(r.outcome, Outcome::Block);
        assert!(r.evidence[0].starts_with("legacy public keys that do not parse (1): carol"));
    }

    #[test]
    fn unreadable_or_non_legacy_grants_block() {
        let mut scan = sound_scan();
        let dan = principal("dan");
        scan.observe(
            &dan,
            Err("wrapped private key: truncated".to_owned()),
            &[],
            Some("grant envelope: truncated".to_owned()),
        );
        let r = LegacyData.run(&facts(scan));
        assert_eq!(r.outcome, Outcome::Block);
        assert_eq!(
            r.evidence[0],
            "grants that do not parse (1): dan: grant envelope: truncated"
        );

        let mut scan = sound_scan();
        let erin = principal("erin");
        let hpke = Envelope::from_parts(Scheme::HpkeP256, &[4u8; 65], &[0u8; 48]).unwrap();
        let g = grant(&erin, hpke);
        let id = g.id.to_string();
        scan.observe(&erin, Ok(&[]), &[g], None);
        let r = LegacyData.run(&facts(scan));
        assert_eq!(r.outcome, Outcome::Block);
        assert_eq!(
            r.evidence[0],
            format!("legacy grants of a non-legacy scheme (1): {id}")
        );
    }

    #[test]
    fn records_without_grant_block() {
        let mut scan = sound_scan();
        scan.records_without_grant = Some(vec!["r1".to_owned()]);
        let r = LegacyData.run(&facts(scan));
        assert_eq!(r.outcome, Outcome::Block);
        assert_eq!(r.evidence[0], "records without any grant (1): r1");
    }
}
