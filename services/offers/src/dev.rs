//! The embedded mode: every role in one process on the data directory's
//! SQLite file, with the provisioning simulator and demo data.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use offers_kit::telemetry::TelemetrySettings;
use offers_proto::auth::v1 as auth_pb;
use offers_proto::catalog::v1 as catalog_pb;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminClient, Created};
use crate::ops::Gate;
use crate::process::Process;
use crate::roles::Role;
use crate::settings::Settings;

pub const DEMO_PASSWORD: &str = "demo-password";
pub const DEMO_USERS: [&str; 2] = ["demo", "demo2"];
pub const DEMO_BALANCE: i64 = 100_000;
pub const DEMO_PARTNER: &str = "demo-partner";
pub const DEMO_PARTNER_KEY: &str = "demo-partner-key";
/// The console's demo staff: one who acts, one who only sees.
pub const DEMO_OPERATORS: [(&str, auth_pb::ConsoleRole); 2] =
    [("operator", auth_pb::ConsoleRole::Operator), ("viewer", auth_pb::ConsoleRole::Viewer)];
/// What the demo partner has prepaid into its account.
pub const DEMO_PARTNER_FLOAT: i64 = 1_000_000;

fn offer(
    code: &str,
    name: &str,
    description: &str,
    price: i64,
    days: i32,
    allowances: (i64, i64, i64),
    currency: &str,
) -> catalog_pb::Offer {
    catalog_pb::Offer {
        code: code.into(),
        name: name.into(),
        description: description.into(),
        price,
        currency_code: currency.into(),
        duration_days: days,
        data_mb: allowances.0,
        voice_minutes: allowances.1,
        sms: allowances.2,
        is_active: true,
        ..Default::default()
    }
}

/// Demo users, balances, offers and the demo partner; what exists already
/// is left alone.
/// Who the audit trail says made the demo data.
pub const SEED_ACTOR: &str = "offers-dev-seed";

pub async fn seed(admin: &mut AdminClient, currency: &str) -> anyhow::Result<()> {
    admin.act_as(SEED_ACTOR, "demo data");
    for username in DEMO_USERS {
        let request = auth_pb::CreateUserRequest {
            username: username.into(),
            password: DEMO_PASSWORD.into(),
            email: format!("{username}@example.com"),
            phone_number: String::new(),
            first_name: "Demo".into(),
            last_name: username.into(),
            ..Default::default()
        };
        if let Created::New(user) = admin.create_user(request).await? {
            tracing::debug!(username, id = %user.id, "seeded demo user");
        }
        // Keyed by the user, so a restart never credits twice.
        let user = admin.user(username).await?;
        let key = format!("demo-seed:{}", user.id);
        admin.credit(&user.id, DEMO_BALANCE, currency, &key, "demo balance").await?;
    }
    for (username, role) in DEMO_OPERATORS {
        let request = auth_pb::CreateUserRequest {
            username: username.into(),
            password: DEMO_PASSWORD.into(),
            email: format!("{username}@example.com"),
            first_name: "Demo".into(),
            last_name: username.into(),
            ..Default::default()
        };
        admin.create_user(request).await?;
        let user = admin.user(username).await?;
        if user.console_role != i32::from(role) {
            admin.set_console_role(&user.id, role).await?;
        }
    }
    let offers = [
        offer("DATA-1GB", "Data 1 GB", "1 GB of mobile data for 7 days", 500, 7, (1024, 0, 0), currency),
        offer("VOICE-100", "Voice 100", "100 minutes of calls for 7 days", 300, 7, (0, 100, 0), currency),
        offer(
            "COMBO-30",
            "Monthly combo",
            "5 GB, 300 minutes and 100 SMS for 30 days",
            2500,
            30,
            (5120, 300, 100),
            currency,
        ),
        offer(
            "SIM-FAIL",
            "Simulator: rejected",
            "The simulated provisioning system always rejects it",
            100,
            1,
            (10, 0, 0),
            currency,
        ),
        offer("SIM-FLAKY", "Simulator: flaky", "Fails twice transiently, then succeeds", 100, 1, (10, 0, 0), currency),
        offer(
            "SIM-SLOW",
            "Simulator: slow",
            "Provisioned by the first request, which is answered too late: the outcome is asked for",
            100,
            1,
            (10, 0, 0),
            currency,
        ),
        offer(
            "SIM-UNKNOWN",
            "Simulator: in doubt",
            "The simulated provisioning system never tells what became of it: it waits for an operator's review",
            100,
            1,
            (10, 0, 0),
            currency,
        ),
        offer(
            "SIM-HELD",
            "Simulator: held",
            "Every request waits in the provider's queue until an inquiry has fenced it: failed and refunded",
            100,
            1,
            (10, 0, 0),
            currency,
        ),
    ];
    for o in offers {
        let code = o.code.clone();
        if let Created::New(created) = admin.create_offer(o).await? {
            tracing::debug!(code, id = %created.id, "seeded demo offer");
        }
    }
    if let Created::New(created) = admin.create_partner(DEMO_PARTNER).await? {
        let partner = created.partner.context("no partner in the answer")?;
        // The generated first key is not needed: the demo key is well known.
        if let Some(generated) = created.api_key {
            admin.revoke_key(&generated.id).await?;
        }
        admin.create_key(&partner.id, Some(DEMO_PARTNER_KEY)).await?;
        tracing::debug!(id = %partner.id, "seeded demo partner");
    }
    // Keyed by the partner, so a restart never funds twice.
    let partner = admin.partner(DEMO_PARTNER).await?;
    admin.fund_partner(&partner.id, DEMO_PARTNER_FLOAT, currency, &format!("demo-seed:{}", partner.id)).await?;
    Ok(())
}

