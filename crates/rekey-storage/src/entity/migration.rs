//! The `migration` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "migration")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub phase: String,
    pub version: i64,
    pub started_at: Option<i64>,
    pub started_by: Option<String>,
    pub snapshot_users: Option<i64>,
    pub snapshot_roles: Option<i64>,
    pub snapshot_services: Option<i64>,
    pub snapshot_grants: Option<i64>,
    pub vault_id: String,
    pub run_id: Option<String>,
    pub target: Option<String>,
    pub previous_run: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
