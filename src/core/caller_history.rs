//! Who called before, for `is_new` and `is_duplicate`: one redb table of caller number → last
//! call time, kept in the spool folder so it survives restarts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{Builder, Database, TableDefinition};

const LAST_CALL: TableDefinition<&str, i64> = TableDefinition::new("last_call");

/// How long calls are remembered in memory before they are written (one transaction for all).
const WRITE_EVERY: Duration = Duration::from_secs(1);

/// The caller history store. Each call is answered from memory and the file, and written with
/// the others of the last second in one transaction (not one per call: a redb commit is the
/// bulk of a call's cost on the correlation thread otherwise).
pub struct CallerHistory {
    db: Database,
    pending: Mutex<Pending>,
}

struct Pending {
    calls: HashMap<String, i64>,
    since: Instant,
}

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
                since: Instant::now(),
            }),
        })
    }

    /// Writes what is in memory when it is older than [`WRITE_EVERY`] (the correlation thread
    /// calls this between bursts of events).
    pub fn flush_if_due(&self) {
        let due = {
            let p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            !p.calls.is_empty() && p.since.elapsed() >= WRITE_EVERY
        };
        if due {
            self.flush();
        }
    }

    /// Writes what is in memory now (one transaction, not fsynced: a crash may forget the last
    /// second's callers, never corrupts the history).
    pub fn flush(&self) {
        let calls = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            p.since = Instant::now();
            std::mem::take(&mut p.calls)
        };
        if calls.is_empty() {
            return;
        }
        let result = (|| -> Result<(), redb::Error> {
            let mut w = self.db.begin_write()?;
            w.set_durability(redb::Durability::Eventual);
            {
                let mut t = w.open_table(LAST_CALL)?;
                for (number, at) in &calls {
                    t.insert(number.as_str(), *at)?;
                }
            }
            w.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            log::error!(
                "caller history: {} caller(s) not recorded: {e}",
                calls.len()
            );
        }
    }

    /// The last call time of `number`: from memory, else from the file.
    fn last_call(&self, number: &str) -> Result<Option<i64>, redb::Error> {
        if let Some(at) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .calls
            .get(number)
        {
            return Ok(Some(*at));
        }
        let r = self.db.begin_read()?;
        let t = match r.open_table(LAST_CALL) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(number)?.map(|v| v.value()))
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
        if p.calls.is_empty() {
            p.since = Instant::now();
        }
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
        let h = CallerHistory::open(&path).unwrap();
        assert_eq!(
            h.observe("79161234567", t0 + chrono::Duration::days(200), 90),
            (false, false)
        );
        assert_eq!(h.observe("79990000000", t0, 90), (true, false));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
