use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub username: String,
    pub password_hash: String,
    pub email: String,
    pub phone_number: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_admin: bool,
    pub date_joined: DateTimeUtc,
    /// The operator console: none for a customer.
    pub console_role: Option<ConsoleRole>,
}

/// What a user may do in the operator console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum ConsoleRole {
    /// Sees, acts on nothing.
    #[sea_orm(string_value = "VIEWER")]
    Viewer,
    /// Sees and acts.
    #[sea_orm(string_value = "OPERATOR")]
    Operator,
}

impl ConsoleRole {
    pub fn name(self) -> &'static str {
        match self {
            ConsoleRole::Viewer => "viewer",
            ConsoleRole::Operator => "operator",
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
