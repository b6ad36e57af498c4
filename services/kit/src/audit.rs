//! The audit trail: every administrative act — who, what, on what, why,
//! when, under which request — written by the service that performs it, in
//! its own table and in the same database transaction as the act, so an
//! act without its entry (or an entry without its act) cannot be.
//!
//! A trail is append-only twice over: the database refuses to update or
//! delete its rows (triggers made with the table), and each entry carries
//! a digest chained over every entry before it, so rows changed or removed
//! behind the triggers' back show as a break when the chain is checked.
//! Writers take the trail's head in turn (a transaction-scoped advisory
//! lock on PostgreSQL; SQLite has one writer at a time anyway).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, FromQueryResult, Statement};
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

use offers_proto::audit::v1 as pb;
use offers_proto::wire;

use crate::error::Error;

/// Who acts: the operator signed in to the console, or the CLI's `--actor`.
pub const ACTOR_HEADER: &str = "x-offers-actor";
/// Why (free text, so binary metadata: base64 on the wire).
pub const NOTE_HEADER: &str = "x-offers-note-bin";
const REQUEST_ID: &str = "x-request-id";

const MAX_ACTOR: usize = 64;
const MAX_NOTE: usize = 1000;

/// Who performs an administrative act, why, and under which request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Act {
    pub actor: String,
    pub note: String,
    pub request_id: String,
}

impl Act {
    /// The act a request states in its metadata; an administrative write
    /// without its actor is refused (`invalid_request`), so nothing is done
    /// that the trail could not name.
    pub fn of(metadata: &MetadataMap) -> Result<Act, Error> {
        let actor = metadata.get(ACTOR_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().trim();
        if actor.is_empty() {
            return Err(Error::invalid_request(format!(
                "an administrative act needs its actor ({ACTOR_HEADER}: the operator, or the CLI's --actor)"
            )));
        }
        if actor.chars().count() > MAX_ACTOR || actor.chars().any(char::is_control) {
            return Err(Error::invalid_request(format!("the actor must be 1 to {MAX_ACTOR} printable characters")));
        }
        let note = match metadata.get_bin(NOTE_HEADER) {
            Some(value) => {
                let bytes = value.to_bytes().map_err(|_| Error::invalid_request("the note is not base64"))?;
                String::from_utf8(bytes.to_vec()).map_err(|_| Error::invalid_request("the note is not UTF-8"))?
            }
            None => String::new(),
        };
        if !wire::is_text(&note, MAX_NOTE) {
            return Err(Error::invalid_request(format!("the note must be at most {MAX_NOTE} characters of text")));
        }
        let request_id = metadata.get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|id| !id.is_empty());
        let request_id = request_id.map(str::to_string);
        Ok(Act {
            actor: actor.to_string(),
            note: note.trim().to_string(),
            request_id: request_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        })
    }

    /// The act's note, which this act must have (a decision that moves
    /// money says why).
    pub fn require_note(&self) -> Result<&str, Error> {
        if self.note.is_empty() {
            return Err(Error::invalid_request("this act needs a note saying why"));
        }
        Ok(&self.note)
    }

    /// Puts the act into an outgoing request's metadata.
    pub fn stamp(&self, metadata: &mut MetadataMap) -> Result<(), Error> {
        let actor = self.actor.parse().map_err(|_| Error::invalid_request("the actor must be printable ASCII"))?;
        metadata.insert(ACTOR_HEADER, actor);
        if !self.note.is_empty() {
            metadata.insert_bin(NOTE_HEADER, tonic::metadata::BinaryMetadataValue::from_bytes(self.note.as_bytes()));
        }
        if let Ok(id) = self.request_id.parse()
            && !self.request_id.is_empty()
        {
            metadata.insert(REQUEST_ID, id);
        }
        Ok(())
    }
}

