//! What preparation looks at: certificate, server, device,
//! directory_profile, component, setting.

use super::{id_col, text_col, time_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Certificate {
    Table,
    KeyPairId,
    PrincipalId,
    Fingerprint,
    BackupDigest,
    BackupVerifiedAt,
}

#[derive(DeriveIden)]
enum Server {
    Table,
    Name,
    HeartbeatAt,
    CertificateFingerprints,
}

#[derive(DeriveIden)]
enum Device {
    Table,
    Id,
    OwnerId,
    Kind,
    LastSyncAt,
    UnsyncedChanges,
    WrittenOff,
}

#[derive(DeriveIden)]
enum DirectoryProfile {
    Table,
    Name,
    Kind,
    TokenIssuedAt,
}

#[derive(DeriveIden)]
enum Component {
    Table,
    Name,
    Version,
}

#[derive(DeriveIden)]
enum Setting {
    Table,
    Key,
    Value,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Certificate::Table)
                    .col(id_col(Certificate::KeyPairId).primary_key())
                    .col(id_col(Certificate::PrincipalId))
                    .col(text_col(Certificate::Fingerprint, 128))
                    .col(
                        ColumnDef::new(Certificate::BackupDigest)
                            .string_len(128)
                            .null(),
                    )
                    .col(time_col(Certificate::BackupVerifiedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Server::Table)
                    .col(text_col(Server::Name, 255).primary_key())
                    .col(ColumnDef::new(Server::HeartbeatAt).big_integer().not_null())
                    .col(
                        ColumnDef::new(Server::CertificateFingerprints)
                            .text()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Device::Table)
                    .col(text_col(Device::Id, 255).primary_key())
                    .col(id_col(Device::OwnerId))
                    .col(text_col(Device::Kind, 32))
                    .col(time_col(Device::LastSyncAt))
                    .col(ColumnDef::new(Device::UnsyncedChanges).integer().not_null())
                    .col(ColumnDef::new(Device::WrittenOff).boolean().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DirectoryProfile::Table)
                    .col(text_col(DirectoryProfile::Name, 255).primary_key())
                    .col(text_col(DirectoryProfile::Kind, 32))
                    .col(time_col(DirectoryProfile::TokenIssuedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Component::Table)
                    .col(text_col(Component::Name, 64).primary_key())
                    .col(text_col(Component::Version, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Setting::Table)
                    .col(text_col(Setting::Key, 64).primary_key())
                    .col(text_col(Setting::Value, 255))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Setting::Table.into_iden(),
            Component::Table.into_iden(),
            DirectoryProfile::Table.into_iden(),
            Device::Table.into_iden(),
            Server::Table.into_iden(),
            Certificate::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
