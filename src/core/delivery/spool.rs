//! The durable spool: deliveries not yet sent (in section order), dead letters, in one redb
//! file. redb's transactions are crash-safe: a crash loses at most the write it interrupted.
//!
//! When the disk cannot take a write (the file cannot be opened, the disk is full, an I/O
//! error), the spool does not drop anything: the write goes to an in-memory overlay (bounded:
//! [`MEMORY_ROWS`]) that shadows the file, the spool's [`Health`] says so (`webhook show
//! status`, one ERROR line per change), and every later write first tries to move the overlay
//! to disk (at most once per [`RETRY_DISK`]). Readers see the file and the overlay merged.
//! A write is not even tried while the file system has less than [`RESERVE`] free: redb, after
//! a failed write, refuses everything (reads too) until the file is opened again.

// The transaction closures return redb's own (large) error type; they run once per
// transaction, where its size does not matter.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{Builder, Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::Delivery;

const PENDING: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("pending");
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead");
/// Pending rows that could not be read (written by an incompatible version, or damaged): kept
/// byte for byte, out of the way of the rows behind them.
const UNREADABLE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("unreadable");

/// Most rows (pending and dead) kept in memory while the disk cannot take them; beyond that
/// new deliveries are dropped, counted and logged.
pub const MEMORY_ROWS: usize = 200_000;

/// How often a spool in trouble tries the disk again (reopen, then move the overlay there).
pub const RETRY_DISK: Duration = Duration::from_secs(2);

/// Free space a write needs on the spool's file system (besides its own size).
pub const RESERVE: u64 = 1 << 20;

/// A spooled delivery and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spooled {
    pub delivery: Delivery,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this (unix ms).
    pub next_at_ms: i64,
    pub last_error: String,
    /// The last attempt did not reach the endpoint (connect, DNS, timeout): such a delivery is
    /// due at once when another one reaches it again, instead of waiting out its retry delay.
    #[serde(default)]
    pub unreachable: bool,
}

/// What the drain needs to know of a row without decoding its request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Peek {
    #[serde(rename = "delivery", deserialize_with = "call_id_only")]
    pub call_id: String,
    #[serde(default)]
    pub next_at_ms: i64,
    #[serde(default)]
    pub unreachable: bool,
}

fn call_id_only<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    struct CallOnly {
        call_id: String,
    }
    Ok(CallOnly::deserialize(d)?.call_id)
}

/// One pending row as [`Spool::scan`] shows it: still encoded (from the file) or in memory.
pub enum Row<'a> {
    Disk(&'a [u8]),
    Memory(&'a Spooled),
}

impl Row<'_> {
    /// The call and timing of the row, without decoding the request.
    pub fn peek(&self) -> Result<Peek, SpoolError> {
        match self {
            Row::Disk(b) => serde_json::from_slice(b).map_err(SpoolError::decode),
            Row::Memory(s) => Ok(Peek {
                call_id: s.delivery.call_id.clone(),
                next_at_ms: s.next_at_ms,
                unreachable: s.unreachable,
            }),
        }
    }

    pub fn decode(&self) -> Result<Spooled, SpoolError> {
        match self {
            Row::Disk(b) => serde_json::from_slice(b).map_err(SpoolError::decode),
            Row::Memory(s) => Ok((*s).clone()),
        }
    }
}

/// Why the spool could not do something.
#[derive(Debug, Clone, PartialEq)]
pub enum SpoolError {
    /// The file could not be read or written (redb, the file system).
    Disk(String),
    /// A row could not be encoded or decoded.
    Decode(String),
    /// The disk refused the write and the memory overlay is full: the rows were dropped.
    Full { dropped: usize },
}

impl SpoolError {
    fn disk(e: impl fmt::Display) -> SpoolError {
        SpoolError::Disk(e.to_string())
    }
    fn decode(e: impl fmt::Display) -> SpoolError {
        SpoolError::Decode(e.to_string())
    }
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Disk(e) => write!(f, "{e}"),
            SpoolError::Decode(e) => write!(f, "bad spool row: {e}"),
            SpoolError::Full { dropped } => write!(
                f,
                "{dropped} delivery(ies) dropped: the disk refuses writes and {MEMORY_ROWS} are already waiting in memory"
            ),
        }
    }
}

