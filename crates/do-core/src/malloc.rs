//! How the process's allocator hands freed memory back to the system.
//!
//! glibc's malloc starts with 128 KiB mmap and trim thresholds, and raises both each time a
//! block above them is freed (up to 32 and 64 MiB). After a large run frees its first big
//! blocks (listing pages, a batch of reads), later ones come from the heap, and what they free
//! stays with the process: at 100,000 manifests that was 7.5 MB of do-prune's 58 MB peak, an
//! eighth. Setting the mmap threshold keeps both at their start (glibc turns the adjustment off
//! once a threshold is set), so a large block is its own mapping, given back when freed, and
//! the heap's top is trimmed past 128 KiB. `cargo xtask bench` shows the figure.
//!
//! Other allocators do not adjust so (musl's, which the release archives use, hands back freed
//! groups on its own): there this does nothing.

/// The mmap threshold glibc starts with, kept.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Keeps glibc's thresholds at their start; called once, first thing in a tool's process.
pub fn hand_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter, with a value glibc documents; it is
    // called before the tool starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
