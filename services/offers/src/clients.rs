//! Clients of the internal services, presenting the service credential:
//! what the roles of a process and `offers admin` use to reach the rest.

use std::time::Duration;

use offers_kit::credentials::ServiceCredential;
use offers_kit::grpc::InternalChannel;
use offers_proto::account::v1::ledger_service_client::LedgerServiceClient;
use offers_proto::auth::v1::signing_key_admin_service_client::SigningKeyAdminServiceClient;
use offers_proto::auth::v1::user_admin_service_client::UserAdminServiceClient;
use offers_proto::catalog::v1::catalog_admin_service_client::CatalogAdminServiceClient;
use offers_proto::jobs::v1::job_admin_service_client::JobAdminServiceClient;
use offers_proto::partner::v1::partner_admin_service_client::PartnerAdminServiceClient;

use crate::settings::Settings;

#[derive(Clone)]
pub struct InternalClients {
    pub users: UserAdminServiceClient<InternalChannel>,
    pub keys: SigningKeyAdminServiceClient<InternalChannel>,
    pub catalog: CatalogAdminServiceClient<InternalChannel>,
    pub ledger: LedgerServiceClient<InternalChannel>,
    pub partners: PartnerAdminServiceClient<InternalChannel>,
    pub jobs: JobAdminServiceClient<InternalChannel>,
}

impl InternalClients {
    /// Lazily connected clients; each call may take up to `timeout`.
    pub fn new(settings: &Settings, token: &str, timeout: Duration) -> anyhow::Result<Self> {
        let credential = ServiceCredential::new(token)?;
        let connector = settings.tls.connector(timeout)?;
        let channel = |url: &str| connector.internal_channel(url, credential.clone());
        let up = &settings.upstream;
        Ok(Self {
            users: UserAdminServiceClient::new(channel(&up.auth_internal)?),
            keys: SigningKeyAdminServiceClient::new(channel(&up.auth_internal)?),
            catalog: CatalogAdminServiceClient::new(channel(&up.catalog_internal)?),
            ledger: LedgerServiceClient::new(channel(&up.account_internal)?),
            partners: PartnerAdminServiceClient::new(channel(&up.partner_internal)?),
            jobs: JobAdminServiceClient::new(channel(&up.account_internal)?),
        })
    }
}
