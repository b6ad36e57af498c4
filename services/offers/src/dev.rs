//! The embedded mode: a data directory holding the SQLite database, the
//! token keys and the internal credential, and demo data on first start.

use std::path::Path;

use anyhow::Context;
use offers_kit::config::Settings;
use offers_kit::token::generate_keypair;
use offers_proto::auth::v1 as auth_pb;
use offers_proto::catalog::v1 as catalog_pb;
use secrecy::SecretString;

use crate::admin::{AdminClient, Created};

pub const DEMO_PASSWORD: &str = "demo-password";
pub const DEMO_USERS: [&str; 2] = ["demo", "demo2"];
pub const DEMO_BALANCE: i64 = 100_000;
pub const DEMO_PARTNER: &str = "demo-partner";
pub const DEMO_PARTNER_KEY: &str = "demo-partner-key";

/// Points the settings at the data directory, creating what is missing:
/// the SQLite file, an Ed25519 key pair and an internal credential. They
/// persist, so tokens and `offers admin` keep working across restarts.
pub fn prepare(settings: &mut Settings, data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    settings.database.url = format!("sqlite://{}?mode=rwc", data_dir.join("offers.db").display());
    settings.cache.url = "memory://".into();
    settings.bus.url = "memory://".into();
    let private = data_dir.join("auth-ed25519.pem");
    let public = data_dir.join("auth-ed25519.pub.pem");
    if !private.exists() || !public.exists() {
        let (private_pem, public_pem) = generate_keypair()?;
        write_private(&private, &private_pem)?;
        std::fs::write(&public, public_pem)?;
    }
    settings.auth.private_key_pem = None;
    settings.auth.public_key_pem = None;
    settings.auth.private_key_file = Some(private);
    settings.auth.public_key_file = Some(public);
    settings.internal.token = Some(SecretString::from(internal_token(data_dir)?));
    // Reminders go to a file a newcomer can read.
    settings.notifier.sink_file = Some(data_dir.join("notifications.log"));
    // The demo partner's well-known key; never allowed outside this mode.
    settings.partner.allow_preset_keys = true;
    // Callbacks to local test servers are fine here.
    settings.partner.allow_private_callbacks = true;
    Ok(())
}

/// The embedded mode's credential, if a dev suite has made one.
pub fn internal_token_if_present(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join("internal-token")).ok().map(|t| t.trim().to_string())
}

/// The embedded mode's internal credential, made on first use.
pub fn internal_token(data_dir: &Path) -> anyhow::Result<String> {
    if let Some(token) = internal_token_if_present(data_dir) {
        return Ok(token);
    }
    let path = data_dir.join("internal-token");
    let token = hex_token();
    write_private(&path, &token)?;
    Ok(token)
}

fn hex_token() -> String {
    rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect()
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

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
pub async fn seed(admin: &mut AdminClient, currency: &str) -> anyhow::Result<()> {
    for username in DEMO_USERS {
        let request = auth_pb::CreateUserRequest {
            username: username.into(),
            password: DEMO_PASSWORD.into(),
            email: format!("{username}@example.com"),
            phone_number: String::new(),
            first_name: "Demo".into(),
            last_name: username.into(),
            is_admin: false,
        };
        if let Created::New(user) = admin.create_user(request).await? {
            tracing::info!(username, id = %user.id, "seeded demo user");
        }
        // Keyed by the user, so a restart never credits twice.
        let user = admin.user(username).await?;
        let key = format!("demo-seed:{}", user.id);
        admin.credit(&user.id, DEMO_BALANCE, currency, &key, "demo balance").await?;
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
    ];
    for o in offers {
        let code = o.code.clone();
        if let Created::New(created) = admin.create_offer(o).await? {
            tracing::info!(code, id = %created.id, "seeded demo offer");
        }
    }
    if let Created::New(created) = admin.create_partner(DEMO_PARTNER).await? {
        let partner = created.partner.context("no partner in the answer")?;
        // The generated first key is not needed: the demo key is well known.
        if let Some(generated) = created.api_key {
            admin.revoke_key(&generated.id).await?;
        }
        admin.create_key(&partner.id, Some(DEMO_PARTNER_KEY)).await?;
        tracing::info!(id = %partner.id, "seeded demo partner");
    }
    Ok(())
}
