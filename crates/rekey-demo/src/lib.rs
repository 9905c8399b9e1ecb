//! rekey-demo: everything `rekey demo` needs and a real vault does not.
//!
//! - [`generate`]: a realistic legacy vault from a seed (RSA keys from a
//!   reusable cache, [`keycache`]);
//! - [`password`]: the simulated clients' password KDF (Argon2id);
//! - [`login`]: simulated clients that log in and migrate, in-process
//!   through the engine or over HTTP through a `rekey serve`, both through
//!   rekey-client's one migration loop;
//! - [`reader`]: verification, every user reading exactly what it could
//!   before;
//! - [`flow`]: the whole demo, seed to verify.

mod credentials;
mod error;
pub mod flow;
pub mod generate;
pub mod keycache;
pub mod login;
pub mod password;
pub mod reader;

pub use credentials::{Credentials, DemoUser, access_digest};
pub use error::DemoError;
pub use generate::{DemoSpec, DemoVault, generate};
pub use keycache::KeySource;
pub use password::KdfParams;
