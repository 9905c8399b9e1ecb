//! The preparation facts: devices, servers and heartbeats, directory
//! profiles, certificates and backups, component versions, settings.

use super::Vault;
use super::convert::{
    certificate_from, component_from, component_to, device_from, device_to, profile_from,
    profile_to, server_from, server_to,
};
use crate::entity::{certificate, component, device, directory_profile, server, setting};
use crate::error::{Error, Result, db};
use rekey_core::ids::KeyPairId;
use rekey_core::model::{
    Certificate, Component, Device, DirectoryProfile, Server, Settings, Timestamp,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

const OFFLINE_ACCESS: &str = "offline_access_allowed";
const MOBILE_SYNC: &str = "mobile_sync_allowed";

impl Vault {
    /// Every registered device, by id.
    pub async fn devices(&self) -> Result<Vec<Device>> {
        device::Entity::find()
            .order_by_asc(device::Column::Id)
            .all(&self.db)
            .await
            .map_err(db("list devices"))?
            .into_iter()
            .map(device_from)
            .collect()
    }

    /// Registers or updates a device.
    pub async fn upsert_device(&self, d: &Device) -> Result<()> {
        device::Entity::insert(device_to(d))
            .on_conflict(
                OnConflict::column(device::Column::Id)
                    .update_columns([
                        device::Column::OwnerId,
                        device::Column::Kind,
                        device::Column::LastSyncAt,
                        device::Column::UnsyncedChanges,
                        device::Column::WrittenOff,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(db("record a device"))?;
        Ok(())
    }

    /// Every registered server with its last heartbeat, by name.
    pub async fn servers(&self) -> Result<Vec<Server>> {
        Ok(server::Entity::find()
            .order_by_asc(server::Column::Name)
            .all(&self.db)
            .await
            .map_err(db("list servers"))?
            .into_iter()
            .map(server_from)
            .collect())
    }

    /// Registers a server or records its heartbeat (and the certificate
    /// fingerprints it holds).
    pub async fn heartbeat(&self, s: &Server) -> Result<()> {
        server::Entity::insert(server_to(s))
            .on_conflict(
                OnConflict::column(server::Column::Name)
                    .update_columns([
                        server::Column::HeartbeatAt,
                        server::Column::CertificateFingerprints,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(db("record a server heartbeat"))?;
        Ok(())
    }

    /// Sets the certificate fingerprints a registered server holds, leaving
    /// its heartbeat as it was (`rekey cert import` on a server that is not
    /// running). `false` when no server of that name is registered.
    pub async fn record_server_certificates(
        &self,
        name: &str,
        fingerprints: &[String],
    ) -> Result<bool> {
        let r = server::Entity::update_many()
            .col_expr(
                server::Column::CertificateFingerprints,
                Expr::value(fingerprints.join("\n")),
            )
            .filter(server::Column::Name.eq(name))
            .exec(&self.db)
            .await
            .map_err(db("record a server's certificates"))?;
        Ok(r.rows_affected > 0)
    }

    /// Every directory-sync profile, by name.
    pub async fn directory_profiles(&self) -> Result<Vec<DirectoryProfile>> {
        Ok(directory_profile::Entity::find()
            .order_by_asc(directory_profile::Column::Name)
            .all(&self.db)
            .await
            .map_err(db("list directory profiles"))?
            .into_iter()
            .map(profile_from)
            .collect())
    }

    /// Creates or updates a directory-sync profile.
    pub async fn upsert_directory_profile(&self, p: &DirectoryProfile) -> Result<()> {
        directory_profile::Entity::insert(profile_to(p))
            .on_conflict(
                OnConflict::column(directory_profile::Column::Name)
                    .update_columns([
                        directory_profile::Column::Kind,
                        directory_profile::Column::TokenIssuedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(db("record a directory profile"))?;
        Ok(())
    }

    /// Every certificate, by key pair.
    pub async fn certificates(&self) -> Result<Vec<Certificate>> {
        certificate::Entity::find()
            .order_by_asc(certificate::Column::KeyPairId)
            .all(&self.db)
            .await
            .map_err(db("list certificates"))?
            .into_iter()
            .map(certificate_from)
            .collect()
    }

    /// Records a certificate (its public half and fingerprint).
    pub async fn add_certificate(&self, c: &Certificate) -> Result<()> {
        certificate::Entity::insert(super::convert::certificate_to(c))
            .exec_without_returning(&self.db)
            .await
            .map_err(db("record a certificate"))?;
        Ok(())
    }

    /// Records the digest of a backup verified by `rekey cert backup`.
    pub async fn record_certificate_backup(
        &self,
        key_pair: KeyPairId,
        digest: &str,
        at: Timestamp,
    ) -> Result<()> {
        let res = certificate::Entity::update_many()
            .col_expr(certificate::Column::BackupDigest, Expr::value(digest))
            .col_expr(
                certificate::Column::BackupVerifiedAt,
                Expr::value(at.as_millis()),
            )
            .filter(certificate::Column::KeyPairId.eq(key_pair.to_string()))
            .exec(&self.db)
            .await
            .map_err(db("record a certificate backup"))?;
        if res.rows_affected == 0 {
            return Err(Error::NotFound {
                what: "certificate",
                id: key_pair.to_string(),
            });
        }
        Ok(())
    }

    /// Every component and its version, by name.
    pub async fn components(&self) -> Result<Vec<Component>> {
        Ok(component::Entity::find()
            .order_by_asc(component::Column::Name)
            .all(&self.db)
            .await
            .map_err(db("list components"))?
            .into_iter()
            .map(component_from)
            .collect())
    }

    /// Records a component's version.
    pub async fn upsert_component(&self, c: &Component) -> Result<()> {
        component::Entity::insert(component_to(c))
            .on_conflict(
                OnConflict::column(component::Column::Name)
                    .update_column(component::Column::Version)
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(db("record a component version"))?;
        Ok(())
    }

    /// The settings preparation looks at (absent ones are `false`).
    pub async fn settings(&self) -> Result<Settings> {
        let rows = setting::Entity::find()
            .all(&self.db)
            .await
            .map_err(db("read the settings"))?;
        let flag = |key: &str| rows.iter().any(|r| r.key == key && r.value == "true");
        Ok(Settings {
            offline_access_allowed: flag(OFFLINE_ACCESS),
            mobile_sync_allowed: flag(MOBILE_SYNC),
        })
    }

    /// Stores the settings.
    pub async fn set_settings(&self, s: &Settings) -> Result<()> {
        for (key, value) in [
            (OFFLINE_ACCESS, s.offline_access_allowed),
            (MOBILE_SYNC, s.mobile_sync_allowed),
        ] {
            self.put_setting(
                key,
                &value.to_string(),
                super::auth::Overwrite::Yes,
                "store a setting",
            )
            .await?;
        }
        Ok(())
    }
}
