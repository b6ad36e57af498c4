//! The one rule for usernames: what registration accepts, and what a login
//! must look like before anything about it is counted (a name outside the
//! rule belongs to nobody, and `:` or `/` in it could pose as another
//! key's parts). The edge documents the same pattern. Std only, so the
//! fuzz targets compile it alone.

/// The rule as a pattern, for documents.
pub const PATTERN: &str = "^[A-Za-z0-9_.-]{3,64}$";

/// The rule in words, for the client's 400.
pub const RULE: &str = "username must be 3 to 64 characters of letters, digits, '_', '.' or '-'";

pub fn is_valid(username: &str) -> bool {
    (3..=64).contains(&username.len())
        && username.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn the_rule() {
        for ok in ["demo", "demo2", "a.b-c_d", &"x".repeat(64)] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", "ab", "demo2:127.0.0.9", "demo2:2001:db8:1:2::/64", "dé mo", "ｄｅｍｏ", &"x".repeat(65)] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
