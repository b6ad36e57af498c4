//! Clients of the internal services, presenting the service credential:
//! what the roles of a process and `offers admin` use to reach the rest.

use std::time::Duration;

use offers_kit::credentials::ServiceCredential;
use offers_kit::grpc::{Connector, InternalChannel};
use offers_proto::account::v1::ledger_service_client::LedgerServiceClient;
use offers_proto::audit::v1::audit_service_client::AuditServiceClient;
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
    /// One per distinct internal address of the services that keep an
    /// audit trail (one in the embedded mode, four when split).
    pub audit: Vec<AuditServiceClient<InternalChannel>>,
}

impl InternalClients {
    /// Lazily connected clients; each call may take up to its service's
    /// `upstream.*_timeout`.
    pub fn new(settings: &Settings, token: &str) -> anyhow::Result<Self> {
        Self::with_deadlines(settings, token, |timeout| timeout)
    }

    /// `offers admin`'s clients: every call may take up to `upstream.admin_timeout`.
    pub fn admin(settings: &Settings, token: &str) -> anyhow::Result<Self> {
        Self::with_deadlines(settings, token, |_| settings.upstream.admin_timeout)
    }

    /// `deadline` picks each client's deadline from its service's timeout.
    fn with_deadlines(
        settings: &Settings,
        token: &str,
        deadline: impl Fn(Duration) -> Duration,
    ) -> anyhow::Result<Self> {
        let credential = ServiceCredential::new(token)?;
        let connector = settings.tls.connector(Duration::ZERO)?;
        let channel = |url: &str, timeout: Duration| {
            Connector { timeout: deadline(timeout), ..connector.clone() }.internal_channel(url, credential.clone())
        };
        let up = &settings.upstream;
        let mut trails = vec![
            (&up.auth_internal, up.auth_timeout),
            (&up.catalog_internal, up.catalog_timeout),
            (&up.account_internal, up.account_timeout),
            (&up.partner_internal, up.partner_timeout),
        ];
        trails.sort_by_key(|(url, _)| url.as_str());
        trails.dedup_by_key(|(url, _)| url.as_str());
        let audit = trails.into_iter().map(|(url, timeout)| Ok(AuditServiceClient::new(channel(url, timeout)?)));
        Ok(Self {
            audit: audit.collect::<anyhow::Result<_>>()?,
            users: UserAdminServiceClient::new(channel(&up.auth_internal, up.auth_timeout)?),
            keys: SigningKeyAdminServiceClient::new(channel(&up.auth_internal, up.auth_timeout)?),
            catalog: CatalogAdminServiceClient::new(channel(&up.catalog_internal, up.catalog_timeout)?),
            ledger: LedgerServiceClient::new(channel(&up.account_internal, up.account_timeout)?),
            partners: PartnerAdminServiceClient::new(channel(&up.partner_internal, up.partner_timeout)?),
            jobs: JobAdminServiceClient::new(channel(&up.account_internal, up.account_timeout)?),
        })
    }
}
