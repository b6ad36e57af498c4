//! argon2id password hashing, off the async threads (it is deliberately slow).

use std::sync::LazyLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub async fn hash(password: String) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    })
    .await?
}

/// Checks a password; with no stored hash (unknown user) it still spends the
/// same work on a dummy hash, so timing does not reveal which usernames exist.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, PasswordError> {
    static DUMMY: LazyLock<String> = LazyLock::new(|| {
        Argon2::default().hash_password(b"offers-dummy-password").map(|h| h.to_string()).unwrap_or_default()
    });
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY.clone());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        ok && known
    })
    .await
    .map_err(PasswordError::from)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let a = super::hash("correct horse".into()).await.expect("hash");
        let b = super::hash("correct horse".into()).await.expect("hash");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(a.starts_with("$argon2id$"));
        assert!(super::verify("correct horse".into(), Some(a.clone())).await.expect("verify"));
        assert!(!super::verify("wrong".into(), Some(a)).await.expect("verify"));
        assert!(!super::verify("correct horse".into(), None).await.expect("verify"));
    }
}
