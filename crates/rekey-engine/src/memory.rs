//! How a migrating process gives memory back.
//!
//! A login holds its whole bundle for a moment: the user's pending
//! grants, the re-wrapped ones, the encoded bytes and the server's decoded
//! copy — tens of megabytes for the heaviest user of a large vault. glibc's
//! allocator serves such buffers from the kernel (`mmap`) at first, but on
//! the first free it raises that threshold to the buffer's size, so every
//! later buffer of that size stays inside a per-thread arena after it is
//! freed. With a login per worker thread the arenas each keep their
//! largest bundle, and peak RSS grows with the vault's heaviest users
//! instead of staying flat (measured on a 210,000-grant demo vault with 4
//! clients: 131–150 MiB by default, 101–106 MiB with the threshold pinned;
//! `docs/BENCHMARKS.md` has the whole-vault figures).

/// Pins glibc's large-buffer threshold at its own starting value, 128 KiB,
/// so buffers that size and larger always come from and go straight back
/// to the kernel. Call it once at the start of `main`, before the async
/// runtime. Returns whether the allocator took the setting (`false` where
/// it is not glibc's, which needs none of this).
pub fn return_large_buffers_to_the_system() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const LARGE_BUFFER_BYTES: libc::c_int = 128 * 1024;
        // SAFETY: `mallopt` only changes glibc's malloc tuning; it takes
        // the allocator's own locks, reads no pointer of ours and is sound
        // to call at any time, from any thread.
        #[allow(unsafe_code)]
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES) };
        set == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_threshold() {
        assert!(super::return_large_buffers_to_the_system());
    }
}
