//! argon2id password hashing with bounded memory.
//!
//! Parameters: argon2id, 12 MiB of memory, 3 passes, 1 lane: one of the
//! argon2id configurations OWASP's Password Storage Cheat Sheet lists as
//! giving an equal level of defence. Until 2026-12 it was the first of
//! them (19 MiB, 2 passes, the argon2 crate's default); this one does about
//! the same work (36 MiB-passes against 38) in 37% less memory, and memory
//! is what bounds a login flood and `offers dev`, where every role shares
//! one process. Hashes stored with other parameters still verify, and the
//! login that proves the password replaces them ([`Hasher::is_outdated`]).
//!
//! Each hash needs its 12 MiB of working memory. Hashing runs on the
//! blocking pool, at most `concurrency` at a time, in buffers allocated
//! once and reused: the memory hashing can ever take is `concurrency` ×
//! 12 MiB, and none of it goes back and forth through the allocator (which
//! may keep freed blocks of that size rather than return them). A login
//! that cannot get a turn within `wait` is refused at once as busy (503
//! with Retry-After) rather than queued without limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("every password hashing slot is busy")]
    Busy,
}

impl From<argon2::Error> for PasswordError {
    fn from(e: argon2::Error) -> Self {
        PasswordError::Hash(e.to_string())
    }
}

impl From<argon2::password_hash::phc::Error> for PasswordError {
    fn from(e: argon2::password_hash::phc::Error) -> Self {
        PasswordError::Hash(e.to_string())
    }
}

impl From<argon2::password_hash::Error> for PasswordError {
    fn from(e: argon2::password_hash::Error) -> Self {
        PasswordError::Hash(e.to_string())
    }
}

type Buffers = Arc<Mutex<Vec<Vec<Block>>>>;

pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    buffers: Buffers,
    wait: Duration,
}

/// Working memory of one hash, in KiB.
pub const MEMORY_KIB: u32 = 12 * 1024;
/// Passes over that memory.
pub const PASSES: u32 = 3;

/// The parameters new hashes are made with.
fn params() -> Params {
    Params::new(MEMORY_KIB, PASSES, 1, None).expect("the constant parameters are within argon2's bounds")
}

/// The salt of the work done for unknown usernames (the result is never used).
const DUMMY_SALT: &[u8; 16] = b"offers-no-user!!";

impl Hasher {
    pub fn new(concurrency: usize, wait: Duration) -> Self {
        Self { params: params(), permits: Arc::new(Semaphore::new(concurrency.max(1))), buffers: Arc::default(), wait }
    }

    /// How many hashes may run at once for a memory budget on this machine:
    /// one per core, but no more than the budget holds.
    pub fn concurrency_for(memory_budget_mib: u64) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_hash = u64::from(MEMORY_KIB).div_ceil(1024);
        let fits = usize::try_from(memory_budget_mib / per_hash).unwrap_or(usize::MAX);
        cores.min(fits).max(1)
    }

    /// Buffers allocated so far (never more than the concurrency).
    #[cfg(test)]
    pub fn buffers(&self) -> usize {
        self.buffers.lock().map_or(0, |b| b.len())
    }

    /// Runs `work` on the blocking pool with a working-memory buffer of
    /// `blocks` blocks, once a slot is free within the wait.
    async fn with_memory<R: Send + 'static>(
        &self,
        blocks: usize,
        work: impl FnOnce(&mut [Block]) -> R + Send + 'static,
    ) -> Result<R, PasswordError> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| PasswordError::Busy)?
            .map_err(|_| PasswordError::Busy)?;
        let pooled = blocks == self.params.block_count();
        let buffers = self.buffers.clone();
        let taken = if pooled { buffers.lock().ok().and_then(|mut b| b.pop()) } else { None };
        Ok(tokio::task::spawn_blocking(move || {
            let mut memory = taken.unwrap_or_else(|| vec![Block::default(); blocks]);
            let result = work(&mut memory);
            // Only our own parameters' buffers are kept; a stored hash with
            // other parameters borrows memory just for its turn.
            if pooled && let Ok(mut kept) = buffers.lock() {
                kept.push(memory);
                metrics::gauge!("offers_auth_hash_buffers").set(kept.len() as f64);
            }
            drop(permit);
            result
        })
        .await?)
    }

    /// Whether `stored` was made otherwise than new hashes are (other
    /// parameters, algorithm or version). It still verifies; the login that
    /// proves the password replaces it (see `Auth::login`).
    pub fn is_outdated(&self, stored: &str) -> bool {
        let ours = &self.params;
        Stored::parse(stored).is_ok_and(|s| {
            s.algorithm != Algorithm::Argon2id
                || s.version != Version::V0x13
                || (s.params.m_cost(), s.params.t_cost(), s.params.p_cost())
                    != (ours.m_cost(), ours.t_cost(), ours.p_cost())
                || s.expected.len() != Params::DEFAULT_OUTPUT_LEN
        })
    }

    /// A new PHC string for `password`, with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let params = self.params.clone();
        let salt: [u8; 16] = rand::random();
        self.with_memory(params.block_count(), move |memory| {
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            argon.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory)?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params)?,
                salt: Some(Salt::new(&salt)?),
                hash: Some(Output::new(&out)?),
            };
            Ok(phc.to_string())
        })
        .await?
    }

    /// Checks a password; with no stored hash (unknown user) it still spends
    /// the same work, so timing does not reveal which usernames exist.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, PasswordError> {
        let Some(stored) = stored else {
            let params = self.params.clone();
            let work = move |memory: &mut [Block]| {
                let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
                let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                let _ = argon.hash_password_into_with_memory(password.as_bytes(), DUMMY_SALT, &mut out, memory);
                false
            };
            return self.with_memory(self.params.block_count(), work).await;
        };
        let Ok(parsed) = Stored::parse(&stored) else {
            tracing::warn!("a stored password hash does not parse");
            return Ok(false);
        };
        let blocks = parsed.params.block_count();
        self.with_memory(blocks, move |memory| parsed.matches(password.as_bytes(), memory)).await
    }
}

