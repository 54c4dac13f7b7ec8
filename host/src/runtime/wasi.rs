//! Each invocation's WASI 0.2 context, made from its [`Capabilities`].
//!
//! - Every [`FileGrant`](crate::workflow::FileGrant) is a preopened
//!   directory at its guest path, read-only or read-write. wasmtime-wasi opens
//!   it as a cap-std `Dir`: every path the guest gives is resolved beneath it,
//!   so `..`, absolute paths and symbolic links cannot leave the tree
//!   (`tests/all/grants_files.rs` shows it).
//! - Only the granted variables are in its environment; it has no arguments,
//!   an empty stdin, and its stdout and stderr are discarded.
//! - No sockets: TCP, UDP and name lookups are refused (HTTP, when granted,
//!   goes through `wasi:http`, not sockets).
//! - File operations run on the executor thread that runs the agent
//!   (`allow_blocking_current_thread`), not handed to tokio's blocking pool:
//!   the hand-off cost ~25 µs a call (a call reads at most 64 KiB), making a
//!   1 MiB read ~5x slower. A call that blocks in the kernel (a FIFO, a hung
//!   network mount) holds that thread, and the agent's timeout, until it
//!   returns (SECURITY.md, "not defended").
//! - Without `wasi: true` ([`Capabilities::real_clocks`]) the agent's output
//!   can depend only on what it was granted: the wall clock always reads
//!   [`FIXED_WALL_CLOCK`], the monotonic clock reads 0 and then one
//!   [`MONOTONIC_STEP`] more at every reading (so a guest that waits for time
//!   to pass on it ends, and sees the same readings every run; sleeps still
//!   take real time), and both random generators are seeded from the agent's
//!   name.
//!
//! The context is built at the invocation's first WASI call: most agents
//! make none. A granted directory that cannot be opened then is recorded as
//! [`Unopened`]; the invocation fails with it whatever the agent does next.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use super::Capabilities;
use crate::workflow::FileMode;

/// What the wall clock reads without real clocks: 2000-01-01T00:00:00Z.
pub const FIXED_WALL_CLOCK: Duration = Duration::from_secs(946_684_800);

/// How far the monotonic clock advances at each reading without real clocks.
pub const MONOTONIC_STEP: Duration = Duration::from_millis(1);

/// A granted directory the host could not open when the agent first used WASI.
#[derive(Debug, Clone)]
pub(crate) struct Unopened {
    pub(crate) host: PathBuf,
    pub(crate) guest: String,
    pub(crate) reason: String,
}

/// The WASI context of `agent`'s invocation, and the first granted directory
/// that could not be opened (the context then lacks it).
pub(crate) fn context(agent: &str, capabilities: &Capabilities) -> (WasiCtx, Option<Unopened>) {
    let mut builder = WasiCtxBuilder::new();
    builder.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false).allow_blocking_current_thread(true);
    let grants = &capabilities.grants;
    let mut unopened = None;
    for grant in &grants.files {
        let perms = match grant.mode {
            FileMode::Read => FsPerms::ReadOnly,
            FileMode::ReadWrite => FsPerms::ReadWrite,
        };
        if let Err(e) = builder.preopened_dir(&grant.host, &grant.guest, perms) {
            unopened.get_or_insert_with(|| Unopened {
                host: grant.host.clone(),
                guest: grant.guest.clone(),
                reason: format!("{e:#}"),
            });
        }
    }
    for variable in &grants.variables {
        builder.env(&variable.name, &variable.value.text);
    }
    if !capabilities.real_clocks {
        builder.wall_clock(FixedWallClock).monotonic_clock(SteppingClock::default());
        let seed = |purpose: &str| blake3::derive_key(&format!("ensemble wasi {purpose}"), agent.as_bytes());
        builder.secure_random(StdRng::from_seed(seed("random")));
        builder.insecure_random(StdRng::from_seed(seed("insecure random")));
        let insecure_seed = seed("insecure seed");
        let mut low = [0; 16];
        low.copy_from_slice(&insecure_seed[..16]);
        builder.insecure_random_seed(u128::from_le_bytes(low));
    }
    (builder.build(), unopened)
}

/// A wall clock that always reads [`FIXED_WALL_CLOCK`].
struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        FIXED_WALL_CLOCK
    }
}

/// A monotonic clock that reads 0, then [`MONOTONIC_STEP`] more at each reading.
#[derive(Default)]
struct SteppingClock {
    next: AtomicU64,
}

impl HostMonotonicClock for SteppingClock {
    fn resolution(&self) -> u64 {
        u64::try_from(MONOTONIC_STEP.as_nanos()).unwrap_or(u64::MAX)
    }

    fn now(&self) -> u64 {
        self.next.fetch_add(self.resolution(), Ordering::Relaxed)
    }
}
