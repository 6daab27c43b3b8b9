//! A workmem-shaped SQLite database, for tests, the demo and the benchmark:
//! WAL mode; entities, observations, relations, events,
//! observation_embeddings (384-float BLOBs); a contentless FTS5 index
//! `memory_fts`; the usual indexes. Deterministic for a given seed.

use std::path::Path;

use rusqlite::{params, Connection};

pub const SCHEMA: &str = "
CREATE TABLE entities (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    entity_type TEXT,
    created_at TEXT NOT NULL DEFAULT '2026-01-01T00:00:00Z'
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    event_date TEXT,
    event_type TEXT,
    context TEXT
);
CREATE TABLE observations (
    id INTEGER PRIMARY KEY,
    entity_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    content TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'user',
    confidence REAL NOT NULL DEFAULT 1.0,
    access_count INTEGER NOT NULL DEFAULT 0,
    event_id INTEGER REFERENCES events(id),
    created_at TEXT NOT NULL DEFAULT '2026-01-01T00:00:00Z'
);
CREATE TABLE relations (
    id INTEGER PRIMARY KEY,
    from_entity INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    to_entity INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    relation_type TEXT NOT NULL,
    context TEXT,
    UNIQUE(from_entity, to_entity, relation_type)
);
CREATE TABLE observation_embeddings (
    observation_id INTEGER PRIMARY KEY REFERENCES observations(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE VIRTUAL TABLE memory_fts USING fts5(content, entity_name, content='');
CREATE INDEX idx_observations_entity ON observations(entity_id);
CREATE INDEX idx_observations_event ON observations(event_id);
CREATE INDEX idx_relations_from ON relations(from_entity);
CREATE INDEX idx_relations_to ON relations(to_entity);
CREATE INDEX idx_entities_type ON entities(entity_type);
";

const WORDS: &[&str] = &[
    "alice", "bob", "project", "deadline", "rust", "sqlite", "backup", "meeting", "prefers", "tea", "coffee", "review",
    "release", "kernel", "design", "memory", "agent", "weekly", "standup", "decision", "budget", "paris", "berlin",
    "invoice", "customer", "latency", "index", "vacuum", "crash", "restore", "encrypt", "age", "key",
];

/// A small deterministic generator (xorshift), so fixtures need no crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn sentence(&mut self, words: usize) -> String {
        (0..words).map(|_| WORDS[self.below(WORDS.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
    }
    pub fn embedding(&mut self) -> Vec<u8> {
        (0..384).flat_map(|_| ((self.below(2000) as f32 - 1000.0) / 1000.0).to_le_bytes()).collect()
    }
}

/// What a fixture holds, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub entities: i64,
    pub observations: i64,
    pub relations: i64,
    pub events: i64,
    pub embeddings: i64,
}

pub fn counts(conn: &Connection) -> rusqlite::Result<Counts> {
    let n = |t: &str| conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get::<_, i64>(0));
    Ok(Counts {
        entities: n("entities")?,
        observations: n("observations")?,
        relations: n("relations")?,
        events: n("events")?,
        embeddings: n("observation_embeddings")?,
    })
}

/// Creates a workmem-shaped database of roughly `target_bytes` (at least a
/// few hundred KiB) at `path`, in WAL mode unless `wal` is false.
pub fn create(path: &Path, target_bytes: u64, wal: bool, seed: u64) -> rusqlite::Result<Counts> {
    let mut conn = Connection::open(path)?;
    conn.query_row(&format!("PRAGMA journal_mode={}", if wal { "WAL" } else { "DELETE" }), [], |_| Ok(()))?;
    conn.execute_batch("PRAGMA synchronous=OFF;")?;
    conn.execute_batch(SCHEMA)?;
    let mut rng = Rng::new(seed);
    // One observation with its embedding and index entries weighs about 2.2 KiB.
    let observations = (target_bytes / 2200).max(200);
    let entities = (observations / 8).max(20);
    let tx = conn.transaction()?;
    {
        let mut ent = tx.prepare("INSERT INTO entities(id, name, entity_type) VALUES (?1, ?2, ?3)")?;
        for id in 1..=entities {
            let kind = ["person", "project", "technology", "place"][rng.below(4) as usize];
            ent.execute(params![id as i64, format!("{}-{id}", rng.sentence(1)), kind])?;
        }
        let mut ev = tx.prepare("INSERT INTO events(label, event_date, event_type) VALUES (?1, ?2, 'meeting')")?;
        for i in 0..(entities / 4).max(5) {
            ev.execute(params![rng.sentence(3), format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28)])?;
        }
        let mut rel = tx.prepare(
            "INSERT OR IGNORE INTO relations(from_entity, to_entity, relation_type, context) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for _ in 0..entities * 2 {
            let (a, b) = (1 + rng.below(entities) as i64, 1 + rng.below(entities) as i64);
            rel.execute(params![a, b, ["works_with", "uses", "depends_on"][rng.below(3) as usize], rng.sentence(4)])?;
        }
        insert_observations(&tx, &mut rng, observations, entities)?;
    }
    tx.commit()?;
    counts(&conn)
}

/// Appends `n` observations (with embeddings and FTS rows) in the caller's transaction.
pub fn insert_observations(conn: &Connection, rng: &mut Rng, n: u64, entities: u64) -> rusqlite::Result<()> {
    let mut obs =
        conn.prepare_cached("INSERT INTO observations(entity_id, content, confidence) VALUES (?1, ?2, ?3)")?;
    let mut emb = conn.prepare_cached(
        "INSERT INTO observation_embeddings(observation_id, model, dim, vector) VALUES (?1, 'minilm', 384, ?2)",
    )?;
    let mut fts = conn.prepare_cached("INSERT INTO memory_fts(rowid, content, entity_name) VALUES (?1, ?2, ?3)")?;
    for _ in 0..n {
        let entity = 1 + rng.below(entities) as i64;
        let words = 12 + rng.below(30) as usize;
        let content = rng.sentence(words);
        obs.execute(params![entity, content, (rng.below(100) as f64) / 100.0])?;
        let id = conn.last_insert_rowid();
        emb.execute(params![id, rng.embedding()])?;
        fts.execute(params![id, content, format!("entity-{entity}")])?;
    }
    Ok(())
}
