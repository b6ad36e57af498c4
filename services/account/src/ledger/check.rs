//! The books, checked: the accounts sum to zero, every user and partner
//! account equals the sum of its transfers and is within its limit, and
//! every transaction's transfers match its state (one hold; a SUCCESS has
//! one sale and its subscription, a FAILED one refund to whoever paid, a
//! PENDING neither); and every subscription runs exactly as far as its
//! successes extended it (one effect each: none twice, none missing). `offers admin ledger check` and every end-to-end test
//! run it.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use uuid::Uuid;

use super::Ledger;
use super::books::{PENDING, SYSTEM_ACCOUNTS};
use crate::entity::account::{self, Kind};
use crate::error::LedgerError;

/// One account's balance, as kept and as its transfers add up.
#[derive(Debug, Clone)]
pub struct Total {
    pub id: Uuid,
    /// `None` for a system account.
    pub kind: Option<Kind>,
    /// The system account's name; empty otherwise.
    pub name: &'static str,
    /// As kept (a system account's is its transfers' sum).
    pub balance: i64,
    pub credit_limit: i64,
    pub from_transfers: i64,
}

#[derive(Debug, Clone)]
pub struct Books {
    pub totals: Vec<Total>,
    /// Over every account; zero when the books balance.
    pub sum: i64,
    pub violations: Vec<String>,
}

/// Each account's balance from its transfers.
const BY_TRANSFERS: &str = "SELECT account, CAST(SUM(delta) AS BIGINT) AS total FROM (\
    SELECT to_account AS account, amount AS delta FROM account_transfers \
    UNION ALL SELECT from_account AS account, -amount AS delta FROM account_transfers) moves \
    GROUP BY account";

/// Every transaction made under double entry with the transfers it has:
/// one pass over the transfers (a join and a count per kind), not a
/// lookup per transaction and kind, which took longer than a call may at
/// a hundred thousand transactions.
const TRANSACTIONS: &str = "SELECT t.id AS id, t.status AS status, \
    SUM(CASE WHEN x.kind = 'HOLD' AND x.to_account = {pending} AND x.amount = t.amount THEN 1 ELSE 0 END) AS holds, \
    SUM(CASE WHEN x.kind = 'SALE' THEN 1 ELSE 0 END) AS sales, \
    SUM(CASE WHEN x.kind = 'REFUND' THEN 1 ELSE 0 END) AS refunds, \
    SUM(CASE WHEN x.kind = 'REFUND' AND x.to_account = t.payer_account_id AND x.amount = t.amount \
        THEN 1 ELSE 0 END) AS refunds_to_payer, \
    COUNT(DISTINCT s.id) AS subscriptions \
    FROM account_transactions t \
    LEFT JOIN account_transfers x ON x.transaction_id = t.id \
    LEFT JOIN account_subscriptions s ON s.id = t.subscription_id AND s.user_id = COALESCE(t.recipient_id, t.user_id) \
    WHERE t.legacy = {no} \
    GROUP BY t.id, t.status";

/// Each subscription with what its successes recorded extending it to.
const SUBSCRIPTIONS: &str = "SELECT s.id AS id, s.expires_at AS expires_at, MAX(t.extended_to) AS extended_to, \
    SUM(CASE WHEN t.extended_to IS NULL THEN 1 ELSE 0 END) AS unrecorded \
    FROM account_subscriptions s JOIN account_transactions t ON t.subscription_id = s.id AND t.status = 'SUCCESS' \
    GROUP BY s.id, s.expires_at";

/// Periods of a subscription renewed more than once (a unique index keeps
/// them out; this says so if it ever did not).
const PERIODS: &str = "SELECT subscription_id AS id, renews_from AS period, COUNT(*) AS renewals \
    FROM account_transactions WHERE renews_from IS NOT NULL AND status <> 'FAILED' \
    GROUP BY subscription_id, renews_from HAVING COUNT(*) > 1";

/// What is wrong with one transaction's transfers, if anything.
fn transaction_fault(status: &str, holds: i64, sales: i64, refunds: i64, to_payer: i64, subs: i64) -> Option<String> {
    if holds != 1 {
        return Some(format!("{holds} holds of its price (expected 1)"));
    }
    match status {
        "SUCCESS" if sales != 1 || refunds != 0 => Some(format!("SUCCESS with {sales} sales and {refunds} refunds")),
        "SUCCESS" if subs != 1 => Some("SUCCESS without its subscription (its subscriber's)".into()),
        "FAILED" if refunds != 1 || to_payer != 1 || sales != 0 => {
            Some(format!("FAILED with {refunds} refunds ({to_payer} to the payer) and {sales} sales"))
        }
        "PENDING" if sales != 0 || refunds != 0 => Some(format!("PENDING with {sales} sales and {refunds} refunds")),
        "SUCCESS" | "FAILED" | "PENDING" => None,
        other => Some(format!("unknown status {other}")),
    }
}

