pub mod api_key;
pub mod delivery;
pub mod partner;
