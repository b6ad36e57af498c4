//! Every process that checks access tokens holds the auth service's key set
//! (its JWKS): loaded over gRPC at start, again every
//! `auth.jwks_refresh_secs`, and at once when a token names a key the
//! process does not hold (see `TokenVerifier::verify_fresh`). Keys rotate,
//! and a retired one stops verifying, without any file shared between
//! processes.

use std::sync::Arc;
use std::time::Duration;

use offers_kit::grpc::Connector;
use offers_kit::token::{Jwk, KeySource, TokenVerifier};
use offers_proto::auth::v1::GetJwksRequest;
use offers_proto::auth::v1::auth_service_client::AuthServiceClient;
use tokio_util::sync::CancellationToken;

/// Makes `verifier` load its keys from the auth service at `auth_url`.
pub fn attach(verifier: &TokenVerifier, connector: &Connector, auth_url: &str) -> Result<(), tonic::Status> {
    let channel = connector.channel(auth_url).map_err(tonic::Status::from)?;
    let source: KeySource = Arc::new(move || {
        let mut client = AuthServiceClient::new(channel.clone());
        Box::pin(async move {
            let keys = client.get_jwks(GetJwksRequest {}).await.map_err(|e| e.to_string())?.into_inner().keys;
            Ok(keys
                .into_iter()
                .map(|k| Jwk { kty: k.kty, crv: k.crv, x: k.x, kid: k.kid, alg: k.alg, use_: k.r#use })
                .collect())
        })
    });
    verifier.set_source(source);
    Ok(())
}

/// Tries to load the key set for up to `patience`: a process whose auth
/// service is up (or in the same process) verifies tokens from its first
/// request; one whose auth service is not stays unready until it is.
pub async fn first_load(verifier: &TokenVerifier, patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
    while let Err(e) = verifier.reload().await {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(error = %e, "no access-token keys yet; will keep trying");
            return;
        }
    }
}

/// Reloads the key set every `every` until `shutdown`.
pub async fn refresh(verifier: TokenVerifier, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(e) = verifier.reload().await {
            tracing::warn!(error = %e, "could not reload the access-token keys; keeping the last ones");
        }
    }
}