impl Ledger {
    pub async fn check(&self) -> Result<Books, LedgerError> {
        let backend = self.db.get_database_backend();
        let mut by_transfers: BTreeMap<Uuid, i64> = BTreeMap::new();
        for row in self.db.query_all_raw(Statement::from_string(backend, BY_TRANSFERS)).await? {
            by_transfers.insert(row.try_get("", "account")?, row.try_get("", "total")?);
        }
        let mut violations = Vec::new();
        let mut totals: Vec<Total> = SYSTEM_ACCOUNTS
            .iter()
            .map(|(id, name)| {
                let sum = by_transfers.get(id).copied().unwrap_or(0);
                Total { id: *id, kind: None, name, balance: sum, credit_limit: 0, from_transfers: sum }
            })
            .collect();
        let accounts = account::Entity::find().all(&self.db).await?;
        for a in &accounts {
            let from_transfers = by_transfers.get(&a.id).copied().unwrap_or(0);
            if a.balance != from_transfers {
                violations
                    .push(format!("account {} holds {} but its transfers add up to {from_transfers}", a.id, a.balance));
            }
            if a.balance + a.credit_limit < 0 {
                violations.push(format!(
                    "account {} is below its limit: {} with a limit of {}",
                    a.id, a.balance, a.credit_limit
                ));
            }
            let (balance, credit_limit) = (a.balance, a.credit_limit);
            totals.push(Total { id: a.id, kind: Some(a.kind), name: "", balance, credit_limit, from_transfers });
        }
        for (id, _) in by_transfers.iter().filter(|(id, _)| !totals.iter().any(|t| t.id == **id)) {
            violations.push(format!("transfers move money to or from {id}, which is no account"));
        }
        let sum = totals.iter().map(|t| t.balance).sum::<i64>();
        if sum != 0 {
            violations.push(format!("the accounts sum to {sum}, not zero"));
        }
        // Bound, not spliced: each backend stores ids and booleans its own way.
        let (pending, no) = match backend {
            sea_orm::DatabaseBackend::Sqlite => ("?1", "?2"),
            _ => ("$1", "$2"),
        };
        let sql = TRANSACTIONS.replace("{pending}", pending).replace("{no}", no);
        let statement = Statement::from_sql_and_values(backend, sql, [PENDING.into(), false.into()]);
        for row in self.db.query_all_raw(statement).await? {
            let count = |column: &str| row.try_get::<i64>("", column);
            let status: String = row.try_get("", "status")?;
            let fault = transaction_fault(
                &status,
                count("holds")?,
                count("sales")?,
                count("refunds")?,
                count("refunds_to_payer")?,
                count("subscriptions")?,
            );
            if let Some(fault) = fault {
                let id: Uuid = row.try_get("", "id")?;
                violations.push(format!("transaction {id}: {fault}"));
            }
        }
        for row in self.db.query_all_raw(Statement::from_string(backend, SUBSCRIPTIONS)).await? {
            let id: Uuid = row.try_get("", "id")?;
            let expires: chrono::DateTime<chrono::Utc> = row.try_get("", "expires_at")?;
            let extended: Option<chrono::DateTime<chrono::Utc>> = row.try_get("", "extended_to")?;
            let unrecorded: i64 = row.try_get("", "unrecorded")?;
            if unrecorded > 0 {
                violations.push(format!("subscription {id}: {unrecorded} successes without their extension"));
            } else if extended != Some(expires) {
                violations.push(format!(
                    "subscription {id} runs to {expires} but its successes extended it to {}",
                    extended.map_or("nothing".into(), |e| e.to_string())
                ));
            }
        }
        for row in self.db.query_all_raw(Statement::from_string(backend, PERIODS)).await? {
            let id: Uuid = row.try_get("", "id")?;
            let period: chrono::DateTime<chrono::Utc> = row.try_get("", "period")?;
            let renewals: i64 = row.try_get("", "renewals")?;
            violations.push(format!("subscription {id}: the period ending {period} renewed {renewals} times"));
        }
        Ok(Books { totals, sum, violations })
    }
}

#[cfg(test)]
mod tests {
    use super::transaction_fault;

    #[test]
    fn each_state_has_its_transfers() {
        assert_eq!(transaction_fault("PENDING", 1, 0, 0, 0, 0), None);
        assert_eq!(transaction_fault("SUCCESS", 1, 1, 0, 0, 1), None);
        assert_eq!(transaction_fault("FAILED", 1, 0, 1, 1, 0), None);
        assert!(transaction_fault("SUCCESS", 1, 1, 0, 0, 0).is_some(), "no subscription");
        assert!(transaction_fault("SUCCESS", 1, 1, 1, 1, 1).is_some(), "refunded and sold");
        assert!(transaction_fault("FAILED", 1, 0, 2, 2, 0).is_some(), "refunded twice");
        assert!(transaction_fault("FAILED", 1, 0, 1, 0, 0).is_some(), "refunded to someone else");
        assert!(transaction_fault("PENDING", 0, 0, 0, 0, 0).is_some(), "nothing held");
        assert!(transaction_fault("PENDING", 2, 0, 0, 0, 0).is_some(), "held twice");
    }
}
