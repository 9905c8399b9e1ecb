//! rekey-engine: the migration engine on top of rekey-storage. The rules
//! live in rekey-core (lifecycle, bundles); this crate loads what they
//! need from the vault, runs them, and persists the result. The command
//! line and the HTTP server both call it and hold no rules of their own.

pub mod client;
pub mod demo;
pub mod engine;
pub mod error;
pub mod keycache;
pub mod keydir;
pub mod password;

pub use client::{LoginReport, VerifyReport};
pub use engine::{ApplyReport, Engine, ServerPhaseReport, StartReport};
pub use error::EngineError;
pub use keydir::KeyDir;