/// A stored PHC string, taken apart.
struct Stored {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

impl Stored {
    fn parse(phc: &str) -> Result<Self, PasswordError> {
        let hash = PasswordHash::new(phc)?;
        let missing = || PasswordError::Hash("incomplete stored hash".into());
        Ok(Self {
            algorithm: Algorithm::new(hash.algorithm.as_str())?,
            version: hash.version.map(Version::try_from).transpose()?.unwrap_or_default(),
            params: Params::try_from(&hash)?,
            salt: hash.salt.as_ref().ok_or_else(missing)?.as_ref().to_vec(),
            expected: hash.hash.as_ref().ok_or_else(missing)?.as_bytes().to_vec(),
        })
    }

    fn matches(self, password: &[u8], memory: &mut [Block]) -> bool {
        let mut out = vec![0u8; self.expected.len()];
        let argon = Argon2::new(self.algorithm, self.version, self.params);
        if argon.hash_password_into_with_memory(password, &self.salt, &mut out, memory).is_err() {
            return false;
        }
        // Compare without an early exit, so timing says nothing.
        out.iter().zip(&self.expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use argon2::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let hasher = Hasher::new(2, Duration::from_secs(10));
        let a = hasher.hash("correct horse".into()).await.expect("hash");
        let b = hasher.hash("correct horse".into()).await.expect("hash");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(a.starts_with("$argon2id$v=19$m=12288,t=3,p=1$"), "{a}");
        assert!(hasher.verify("correct horse".into(), Some(a.clone())).await.expect("verify"));
        assert!(!hasher.verify("wrong".into(), Some(a.clone())).await.expect("verify"));
        assert!(!hasher.verify("correct horse".into(), None).await.expect("verify"));
        // Interoperable with the argon2 crate's own PHC strings, both ways.
        assert!(Argon2::default().verify_password(b"correct horse", &PasswordHash::new(&a).expect("phc")).is_ok());
        let theirs = Argon2::default().hash_password(b"tr0ub4dor").expect("hash").to_string();
        assert!(hasher.verify("tr0ub4dor".into(), Some(theirs.clone())).await.expect("verify"));
        // The crate's default is the 19 MiB configuration used until 2026-12.
        assert!(hasher.is_outdated(&theirs), "{theirs}");
        assert!(!hasher.is_outdated(&a), "{a}");
    }

    fn resident_mib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
        kib.and_then(|k| k.parse::<u64>().ok()).unwrap_or(0) / 1024
    }

    /// 40 logins at once against two slots: memory stays at two buffers
    /// (unbounded, it would be 40 × 12 MiB), the excess is refused quickly
    /// as busy, nothing crashes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_login_flood_is_bounded_and_refused_quickly() {
        let hasher = Arc::new(Hasher::new(2, Duration::from_millis(100)));
        let stored = hasher.hash("pw".into()).await.expect("hash");
        let before = resident_mib();
        let logins = (0..40).map(|i| {
            let (hasher, stored) = (hasher.clone(), stored.clone());
            tokio::spawn(async move { hasher.verify(format!("guess {i}"), Some(stored)).await })
        });
        let outcomes = futures_util::future::join_all(logins).await;
        let busy = outcomes.iter().filter(|o| matches!(o, Ok(Err(PasswordError::Busy)))).count();
        let checked = outcomes.iter().filter(|o| matches!(o, Ok(Ok(false)))).count();
        assert_eq!(busy + checked, 40, "every login is either checked or refused as busy");
        assert!(busy > 0, "the excess is refused, not queued without limit");
        assert!(hasher.buffers() <= 2, "{} buffers", hasher.buffers());
        let grown = resident_mib().saturating_sub(before);
        assert!(grown < 150, "resident memory grew by {grown} MiB");
    }
}
