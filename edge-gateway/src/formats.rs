//! The string formats clients send, as named schemas with the patterns the
//! services check (so a value the document allows is one the server
//! accepts, and one it refuses the document forbids).

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

macro_rules! string_format {
    ($name:ident, $description:literal, pattern: $pattern:expr, uuid: $uuid:literal, example: $example:expr) => {
        #[doc = $description]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                let format = $uuid.then_some(SchemaFormat::KnownFormat(KnownFormat::Uuid));
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(format)
                    .pattern(Some($pattern))
                    .description(Some($description))
                    .examples([$example])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

/// Ids are written in one form only (`offers_proto::wire::hyphenated`).
const UUID: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
const EXAMPLE_ID: &str = "0193a5b0-7e1c-7cc2-9f3e-4b8a2d6c1e05";

string_format!(Id, "A UUID in its hyphenated form (ids are UUIDv7).",
    pattern: UUID, uuid: true, example: EXAMPLE_ID);
string_format!(Cursor, "The `next_cursor` of the previous page (the last id on it).",
    pattern: UUID, uuid: true, example: EXAMPLE_ID);
string_format!(Reference, "A partner transaction's reference: `REF-` and 12 upper-case hex digits.",
    pattern: "^REF-[0-9A-F]{12}$", uuid: false, example: "REF-4F1A09C2B7DE");
string_format!(RefreshToken, "A refresh token: `rt_` and 43 base64url characters (256 random bits).",
    pattern: "^rt_[A-Za-z0-9_-]{43}$", uuid: false, example: "rt_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8");

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;

    #[test]
    fn formats_carry_their_pattern_and_an_example_that_matches_it() {
        let schema = serde_json::to_value(Reference::schema()).expect("json");
        assert_eq!(schema["pattern"], "^REF-[0-9A-F]{12}$");
        assert_eq!(schema["examples"][0], "REF-4F1A09C2B7DE");
        let id = serde_json::to_value(Id::schema()).expect("json");
        assert_eq!((id["format"].as_str(), id["examples"][0].as_str()), (Some("uuid"), Some(EXAMPLE_ID)));
        let token = serde_json::to_value(RefreshToken::schema()).expect("json");
        assert_eq!(token["examples"][0].as_str().map(str::len), Some(46));
    }
}
