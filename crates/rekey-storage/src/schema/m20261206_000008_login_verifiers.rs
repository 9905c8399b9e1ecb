//! What the migration API's built-in client login needs: one verifier per
//! principal (Argon2id of the client's login authenticator, see
//! `rekey_core::auth`), never the authenticator itself. The session-token
//! key lives in `setting` (`session_key`), made by the first server that
//! needs it.

use super::id_col;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LoginVerifier {
    Table,
    PrincipalId,
    Verifier,
    RegisteredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LoginVerifier::Table)
                    .if_not_exists()
                    .col(id_col(LoginVerifier::PrincipalId).primary_key())
                    .col(ColumnDef::new(LoginVerifier::Verifier).blob().not_null())
                    .col(
                        ColumnDef::new(LoginVerifier::RegisteredAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(LoginVerifier::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
