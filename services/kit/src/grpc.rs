//! Client channels to other services, and small request helpers.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use uuid::Uuid;

use crate::credentials::ServiceCredential;
use crate::error::{Error, ErrorCode};

/// A channel to an internal listener that presents the service credential.
pub type InternalChannel = InterceptedService<Channel, ServiceCredential>;

/// How a process reaches other services: the per-call deadline, and TLS
/// (server verified by the configured CA, our certificate presented for
/// mutual TLS) when the deployment turns it on.
#[derive(Clone)]
pub struct Connector {
    pub timeout: Duration,
    pub tls: Option<ClientTlsConfig>,
}

impl Connector {
    /// A lazily connected channel: the target may start after us.
    pub fn channel(&self, url: &str) -> Result<Channel, Error> {
        let bad = |e: &dyn std::fmt::Display| Error::invalid_request(format!("bad upstream URL {url:?}: {e}"));
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| bad(&e))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(self.timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| bad(&e))?;
        }
        Ok(endpoint.connect_lazy())
    }

    pub fn internal_channel(&self, url: &str, credential: ServiceCredential) -> Result<InternalChannel, Error> {
        Ok(InterceptedService::new(self.channel(url)?, credential))
    }
}

/// The caller's `Idempotency-Key` (metadata `idempotency-key`), if any: 1 to
/// 255 visible ASCII characters, or `invalid_request`.
pub fn idempotency_key(metadata: &tonic::metadata::MetadataMap) -> Result<Option<String>, Error> {
    let Some(value) = metadata.get("idempotency-key") else { return Ok(None) };
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_string()))
        }
        _ => Err(Error::invalid_request("Idempotency-Key must be 1 to 255 visible ASCII characters")),
    }
}

/// Parses a UUID from a request; a malformed one is `invalid_id`.
pub fn parse_id(value: &str, what: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(value).map_err(|_| Error::new(ErrorCode::InvalidId, format!("{what} is not a valid id")))
}

/// Page sizes: 50 unless asked, never more than 200.
pub fn page_size(requested: i32) -> u64 {
    match requested {
        n if n <= 0 => 50,
        n => u64::try_from(n.min(200)).unwrap_or(50),
    }
}

/// A page token is the id of the last item of the previous page (ids are
/// UUIDv7, so they order by creation time).
pub fn page_after(token: &str) -> Result<Option<Uuid>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(token).map(Some).map_err(|_| Error::invalid_request("cursor is not valid"))
}

pub fn to_timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0) }
}

pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}
