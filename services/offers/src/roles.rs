//! What a process runs. `offers dev` runs every role in one process;
//! `offers serve <role>...` runs the named ones.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Role {
    /// Users, login, tokens (public + internal gRPC).
    Auth,
    /// Offers (public + internal gRPC).
    Catalog,
    /// The REST/JSON edge on the HTTP listener.
    Gateway,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Auth, Role::Catalog, Role::Gateway];

    /// Whether the role keeps state in the database.
    pub fn needs_database(self) -> bool {
        match self {
            Role::Auth | Role::Catalog => true,
            Role::Gateway => false,
        }
    }

    /// Whether the role serves gRPC.
    pub fn serves_grpc(self) -> bool {
        !matches!(self, Role::Gateway)
    }
}
