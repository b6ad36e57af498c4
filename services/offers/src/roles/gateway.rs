//! `gateway`: the REST/JSON edge, with the process's operational paths.

use offers_kit::Parts;
use offers_kit::credentials::ServiceCredential;
use offers_proto::account::v1::account_service_client::AccountServiceClient;
use offers_proto::activation::v1::activation_service_client::ActivationServiceClient;
use offers_proto::auth::v1::auth_service_client::AuthServiceClient;
use offers_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use offers_proto::partner::v1::partner_service_client::PartnerServiceClient;

use super::{Needs, Shared};

pub const NEEDS: Needs = Needs { database: false, bus: false, clients: false, serves: None, requires: &[] };

pub fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let settings = &shared.settings;
    let connector = settings.tls.connector(settings.gateway.upstream_timeout)?;
    let channel = |url: &str| connector.channel(url);
    let up = &settings.upstream;
    let upstreams = offers_gateway::Upstreams {
        auth: AuthServiceClient::new(channel(&up.auth)?),
        catalog: CatalogServiceClient::new(channel(&up.catalog)?),
        account: AccountServiceClient::new(channel(&up.account)?),
        activation: ActivationServiceClient::new(channel(&up.activation)?),
        partner: PartnerServiceClient::new(channel(&up.partner)?),
    };
    let auth = offers_gateway::EdgeAuth {
        verifier: shared.verifier.clone(),
        credential: ServiceCredential::new(settings.internal_token().unwrap_or_default())?,
        trusted_proxy_hops: settings.gateway.trusted_proxy_hops,
    };
    let router = offers_gateway::router(&settings.gateway, upstreams, auth, shared.ops.clone());
    Ok(Parts { http: Some(router), ..Parts::default() })
}
