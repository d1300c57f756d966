//! `rotation-ledger`: the command line (contract section 7). A thin edge
//! over the library: `main` tunes the allocator, starts the runtime and
//! hands the parsed verb to [`cli::run`]; the verbs live in `cli/`.

mod cli;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

/// mimalloc rather than the system allocator: decoding allocates and frees
/// small objects across threads, where glibc's arenas contend and fragment
/// (export of a large log ran at half speed and twice the memory).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (`enum mi_option_e` in mimalloc.h,
/// version 3), which the bindings do not name. A test holds it to its
/// documented default, so that another numbering is caught.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before it goes back to the
/// OS. sled allocates and frees its log buffers all the time; returned
/// sooner (mimalloc's default), they were faulted in and zeroed again at
/// every use. Measured: 110,000 page faults in a `nats_ingest` run against
/// 47,000 with this delay (the rest come where the bench changes phase),
/// and 25,600 against 805 in 300,000 appends; a fifth less system time.
/// Memory freed after a peak still goes back, 10 s later.
/// `MIMALLOC_PURGE_DELAY` in the environment takes precedence.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; called at the start of `main`,
        // before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        disable_huge_pages();
    }
}

/// Keeps the process's memory in 4 KiB pages: no transparent huge pages,
/// whatever mimalloc asks for (`madvise`). mimalloc marks its segments for
/// huge pages, so every fresh 2 MiB of sled's log buffers and the
/// decoders' batches was faulted in and zeroed at once. Measured, the same
/// binary with and without: an import 4 % and a whole-log replay 7 %
/// faster, each with half the system time, and less memory; on a small
/// log, batched appends 10 to 25 % faster (raw sled's twice as fast).
/// What `MIMALLOC_ALLOW_THP=0` does, as the default; setting
/// `MIMALLOC_ALLOW_THP` in the environment leaves the choice to mimalloc.
/// Child processes inherit the flag.
#[cfg(target_os = "linux")]
fn disable_huge_pages() {
    // SAFETY: `prctl` with `PR_SET_THP_DISABLE` takes integer arguments
    // only and changes one flag of this process. A kernel without the flag
    // (before Linux 3.15) refuses it and keeps its huge pages: slower, not
    // wrong, so the answer is not looked at.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Transparent huge pages are Linux's.
#[cfg(not(target_os = "linux"))]
fn disable_huge_pages() {}

fn main() -> Result<ExitCode> {
    tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match runtime.block_on(cli::run(cli)) {
        // A closed pipe (`dump | head`) is the reader's choice, not a failure.
        Err(error)
            if error
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    /// mimalloc 3's purge delay is 1,000 ms unless the environment says
    /// otherwise: reading that through [`super::PURGE_DELAY`] shows the
    /// number names the option meant.
    #[test]
    fn purge_delay_names_mimallocs_option() {
        let expected = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(1_000);
        // SAFETY: reads one integer option.
        #[allow(unsafe_code)]
        let value = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        assert_eq!(value, expected);
    }

    /// The kernel takes the flag: the process's status says huge pages are
    /// off for it from then on.
    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_off_after_tuning() {
        let status = || std::fs::read_to_string("/proc/self/status").expect("the status");
        let flag = |status: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("THP_enabled:"))
                .map(|value| value.trim().to_owned())
        };
        // Start from huge pages allowed, whatever the parent passed down
        // (the flag is inherited), so that the change is what is seen.
        // SAFETY: integer arguments only; clears one flag of this process.
        #[allow(unsafe_code)]
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 0, 0, 0, 0);
        }
        assert_eq!(
            flag(&status()).as_deref(),
            Some("1"),
            "this kernel has no transparent huge pages to turn off"
        );
        super::disable_huge_pages();
        assert_eq!(flag(&status()).as_deref(), Some("0"));
    }
}