/// What an act did, in the trail's words: `action` (`credit`,
/// `offer.update`, ...), its `target` (`user:<id>`, `offer:<id>`, ...) and
/// the particulars (`amount=500 EUR`, the fields changed, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deed {
    pub action: &'static str,
    pub target: String,
    pub detail: String,
}

/// One entry as the trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct Entry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub note: String,
    pub request_id: String,
    pub digest: String,
}

impl Entry {
    /// The digest of this entry's content chained onto `previous`.
    fn chained(&self, previous: &str) -> String {
        let mut hash = Sha256::new();
        let at = self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        for field in [previous, &self.seq.to_string(), &at, &self.actor, &self.action, &self.target] {
            hash.update(field.as_bytes());
            hash.update([0]);
        }
        for field in [&self.detail, &self.note, &self.request_id] {
            hash.update(field.as_bytes());
            hash.update([0]);
        }
        hex::encode(hash.finalize())
    }
}

/// Which entries a listing wants: each given field must match exactly,
/// newest first, strictly before the cursor.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub before: Option<Cursor>,
}

/// Where a listing stopped: the last entry given, by time then trail then
/// sequence, so trails of several services page as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub trail: String,
    pub seq: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}|{}|{}", self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), self.trail, self.seq)
    }

    pub fn decode(token: &str) -> Result<Cursor, Error> {
        let invalid = || Error::invalid_request("page_token is not one this service gave");
        let mut parts = token.splitn(3, '|');
        let (Some(at), Some(trail), Some(seq)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let at = DateTime::parse_from_rfc3339(at).map_err(|_| invalid())?.to_utc();
        Ok(Cursor { at, trail: trail.to_string(), seq: seq.parse().map_err(|_| invalid())? })
    }
}

/// What checking a trail found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Integrity {
    pub entries: u64,
    /// Each place the chain does not hold: a missing sequence number or an
    /// entry whose digest is not its content's.
    pub breaks: Vec<String>,
}

/// One service's trail: its table in its database.
#[derive(Clone)]
pub struct Trail {
    pub name: &'static str,
    table: String,
    db: DatabaseConnection,
}

impl Trail {
    /// The trail named `name` (the service: `account`, `catalog`, ...),
    /// kept in `<name>_audit`.
    pub fn new(name: &'static str, db: DatabaseConnection) -> Trail {
        Trail { name, table: table_of(name), db }
    }

