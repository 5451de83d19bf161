//! Persistent state: an embedded redb database, on disk or in memory.
//!
//! Reads run on the caller's thread in their own MVCC read transaction, so
//! GETs and queries never wait for writers. Every write goes to one writer
//! thread as a closure; the thread runs whatever closures are queued inside a
//! single write transaction and commits it durably (fsync) before any of them
//! is answered ("group commit"). That gives three properties at once:
//!
//! - an acknowledged write survives `kill -9` (the reply is only sent after
//!   `commit()` returned with `Durability::Immediate`);
//! - read-check-write sequences such as `If-Match` etag checks are atomic,
//!   because exactly one closure runs at a time (no lost updates);
//! - throughput does not collapse to one fsync per request under load.
//!
//! Keys are lower-cased ids (DPS ids are case-insensitive); values are the
//! JSON records of [`super::model`]. Index tables map certificate
//! thumbprints and subjects to groups, and groups to their registrations,
//! so lookups and paging cost the same whatever the number of records.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::errors::DpsError;

/// Enrollment groups by lower-cased id.
pub const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("enrollment_groups");
/// Individual enrollments by lower-cased registration id.
pub const ENROLLMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("enrollments");
/// Registration states by lower-cased registration id.
pub const REGISTRATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("registrations");
/// `"<group>\n<registration>"` for registration queries by group.
pub const REG_BY_GROUP: TableDefinition<&str, ()> = TableDefinition::new("registrations_by_group");
/// Group signers: `"t:<sha256 hex>\n<group>"` (certificate thumbprint),
/// `"s:<sha256 hex of subject DER>\n<group>"` (certificate subject, to find the
/// issuer of a chain's top certificate) and `"r:<ca name>\n<group>"` (caReferences).
pub const SIGNERS: TableDefinition<&str, ()> = TableDefinition::new("group_signers");
/// Groups with symmetric-key attestation (devices' SAS tokens do not name their group).
pub const SYMKEY_GROUPS: TableDefinition<&str, ()> = TableDefinition::new("symmetric_key_groups");
/// ARM CA certificates by lower-cased name.
pub const CA_CERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("ca_certificates");
/// `"<sha256 hex>\n<ca name>"` for CA certificates.
pub const CA_BY_THUMB: TableDefinition<&str, ()> =
    TableDefinition::new("ca_certificates_by_thumbprint");

/// Separator in composite index keys; ids never contain it.
pub const SEP: char = '\n';

/// A storage failure (I/O, corruption); answered as 500.
pub type StoreResult<T> = std::result::Result<T, redb::Error>;

type Finisher = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&WriteTransaction) -> (Finisher, bool) + Send>;

/// Most jobs committed together; bounds the latency one commit adds.
const MAX_BATCH: usize = 512;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
}

impl Store {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> crate::Result<Store> {
        // The database holds symmetric keys: owner-only, like the other secrets in --data.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path);
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => crate::Error::failed(format!(
                "another pki emulator is using {} (its database is locked); stop it, or give this one its own --data DIR, or use --in-memory",
                path.parent().unwrap_or(path).display()
            )),
            e => crate::Error::failed(format!(
                "cannot open the emulator database {}: {e}",
                path.display()
            )),
        })?;
        Self::start(db)
    }

    /// A database that lives only as long as the process (`--in-memory`).
    pub fn in_memory() -> crate::Result<Store> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| {
                crate::Error::failed(format!("cannot create the in-memory database: {e}"))
            })?;
        Self::start(db)
    }

    fn start(db: Database) -> crate::Result<Store> {
        let db = Arc::new(db);
        // Create every table up front so readers never see "table does not exist".
        let init = || -> StoreResult<()> {
            let txn = db.begin_write()?;
            txn.open_table(GROUPS)?;
            txn.open_table(ENROLLMENTS)?;
            txn.open_table(REGISTRATIONS)?;
            txn.open_table(REG_BY_GROUP)?;
            txn.open_table(SIGNERS)?;
            txn.open_table(SYMKEY_GROUPS)?;
            txn.open_table(CA_CERTS)?;
            txn.open_table(CA_BY_THUMB)?;
            txn.commit()?;
            Ok(())
        };
        init().map_err(|e| {
            crate::Error::failed(format!("cannot initialise the emulator database: {e}"))
        })?;
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("pki-emulator-store".into())
            .spawn(move || writer(writer_db, rx))
            .map_err(|e| crate::Error::failed(format!("cannot start the store thread: {e}")))?;
        Ok(Store { db, jobs: tx })
    }

    /// Starts a read transaction.
    pub fn read(&self) -> Result<ReadTransaction, DpsError> {
        self.db.begin_read().map_err(store_error)
    }

    /// Runs `f` inside the writer's transaction and returns its result once
    /// the transaction is durably committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, DpsError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        let (reply, wait) = tokio::sync::oneshot::channel::<Result<T, String>>();
        let job: Job = Box::new(move |txn| {
            let result = f(txn);
            let failed = result.is_err();
            let fin: Finisher = Box::new(move |commit| {
                let out = match (commit, result) {
                    (Ok(()), Ok(v)) => Ok(v),
                    (Err(e), _) => Err(e),
                    (_, Err(e)) => Err(e.to_string()),
                };
                let _ = reply.send(out);
            });
            (fin, failed)
        });
        self.jobs
            .send(job)
            .map_err(|_| DpsError::internal("the store has shut down"))?;
        match wait.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(DpsError::internal(format!("the store failed: {e}"))),
            Err(_) => Err(DpsError::internal("the store could not commit the write")),
        }
    }
}