impl std::error::Error for SpoolError {}

/// Whether the spool's file takes writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Ok,
    /// The file could not be opened; everything is kept in memory.
    Unavailable {
        since: DateTime<Utc>,
        error: String,
    },
    /// Writes fail (disk full, I/O error); new rows wait in memory.
    Failing {
        since: DateTime<Utc>,
        error: String,
    },
}

type Key = (String, u64);

/// A row the disk has not taken yet: its newest version (`None`: removed), and whether the
/// file may hold an older one (which it then shadows).
#[derive(Clone)]
struct Entry {
    row: Option<Spooled>,
    on_disk: bool,
}

/// Rows the disk has not taken yet.
#[derive(Default)]
struct Overlay {
    pending: BTreeMap<Key, Entry>,
    dead: BTreeMap<Key, Entry>,
    /// Rows (not removals) held: the part [`MEMORY_ROWS`] bounds.
    rows: usize,
}

impl Overlay {
    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.dead.is_empty()
    }

    fn table(&mut self, dead: bool) -> &mut BTreeMap<Key, Entry> {
        if dead {
            &mut self.dead
        } else {
            &mut self.pending
        }
    }

    /// Stores a row's newest version; `false` when memory is full (and it is new here).
    fn put(&mut self, dead: bool, key: Key, row: Spooled, on_disk: bool) -> bool {
        let full = self.rows >= MEMORY_ROWS;
        let table = self.table(dead);
        match table.get_mut(&key) {
            Some(e) => {
                let was_row = e.row.is_some();
                e.row = Some(row);
                if !was_row {
                    self.rows += 1;
                }
                true
            }
            None if full => false,
            None => {
                table.insert(
                    key,
                    Entry {
                        row: Some(row),
                        on_disk,
                    },
                );
                self.rows += 1;
                true
            }
        }
    }

    /// Removes a row: forgotten when only memory had it, marked removed when the file may
    /// hold it.
    fn remove(&mut self, dead: bool, key: Key, disk_may_hold: bool) {
        let table = self.table(dead);
        let mut freed = false;
        match table.get_mut(&key) {
            Some(e) if !e.on_disk => {
                freed = e.row.is_some();
                table.remove(&key);
            }
            Some(e) => {
                freed = e.row.take().is_some();
            }
            None if disk_may_hold => {
                table.insert(
                    key,
                    Entry {
                        row: None,
                        on_disk: true,
                    },
                );
            }
            None => {}
        }
        if freed {
            self.rows -= 1;
        }
    }
}

struct State {
    overlay: Overlay,
    health: Health,
    /// Last time the disk was tried again after a failure.
    last_try: Option<Instant>,
}

/// The spool file, and what is kept in memory while the file cannot take it.
pub struct Spool {
    dir: PathBuf,
    path: PathBuf,
    db: RwLock<Option<Database>>,
    state: Mutex<State>,
    /// Rows dropped because neither the disk nor memory could take them.
    dropped: AtomicU64,
    /// The file was open once: it may hold rows memory shadows.
    ever_open: std::sync::atomic::AtomicBool,
}

fn open_error(e: redb::DatabaseError) -> (bool, String) {
    // Only a file redb cannot make sense of is set aside; an I/O error (full disk, permissions)
    // leaves the file alone: its rows are waited for.
    use std::io::ErrorKind;
    let corrupt = match &e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))
        | redb::DatabaseError::UpgradeRequired(_) => true,
        // A file too short or not redb's reads as a short or invalid read.
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            matches!(io.kind(), ErrorKind::UnexpectedEof | ErrorKind::InvalidData)
        }
        _ => false,
    };
    (corrupt, e.to_string())
}