    /// Records `deed` by `act` in the caller's database transaction, which
    /// holds the trail's head until it ends.
    pub async fn record(&self, txn: &impl ConnectionTrait, act: &Act, deed: Deed) -> Result<(), DbErr> {
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            let lock = format!("SELECT pg_advisory_xact_lock(hashtext('{}'))", self.table);
            txn.execute_raw(Statement::from_string(DatabaseBackend::Postgres, lock)).await?;
        }
        let head = Query::select()
            .columns(COLUMNS.map(Alias::new))
            .from(Alias::new(&self.table))
            .order_by(Alias::new("seq"), Order::Desc)
            .limit(1)
            .to_owned();
        let head = Entry::find_by_statement(txn.get_database_backend().build(&head)).one(txn).await?;
        let mut entry = Entry {
            seq: head.as_ref().map_or(1, |h| h.seq + 1),
            // Microseconds: what both databases keep, so the digest holds.
            at: micros(Utc::now()),
            actor: act.actor.clone(),
            action: deed.action.to_string(),
            target: deed.target,
            detail: deed.detail,
            note: act.note.clone(),
            request_id: act.request_id.clone(),
            digest: String::new(),
        };
        entry.digest = entry.chained(head.as_ref().map_or("", |h| h.digest.as_str()));
        let insert = Query::insert()
            .into_table(Alias::new(&self.table))
            .columns(COLUMNS.map(Alias::new))
            .values_panic([
                entry.seq.into(),
                entry.at.into(),
                entry.actor.into(),
                entry.action.into(),
                entry.target.into(),
                entry.detail.into(),
                entry.note.into(),
                entry.request_id.into(),
                entry.digest.into(),
            ])
            .to_owned();
        txn.execute(&insert).await?;
        Ok(())
    }

    /// A transaction of the trail's own, for an act the database does not
    /// hold (the bus's).
    pub async fn begin(&self) -> Result<sea_orm::DatabaseTransaction, DbErr> {
        sea_orm::TransactionTrait::begin(&self.db).await
    }

    /// Up to `limit` entries matching `filter`, newest first.
    pub async fn list(&self, filter: &Filter, limit: u64) -> Result<Vec<Entry>, DbErr> {
        let mut query = Query::select()
            .columns(COLUMNS.map(Alias::new))
            .from(Alias::new(&self.table))
            .order_by(Alias::new("at"), Order::Desc)
            .order_by(Alias::new("seq"), Order::Desc)
            .limit(limit)
            .to_owned();
        for (column, value) in [("actor", &filter.actor), ("action", &filter.action), ("target", &filter.target)] {
            if let Some(value) = value {
                query.and_where(Expr::col(Alias::new(column)).eq(value.as_str()));
            }
        }
        if let Some(cursor) = &filter.before {
            let at = Expr::col(Alias::new("at"));
            let condition = match self.name.cmp(cursor.trail.as_str()) {
                // Later in the order at the same moment: this trail's
                // entries of that moment come after the cursor.
                std::cmp::Ordering::Less => at.lte(cursor.at),
                std::cmp::Ordering::Greater => at.lt(cursor.at),
                std::cmp::Ordering::Equal => Expr::col(Alias::new("at"))
                    .lt(cursor.at)
                    .or(Expr::col(Alias::new("at")).eq(cursor.at).and(Expr::col(Alias::new("seq")).lt(cursor.seq))),
            };
            query.and_where(condition);
        }
        let statement = self.db.get_database_backend().build(&query);
        Entry::find_by_statement(statement).all(&self.db).await
    }

    /// Walks the whole chain, oldest first.
    pub async fn check(&self) -> Result<Integrity, DbErr> {
        const PAGE: u64 = 500;
        let mut integrity = Integrity::default();
        let (mut previous, mut expected) = (String::new(), 1_i64);
        loop {
            let page = Query::select()
                .columns(COLUMNS.map(Alias::new))
                .from(Alias::new(&self.table))
                .and_where(Expr::col(Alias::new("seq")).gte(expected))
                .order_by(Alias::new("seq"), Order::Asc)
                .limit(PAGE)
                .to_owned();
            let statement = self.db.get_database_backend().build(&page);
            let entries = Entry::find_by_statement(statement).all(&self.db).await?;
            let last_page = (entries.len() as u64) < PAGE;
            for entry in entries {
                integrity.entries += 1;
                if entry.seq != expected {
                    integrity.breaks.push(format!(
                        "{} trail: entries {expected} to {} are missing",
                        self.name,
                        entry.seq - 1
                    ));
                }
                if entry.chained(&previous) != entry.digest {
                    integrity.breaks.push(format!(
                        "{} trail: entry {} is not what was written (or one before it was changed)",
                        self.name, entry.seq
                    ));
                }
                previous = entry.digest.clone();
                expected = entry.seq + 1;
            }
            if last_page {
                return Ok(integrity);
            }
        }
    }
}

const COLUMNS: [&str; 9] = ["seq", "at", "actor", "action", "target", "detail", "note", "request_id", "digest"];

/// The table that keeps the trail `name`.
pub fn table_of(name: &str) -> String {
    format!("{name}_audit")
}

fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// The statements that make the trail `name`'s table and make it
/// append-only on `backend`.
pub fn create_statements(name: &str, backend: DatabaseBackend) -> Vec<String> {
    let table = table_of(name);
    let time = if backend == DatabaseBackend::Postgres { "TIMESTAMPTZ" } else { "TEXT" };
    let mut statements = vec![
        format!(
            "CREATE TABLE {table} (seq BIGINT PRIMARY KEY, at {time} NOT NULL, actor VARCHAR(64) NOT NULL, \
             action VARCHAR(64) NOT NULL, target VARCHAR(200) NOT NULL, detail TEXT NOT NULL, \
             note TEXT NOT NULL, request_id VARCHAR(64) NOT NULL, digest CHAR(64) NOT NULL)"
        ),
        format!("CREATE INDEX ix_{table}_at ON {table} (at)"),
    ];
    let refusal = "the audit trail is append-only";
    if backend == DatabaseBackend::Postgres {
        statements.push(format!(
            "CREATE OR REPLACE FUNCTION {table}_refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION '{refusal}'; END $$"
        ));
        statements.push(format!(
            "CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} \
             FOR EACH ROW EXECUTE FUNCTION {table}_refuse()"
        ));
        statements.push(format!(
            "CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} \
             FOR EACH STATEMENT EXECUTE FUNCTION {table}_refuse()"
        ));
    } else {
        for event in ["UPDATE", "DELETE"] {
            statements.push(format!(
                "CREATE TRIGGER {table}_no_{} BEFORE {event} ON {table} BEGIN SELECT RAISE(ABORT, '{refusal}'); END",
                event.to_lowercase()
            ));
        }
    }
    statements
}

/// The migration that makes a service's trail (`migration` is its name in
/// the service's migration history).
pub struct TrailMigration {
    pub trail: &'static str,
    pub migration: &'static str,
}

impl sea_orm_migration::MigrationName for TrailMigration {
    fn name(&self) -> &str {
        self.migration
    }
}

#[async_trait::async_trait]
impl sea_orm_migration::MigrationTrait for TrailMigration {
    async fn up(&self, m: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for statement in create_statements(self.trail, db.get_database_backend()) {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }
}

/// `AuditService` over the trails of the services a process runs.
pub struct AuditServer {
    trails: Vec<Trail>,
}

impl AuditServer {
    pub fn new(trails: Vec<Trail>) -> AuditServer {
        AuditServer { trails }
    }

