//! The write-ahead log's policy: copied by a thread of its own, restarted by the writer.

use std::sync::Mutex;
use std::sync::mpsc as std_mpsc;

use rusqlite::Connection;

use crate::stats::StoreTimes;

/// The write-ahead log's length, in frames, past which the writer has it restarted.
/// 2 Mi frames of 1 KiB pages, about 2 GB of disk: each restart pauses the writer (copying
/// and syncing; in the soak 40–70 ms at first and up to ~0.5 s once the database had grown to
/// 8 GB), so the longer the log, the rarer the pauses (every ~2 minutes at 2,000 msg/s). Its
/// length costs little else: readers look up only the frames not yet copied (the checkpoint
/// thread copies every 100 ms), and its index, mapped by every connection, is 16 MiB at most.
pub(super) const WAL_LIMIT_FRAMES: i64 = 2 << 20;

/// A frame: a 1 KiB page (the `page_size` set in `open`) and its 24-byte header.
pub(super) const WAL_FRAME_BYTES: i64 = 1024 + 24;

/// How often, at most, the writer looks at the log's length.
pub(super) const WAL_CHECK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Keep the write-ahead log bounded. The checkpoint thread's passive checkpoints copy frames
/// into the database, but the log restarts from its beginning only when a write transaction
/// begins with every frame copied and no reader on the log; under steady load the writer
/// always has appended more by the time a checkpoint ends, and the log grew without end (9.5
/// GB in 9 minutes of the soak, and its index, mapped into the process, with it).
///
/// So once the log (as long as the checkpoint thread last saw it) passes [`WAL_LIMIT_FRAMES`], the
/// writer, between two batches, copies what the checkpoint thread has not yet (the frames of
/// the last tenth of a second or so) with a passive checkpoint of its own: nothing is
/// appended meanwhile, so its next transaction finds the log fully copied and starts it again
/// from the beginning. It never waits: if the checkpoint thread is mid-copy, or a reader still
/// reads the log when the next transaction begins, it tries again at the next check. (It used
/// to truncate the log past 64 MiB with a `TRUNCATE` checkpoint, waiting up to 200 ms for the
/// checkpoint thread and readers: every 3–4 s under a soak's load.) Returns whether it
/// copied the whole log (a restart is due).
pub(super) fn bound_wal(conn: &Connection) -> bool {
    let _ = conn.busy_timeout(std::time::Duration::ZERO);
    let done = match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    }) {
        Ok((0, frames, copied)) if frames == copied => true,
        Ok(_) => {
            tracing::debug!(
                "write-ahead log not fully copied: a checkpoint or reader in the way; next time"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "write-ahead log checkpoint failed");
            false
        }
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
    done
}

/// Copy the WAL into the database every [`CHECKPOINT_EVERY`] (passive: never blocks the
/// writer or readers), until the store thread stops. This thread, not the writer, should do
/// the copying: once it fell behind (every second, under a soak's load) the writer's own
/// truncations did it, and that was a fifth of the writer's time.
pub(super) const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

pub(super) fn checkpoint_loop(
    conn: Connection,
    stopped: std_mpsc::Receiver<()>,
    frames: &std::sync::atomic::AtomicI64,
    times: &Mutex<StoreTimes>,
) {
    while let Err(std_mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
        let started = std::time::Instant::now();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(n) => frames.store(n, std::sync::atomic::Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "state store checkpoint failed"),
        }
        times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .checkpoint
            .observe(started.elapsed());
    }
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}