impl Spool {
    /// Opens `<dir>/spool.redb`, creating it. A file redb cannot read is renamed aside
    /// (`spool.redb.corrupt-<unix time>`) and a fresh one started. A spool that cannot be
    /// opened at all (no such directory, no permission, disk full) is still returned: it keeps
    /// everything in memory, says so in [`Spool::health`], and tries the disk again later.
    pub fn open(dir: &Path) -> Spool {
        let path = dir.join("spool.redb");
        let spool = Spool {
            dir: dir.to_path_buf(),
            path,
            db: RwLock::new(None),
            state: Mutex::new(State {
                overlay: Overlay::default(),
                health: Health::Ok,
                last_try: None,
            }),
            dropped: AtomicU64::new(0),
            ever_open: std::sync::atomic::AtomicBool::new(false),
        };
        match spool.open_file(true) {
            Ok(db) => {
                spool.ever_open.store(true, Ordering::SeqCst);
                *spool.db_write() = Some(db)
            }
            Err(e) => {
                let mut st = spool.lock_state();
                spool.set_health(
                    &mut st,
                    Health::Unavailable {
                        since: Utc::now(),
                        error: e,
                    },
                );
                st.last_try = Some(Instant::now());
            }
        }
        spool
    }

    fn open_file(&self, set_aside: bool) -> Result<Database, String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let db = match open_db(&self.path) {
            Ok(db) => db,
            Err(e) => {
                let (corrupt, why) = open_error(e);
                if !(corrupt && set_aside) {
                    return Err(format!("cannot open {}: {why}", self.path.display()));
                }
                let aside = PathBuf::from(format!(
                    "{}.corrupt-{}",
                    self.path.display(),
                    Utc::now().timestamp()
                ));
                log::error!(
                    "spool {} unreadable ({why}); moved aside to {} and starting a new one",
                    self.path.display(),
                    aside.display()
                );
                std::fs::rename(&self.path, &aside)
                    .map_err(|e| format!("cannot move the bad spool aside: {e}"))?;
                open_db(&self.path).map_err(|e| e.to_string())?
            }
        };
        let w = db.begin_write().map_err(|e| e.to_string())?;
        w.open_table(PENDING).map_err(|e| e.to_string())?;
        w.open_table(DEAD).map_err(|e| e.to_string())?;
        w.open_table(UNREADABLE).map_err(|e| e.to_string())?;
        w.commit().map_err(|e| e.to_string())?;
        Ok(db)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn db_read(&self) -> std::sync::RwLockReadGuard<'_, Option<Database>> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    fn db_write(&self) -> std::sync::RwLockWriteGuard<'_, Option<Database>> {
        self.db.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the file takes writes, and if not since when and why.
    pub fn health(&self) -> Health {
        self.lock_state().health.clone()
    }

    /// Rows waiting in memory for the disk.
    pub fn in_memory(&self) -> usize {
        self.lock_state().overlay.rows
    }

    /// Rows dropped because neither the disk nor memory could take them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Logs a change of health: one ERROR line when writes start failing, one NOTICE-level
    /// line when they work again; nothing while it stays the same.
    fn set_health(&self, st: &mut State, new: Health) {
        let same_kind = std::mem::discriminant(&st.health) == std::mem::discriminant(&new);
        if same_kind {
            return;
        }
        match &new {
            Health::Ok => log::warn!(
                "spool {}: writable again; deliveries kept in memory are on disk now",
                self.path.display()
            ),
            Health::Unavailable { error, .. } => log::error!(
                "spool {}: {error}; deliveries are kept in memory (up to {MEMORY_ROWS}) and still sent; `webhook show status` shows it",
                self.path.display()
            ),
            Health::Failing { error, .. } => log::error!(
                "spool {}: write failed ({error}); deliveries are kept in memory (up to {MEMORY_ROWS}) and still sent until the disk takes them again",
                self.path.display()
            ),
        }
        st.health = new;
    }

    fn failed(&self, st: &mut State, error: String) {
        if matches!(st.health, Health::Ok) {
            self.set_health(
                st,
                Health::Failing {
                    since: Utc::now(),
                    error,
                },
            );
        }
        st.last_try = Some(Instant::now());
    }

    /// Free bytes on the spool's file system, when it can be asked.
    fn free_bytes(&self) -> Option<u64> {
        let s = rustix::fs::statvfs(&self.dir).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Runs one write transaction on the file; a failure closes the file (redb refuses
    /// everything after an I/O error until it is opened again).
    fn disk_write(
        &self,
        st: &mut State,
        size: usize,
        durable: bool,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> bool {
        if !st.overlay.is_empty() || self.db_read().is_none() {
            return false;
        }
        if let Some(free) = self.free_bytes() {
            if free < RESERVE + 2 * size as u64 {
                self.failed(st, format!("no space left on device ({free} bytes free)"));
                return false;
            }
        }
        let result = {
            let db = self.db_read();
            let Some(db) = db.as_ref() else { return false };
            (|| {
                let mut w = db.begin_write()?;
                if !durable {
                    w.set_durability(redb::Durability::Eventual);
                }
                f(&w)?;
                w.commit()?;
                Ok::<(), redb::Error>(())
            })()
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                *self.db_write() = None;
                self.failed(st, e.to_string());
                false
            }
        }
    }

    /// Tries the disk again (at most once per [`RETRY_DISK`]): opens the file if it is closed,
    /// then moves what waits in memory there in one transaction.
    fn retry_disk(&self, st: &mut State) {
        if matches!(st.health, Health::Ok) && st.overlay.is_empty() {
            return;
        }
        if st.last_try.is_some_and(|t| t.elapsed() < RETRY_DISK) {
            return;
        }
        st.last_try = Some(Instant::now());
        if self.db_read().is_none() {
            match self.open_file(false) {
                Ok(db) => {
                    self.ever_open.store(true, Ordering::SeqCst);
                    *self.db_write() = Some(db)
                }
                Err(_) => return,
            }
        }
        let size: usize = st.overlay.rows * 512;
        if let Some(free) = self.free_bytes() {
            if free < RESERVE + 2 * size as u64 {
                return;
            }
        }
        let flushed = {
            let db = self.db_read();
            let Some(db) = db.as_ref() else { return };
            let overlay = &st.overlay;
            (|| {
                let w = db.begin_write()?;
                write_entries(&mut w.open_table(PENDING)?, &overlay.pending)?;
                write_entries(&mut w.open_table(DEAD)?, &overlay.dead)?;
                w.commit()?;
                Ok::<(), redb::Error>(())
            })()
        };
        match flushed {
            Ok(()) => {
                st.overlay = Overlay::default();
                self.set_health(st, Health::Ok);
            }
            Err(e) => {
                *self.db_write() = None;
                if let Health::Failing { error, .. } = &mut st.health {
                    *error = e.to_string();
                }
            }
        }
    }

    /// Lets a spool in trouble try the disk again (rate-limited); cheap when all is well, and
    /// never waits for another thread's write (it tries again on its next call).
    pub fn maintain(&self) {
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        self.retry_disk(&mut st);
    }

    /// Keeps rows in memory, within [`MEMORY_ROWS`]; `on_disk`: the file may hold an older
    /// version of them.
    fn to_memory<'a>(
        &self,
        st: &mut State,
        rows: impl IntoIterator<Item = (u64, &'a Spooled)>,
        dead: bool,
        on_disk: bool,
    ) -> Result<(), SpoolError> {
        let mut dropped = 0;
        for (seq, row) in rows {
            let key = (row.delivery.section.clone(), seq);
            if !st.overlay.put(dead, key, row.clone(), on_disk) {
                dropped += 1;
            }
        }
        if dropped > 0 {
            let before = self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
            if before == 0 || (before + dropped as u64).is_power_of_two() {
                log::error!(
                    "spool {}: {}",
                    self.path.display(),
                    SpoolError::Full { dropped }
                );
            }
            return Err(SpoolError::Full { dropped });
        }
        Ok(())
    }

    fn disk_may_hold(&self) -> bool {
        self.ever_open.load(Ordering::SeqCst)
    }

    /// The highest sequence number in use, so new ones sort after everything spooled.
    pub fn max_seq(&self) -> Result<u64, SpoolError> {
        let mut max = 0;
        if let Some(db) = self.db_read().as_ref() {
            let r = db.begin_read().map_err(SpoolError::disk)?;
            for def in [PENDING, DEAD] {
                let t = r.open_table(def).map_err(SpoolError::disk)?;
                for item in t.iter().map_err(SpoolError::disk)? {
                    let (k, _) = item.map_err(SpoolError::disk)?;
                    max = max.max(k.value().1);
                }
            }
        }
        let st = self.lock_state();
        for (_, seq) in st.overlay.pending.keys().chain(st.overlay.dead.keys()) {
            max = max.max(*seq);
        }
        Ok(max)
    }

    /// Appends deliveries (one transaction, one fsync); in memory when the disk refuses.
    /// `Err` only when they had to be dropped (counted and logged here).
    pub fn push(&self, items: &[(u64, Spooled)]) -> Result<(), SpoolError> {
        self.put_pending(items, true, false)
    }

    /// Writes pending rows in one transaction (fsynced when `fsync`); in memory when the disk
    /// refuses. `replaces`: the rows may already be on disk (an update, not an append).
    fn put_pending(
        &self,
        rows: &[(u64, Spooled)],
        fsync: bool,
        replaces: bool,
    ) -> Result<(), SpoolError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (encoded, size) = encode_rows(rows)?;
        let mut st = self.lock_state();
        self.retry_disk(&mut st);
        let written = self.disk_write(&mut st, size, fsync, |w| {
            let mut t = w.open_table(PENDING)?;
            for (seq, s, bytes) in &encoded {
                t.insert((s.delivery.section.as_str(), *seq), bytes.as_slice())?;
            }
            Ok(())
        });
        if written {
            return Ok(());
        }
        let on_disk = replaces && self.disk_may_hold();
        self.to_memory(&mut st, rows.iter().map(|(q, s)| (*q, s)), false, on_disk)
    }

    /// Visits a section's pending rows after `after` in order (file and memory merged) until
    /// `visit` breaks.
    pub fn scan(
        &self,
        section: &str,
        after: u64,
        mut visit: impl FnMut(u64, Row<'_>) -> ControlFlow<()>,
    ) -> Result<(), SpoolError> {
        let start = after.saturating_add(1);
        let memory: Vec<(u64, Option<Spooled>)> = {
            let st = self.lock_state();
            st.overlay
                .pending
                .range((section.to_string(), start)..=(section.to_string(), u64::MAX))
                .map(|((_, seq), e)| (*seq, e.row.clone()))
                .collect()
        };
        let mut memory = memory.into_iter().peekable();
        let db = self.db_read();
        if let Some(db) = db.as_ref() {
            let r = db.begin_read().map_err(SpoolError::disk)?;
            let t = r.open_table(PENDING).map_err(SpoolError::disk)?;
            for item in t
                .range((section, start)..=(section, u64::MAX))
                .map_err(SpoolError::disk)?
            {
                let (k, v) = item.map_err(SpoolError::disk)?;
                let seq = k.value().1;
                let mut shadowed = false;
                while let Some(&(m, _)) = memory.peek() {
                    if m > seq {
                        break;
                    }
                    let (m, row) = memory.next().expect("peeked");
                    // The memory version of a row (or its removal) shadows the file's.
                    shadowed |= m == seq;
                    if let Some(s) = row {
                        if visit(m, Row::Memory(&s)).is_break() {
                            return Ok(());
                        }
                    }
                }
                if shadowed {
                    continue;
                }
                if visit(seq, Row::Disk(v.value())).is_break() {
                    return Ok(());
                }
            }
        }
        for (m, row) in memory {
            if let Some(s) = row {
                if visit(m, Row::Memory(&s)).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The oldest pending delivery of a section.
    pub fn head(&self, section: &str) -> Result<Option<(u64, Spooled)>, SpoolError> {
        let mut out = None;
        let mut failed = None;
        self.scan(section, 0, |seq, row| {
            match row.decode() {
                Ok(s) => out = Some((seq, s)),
                Err(e) => failed = Some(e),
            }
            ControlFlow::Break(())
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Whether a section has pending rows.
    pub fn has_pending(&self, section: &str) -> Result<bool, SpoolError> {
        let mut any = false;
        self.scan(section, 0, |_, _| {
            any = true;
            ControlFlow::Break(())
        })?;
        Ok(any)
    }

    /// Up to `n` oldest pending deliveries of a section, in order.
    pub fn head_batch(&self, section: &str, n: usize) -> Result<Vec<(u64, Spooled)>, SpoolError> {
        let mut out = Vec::new();
        let mut failed = None;
        self.scan(section, 0, |seq, row| {
            if out.len() >= n {
                return ControlFlow::Break(());
            }
            match row.decode() {
                Ok(s) => {
                    out.push((seq, s));
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Replaces a pending entry (attempt count, next time); not fsynced.
    pub fn update(&self, seq: u64, s: &Spooled) -> Result<(), SpoolError> {
        self.update_many(&[(seq, s.clone())])
    }

    /// Replaces pending entries in one transaction; not fsynced.
    pub fn update_many(&self, rows: &[(u64, Spooled)]) -> Result<(), SpoolError> {
        self.put_pending(rows, false, true)
    }

    /// Removes delivered entries in one transaction (not fsynced: after a crash some may be
    /// sent once more, never lost).
    pub fn remove_many(&self, section: &str, seqs: &[u64]) -> Result<(), SpoolError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut st = self.lock_state();
        self.retry_disk(&mut st);
        let written = self.disk_write(&mut st, 0, false, |w| {
            let mut t = w.open_table(PENDING)?;
            for seq in seqs {
                t.remove((section, *seq))?;
            }
            Ok(())
        });
        if written {
            return Ok(());
        }
        // Removals always fit: they free memory or mark a row on disk as gone.
        let on_disk = self.disk_may_hold();
        for seq in seqs {
            st.overlay
                .remove(false, (section.to_string(), *seq), on_disk);
        }
        Ok(())
    }

    /// Moves pending entries to the dead letters (one transaction).
    pub fn bury_many(&self, rows: &[(u64, Spooled)]) -> Result<(), SpoolError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (encoded, size) = encode_rows(rows)?;
        let mut st = self.lock_state();
        self.retry_disk(&mut st);
        let written = self.disk_write(&mut st, size, true, |w| {
            let mut p = w.open_table(PENDING)?;
            let mut d = w.open_table(DEAD)?;
            for (seq, s, bytes) in &encoded {
                let key = (s.delivery.section.as_str(), *seq);
                p.remove(key)?;
                d.insert(key, bytes.as_slice())?;
            }
            Ok(())
        });
        if written {
            return Ok(());
        }
        let on_disk = self.disk_may_hold();
        for (seq, s) in rows {
            st.overlay
                .remove(false, (s.delivery.section.clone(), *seq), on_disk);
        }
        self.to_memory(&mut st, rows.iter().map(|(q, s)| (*q, s)), true, false)
    }

    /// Moves pending rows of `section` that cannot be decoded to the `unreadable` table, their
    /// bytes untouched (nothing is deleted), so the rows behind them are no longer held up and
    /// the drain does not stumble on them at every scan. Only file rows can be unreadable.
    /// Returns how many moved.
    pub fn set_aside(&self, section: &str, seqs: &[u64]) -> Result<usize, SpoolError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let mut st = self.lock_state();
        self.retry_disk(&mut st);
        let mut moved = 0;
        let written = self.disk_write(&mut st, 0, true, |w| {
            let mut p = w.open_table(PENDING)?;
            let mut u = w.open_table(UNREADABLE)?;
            for seq in seqs {
                let bytes = match p.remove((section, *seq))? {
                    Some(v) => v.value().to_vec(),
                    None => continue,
                };
                u.insert((section, *seq), bytes.as_slice())?;
                moved += 1;
            }
            Ok(())
        });
        if written {
            Ok(moved)
        } else {
            Err(SpoolError::Disk(
                "the spool file is not writable now; the unreadable rows stay where they are"
                    .into(),
            ))
        }
    }

    /// How many rows were set aside as unreadable, all sections.
    pub fn unreadable_len(&self) -> Result<u64, SpoolError> {
        match self.db_read().as_ref() {
            Some(db) => {
                let r = db.begin_read().map_err(SpoolError::disk)?;
                let t = r.open_table(UNREADABLE).map_err(SpoolError::disk)?;
                t.len().map_err(SpoolError::disk)
            }
            None => Ok(0),
        }
    }

    /// Moves a pending entry to the dead letters.
    pub fn bury(&self, seq: u64, s: &Spooled) -> Result<(), SpoolError> {
        self.bury_many(&[(seq, s.clone())])
    }

    /// Counts (pending, dead) of one section.
    pub fn counts(&self, section: &str) -> Result<(usize, usize), SpoolError> {
        let mut pending = 0;
        self.scan(section, 0, |_, _| {
            pending += 1;
            ControlFlow::Continue(())
        })?;
        let dead = self.dead(Some(section))?.len();
        Ok((pending, dead))
    }

    /// Sections that have pending deliveries.
    pub fn pending_sections(&self) -> Result<Vec<String>, SpoolError> {
        let mut out: Vec<String> = Vec::new();
        if let Some(db) = self.db_read().as_ref() {
            let r = db.begin_read().map_err(SpoolError::disk)?;
            let t = r.open_table(PENDING).map_err(SpoolError::disk)?;
            for item in t.iter().map_err(SpoolError::disk)? {
                let (k, _) = item.map_err(SpoolError::disk)?;
                let s = k.value().0.to_string();
                if out.last() != Some(&s) {
                    out.push(s);
                }
            }
        }
        let st = self.lock_state();
        for ((s, _), e) in &st.overlay.pending {
            if e.row.is_some() && !out.contains(s) {
                out.push(s.clone());
            }
        }
        drop(st);
        // A section whose rows are all marked removed in memory has none.
        out.retain(|s| self.has_pending(s).unwrap_or(true));
        Ok(out)
    }

    /// Dead letters of one section, or all, oldest first.
    pub fn dead(&self, section: Option<&str>) -> Result<Vec<(u64, Spooled)>, SpoolError> {
        let mut out: BTreeMap<(String, u64), Spooled> = BTreeMap::new();
        let mut unreadable = 0;
        if let Some(db) = self.db_read().as_ref() {
            let r = db.begin_read().map_err(SpoolError::disk)?;
            let t = r.open_table(DEAD).map_err(SpoolError::disk)?;
            for item in t.iter().map_err(SpoolError::disk)? {
                let (k, v) = item.map_err(SpoolError::disk)?;
                let (sec, seq) = k.value();
                if section.is_none_or(|s| s == sec) {
                    // One dead letter that cannot be read (an incompatible version wrote it)
                    // must not hide the others; it stays in the file as it is.
                    match serde_json::from_slice::<Spooled>(v.value()) {
                        Ok(s) => {
                            out.insert((sec.to_string(), seq), s);
                        }
                        Err(_) => unreadable += 1,
                    }
                }
            }
        }
        if unreadable > 0 {
            log::warn!("{unreadable} dead letter(s) in the spool could not be read; left in the file as they are");
        }
        let st = self.lock_state();
        for ((sec, seq), e) in &st.overlay.dead {
            if section.is_none_or(|s| s == sec) {
                match &e.row {
                    Some(s) => out.insert((sec.clone(), *seq), s.clone()),
                    None => out.remove(&(sec.clone(), *seq)),
                };
            }
        }
        let mut rows: Vec<(u64, Spooled)> = out.into_iter().map(|((_, q), s)| (q, s)).collect();
        rows.sort_by_key(|(seq, _)| *seq);
        Ok(rows)
    }

    /// Moves dead letters back to pending under new sequence numbers; returns the section of
    /// each one moved.
    pub fn resurrect(
        &self,
        section: Option<&str>,
        mut next_seq: impl FnMut() -> u64,
    ) -> Result<Vec<String>, SpoolError> {
        let dead = self.dead(section)?;
        if dead.is_empty() {
            return Ok(Vec::new());
        }
        let moved: Vec<(u64, u64, Spooled)> = dead
            .into_iter()
            .map(|(seq, mut s)| {
                s.attempts = 0;
                s.next_at_ms = 0;
                (seq, next_seq(), s)
            })
            .collect();
        let mut encoded = Vec::with_capacity(moved.len());
        for (old, new, s) in &moved {
            encoded.push((*old, *new, s, encode(s)?));
        }
        let size = encoded.iter().map(|(_, _, _, b)| b.len()).sum();
        let mut st = self.lock_state();
        self.retry_disk(&mut st);
        let written = self.disk_write(&mut st, size, true, |w| {
            let mut d = w.open_table(DEAD)?;
            let mut p = w.open_table(PENDING)?;
            for (old, new, s, bytes) in &encoded {
                d.remove((s.delivery.section.as_str(), *old))?;
                p.insert((s.delivery.section.as_str(), *new), bytes.as_slice())?;
            }
            Ok(())
        });
        if !written {
            let on_disk = self.disk_may_hold();
            for (old, _, s) in &moved {
                st.overlay
                    .remove(true, (s.delivery.section.clone(), *old), on_disk);
            }
            self.to_memory(
                &mut st,
                moved.iter().map(|(_, new, s)| (*new, s)),
                false,
                false,
            )?;
        }
        Ok(moved
            .into_iter()
            .map(|(_, _, s)| s.delivery.section)
            .collect())
    }

    /// Entries in the pending table (all sections).
    pub fn pending_len(&self) -> Result<u64, SpoolError> {
        let mut n = match self.db_read().as_ref() {
            Some(db) => {
                let r = db.begin_read().map_err(SpoolError::disk)?;
                let t = r.open_table(PENDING).map_err(SpoolError::disk)?;
                t.len().map_err(SpoolError::disk)?
            }
            None => 0,
        };
        n += self
            .lock_state()
            .overlay
            .pending
            .values()
            .filter(|e| e.row.is_some())
            .count() as u64;
        Ok(n)
    }
}

/// Writes one table of the memory overlay into the file's table of the same name: its rows in,
/// its removals out.
fn write_entries(
    table: &mut redb::Table<(&'static str, u64), &'static [u8]>,
    entries: &BTreeMap<Key, Entry>,
) -> Result<(), redb::Error> {
    for ((section, seq), e) in entries {
        match &e.row {
            Some(s) => {
                let bytes = encode(s).map_err(redb_error)?;
                table.insert((section.as_str(), *seq), bytes.as_slice())?;
            }
            None => {
                table.remove((section.as_str(), *seq))?;
            }
        }
    }
    Ok(())
}

/// Each row with its encoding, and their total size (checked against the free space first).
type Encoded<'a> = Vec<(u64, &'a Spooled, Vec<u8>)>;

fn encode_rows(rows: &[(u64, Spooled)]) -> Result<(Encoded<'_>, usize), SpoolError> {
    let mut encoded = Vec::with_capacity(rows.len());
    for (seq, s) in rows {
        encoded.push((*seq, s, encode(s)?));
    }
    let size = encoded.iter().map(|(_, _, b)| b.len()).sum();
    Ok((encoded, size))
}

fn encode(s: &Spooled) -> Result<Vec<u8>, SpoolError> {
    serde_json::to_vec(s).map_err(SpoolError::decode)
}

fn redb_error(e: SpoolError) -> redb::Error {
    redb::Error::Io(std::io::Error::other(e.to_string()))
}

/// redb caches up to 1 GiB by default; the module keeps its memory small and bounded.
fn open_db(path: &Path) -> Result<Database, redb::DatabaseError> {
    Builder::new().set_cache_size(16 << 20).create(path)
}
