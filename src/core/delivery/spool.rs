//! The durable spool: deliveries not yet sent (in section order), dead letters, in one redb
//! file. redb's transactions are crash-safe: a crash loses at most the write it interrupted.

use std::path::{Path, PathBuf};

use redb::{Builder, Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::Delivery;

const PENDING: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("pending");
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead");

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

/// The spool file.
pub struct Spool {
    db: Database,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Spool {
    /// Opens `<dir>/spool.redb`, creating it. A file that cannot be opened is renamed aside
    /// (`spool.redb.corrupt-<unix time>`) and a fresh one started — reported, never a crash.
    pub fn open(dir: &Path) -> Result<Spool, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join("spool.redb");
        let db = match open_db(&path) {
            Ok(db) => db,
            Err(e) => {
                let aside = PathBuf::from(format!(
                    "{}.corrupt-{}",
                    path.display(),
                    chrono::Utc::now().timestamp()
                ));
                log::error!(
                    "spool {} unreadable ({e}); moved aside to {} and starting a new one",
                    path.display(),
                    aside.display()
                );
                std::fs::rename(&path, &aside)
                    .map_err(|e| format!("cannot move the bad spool aside: {e}"))?;
                open_db(&path).map_err(err)?
            }
        };
        let w = db.begin_write().map_err(err)?;
        w.open_table(PENDING).map_err(err)?;
        w.open_table(DEAD).map_err(err)?;
        w.commit().map_err(err)?;
        Ok(Spool { db })
    }

    /// The highest sequence number in use, so new ones sort after everything spooled.
    pub fn max_seq(&self) -> Result<u64, String> {
        let r = self.db.begin_read().map_err(err)?;
        let mut max = 0;
        for def in [PENDING, DEAD] {
            let t = r.open_table(def).map_err(err)?;
            for item in t.iter().map_err(err)? {
                let (k, _) = item.map_err(err)?;
                max = max.max(k.value().1);
            }
        }
        Ok(max)
    }

    /// Appends deliveries (one transaction, one fsync).
    pub fn push(&self, items: &[(u64, Spooled)]) -> Result<(), String> {
        if items.is_empty() {
            return Ok(());
        }
        let w = self.db.begin_write().map_err(err)?;
        {
            let mut t = w.open_table(PENDING).map_err(err)?;
            for (seq, s) in items {
                let bytes = serde_json::to_vec(s).map_err(err)?;
                t.insert((s.delivery.section.as_str(), *seq), bytes.as_slice())
                    .map_err(err)?;
            }
        }
        w.commit().map_err(err)
    }

    /// The oldest pending delivery of a section.
    pub fn head(&self, section: &str) -> Result<Option<(u64, Spooled)>, String> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(PENDING).map_err(err)?;
        let mut range = t.range((section, 0)..=(section, u64::MAX)).map_err(err)?;
        match range.next() {
            Some(item) => {
                let (k, v) = item.map_err(err)?;
                let s: Spooled = serde_json::from_slice(v.value()).map_err(err)?;
                Ok(Some((k.value().1, s)))
            }
            None => Ok(None),
        }
    }

    /// A write transaction that is not fsynced on commit: for changes whose loss in a crash
    /// only means a delivery is sent again (at-least-once), never lost.
    fn lazy_write(&self) -> Result<redb::WriteTransaction, String> {
        let mut w = self.db.begin_write().map_err(err)?;
        w.set_durability(redb::Durability::Eventual);
        Ok(w)
    }

    /// Up to `n` oldest pending deliveries of a section, in order.
    pub fn head_batch(&self, section: &str, n: usize) -> Result<Vec<(u64, Spooled)>, String> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(PENDING).map_err(err)?;
        let mut out = Vec::new();
        for item in t
            .range((section, 0)..=(section, u64::MAX))
            .map_err(err)?
            .take(n)
        {
            let (k, v) = item.map_err(err)?;
            out.push((k.value().1, serde_json::from_slice(v.value()).map_err(err)?));
        }
        Ok(out)
    }

    /// Replaces a pending entry (attempt count, next time); not fsynced.
    pub fn update(&self, seq: u64, s: &Spooled) -> Result<(), String> {
        let w = self.lazy_write()?;
        {
            let bytes = serde_json::to_vec(s).map_err(err)?;
            let mut t = w.open_table(PENDING).map_err(err)?;
            t.insert((s.delivery.section.as_str(), seq), bytes.as_slice())
                .map_err(err)?;
        }
        w.commit().map_err(err)
    }

    /// Removes delivered entries in one transaction (not fsynced: after a crash some may be
    /// sent once more, never lost).
    pub fn remove_many(&self, section: &str, seqs: &[u64]) -> Result<(), String> {
        if seqs.is_empty() {
            return Ok(());
        }
        let w = self.lazy_write()?;
        {
            let mut t = w.open_table(PENDING).map_err(err)?;
            for seq in seqs {
                t.remove((section, *seq)).map_err(err)?;
            }
        }
        w.commit().map_err(err)
    }

    /// Moves a pending entry to the dead letters.
    pub fn bury(&self, seq: u64, s: &Spooled) -> Result<(), String> {
        let w = self.db.begin_write().map_err(err)?;
        {
            let key = (s.delivery.section.as_str(), seq);
            w.open_table(PENDING)
                .map_err(err)?
                .remove(key)
                .map_err(err)?;
            let bytes = serde_json::to_vec(s).map_err(err)?;
            w.open_table(DEAD)
                .map_err(err)?
                .insert(key, bytes.as_slice())
                .map_err(err)?;
        }
        w.commit().map_err(err)
    }

    /// Counts (pending, dead) of one section.
    pub fn counts(&self, section: &str) -> Result<(usize, usize), String> {
        let r = self.db.begin_read().map_err(err)?;
        let mut out = [0usize; 2];
        for (i, def) in [PENDING, DEAD].into_iter().enumerate() {
            let t = r.open_table(def).map_err(err)?;
            out[i] = t
                .range((section, 0)..=(section, u64::MAX))
                .map_err(err)?
                .count();
        }
        Ok((out[0], out[1]))
    }

    /// Sections that have pending deliveries.
    pub fn pending_sections(&self) -> Result<Vec<String>, String> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(PENDING).map_err(err)?;
        let mut out: Vec<String> = Vec::new();
        for item in t.iter().map_err(err)? {
            let (k, _) = item.map_err(err)?;
            let s = k.value().0.to_string();
            if out.last() != Some(&s) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Dead letters of one section, or all, oldest first.
    pub fn dead(&self, section: Option<&str>) -> Result<Vec<(u64, Spooled)>, String> {
        let r = self.db.begin_read().map_err(err)?;
        let t = r.open_table(DEAD).map_err(err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            let (sec, seq) = k.value();
            if section.is_none_or(|s| s == sec) {
                out.push((seq, serde_json::from_slice(v.value()).map_err(err)?));
            }
        }
        Ok(out)
    }

    /// Moves dead letters back to pending under new sequence numbers; returns how many.
    pub fn resurrect(
        &self,
        section: Option<&str>,
        mut next_seq: impl FnMut() -> u64,
    ) -> Result<Vec<String>, String> {
        let dead = self.dead(section)?;
        let w = self.db.begin_write().map_err(err)?;
        let mut sections = Vec::new();
        {
            let mut d = w.open_table(DEAD).map_err(err)?;
            let mut p = w.open_table(PENDING).map_err(err)?;
            for (seq, mut s) in dead {
                d.remove((s.delivery.section.as_str(), seq)).map_err(err)?;
                s.attempts = 0;
                s.next_at_ms = 0;
                let bytes = serde_json::to_vec(&s).map_err(err)?;
                p.insert((s.delivery.section.as_str(), next_seq()), bytes.as_slice())
                    .map_err(err)?;
                sections.push(s.delivery.section.clone());
            }
        }
        w.commit().map_err(err)?;
        Ok(sections)
    }

    /// Entries in the pending table (all sections).
    pub fn pending_len(&self) -> Result<u64, String> {
        let r = self.db.begin_read().map_err(err)?;
        r.open_table(PENDING).map_err(err)?.len().map_err(err)
    }
}

/// redb caches up to 1 GiB by default; the module keeps its memory small and bounded.
fn open_db(path: &Path) -> Result<Database, redb::DatabaseError> {
    Builder::new().set_cache_size(16 << 20).create(path)
}
