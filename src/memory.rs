//! Gives memory the operator freed back to the system. glibc's allocator
//! keeps freed pages in its arenas: after a burst (5,000 executions in
//! flight, or the initial list of a long history) the process stayed at its
//! peak although nothing used the memory (docs/performance.md). Every
//! [`TRIM_PERIOD`] a task asks glibc to return the free pages of every arena
//! (`malloc_trim(0)`). With `--features mimalloc`/`jemalloc` or off glibc it does
//! nothing (those allocators return memory themselves).

use std::time::{Duration, Instant};

/// How often the allocator is asked to return free pages.
pub const TRIM_PERIOD: Duration = Duration::from_secs(10);

/// Starts the trimming task.
pub fn spawn_trimmer() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
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
    })
}

/// Asks the allocator to return its free pages; true if it released any.
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc"), not(feature = "jemalloc")))]
#[allow(unsafe_code)]
pub fn release_free_pages() -> bool {
    // SAFETY: malloc_trim takes no pointers and has no caller-side
    // invariants; glibc locks each arena while it trims it.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Nothing to do with this allocator.
#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc"), not(feature = "jemalloc"))))]
pub fn release_free_pages() -> bool {
    false
}