fn writer(db: Arc<Database>, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut txn = match db.begin_write() {
            Ok(t) => t,
            // Dropping the jobs drops their reply senders: each caller gets a 500.
            Err(_) => continue,
        };
        // redb's default, stated explicitly because the "acknowledged means
        // on disk" promise rests on it: commit() returns after fsync.
        if txn.set_durability(redb::Durability::Immediate).is_err() {
            continue;
        }
        let mut finishers = Vec::with_capacity(batch.len());
        let mut poisoned = false;
        for job in batch {
            let (fin, failed) = job(&txn);
            poisoned |= failed;
            finishers.push(fin);
        }
        let outcome = if poisoned {
            let _ = txn.abort();
            Err("a storage error aborted the transaction".to_string())
        } else {
            txn.commit().map_err(|e| e.to_string())
        };
        for fin in finishers {
            fin(outcome.clone());
        }
    }
}

/// Maps a storage error to a 500 answer.
pub fn store_error(e: impl Into<redb::Error>) -> DpsError {
    DpsError::internal(format!("the store failed: {}", e.into()))
}

/// Reads and decodes one JSON record from any readable table.
pub fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> StoreResult<Option<T>> {
    match table.get(key)? {
        // A record that no longer decodes is treated as absent rather than
        // crashing: it can only come from a newer emulator version.
        Some(v) => Ok(serde_json::from_slice(v.value()).ok()),
        None => Ok(None),
    }
}

/// Encodes a record for storage.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// One page of a JSON table in key order, starting after `after`.
/// Returns the records and the last key if more remain.
pub fn page_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    after: Option<&str>,
    limit: usize,
) -> StoreResult<(Vec<T>, Option<String>)> {
    let start = match after {
        Some(k) => Bound::Excluded(k),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    let mut last = None;
    for item in table.range::<&str>((start, Bound::Unbounded))? {
        let (k, v) = item?;
        if out.len() == limit {
            return Ok((out, last));
        }
        if let Ok(rec) = serde_json::from_slice(v.value()) {
            out.push(rec);
        }
        last = Some(k.value().to_string());
    }
    Ok((out, None))
}

/// Keys of an index table that start with `prefix`, after `after`, at most `limit`.
/// Returns the suffixes (after the prefix) and whether more remain.
pub fn index_suffixes(
    table: &impl ReadableTable<&'static str, ()>,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> StoreResult<(Vec<String>, bool)> {
    let start_key = match after {
        Some(a) => format!("{prefix}{a}"),
        None => prefix.to_string(),
    };
    let start = if after.is_some() {
        Bound::Excluded(start_key.as_str())
    } else {
        Bound::Included(start_key.as_str())
    };
    let mut out = Vec::new();
    for item in table.range::<&str>((start, Bound::Unbounded))? {
        let (k, _) = item?;
        let k = k.value();
        let Some(rest) = k.strip_prefix(prefix) else {
            break;
        };
        if out.len() == limit {
            return Ok((out, true));
        }
        out.push(rest.to_string());
    }
    Ok((out, false))
}

/// Removes every key of `table` that starts with `prefix` (small sets only).
pub fn remove_prefix(
    table: &mut redb::Table<'_, &'static str, ()>,
    prefix: &str,
) -> StoreResult<()> {
    let keys: Vec<String> = {
        let mut v = Vec::new();
        for item in table.range::<&str>(prefix..)? {
            let (k, _) = item?;
            if !k.value().starts_with(prefix) {
                break;
            }
            v.push(k.value().to_string());
        }
        v
    };
    for k in keys {
        table.remove(k.as_str())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_commit_and_read_back_in_order() {
        let store = Store::in_memory().unwrap();
        for i in 0..5 {
            store
                .write(move |txn| {
                    let mut t = txn.open_table(GROUPS)?;
                    t.insert(format!("g{i}").as_str(), to_json(&i).as_slice())?;
                    Ok(())
                })
                .await
                .unwrap();
        }
        let r = store.read().unwrap();
        let t = r.open_table(GROUPS).unwrap();
        let (first, more) = page_json::<i32>(&t, None, 2).unwrap();
        assert_eq!(first, vec![0, 1]);
        let (rest, end) = page_json::<i32>(&t, more.as_deref(), 10).unwrap();
        assert_eq!(rest, vec![2, 3, 4]);
        assert!(end.is_none());
    }
}
