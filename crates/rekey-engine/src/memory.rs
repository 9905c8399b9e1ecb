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
//!
//! Small buffers fragment the arenas instead: a role check's evidence is
//! tens of thousands of grants and records of a hundred bytes each, made
//! on one worker thread and freed on another. glibc keeps the freed pages
//! inside its arenas, so a 10,000-user `login-all` held 317 MiB from the
//! kernel with 96 MiB in use (`malloc_stats`, measured in the middle of
//! the run); one `malloc_trim(0)` took its RSS from 329 to 140 MiB. So a
//! thread of the process hands the free pages back every second
//! ([`trim_free_memory_every`]).

use std::time::Duration;

/// How often [`trim_free_memory_every`] is asked to hand free memory back
/// by the binaries.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

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

/// Starts a thread (`rekey-trim`) that hands the free pages inside
/// glibc's arenas back to the kernel every `every`, for as long as the
/// process runs. Returns whether it started (`false` where the allocator
/// is not glibc's, or the thread could not be made).
pub fn trim_free_memory_every(every: Duration) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        std::thread::Builder::new()
            .name("rekey-trim".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    trim();
                }
            })
            .is_ok()
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = every;
        false
    }
}

/// Hands the free pages of every arena back to the kernel now; answers
/// whether any went.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: `malloc_trim` only walks glibc's own arenas under their
    // locks and releases whole free pages (`madvise`); it reads no pointer
    // of ours and is sound to call at any time, from any thread.
    #[allow(unsafe_code)]
    let released = unsafe { libc::malloc_trim(0) };
    released == 1
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_threshold() {
        assert!(super::return_large_buffers_to_the_system());
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_small_buffers_go_back_to_the_kernel() {
        // Many small buffers, one in 64 kept: the freed ones (whole pages
        // between the kept ones) cannot go back by shrinking the heap's
        // top, only by a trim.
        let mut kept = Vec::new();
        let mut freed = Vec::new();
        for i in 0..200_000 {
            let b = vec![1u8; 200];
            if i % 64 == 0 {
                kept.push(b);
            } else {
                freed.push(b);
            }
        }
        drop(freed);
        assert!(super::trim(), "nothing went back to the kernel");
        assert!(kept.iter().all(|b| b.iter().all(|&x| x == 1)));
        assert!(super::trim_free_memory_every(
            std::time::Duration::from_secs(3600)
        ));
    }
}
