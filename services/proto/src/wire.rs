//! The rules for what callers write into requests: ids and cursors, and
//! idempotency keys. They depend on `uuid` and std only, so the fuzz
//! targets compile them alone.

use uuid::Uuid;

/// A UUID in its hyphenated form, the only one ids are written in (so the
/// documents can give one pattern for every id and cursor).
pub fn hyphenated(value: &str) -> Option<Uuid> {
    if value.len() == 36 { Uuid::try_parse(value).ok() } else { None }
}

/// An `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub fn is_idempotency_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}
