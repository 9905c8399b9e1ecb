//! Password → master secret, as the demo vault's simulated clients do it.
//!
//! A real vault runs its own password KDF (Argon2id in the reference
//! vault) and hands rekey the master secret. The demo uses Argon2id with
//! light parameters (4 MiB, one pass) so that a thousand simulated logins
//! stay quick; a production vault would use far heavier ones.

use crate::error::EngineError;
use argon2::{Algorithm, Argon2, Params, Version};
use rekey_core::{MasterSecret, PrincipalId, VaultId};
use zeroize::Zeroizing;

/// Argon2id memory in KiB for the demo.
pub const DEMO_M_COST_KIB: u32 = 4096;
/// Argon2id passes for the demo.
pub const DEMO_T_COST: u32 = 1;

/// The demo's master secret of a user: Argon2id(password, salt =
/// `"rekey-demo" ‖ vault ‖ user`), 32 bytes.
pub fn master_secret(
    password: &str,
    vault: VaultId,
    user: PrincipalId,
) -> Result<MasterSecret, EngineError> {
    let params = Params::new(DEMO_M_COST_KIB, DEMO_T_COST, 1, Some(32))
        .map_err(|_| EngineError::Internal("Argon2 parameters"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut salt = b"rekey-demo".to_vec();
    salt.extend_from_slice(&vault.to_bytes());
    salt.extend_from_slice(&user.to_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password.as_bytes(), &salt, &mut out[..])
        .map_err(|_| EngineError::Internal("Argon2 hashing"))?;
    MasterSecret::from_slice(&out[..]).ok_or(EngineError::Internal("master secret length"))
}
