pub mod family;
pub mod refresh_token;
pub mod signing_key;
pub mod user;
