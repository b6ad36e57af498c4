//! Administrative operations, done over the internal gRPC listener with the
//! service credential, exactly as any other internal caller would.

use std::time::Duration;

use anyhow::Context;
use offers_kit::config::Settings;
use offers_kit::credentials::ServiceCredential;
use offers_kit::grpc::{InternalChannel, internal_channel};
use offers_kit::{Error, ErrorCode};
use offers_proto::auth::v1::user_admin_service_client::UserAdminServiceClient;
use offers_proto::auth::v1::{self as auth_pb};
use offers_proto::catalog::v1::catalog_admin_service_client::CatalogAdminServiceClient;
use offers_proto::catalog::v1::{self as catalog_pb};

pub struct AdminClient {
    pub users: UserAdminServiceClient<InternalChannel>,
    pub catalog: CatalogAdminServiceClient<InternalChannel>,
}

/// The outcome of a create that may find its object already there.
pub enum Created<T> {
    New(T),
    Existing,
}

fn created<T>(result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<Created<T>> {
    match result {
        Ok(response) => Ok(Created::New(response.into_inner())),
        Err(status) => match Error::from_status(status) {
            e if e.code == ErrorCode::AlreadyExists => Ok(Created::Existing),
            e => Err(e.into()),
        },
    }
}

impl AdminClient {
    pub fn connect(settings: &Settings, token: &str) -> anyhow::Result<Self> {
        let credential = ServiceCredential::new(token)?;
        let timeout = Duration::from_secs(30);
        let channel = |url: &str| internal_channel(url, credential.clone(), timeout).context("bad upstream URL");
        Ok(Self {
            users: UserAdminServiceClient::new(channel(&settings.upstream.auth_internal)?),
            catalog: CatalogAdminServiceClient::new(channel(&settings.upstream.catalog_internal)?),
        })
    }

    pub async fn create_user(&mut self, request: auth_pb::CreateUserRequest) -> anyhow::Result<Created<auth_pb::User>> {
        Ok(match created(self.users.create_user(request).await)? {
            Created::New(r) => Created::New(r.user.context("no user in the answer")?),
            Created::Existing => Created::Existing,
        })
    }

    pub async fn create_offer(&mut self, offer: catalog_pb::Offer) -> anyhow::Result<Created<catalog_pb::Offer>> {
        let request = catalog_pb::CreateOfferRequest { offer: Some(offer) };
        Ok(match created(self.catalog.create_offer(request).await)? {
            Created::New(r) => Created::New(r.offer.context("no offer in the answer")?),
            Created::Existing => Created::Existing,
        })
    }

    pub async fn update_offer(
        &mut self,
        offer: catalog_pb::Offer,
        paths: Vec<String>,
    ) -> anyhow::Result<catalog_pb::Offer> {
        let request =
            catalog_pb::UpdateOfferRequest { offer: Some(offer), update_mask: Some(prost_types::FieldMask { paths }) };
        let answer = self.catalog.update_offer(request).await.map_err(Error::from_status)?;
        answer.into_inner().offer.context("no offer in the answer")
    }
}
