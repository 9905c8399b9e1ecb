//! principal, key_pair, record, grant, membership.

use super::{id_col, text_col, time_col};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Principal {
    Table,
    Id,
    Kind,
    Name,
    Status,
    Custody,
    Service,
    MigrationState,
}

#[derive(DeriveIden)]
enum KeyPair {
    Table,
    Id,
    PrincipalId,
    Scheme,
    PublicKey,
    WrappedPrivateKey,
    State,
}

#[derive(DeriveIden)]
enum Record {
    Table,
    Id,
    Ciphertext,
}

#[derive(DeriveIden)]
enum Grant {
    Table,
    Id,
    RecipientId,
    SubjectKind,
    SubjectId,
    Scheme,
    Legacy,
    Envelope,
    Origin,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Membership {
    Table,
    RoleId,
    MemberId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // A frozen schema step: it must create exactly what it created when it
    // shipped, so it is kept whole rather than split.
    #[allow(clippy::too_many_lines)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Principal::Table)
                    .col(id_col(Principal::Id).primary_key())
                    .col(text_col(Principal::Kind, 16))
                    .col(text_col(Principal::Name, 255))
                    .col(text_col(Principal::Status, 16))
                    .col(text_col(Principal::Custody, 16))
                    .col(ColumnDef::new(Principal::Service).string_len(32).null())
                    .col(text_col(Principal::MigrationState, 16).default("pending"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("principal_kind_state")
                    .table(Principal::Table)
                    .col(Principal::Kind)
                    .col(Principal::MigrationState)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(KeyPair::Table)
                    .col(id_col(KeyPair::Id).primary_key())
                    .col(id_col(KeyPair::PrincipalId))
                    .col(text_col(KeyPair::Scheme, 48))
                    .col(ColumnDef::new(KeyPair::PublicKey).blob().not_null())
                    .col(ColumnDef::new(KeyPair::WrappedPrivateKey).blob().null())
                    .col(text_col(KeyPair::State, 16))
                    .foreign_key(
                        ForeignKey::create()
                            .name("key_pair_principal")
                            .from(KeyPair::Table, KeyPair::PrincipalId)
                            .to(Principal::Table, Principal::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("key_pair_principal_state")
                    .table(KeyPair::Table)
                    .col(KeyPair::PrincipalId)
                    .col(KeyPair::State)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Record::Table)
                    .col(id_col(Record::Id).primary_key())
                    .col(ColumnDef::new(Record::Ciphertext).blob().not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Grant::Table)
                    .col(id_col(Grant::Id).primary_key())
                    .col(id_col(Grant::RecipientId))
                    .col(text_col(Grant::SubjectKind, 16))
                    .col(id_col(Grant::SubjectId))
                    .col(text_col(Grant::Scheme, 48))
                    .col(ColumnDef::new(Grant::Legacy).boolean().not_null())
                    .col(ColumnDef::new(Grant::Envelope).blob().not_null())
                    .col(text_col(Grant::Origin, 16))
                    .col(time_col(Grant::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("grant_recipient")
                            .from(Grant::Table, Grant::RecipientId)
                            .to(Principal::Table, Principal::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Keyset paging of a principal's pending grants walks this index.
        manager
            .create_index(
                Index::create()
                    .name("grant_recipient_legacy_id")
                    .table(Grant::Table)
                    .col(Grant::RecipientId)
                    .col(Grant::Legacy)
                    .col(Grant::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("grant_origin")
                    .table(Grant::Table)
                    .col(Grant::Origin)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Membership::Table)
                    .col(id_col(Membership::RoleId))
                    .col(id_col(Membership::MemberId))
                    .primary_key(
                        Index::create()
                            .col(Membership::RoleId)
                            .col(Membership::MemberId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("membership_role")
                            .from(Membership::Table, Membership::RoleId)
                            .to(Principal::Table, Principal::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("membership_member")
                            .from(Membership::Table, Membership::MemberId)
                            .to(Principal::Table, Principal::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("membership_member")
                    .table(Membership::Table)
                    .col(Membership::MemberId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Membership::Table.into_iden(),
            Grant::Table.into_iden(),
            Record::Table.into_iden(),
            KeyPair::Table.into_iden(),
            Principal::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
