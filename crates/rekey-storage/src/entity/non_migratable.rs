//! The `non_migratable` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "non_migratable")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub grant_id: String,
    pub recipient_id: String,
    pub reason: String,
    pub resolution: String,
    pub resolved_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
