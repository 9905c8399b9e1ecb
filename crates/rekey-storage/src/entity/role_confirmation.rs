//! The `role_confirmation` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "role_confirmation")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub role_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub holder_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_pair_id: String,
    pub run_id: String,
    pub how: String,
    pub checked: i64,
    pub signature: Option<Vec<u8>>,
    pub confirmed_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
