//! Seeding a legacy vault fast (the demo, tests, benches): batched
//! multi-row INSERTs, one transaction per chunk.

use super::convert::{
    certificate_to, component_to, device_to, grant_to, key_pair_to, principal_to, profile_to,
    server_to,
};
use super::sql::insert_batched;
use super::{BATCH_ROWS, Vault};
use crate::entity::{membership, record};
use crate::error::{Result, db};
use rekey_core::model::{
    Certificate, Component, Device, DirectoryProfile, GrantRecord, KeyPairRecord, Membership,
    Principal, RecordRow, Server,
};
use sea_orm::ActiveModelTrait;
use sea_orm::ActiveValue::Set;
use sea_orm::TransactionTrait;

/// Rows to seed. Inserted in dependency order (principals before their key
/// pairs and grants).
#[derive(Clone, Debug, Default)]
pub struct SeedData {
    /// Users, roles, services.
    pub principals: Vec<Principal>,
    /// Key pairs.
    pub key_pairs: Vec<KeyPairRecord>,
    /// Records.
    pub records: Vec<RecordRow>,
    /// Grants.
    pub grants: Vec<GrantRecord>,
    /// Role memberships.
    pub memberships: Vec<Membership>,
    /// Certificates.
    pub certificates: Vec<Certificate>,
    /// Servers.
    pub servers: Vec<Server>,
    /// Devices.
    pub devices: Vec<Device>,
    /// Directory profiles.
    pub directory_profiles: Vec<DirectoryProfile>,
    /// Components.
    pub components: Vec<Component>,
}

/// What seeding wrote.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SeedReport {
    /// Rows inserted.
    pub rows: u64,
    /// Transactions committed (one per chunk).
    pub transactions: u64,
}

impl Vault {
    /// Inserts the seed rows in chunks of `chunk_rows` rows, one transaction
    /// per chunk, each chunk in multi-row statements. Interrupted seeding
    /// leaves whole chunks behind. Refused by the database while the vault
    /// is being migrated.
    pub async fn seed(&self, data: &SeedData, chunk_rows: usize) -> Result<SeedReport> {
        let chunk = chunk_rows.clamp(1, 100 * BATCH_ROWS);
        let mut report = SeedReport::default();
        self.seed_table(&data.principals, chunk, principal_to, &mut report)
            .await?;
        self.seed_table(
            &data.records,
            chunk,
            |r| record::ActiveModel {
                id: Set(r.id.to_string()),
                ciphertext: Set(r.ciphertext.clone()),
            },
            &mut report,
        )
        .await?;
        self.seed_table(&data.key_pairs, chunk, key_pair_to, &mut report)
            .await?;
        self.seed_table(
            &data.memberships,
            chunk,
            |m| membership::ActiveModel {
                role_id: Set(m.role.to_string()),
                member_id: Set(m.member.to_string()),
            },
            &mut report,
        )
        .await?;
        self.seed_table(&data.grants, chunk, grant_to, &mut report)
            .await?;
        self.seed_table(&data.certificates, chunk, certificate_to, &mut report)
            .await?;
        self.seed_table(&data.servers, chunk, server_to, &mut report)
            .await?;
        self.seed_table(&data.devices, chunk, device_to, &mut report)
            .await?;
        self.seed_table(&data.directory_profiles, chunk, profile_to, &mut report)
            .await?;
        self.seed_table(&data.components, chunk, component_to, &mut report)
            .await?;
        Ok(report)
    }

    async fn seed_table<T, A>(
        &self,
        rows: &[T],
        chunk: usize,
        to: impl Fn(&T) -> A,
        report: &mut SeedReport,
    ) -> Result<()>
    where
        A: ActiveModelTrait + Send,
    {
        for part in rows.chunks(chunk) {
            let txn = self.db.begin().await.map_err(db("begin a seed chunk"))?;
            insert_batched(&txn, part.iter().map(&to).collect(), "seed the vault").await?;
            txn.commit().await.map_err(db("commit a seed chunk"))?;
            report.rows += part.len() as u64;
            report.transactions += 1;
        }
        Ok(())
    }
}
