//! OpenAPI schemas the derives cannot express: parameters whose accepted
//! forms are narrower than "any string" (times, cursors, event types) and
//! values that are not one JSON type (a JSON Schema document). Each states
//! exactly what the route accepts, so API fuzzing from the document
//! (`tests/scripts/schemathesis.sh`) can tell a schema-valid request from an
//! invalid one.

use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};

/// A ULID as the `ulid` crate decodes it (Crockford base32, any case).
const ULID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$";

fn string(pattern: &str, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
}

/// `since`, `until`, `before`: milliseconds since the epoch, or an RFC 3339
/// date-time (see [`super::extract::parse_time`]).
pub(crate) fn time_param() -> RefOr<Schema> {
    AnyOfBuilder::new()
        .item(string("^[0-9]{1,19}$", "Milliseconds since the Unix epoch"))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some("RFC 3339 date-time; times before 1970 count as 1970")),
        )
        .into()
}

/// The delivery log's `cursor`: the `next_cursor` of a previous page.
pub(crate) fn log_cursor() -> RefOr<Schema> {
    // 26 bytes since the log is kept in blocks; 16 from before are accepted.
    string(
        "^([0-9a-fA-F]{52}|[0-9a-fA-F]{32})$",
        "`next_cursor` of the previous page",
    )
    .into()
}

/// A ULID `cursor` (dead letters, audit log).
pub(crate) fn ulid_cursor() -> RefOr<Schema> {
    string(ULID_PATTERN, "`next_cursor` of the previous page").into()
}

/// A JSON Schema document: an object, or a boolean (`true` accepts every
/// payload, `false` none), as JSON Schema itself allows.
pub(crate) struct JsonSchemaDocument;

impl utoipa::PartialSchema for JsonSchemaDocument {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Object))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .description(Some(
                "A JSON Schema document (drafts 4 to 2020-12): an object, or `true`/`false`",
            ))
            .into()
    }
}

impl utoipa::ToSchema for JsonSchemaDocument {}

/// A token's `event_types`: at most 1024 patterns, each an event type, a
/// type followed by `.*`, or `*` alone.
pub(crate) fn event_type_patterns() -> RefOr<Schema> {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(string(
            r"^(\*|[A-Za-z0-9._:/-]{1,128}(\.\*)?)$",
            "An event type, `prefix.*`, or `*`",
        ))
        .max_items(Some(1024))
        .into()
}

/// Operations whose JSON body may be left out (their handlers read it with
/// `OptionalJson`): the derive marks every typed body required.
pub(crate) const OPTIONAL_BODIES: [&str; 3] =
    ["rollback_handler", "disable_handler", "replay_dead_letter"];

/// Marks the bodies of [`OPTIONAL_BODIES`] as not required.
pub(crate) fn mark_optional_bodies(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::Required;
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.post, &mut item.put, &mut item.patch]
            .into_iter()
            .flatten()
        {
            let optional = op
                .operation_id
                .as_deref()
                .is_some_and(|id| OPTIONAL_BODIES.contains(&id));
            if let (true, Some(body)) = (optional, op.request_body.as_mut()) {
                body.required = Some(Required::False);
            }
        }
    }
}