/// What `offers dev` keeps out of its log unless asked for: a line per
/// migration and per call (the seeding alone makes dozens before the
/// banner), and the reminder scheduler's pass at start.
const QUIET: &str =
    "sea_orm_migration=warn,offers_kit::grpc::observe=warn,tower_http=warn,offers_notifier::scheduler=warn";

/// The log filter of `offers dev`: the configured one when it was `asked`
/// for (`-v`, `OFFERS_TELEMETRY__LOG_FILTER`) or a configuration file chose
/// another; else the default with the per-call and migration lines left
/// out, so the banner is the last thing start-up prints.
pub fn log_filter(telemetry: &TelemetrySettings, asked: bool) -> String {
    let configured = &telemetry.log_filter;
    if asked || *configured != TelemetrySettings::default().log_filter {
        configured.clone()
    } else {
        format!("{configured},{QUIET}")
    }
}

/// Runs everything in one process (`offers dev`) until a signal, printing
/// where it listens and how to try it.
pub async fn run(settings: Settings, data_dir: &Path) -> anyhow::Result<()> {
    let mut settings = settings.embedded(data_dir)?;
    let simulator = CancellationToken::new();
    let sim = start_simulator(&settings, simulator.clone()).await?;
    settings.provisioning.url = Some(format!("http://{sim}"));
    // Unready until the demo data is in: a login right after /readyz
    // turns 200 must work.
    let seeded = Gate::default();
    let process = Process::start_gated(settings, Role::ALL, true, Some(seeded.clone())).await?;
    let token = process.settings.internal_token().context("no internal credential")?.to_string();
    seed(&mut AdminClient::connect(&process.settings, &token)?, &process.settings.currency).await?;
    seeded.open();
    let http = process.http_addr;
    println!(
        "\nOffers is running (embedded mode, data in {dir})\n\
         \x20 REST      http://{http}/api/v1/   (docs: http://{http}{docs}/, OpenAPI: http://{http}/api/v1/openapi.json)\n\
         \x20 metrics   http://{http}/metrics   (health: /healthz, /readyz)\n\
         \x20 gRPC      {grpc}   internal gRPC {internal}\n\
         \x20 provisioning simulator http://{sim}\n\
         \x20 demo users: demo / {pw}  and  demo2 / {pw}  (balance {balance} each)\n\
         \x20 demo partner key: {partner_key} (float {float})   reminders: {dir}/notifications.log\n\
         \x20 console   http://{http}/console/   operator / {pw} (acts)  and  viewer / {pw} (sees)\n\n\
         Try:\n\
         \x20 curl -s -X POST http://{http}/api/v1/auth/login/ -H 'Content-Type: application/json' \
         -d '{{\"username\":\"demo\",\"password\":\"{pw}\"}}'\n\n\
         Ctrl-C stops it. For a log line per call: -v (or OFFERS_TELEMETRY__LOG_FILTER).\n",
        dir = data_dir.display(),
        docs = offers_gateway::DOCS_PATH,
        grpc = process.grpc_addr.map(|a| a.to_string()).unwrap_or_default(),
        internal = process.internal_grpc_addr.map(|a| a.to_string()).unwrap_or_default(),
        pw = DEMO_PASSWORD,
        balance = DEMO_BALANCE,
        partner_key = DEMO_PARTNER_KEY,
        float = DEMO_PARTNER_FLOAT,
    );
    let outcome = process.run_until_signal().await;
    simulator.cancel();
    outcome
}

/// The provisioning simulator on a free local port, with the configured
/// latency and failure rate.
pub async fn start_simulator(settings: &Settings, stop: CancellationToken) -> anyhow::Result<SocketAddr> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    Ok(offers_activation::simulator::start(any, (&settings.provisioning).into(), stop).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_logs_leave_out_migrations_and_calls_unless_asked() {
        let default = TelemetrySettings::default();
        let quiet = log_filter(&default, false);
        assert!(quiet.starts_with(&default.log_filter) && quiet.contains("sea_orm_migration=warn"), "{quiet}");
        assert!(quiet.contains("offers_kit::grpc::observe=warn") && quiet.contains("tower_http=warn"), "{quiet}");
        assert_eq!(log_filter(&default, true), default.log_filter, "-v: everything as configured");
        let own = TelemetrySettings { log_filter: "debug,hyper=info".into(), ..TelemetrySettings::default() };
        assert_eq!(log_filter(&own, false), "debug,hyper=info", "a filter of one's own is kept");
    }
}
