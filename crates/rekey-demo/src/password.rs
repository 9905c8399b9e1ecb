//! Password → master secret, as the demo vault's simulated clients do it.
//!
//! A real vault runs its own password KDF and hands rekey the master
//! secret. The demo uses Argon2id with [`KdfParams::RECOMMENDED`] by
//! default: 19 MiB, two passes, one lane, the first of OWASP's
//! recommended Argon2id settings (RFC 9106 recommends more memory, 64 MiB,
//! where a client can afford it). Benchmark vaults may take
//! [`KdfParams::LIGHT`] (4 MiB, one pass) so that ten thousand simulated
//! logins on two cores measure the migration rather than the password
//! hash. The vault keeps its parameters (`client_kdf`): a client asks for
//! them before it logs in, as with a real vault's pre-login.
//!
//! Argon2id's working memory is kept per thread between hashes and wiped
//! after each one. A fresh buffer per login cost more than the
//! hash itself: `perf` over a 1,000-user `login-all` put about 70 % of
//! Argon2id's samples in page faults, zeroing and unmapping the new buffer
//! (large buffers go straight back to the kernel, see `memory.rs`), and
//! only 30 % in the compression function. The price is 4 MiB kept by each
//! thread that has hashed (the demo's few login workers) until it ends.

use crate::error::DemoError;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rekey_core::{MasterSecret, PrincipalId, VaultId};
use std::cell::{RefCell, RefMut};
use zeroize::{Zeroize, Zeroizing};

/// The demo's password-KDF parameters (Argon2id, version 0x13, 32-byte
/// output), as the vault stores them and clients read them (JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Always `argon2id`.
    pub algorithm: KdfAlgorithm,
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

/// The one KDF the demo uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KdfAlgorithm {
    /// Argon2id, version 0x13.
    Argon2id,
}

impl KdfParams {
    /// OWASP's first recommended Argon2id setting: 19 MiB, t = 2, p = 1.
    pub const RECOMMENDED: KdfParams = KdfParams {
        algorithm: KdfAlgorithm::Argon2id,
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };
    /// For benchmark vaults only: 4 MiB, t = 1, p = 1.
    pub const LIGHT: KdfParams = KdfParams {
        algorithm: KdfAlgorithm::Argon2id,
        m_kib: 4 * 1024,
        t: 1,
        p: 1,
    };

    /// The parameters as the vault stores them.
    pub fn to_json(&self) -> Result<String, DemoError> {
        serde_json::to_string(self).map_err(|_| DemoError::Internal("KDF parameters"))
    }

    /// Parses the stored parameters, refusing any a client should not run
    /// (an attacker's server could ask for gigabytes).
    pub fn from_json(json: &str) -> Result<Self, DemoError> {
        let p: Self = serde_json::from_str(json)
            .map_err(|e| DemoError::BadSpec(format!("the vault's KDF parameters: {e}")))?;
        if !(1024..=1024 * 1024).contains(&p.m_kib)
            || !(1..=10).contains(&p.t)
            || !(1..=4).contains(&p.p)
        {
            return Err(DemoError::BadSpec(format!(
                "the vault's KDF parameters are out of range: {json}"
            )));
        }
        Ok(p)
    }
}

/// One thread's Argon2id working memory. It holds password-derived state
/// only while a hash runs: [`Borrowed`] wipes it after every hash, and
/// dropping it (when the thread ends) wipes it again.
struct Memory(Vec<Block>);

impl Memory {
    fn wipe(&mut self) {
        // `Block::zeroize` is a volatile write per 64-bit word: 512 Ki
        // stores for the demo's 4 MiB, a small part of one hash.
        self.0.iter_mut().for_each(Zeroize::zeroize);
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        self.wipe();
    }
}

thread_local! {
    static MEMORY: RefCell<Memory> = const { RefCell::new(Memory(Vec::new())) };
}

/// This thread's working memory while one hash uses it: wiped when the
/// hash is done, also when it unwinds.
struct Borrowed<'a>(RefMut<'a, Memory>);

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        self.0.wipe();
    }
}

/// Runs `f` on `blocks` Argon2 blocks of this thread's working memory and
/// wipes them afterwards, whatever `f` returned.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|cell| match cell.try_borrow_mut() {
        Ok(memory) => {
            let mut memory = Borrowed(memory);
            // The old buffer was wiped when its last hash ended.
            if memory.0.0.len() != blocks {
                memory.0.0 = vec![Block::default(); blocks];
            }
            f(&mut memory.0.0)
        }
        // Not reached (a hash never starts another), but a fresh buffer is
        // the safe answer rather than a panic; `Memory` wipes it on drop.
        Err(_) => {
            let mut fresh = Memory(vec![Block::default(); blocks]);
            f(&mut fresh.0)
        }
    })
}

