//! sea-orm entities, one file per table. Private to the crate: the service
//! code in `vault` converts them to and from `rekey_core::model` types.
//!
//! The schema itself is created by the migrations in `schema`; these
//! structs only mirror it.
#![allow(unreachable_pub, missing_debug_implementations)]

pub mod audit;
pub mod certificate;
pub mod component;
pub mod device;
pub mod directory_profile;
pub mod grant;
pub mod key_pair;
pub mod login_verifier;
pub mod membership;
pub mod migration;
pub mod non_migratable;
pub mod principal;
pub mod record;
pub mod role_confirmation;
pub mod server;
pub mod setting;
