//! Automatic renewal as the ledger keeps it: each subscription's choice,
//! set by its owner (or by a purchase that asked for it, when it succeeds).

use chrono::Utc;
use offers_proto::ids::{SubscriptionId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::Ledger;
use crate::entity::subscription;
use crate::error::LedgerError;

impl Ledger {
    /// Turns a user's subscription's automatic renewal on or off; another
    /// user's does not exist.
    pub async fn set_auto_renew(
        &self,
        user_id: UserId,
        id: SubscriptionId,
        auto_renew: bool,
    ) -> Result<subscription::Model, LedgerError> {
        let updated = subscription::Entity::update_many()
            .col_expr(subscription::Column::AutoRenew, Expr::value(auto_renew))
            .col_expr(subscription::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(subscription::Column::Id.eq(id.uuid()))
            .filter(subscription::Column::UserId.eq(user_id.uuid()))
            .exec(&self.db)
            .await?;
        if updated.rows_affected != 1 {
            return Err(LedgerError::NotFound("subscription"));
        }
        self.subscription(id).await
    }
}
