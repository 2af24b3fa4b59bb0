//! Who called before, for `is_new` and `is_duplicate`: one redb table of caller number → last
//! call time, kept in the spool folder so it survives restarts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{Builder, Database, Durability, TableDefinition};

const LAST_CALL: TableDefinition<&str, i64> = TableDefinition::new("last_call");

/// The caller history store. Each call is answered from memory and the file; what calls add
/// stays in memory and is written in one transaction every [`WRITE_EVERY`] (or once
/// [`MAX_PENDING`] callers wait), made durable (fsynced) every [`SYNC_EVERY`], at unload and
/// at exit. A transaction per burst of events, even without fsync, was a fifth of the
/// correlation thread's CPU; an fsync every 5 s was still 0.3 % of Asterisk's CPU at
/// 100 calls/s on this VM's disk.
pub struct CallerHistory {
    db: Database,
    pending: Mutex<Pending>,
}

struct Pending {
    calls: HashMap<String, i64>,
    /// When what was in memory was last written.
    written_at: Instant,
    /// When a write was last made durable, and whether one has been written since.
    synced_at: Instant,
    unsynced: bool,
}

/// How often what calls added is written to the file (to the OS: a crash of Asterisk alone
/// loses nothing written).
const WRITE_EVERY: Duration = Duration::from_secs(5);

/// How often a write is also fsynced. A crash of the machine falls back to the last durable
/// write (callers of the last minute count as new again); Asterisk's `core stop now`, which
/// does not unload modules, runs [`CallerHistory::flush`] through the shim's atexit hook.
const SYNC_EVERY: Duration = Duration::from_secs(60);

/// Callers kept in memory at most before a write, whatever the time (bounds the memory).
const MAX_PENDING: usize = 10_000;

impl CallerHistory {
    /// Opens (creating) the store; an unreadable file is moved aside and a new one started.
    pub fn open(path: &Path) -> Result<CallerHistory, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let db = match open_db(path) {
            Ok(db) => db,
            Err(e) => {
                let aside = format!("{}.corrupt-{}", path.display(), Utc::now().timestamp());
                log::error!(
                    "caller history {} unreadable ({e}); moved aside to {aside}",
                    path.display()
                );
                std::fs::rename(path, &aside).map_err(|e| e.to_string())?;
                open_db(path).map_err(|e| e.to_string())?
            }
        };
        Ok(CallerHistory {
            db,
            pending: Mutex::new(Pending {
                calls: HashMap::new(),
                written_at: Instant::now(),
                synced_at: Instant::now(),
                unsynced: false,
            }),
        })
    }

    /// Writes what is in memory when it is time to (the correlation thread calls this after
    /// each burst of events).
    pub fn flush_burst(&self) {
        let due = {
            let p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            !p.calls.is_empty()
                && (p.calls.len() >= MAX_PENDING || p.written_at.elapsed() >= WRITE_EVERY)
        };
        if due {
            self.write(false);
        }
    }

    /// Writes what is in memory now and makes every write so far durable (at shutdown).
    pub fn flush(&self) {
        self.write(true);
    }

    /// Writes what is in memory in one transaction, fsynced when `durable` or when the last
    /// fsync is [`SYNC_EVERY`] old.
    fn write(&self, durable: bool) {
        let (calls, sync) = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            p.written_at = now;
            let sync = durable || p.synced_at.elapsed() >= SYNC_EVERY;
            if p.calls.is_empty() && !(sync && p.unsynced) {
                return;
            }
            if sync {
                p.synced_at = now;
            }
            p.unsynced = !sync;
            (std::mem::take(&mut p.calls), sync)
        };
        let result = (|| -> Result<(), String> {
            let mut w = self.db.begin_write().map_err(e)?;
            // Without fsync, redb frees no page until the next durable commit: one a minute
            // bounds the file's growth.
            w.set_durability(if sync {
                Durability::Immediate
            } else {
                Durability::None
            });
            {
                let mut t = w.open_table(LAST_CALL).map_err(e)?;
                for (number, at) in &calls {
                    t.insert(number.as_str(), *at).map_err(e)?;
                }
            }
            w.commit().map_err(e)
        })();
        if let Err(e) = result {
            log::error!(
                "caller history: {} caller(s) not recorded: {e}",
                calls.len()
            );
        }
    }

    /// The last call time of `number`: from memory, else from the file.
    fn last_call(&self, number: &str) -> Result<Option<i64>, String> {
        if let Some(at) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .calls
            .get(number)
        {
            return Ok(Some(*at));
        }
        let r = self.db.begin_read().map_err(e)?;
        let t = match r.open_table(LAST_CALL) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(x) => return Err(e(x)),
        };
        Ok(t.get(number).map_err(e)?.map(|v| v.value()))
    }

    /// Records a call from `number` at `at`; returns (is_new, is_duplicate): never called
    /// before, and called within `window_days` before this call. Anonymous numbers are
    /// neither and are not recorded.
    pub fn observe(&self, number: &str, at: DateTime<Utc>, window_days: u32) -> (bool, bool) {
        let number = number.trim();
        if number.is_empty() || number.eq_ignore_ascii_case("anonymous") {
            return (false, false);
        }
        let previous = match self.last_call(number) {
            Ok(p) => p,
            Err(e) => {
                log::error!("caller history: {e}");
                return (false, false);
            }
        };
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.calls.insert(number.to_string(), at.timestamp());
        match previous {
            None => (true, false),
            Some(prev) => (
                false,
                at.timestamp() - prev <= i64::from(window_days) * 86_400,
            ),
        }
    }
}

