//! Every process that checks access tokens holds the auth service's key set
//! (its JWKS), loaded over gRPC at start and reloaded every
//! `auth.jwks_refresh_secs`: keys rotate, and a retired one stops verifying,
//! without any file shared between processes.

use std::time::Duration;

use offers_kit::grpc::Connector;
use offers_kit::token::{Jwk, TokenVerifier};
use offers_proto::auth::v1::GetJwksRequest;
use offers_proto::auth::v1::auth_service_client::AuthServiceClient;
use tokio_util::sync::CancellationToken;

/// Loads the key set into `verifier` once.
pub async fn load(verifier: &TokenVerifier, connector: &Connector, auth_url: &str) -> Result<usize, tonic::Status> {
    let channel = connector.channel(auth_url).map_err(tonic::Status::from)?;
    let keys = AuthServiceClient::new(channel).get_jwks(GetJwksRequest {}).await?.into_inner().keys;
    let jwks: Vec<Jwk> = keys
        .into_iter()
        .map(|k| Jwk { kty: k.kty, crv: k.crv, x: k.x, kid: k.kid, alg: k.alg, use_: k.r#use })
        .collect();
    verifier.set_keys(&jwks);
    Ok(jwks.len())
}

/// Tries to load the key set for up to `patience`: a process whose auth
/// service is up (or in the same process) verifies tokens from its first
/// request; one whose auth service is not stays unready until it is.
pub async fn first_load(verifier: &TokenVerifier, connector: &Connector, auth_url: &str, patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
    while let Err(e) = load(verifier, connector, auth_url).await {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(error = %e, "no access-token keys yet; will keep trying");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reloads the key set every `every` until `shutdown`.
pub async fn refresh(
    verifier: TokenVerifier,
    connector: Connector,
    auth_url: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(e) = load(&verifier, &connector, &auth_url).await {
            tracing::warn!(error = %e, "could not reload the access-token keys; keeping the last ones");
        }
    }
}
