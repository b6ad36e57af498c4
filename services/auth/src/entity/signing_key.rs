use sea_orm::entity::prelude::*;

/// An access-token signing key. The private half is sealed with the key
/// encryption key from the configuration; the database alone cannot sign.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_signing_keys")]
pub struct Model {
    /// The RFC 7638 thumbprint of the public key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    /// The public key, base64url.
    pub public_x: String,
    /// Nonce and ChaCha20-Poly1305 ciphertext of the PKCS#8 PEM, base64.
    pub sealed_private: String,
    pub created_at: DateTimeUtc,
    /// When it stops verifying; none while in service without end.
    pub retire_at: Option<DateTimeUtc>,
    /// 1 for the first key, one more for each after it; unique, so only
    /// one replica's insert of a generation wins.
    pub generation: i64,
    /// When it starts signing (it is published from its creation).
    pub signs_from: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
