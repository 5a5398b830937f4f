//! Gives memory the operator freed back to the system, and reports the
//! allocator's own count (`kubernetes_executor_heap_bytes`, jemalloc).
//!
//! The default build uses jemalloc (docs/performance.md, "Issue 18"),
//! configured here at build time ([`JEMALLOC_CONF`]): background threads
//! return freed pages within about a second (`dirty_decay_ms:1000`,
//! `muzzy_decay_ms:0`) without waiting for the next allocation, and one
//! arena (`narenas:1`: the operator uses a fraction of a core; fewer
//! arenas strand fewer half-used pages — 70 vs 83 MiB a minute after
//! 5,000 executions, same peak). The
//! environment variable `_RJEM_MALLOC_CONF` overrides it at run time.
//!
//! Built with the system allocator (`--no-default-features`): glibc's allocator
//! keeps freed pages in its arenas: after a burst (5,000 executions in
//! flight, or the initial list of a long history) the process stayed at its
//! peak although nothing used the memory (docs/performance.md). Every
//! [`TRIM_PERIOD`] a task asks glibc to return the free pages of every arena
//! (`malloc_trim(0)`). With `--features mimalloc`/`jemalloc` or off glibc it does
//! nothing (those allocators return memory themselves).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubernetes_executor_actors::metrics::Metrics;

/// How often the allocator is asked to return free pages (and its count read).
pub const TRIM_PERIOD: Duration = Duration::from_secs(10);

/// Starts the task that trims the system allocator or reads jemalloc's
/// count (none for mimalloc, which returns memory itself).
pub fn spawn(metrics: Arc<Metrics>) -> Option<tokio::task::JoinHandle<()>> {
    if cfg!(feature = "mimalloc") {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(TRIM_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some((allocated, resident)) = heap_stats() {
                metrics
                    .heap_bytes
                    .with_label_values(&["allocated"])
                    .set(allocated);
                metrics
                    .heap_bytes
                    .with_label_values(&["resident"])
                    .set(resident);
                continue;
            }
            // Walks and locks every arena in turn: off the async workers.
            let trimmed = tokio::task::spawn_blocking(|| {
                let started = Instant::now();
                (release_free_pages(), started.elapsed())
            })
            .await;
            if let Ok((released, took)) = trimmed {
                tracing::trace!(released, took_us = took.as_micros(), "allocator trimmed");
            }
        }
    }))
}

/// Asks the allocator to return its free pages; true if it released any.
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    not(feature = "mimalloc"),
    not(feature = "jemalloc")
))]
#[allow(unsafe_code)]
pub fn release_free_pages() -> bool {
    // SAFETY: malloc_trim takes no pointers and has no caller-side
    // invariants; glibc locks each arena while it trims it.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Nothing to do with this allocator.
#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    not(feature = "mimalloc"),
    not(feature = "jemalloc")
)))]
pub fn release_free_pages() -> bool {
    false
}

/// jemalloc's count: bytes in live objects and heap pages resident.
#[cfg(feature = "jemalloc")]
pub fn heap_stats() -> Option<(i64, i64)> {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The counts are cached; a new epoch refreshes them.
    epoch::advance().ok()?;
    let allocated = stats::allocated::read().ok()?;
    let resident = stats::resident::read().ok()?;
    Some((
        i64::try_from(allocated).unwrap_or(i64::MAX),
        i64::try_from(resident).unwrap_or(i64::MAX),
    ))
}

/// No count from this allocator.
#[cfg(not(feature = "jemalloc"))]
pub fn heap_stats() -> Option<(i64, i64)> {
    None
}

/// jemalloc's options, read before `main` (see the module docs).
#[cfg(feature = "jemalloc")]
const JEMALLOC_OPTIONS: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1\0";

/// The options as the C string jemalloc reads.
#[cfg(feature = "jemalloc")]
static JEMALLOC_OPTIONS_C: [std::ffi::c_char; JEMALLOC_OPTIONS.len()] = c_chars(JEMALLOC_OPTIONS);

#[cfg(feature = "jemalloc")]
const fn c_chars<const N: usize>(s: &[u8]) -> [std::ffi::c_char; N] {
    let mut out = [0 as std::ffi::c_char; N];
    let mut i = 0;
    while i < N {
        out[i] = s[i] as std::ffi::c_char;
        i += 1;
    }
    out
}

/// jemalloc's `malloc_conf` (its `_rjem_` prefixed name in this build).
/// Exporting a symbol is `unsafe` to Rust only because two items could
/// claim one name; this is the one definition, a pointer to a constant
/// NUL-terminated string.
#[cfg(feature = "jemalloc")]
#[allow(unsafe_code, non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: Option<&'static std::ffi::c_char> = Some(&JEMALLOC_OPTIONS_C[0]);