/// The demo's master secret of a user: Argon2id(password, salt =
/// `"rekey-demo" ‖ vault ‖ user`, `params`), 32 bytes.
pub fn master_secret(
    password: &str,
    vault: VaultId,
    user: PrincipalId,
    params: &KdfParams,
) -> Result<MasterSecret, DemoError> {
    let out = argon2id(password, &salt(vault, user), params)?;
    MasterSecret::from_slice(&out[..]).ok_or(DemoError::Internal("master secret length"))
}

fn salt(vault: VaultId, user: PrincipalId) -> Vec<u8> {
    let mut salt = b"rekey-demo".to_vec();
    salt.extend_from_slice(&vault.to_bytes());
    salt.extend_from_slice(&user.to_bytes());
    salt
}

fn demo_argon2(p: &KdfParams) -> Result<Argon2<'static>, DemoError> {
    let params = Params::new(p.m_kib, p.t, p.p, Some(32))
        .map_err(|_| DemoError::Internal("Argon2 parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn argon2id(
    password: &str,
    salt: &[u8],
    params: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>, DemoError> {
    let argon = demo_argon2(params)?;
    let mut out = Zeroizing::new([0u8; 32]);
    with_memory(argon.params().block_count(), |memory| {
        argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out[..], memory)
    })
    .map_err(|_| DemoError::Internal("Argon2 hashing"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's working memory: its size in blocks, and whether every
    /// word of it is zero.
    fn this_threads_memory() -> (usize, bool) {
        MEMORY.with(|m| {
            let m = m.borrow();
            let zero = m.0.iter().all(|b| b.as_ref().iter().all(|w| *w == 0));
            (m.0.len(), zero)
        })
    }

    /// The reused memory gives the same hash as a fresh buffer, for the
    /// same and for another password (nothing of one hash leaks into the
    /// next), and is all zeros once a hash is done.
    #[test]
    fn reused_memory_gives_the_fresh_buffer_result_and_is_wiped() {
        let salt = salt(
            VaultId::from_bytes([7; 16]),
            PrincipalId::from_bytes([9; 16]),
        );
        let mut seen = Vec::new();
        for password in ["correct horse", "battery staple", "correct horse"] {
            let mut fresh = [0u8; 32];
            demo_argon2(&KdfParams::LIGHT)
                .unwrap()
                .hash_password_into(password.as_bytes(), &salt, &mut fresh)
                .unwrap();
            let reused = argon2id(password, &salt, &KdfParams::LIGHT).unwrap();
            assert_eq!(
                *reused, fresh,
                "reused memory changed the hash of {password:?}"
            );
            let (blocks, zero) = this_threads_memory();
            assert_eq!(blocks, KdfParams::LIGHT.m_kib as usize, "one block per KiB");
            assert!(
                zero,
                "the working memory still holds password-derived state"
            );
            seen.push(fresh);
        }
        assert_ne!(seen[0], seen[1], "two passwords, one hash");
        assert_eq!(seen[0], seen[2]);
    }

    #[test]
    fn the_parameters_round_trip_and_absurd_ones_are_refused() {
        let json = KdfParams::RECOMMENDED.to_json().unwrap();
        assert_eq!(
            json,
            r#"{"algorithm":"argon2id","m_kib":19456,"t":2,"p":1}"#
        );
        assert_eq!(KdfParams::from_json(&json).unwrap(), KdfParams::RECOMMENDED);
        for bad in [
            r#"{"algorithm":"argon2id","m_kib":4194304,"t":2,"p":1}"#,
            r#"{"algorithm":"argon2id","m_kib":19456,"t":0,"p":1}"#,
            r#"{"algorithm":"scrypt","m_kib":19456,"t":2,"p":1}"#,
            r#"{"algorithm":"argon2id","m_kib":19456,"t":2,"p":1,"x":0}"#,
        ] {
            assert!(KdfParams::from_json(bad).is_err(), "{bad}");
        }
    }

    /// A hash that unwinds half way leaves no state behind either.
    #[test]
    fn memory_is_wiped_when_a_hash_unwinds() {
        let unwound = std::panic::catch_unwind(|| {
            with_memory(8, |memory| {
                memory[3].as_mut()[5] = 0x5ec7e7;
                panic!("hash interrupted");
            })
        });
        assert!(unwound.is_err());
        let (blocks, zero) = this_threads_memory();
        assert_eq!(blocks, 8);
        assert!(zero, "an unwound hash left state behind");
    }
}
