//! The rules for what callers write into requests: ids and cursors, and
//! idempotency keys. They depend on `uuid` and std only, so the fuzz
//! targets compile them alone.

use uuid::Uuid;

/// A UUID in its hyphenated form, the only one ids are written in (so the
/// documents can give one pattern for every id and cursor).
pub fn hyphenated(value: &str) -> Option<Uuid> {
    if value.len() == 36 { Uuid::try_parse(value).ok() } else { None }
}

/// Text a person wrote (a name, a note, a memo, a search): at most `max`
/// characters, none of them a control character but a line break or a
/// tab. PostgreSQL cannot store a NUL in text at all; a request carrying
/// one is the caller's mistake, not a failure of the database.
pub fn is_text(value: &str, max: usize) -> bool {
    value.chars().count() <= max && value.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

/// An `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub fn is_idempotency_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::is_text;

    #[test]
    fn text_is_what_a_person_types() {
        assert!(is_text("", 10) && is_text("two\nlines\tand a tab", 30) && is_text("Zoë's 📱", 10));
        for bad in ["nul\0byte", "bell\u{7}", "escape\u{1b}[31m", "del\u{7f}", "c1\u{85}"] {
            assert!(!is_text(bad, 100), "{bad:?}");
        }
        assert!(is_text(&"é".repeat(10), 10) && !is_text(&"é".repeat(11), 10), "characters, not bytes");
    }
}
