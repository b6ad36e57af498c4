//! Settings overrides the tests and the benchmark share.

use offers::settings::Settings;

/// Lifts the rate limits a load generator trips over: it logs the same few
/// users in thousands of times from one address and calls the partner API
/// as fast as it can.
pub fn unlimited(settings: &mut Settings) {
    settings.auth.login_per_address = 1_000_000_000;
    settings.auth.login_per_username = 1_000_000_000;
    settings.auth.login_per_username_global = 1_000_000_000;
    settings.partner.requests_per_second = 1_000_000_000;
}
