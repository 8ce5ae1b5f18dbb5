//! Where resources are kept. The controller holds every document in memory and writes
//! through a [`Store`] before it acknowledges: a store's `commit` returns only once the
//! writes would survive a crash. redb (embedded, in the data directory) is the default;
//! [`MemStore`] serves tests; a replicated store (etcd) implements the same trait.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// One change of a commit. Keys are (collection, id) with the id in lower case.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Put {
        kind: String,
        id: String,
        doc: Value,
    },
    Delete {
        kind: String,
        id: String,
    },
}

/// Everything a store holds: the revision of its last commit and every document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub revision: u64,
    pub docs: Vec<(String, String, Value)>,
}

/// Durable storage of the resources.
pub trait Store: Send {
    /// Everything, as of the last commit.
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Applies `writes` atomically as revision `revision`; durable when it returns.
    fn commit(&mut self, revision: u64, writes: &[Write]) -> Result<(), StoreError>;
}

impl Store for Box<dyn Store> {
    fn load(&self) -> Result<Snapshot, StoreError> {
        (**self).load()
    }

    fn commit(&mut self, revision: u64, writes: &[Write]) -> Result<(), StoreError> {
        (**self).commit(revision, writes)
    }
}

/// A store in memory (tests; nothing survives the process).
#[derive(Debug, Default)]
pub struct MemStore {
    revision: u64,
    docs: BTreeMap<(String, String), Value>,
}

impl Store for MemStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            revision: self.revision,
            docs: self
                .docs
                .iter()
                .map(|((k, i), d)| (k.clone(), i.clone(), d.clone()))
                .collect(),
        })
    }

    fn commit(&mut self, revision: u64, writes: &[Write]) -> Result<(), StoreError> {
        for w in writes {
            match w {
                Write::Put { kind, id, doc } => {
                    self.docs.insert((kind.clone(), id.clone()), doc.clone());
                }
                Write::Delete { kind, id } => {
                    self.docs.remove(&(kind.clone(), id.clone()));
                }
            }
        }
        self.revision = revision;
        Ok(())
    }
}

const RESOURCES: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("resources");
const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");

/// The embedded store: one redb file. Each commit is a redb write transaction, which
/// redb makes durable (fsync) before `commit` returns.
#[derive(Debug)]
pub struct RedbStore {
    db: redb::Database,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) the store file.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db = redb::Database::create(path).map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(RESOURCES).map_err(err)?;
        tx.open_table(META).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(RedbStore { db })
    }
}

impl Store for RedbStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        use redb::{ReadableDatabase, ReadableTable};
        let tx = self.db.begin_read().map_err(err)?;
        let meta = tx.open_table(META).map_err(err)?;
        let revision = meta
            .get("revision")
            .map_err(err)?
            .map(|v| v.value())
            .unwrap_or(0);
        let table = tx.open_table(RESOURCES).map_err(err)?;
        let mut docs = Vec::new();
        for entry in table.iter().map_err(err)? {
            let (key, value) = entry.map_err(err)?;
            let key = key.value();
            let Some((kind, id)) = key.split_once('/') else {
                return Err(StoreError(format!("malformed key {key:?}")));
            };
            let doc = serde_json::from_slice(value.value())
                .map_err(|e| StoreError(format!("{key}: {e}")))?;
            docs.push((kind.to_string(), id.to_string(), doc));
        }
        Ok(Snapshot { revision, docs })
    }

    fn commit(&mut self, revision: u64, writes: &[Write]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(RESOURCES).map_err(err)?;
            for w in writes {
                match w {
                    Write::Put { kind, id, doc } => {
                        let bytes = serde_json::to_vec(doc).map_err(err)?;
                        table
                            .insert(format!("{kind}/{id}").as_str(), bytes.as_slice())
                            .map_err(err)?;
                    }
                    Write::Delete { kind, id } => {
                        table.remove(format!("{kind}/{id}").as_str()).map_err(err)?;
                    }
                }
            }
            let mut meta = tx.open_table(META).map_err(err)?;
            meta.insert("revision", revision).map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}
