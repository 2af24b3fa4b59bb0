//! Who called before, for `is_new` and `is_duplicate`: one redb table of caller number → last
//! call time, kept in the spool folder so it survives restarts.

use std::path::Path;

use chrono::{DateTime, Utc};
use redb::{Builder, Database, ReadableTable, TableDefinition};

const LAST_CALL: TableDefinition<&str, i64> = TableDefinition::new("last_call");

/// The caller history store.
pub struct CallerHistory {
    db: Database,
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
        Ok(CallerHistory { db })
    }

    /// Records a call from `number` at `at`; returns (is_new, is_duplicate): never called
    /// before, and called within `window_days` before this call. Anonymous numbers are
    /// neither and are not recorded.
    pub fn observe(&self, number: &str, at: DateTime<Utc>, window_days: u32) -> (bool, bool) {
        let number = number.trim();
        if number.is_empty() || number.eq_ignore_ascii_case("anonymous") {
            return (false, false);
        }
        let result = (|| -> Result<(bool, bool), String> {
            let e = |e: redb::Error| e.to_string();
            let mut w = self.db.begin_write().map_err(|x| e(x.into()))?;
            // No fsync per call: a crash may forget the last few callers' history, never
            // corrupts it, and keeps the disk off the per-call path.
            w.set_durability(redb::Durability::Eventual);
            let flags = {
                let mut t = w.open_table(LAST_CALL).map_err(|x| e(x.into()))?;
                let previous = t.get(number).map_err(|x| e(x.into()))?.map(|v| v.value());
                t.insert(number, at.timestamp()).map_err(|x| e(x.into()))?;
                match previous {
                    None => (true, false),
                    Some(prev) => (
                        false,
                        at.timestamp() - prev <= i64::from(window_days) * 86_400,
                    ),
                }
            };
            w.commit().map_err(|x| e(x.into()))?;
            Ok(flags)
        })();
        result.unwrap_or_else(|e| {
            log::error!("caller history: {e}");
            (false, false)
        })
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
