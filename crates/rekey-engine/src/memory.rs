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

/// Buffers of this size and larger always come from and go straight back
/// to the kernel (glibc's own starting value, no longer raised).
pub const LARGE_BUFFER_BYTES: usize = 128 * 1024;

/// Pins the allocator's large-buffer threshold at [`LARGE_BUFFER_BYTES`],
/// so freed bundle buffers leave the process. Call it once at the start of
/// `main`, before the async runtime. Returns whether the allocator took the
/// setting (`false` where it is not glibc's, which needs none of this).
#[must_use = "the caller may want to log that the allocator was not tuned"]
pub fn return_large_buffers_to_the_system() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Ok(bytes) = libc::c_int::try_from(LARGE_BUFFER_BYTES) else {
            return false;
        };
        // SAFETY: `mallopt` only changes glibc's malloc tuning; it takes
        // the allocator's own locks, reads no pointer of ours and is sound
        // to call at any time, from any thread.
        #[allow(unsafe_code)]
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) };
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
