//! Partner API keys and references.

use base64::Engine;
use sha2::{Digest, Sha256};

/// A fresh key: `pk_live_` and 256 random bits.
pub fn new_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("pk_live_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What is shown of a key in lists and logs.
pub fn prefix(key: &str) -> String {
    key.chars().take(16).collect()
}

pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// `REF-` and 12 upper-case hex digits (48 random bits).
pub fn new_reference() -> String {
    let bytes: [u8; 6] = rand::random();
    format!("REF-{}", hex::encode_upper(bytes))
}

pub fn is_reference(value: &str) -> bool {
    value
        .strip_prefix("REF-")
        .is_some_and(|hex| hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)))
}

/// A secret for signing callbacks.
pub fn new_signing_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_have_their_shape() {
        for _ in 0..100 {
            assert!(is_reference(&new_reference()));
        }
        assert!(!is_reference("REF-12345678901"));
        assert!(!is_reference("REF-abcdef123456"));
        assert!(!is_reference("ref-ABCDEF123456"));
        assert!(!is_reference("REF-ABCDEF1234567"));
    }

    #[test]
    fn keys_are_long_and_prefixed() {
        let key = new_key();
        assert!(key.starts_with("pk_live_") && key.len() > 40);
        assert_eq!(prefix(&key).len(), 16);
        assert_ne!(hash(&key), hash(&new_key()));
    }
}
