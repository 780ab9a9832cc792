//! Background file I/O at a bounded rate. Sealing an archive segment writes and reads back
//! hundreds of megabytes; done at full speed, with one sync at the end, it filled the disk's
//! queue for seconds and the state store's commits (each a sync) waited behind it — the
//! intake's p99 jumped at every seal. Paced, with a sync every few megabytes, the segment
//! takes longer and the commits never queue behind more than a few megabytes.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Sealing's pace: writing the segment, and reading it back to verify it.
pub const WRITE_BYTES_PER_SEC: u64 = 32 << 20;
pub const READ_BYTES_PER_SEC: u64 = 64 << 20;

/// A written file is synced every this many bytes.
const SYNC_EVERY: u64 = 4 << 20;

/// Sleep checks happen every this many bytes (not per small write).
const CHECK_EVERY: u64 = 1 << 20;

/// Bytes so far against the time they may take at `rate`.
#[derive(Debug)]
struct Pace {
    rate: u64,
    started: Instant,
    done: u64,
    unchecked: u64,
}

impl Pace {
    fn new(rate: u64) -> Self {
        Self {
            rate: rate.max(1),
            started: Instant::now(),
            done: 0,
            unchecked: 0,
        }
    }

    fn account(&mut self, n: usize) {
        let n = n as u64;
        self.done += n;
        self.unchecked += n;
        if self.unchecked < CHECK_EVERY {
            return;
        }
        self.unchecked = 0;
        let due = Duration::from_secs_f64(self.done as f64 / self.rate as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// A file written at a bounded rate, its data synced every [`SYNC_EVERY`] bytes (the caller
/// still syncs at the end). For threads that may block, never for the runtime's.
#[derive(Debug)]
pub struct PacedWriter {
    file: std::fs::File,
    pace: Pace,
    unsynced: u64,
}

impl PacedWriter {
    pub fn new(file: std::fs::File, bytes_per_sec: u64) -> Self {
        Self {
            file,
            pace: Pace::new(bytes_per_sec),
            unsynced: 0,
        }
    }
}

impl Write for PacedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        self.pace.account(n);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A reader at a bounded rate.
#[derive(Debug)]
pub struct PacedReader<R> {
    inner: R,
    pace: Pace,
}

impl<R> PacedReader<R> {
    pub fn new(inner: R, bytes_per_sec: u64) -> Self {
        Self {
            inner,
            pace: Pace::new(bytes_per_sec),
        }
    }
}

impl<R: Read> Read for PacedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pace.account(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_writer_and_reader_keep_their_rate_and_their_bytes() {
        let dir = std::env::temp_dir().join(format!("wingspan-pace-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("f");
        let data: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 251) as u8).collect();
        let started = Instant::now();
        let mut w = PacedWriter::new(std::fs::File::create(&path).expect("create"), 32 << 20);
        for chunk in data.chunks(8192) {
            w.write_all(chunk).expect("write");
        }
        w.flush().expect("flush");
        // 6 MiB at 32 MiB/s: at least ~1/6 s (the last partial megabyte is not waited for).
        assert!(
            started.elapsed() >= Duration::from_millis(140),
            "{:?}",
            started.elapsed()
        );
        let started = Instant::now();
        let mut back = Vec::new();
        PacedReader::new(std::fs::File::open(&path).expect("open"), 64 << 20)
            .read_to_end(&mut back)
            .expect("read");
        assert!(
            started.elapsed() >= Duration::from_millis(70),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(back, data);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