impl Drop for CallerHistory {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A redb error as text.
fn e(x: impl Into<redb::Error>) -> String {
    x.into().to_string()
}

/// redb caches up to 1 GiB by default; the module keeps its memory small and bounded.
fn open_db(path: &Path) -> Result<Database, redb::DatabaseError> {
    Builder::new().set_cache_size(8 << 20).create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_then_duplicate_within_window_and_across_reopen() {
        let dir = std::env::temp_dir().join(format!(
            "rw-history-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let path = dir.join("history.redb");
        let t0 = DateTime::parse_from_rfc3339("2024-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        {
            let h = CallerHistory::open(&path).unwrap();
            assert_eq!(h.observe("79161234567", t0, 90), (true, false));
            assert_eq!(
                h.observe("79161234567", t0 + chrono::Duration::days(3), 90),
                (false, true)
            );
            assert_eq!(h.observe("", t0, 90), (false, false));
        }
        {
            // Not written yet: answered from memory, then written at close (drop).
            let h = CallerHistory::open(&path).unwrap();
            assert_eq!(h.observe("79160000001", t0, 90), (true, false));
            h.flush_burst();
            assert_eq!(h.pending.lock().unwrap().calls.len(), 1, "not due yet");
            assert_eq!(h.observe("79160000001", t0, 90), (false, true));
        }
        let h = CallerHistory::open(&path).unwrap();
        assert_eq!(h.observe("79160000001", t0, 90), (false, true));
        assert_eq!(
            h.observe("79161234567", t0 + chrono::Duration::days(200), 90),
            (false, false)
        );
        assert_eq!(h.observe("79990000000", t0, 90), (true, false));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_full_memory_is_written_before_its_time() {
        let dir = std::env::temp_dir().join(format!(
            "rw-history-full-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let h = CallerHistory::open(&dir.join("history.redb")).unwrap();
        let t0 = Utc::now();
        for i in 0..MAX_PENDING {
            h.observe(&format!("7916{i:07}"), t0, 90);
        }
        h.flush_burst();
        assert!(h.pending.lock().unwrap().calls.is_empty(), "written");
        assert_eq!(h.last_call("79160000042").unwrap(), Some(t0.timestamp()));
        drop(h);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn writes_between_fsyncs_are_made_durable_at_close_even_with_nothing_new() {
        let dir = std::env::temp_dir().join(format!(
            "rw-history-sync-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        let path = dir.join("history.redb");
        let t0 = Utc::now();
        {
            let h = CallerHistory::open(&path).unwrap();
            h.observe("79160000007", t0, 90);
            h.pending.lock().unwrap().written_at -= WRITE_EVERY;
            h.flush_burst();
            let p = h.pending.lock().unwrap();
            assert!(p.calls.is_empty() && p.unsynced, "written, not fsynced yet");
            drop(p);
            h.flush();
            assert!(
                !h.pending.lock().unwrap().unsynced,
                "fsynced with nothing new"
            );
            h.observe("79160000008", t0, 90);
            h.pending.lock().unwrap().written_at -= WRITE_EVERY;
            h.pending.lock().unwrap().synced_at -= SYNC_EVERY;
            h.flush_burst();
            assert!(!h.pending.lock().unwrap().unsynced, "a minute on: fsynced");
        }
        let h = CallerHistory::open(&path).unwrap();
        assert_eq!(h.last_call("79160000007").unwrap(), Some(t0.timestamp()));
        assert_eq!(h.last_call("79160000008").unwrap(), Some(t0.timestamp()));
        drop(h);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
