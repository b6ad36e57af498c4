//! Compiles proto/ with protox (pure Rust), so no system `protoc` is needed.

use std::path::PathBuf;

use prost::Message;

/// The REST document's example of an offer.
const OFFER_EXAMPLE: &str = r#"#[schema(examples(json!({
    "id": "0193a5a0-11aa-7bbb-8ccc-0d1e2f3a4b5c", "code": "DATA-1GB", "name": "Data 1 GB",
    "description": "1 GB of data for 30 days", "price": 500, "currency": "EUR", "duration_days": 30,
    "data_mb": 1024, "voice_minutes": 0, "sms": 0, "is_active": true
})))]"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let packages = ["auth", "catalog", "account", "activation", "partner", "jobs", "audit", "errors"];
    let files: Vec<PathBuf> = packages.iter().map(|s| root.join(format!("offers/{s}/v1/{s}.proto"))).collect();
    println!("cargo:rerun-if-changed={}", root.display());

    let descriptors = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptors.bin"), descriptors.encode_to_vec())?;

    // The REST edge serves the offer and the signing keys as they are here
    // (their fields, their comments as the schema's descriptions), so a new
    // field reaches REST clients too.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .type_attribute("offers.catalog.v1.Offer", "#[derive(serde::Serialize, utoipa::ToSchema)]")
        .type_attribute("offers.auth.v1.Jwk", "#[derive(serde::Serialize, utoipa::ToSchema)]")
        .type_attribute("offers.catalog.v1.Offer", OFFER_EXAMPLE)
        .field_attribute("offers.catalog.v1.Offer.id", "#[schema(format = Uuid)]")
        .field_attribute("offers.catalog.v1.Offer.currency_code", "#[serde(rename = \"currency\")]")
        .compile_fds(descriptors)?;
    Ok(())
}