    pub fn into_service(self) -> pb::audit_service_server::AuditServiceServer<AuditServer> {
        pb::audit_service_server::AuditServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditServer {
    async fn list_audit_entries(
        &self,
        request: tonic::Request<pb::ListAuditEntriesRequest>,
    ) -> Result<tonic::Response<pb::ListAuditEntriesResponse>, tonic::Status> {
        let b = request.into_inner();
        let limit = crate::grpc::page_size(b.page_size)?;
        if [&b.actor, &b.action, &b.target].iter().any(|v| !wire::is_text(v, 200)) {
            return Err(Error::invalid_request(
                "actor, action and target filters must be at most 200 characters of text",
            )
            .into());
        }
        let given = |v: String| Some(v).filter(|v| !v.is_empty());
        let before = given(b.page_token).map(|t| Cursor::decode(&t)).transpose()?;
        let filter = Filter { actor: given(b.actor), action: given(b.action), target: given(b.target), before };
        let mut entries = Vec::new();
        for trail in &self.trails {
            let found = trail.list(&filter, limit + 1).await.map_err(Error::from)?;
            entries.extend(found.into_iter().map(|e| (trail.name, e)));
        }
        entries.sort_by(|(a_trail, a), (b_trail, b)| (b.at, b_trail, b.seq).cmp(&(a.at, a_trail, a.seq)));
        let more = entries.len() as u64 > limit;
        entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_page_token = match entries.last() {
            Some((trail, e)) if more => Cursor { at: e.at, trail: (*trail).to_string(), seq: e.seq }.encode(),
            _ => String::new(),
        };
        let entries = entries
            .into_iter()
            .map(|(trail, e)| pb::AuditEntry {
                trail: trail.to_string(),
                seq: e.seq,
                time: Some(crate::grpc::to_timestamp(e.at)),
                actor: e.actor,
                action: e.action,
                target: e.target,
                detail: e.detail,
                note: e.note,
                request_id: e.request_id,
            })
            .collect();
        Ok(tonic::Response::new(pb::ListAuditEntriesResponse { entries, next_page_token }))
    }

    async fn check_audit_trails(
        &self,
        _: tonic::Request<pb::CheckAuditTrailsRequest>,
    ) -> Result<tonic::Response<pb::CheckAuditTrailsResponse>, tonic::Status> {
        let mut answer = pb::CheckAuditTrailsResponse::default();
        for trail in &self.trails {
            let integrity = trail.check().await.map_err(Error::from)?;
            answer.entries += i64::try_from(integrity.entries).unwrap_or(i64::MAX);
            answer.breaks.extend(integrity.breaks);
        }
        Ok(tonic::Response::new(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64) -> Entry {
        Entry {
            seq,
            at: micros(Utc::now()),
            actor: "ops".into(),
            action: "credit".into(),
            target: "user:1".into(),
            detail: "amount=500 EUR".into(),
            note: "goodwill".into(),
            request_id: "r1".into(),
            digest: String::new(),
        }
    }

    #[test]
    fn a_digest_covers_every_field_and_the_one_before() {
        let base = entry(2).chained("a");
        assert_ne!(base, entry(2).chained("b"), "the previous digest");
        let changed = entry(2);
        for edit in [
            |e: &mut Entry| e.seq = 3,
            |e: &mut Entry| e.actor = "other".into(),
            |e: &mut Entry| e.action = "debit".into(),
            |e: &mut Entry| e.target = "user:2".into(),
            |e: &mut Entry| e.detail = "amount=5000 EUR".into(),
            |e: &mut Entry| e.note = String::new(),
            |e: &mut Entry| e.request_id = "r2".into(),
        ] {
            let mut e = changed.clone();
            let before = e.chained("a");
            edit(&mut e);
            assert_ne!(before, e.chained("a"));
        }
        // Fields cannot trade characters across their boundary.
        let (mut one, mut two) = (entry(1), entry(1));
        two.at = one.at;
        one.actor = "ab".into();
        one.action = "c".into();
        two.actor = "a".into();
        two.action = "bc".into();
        assert_ne!(one.chained(""), two.chained(""));
    }

    #[test]
    fn an_act_names_its_actor() {
        let mut metadata = MetadataMap::new();
        assert!(Act::of(&metadata).is_err(), "no actor");
        metadata.insert(ACTOR_HEADER, "  ".parse().expect("ascii"));
        assert!(Act::of(&metadata).is_err(), "a blank actor");
        let act = Act { actor: "ana".into(), note: "the customer called — refund".into(), request_id: "r-1".into() };
        let mut stamped = MetadataMap::new();
        act.stamp(&mut stamped).expect("stamped");
        assert_eq!(Act::of(&stamped).expect("an act"), act, "non-ASCII notes travel");
        let long = Act { note: "x".repeat(MAX_NOTE + 1), ..act.clone() };
        let mut stamped = MetadataMap::new();
        long.stamp(&mut stamped).expect("stamped");
        assert!(Act::of(&stamped).is_err());
        let unnamed = Act { request_id: String::new(), ..act };
        let mut stamped = MetadataMap::new();
        unnamed.stamp(&mut stamped).expect("stamped");
        assert!(!Act::of(&stamped).expect("an act").request_id.is_empty(), "an id is made when none came");
    }

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor { at: micros(Utc::now()), trail: "catalog".into(), seq: 42 };
        assert_eq!(Cursor::decode(&cursor.encode()).expect("decoded"), cursor);
        for bad in ["", "x|y", "2026-01-01T00:00:00Z|account|x", "nope|account|1"] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
