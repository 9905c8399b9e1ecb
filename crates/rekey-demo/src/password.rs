//! Password → master secret, as the demo vault's simulated clients do it.
//!
//! A real vault runs its own password KDF (Argon2id in the reference
//! vault) and hands rekey the master secret. The demo uses Argon2id with
//! light parameters (4 MiB, one pass) so that a thousand simulated logins
//! stay quick; a production vault would use far heavier ones.
//!
//! Argon2id's 4 MiB of working memory is kept per thread between hashes
//! and wiped after each one. A fresh buffer per login cost more than the
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

/// Argon2id memory in KiB for the demo.
pub const DEMO_M_COST_KIB: u32 = 4096;
/// Argon2id passes for the demo.
pub const DEMO_T_COST: u32 = 1;

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
/// `"rekey-demo" ‖ vault ‖ user`), 32 bytes.
pub fn master_secret(
    password: &str,
    vault: VaultId,
    user: PrincipalId,
) -> Result<MasterSecret, DemoError> {
    let out = argon2id(password, &salt(vault, user))?;
    MasterSecret::from_slice(&out[..]).ok_or(DemoError::Internal("master secret length"))
}

fn salt(vault: VaultId, user: PrincipalId) -> Vec<u8> {
    let mut salt = b"rekey-demo".to_vec();
    salt.extend_from_slice(&vault.to_bytes());
    salt.extend_from_slice(&user.to_bytes());
    salt
}

fn demo_argon2() -> Result<Argon2<'static>, DemoError> {
    let params = Params::new(DEMO_M_COST_KIB, DEMO_T_COST, 1, Some(32))
        .map_err(|_| DemoError::Internal("Argon2 parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn argon2id(password: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, DemoError> {
    let argon = demo_argon2()?;
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
            demo_argon2()
                .unwrap()
                .hash_password_into(password.as_bytes(), &salt, &mut fresh)
                .unwrap();
            let reused = argon2id(password, &salt).unwrap();
            assert_eq!(
                *reused, fresh,
                "reused memory changed the hash of {password:?}"
            );
            let (blocks, zero) = this_threads_memory();
            assert_eq!(blocks, DEMO_M_COST_KIB as usize, "one block per KiB");
            assert!(
                zero,
                "the working memory still holds password-derived state"
            );
            seen.push(fresh);
        }
        assert_ne!(seen[0], seen[1], "two passwords, one hash");
        assert_eq!(seen[0], seen[2]);
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
