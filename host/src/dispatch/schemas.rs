//! Per-type payload schemas: an operator registers a JSON Schema for an
//! event type (`PUT /v1/schemas/{type}`), and every event of that type is
//! checked against it at accept — from HTTP, Zulip or a handler's emit —
//! and refused with the failing path.
//!
//! Schemas are compiled once, when registered or loaded at start. Remote
//! `$ref`s are not resolved (the crate's HTTP and file resolvers are not
//! built in), so a schema cannot make the daemon fetch anything.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use serde_json::value::RawValue;

use crate::event::InvalidEvent;

/// Largest schema document accepted, as JSON text.
pub const SCHEMA_BYTES_MAX: usize = 256 * 1024;

/// The compiled schemas, by event type.
#[derive(Default)]
pub(crate) struct Schemas {
    by_type: RwLock<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let types: Vec<String> = self.read().keys().cloned().collect();
        f.debug_struct("Schemas").field("types", &types).finish()
    }
}

/// Compiles a schema, or says why it is not one.
pub(crate) fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    let len = serde_json::to_string(schema).map_or(usize::MAX, |s| s.len());
    if len > SCHEMA_BYTES_MAX {
        return Err(format!(
            "the schema is {len} bytes; the limit is {SCHEMA_BYTES_MAX}"
        ));
    }
    jsonschema::validator_for(schema).map_err(|e| format!("not a valid JSON Schema: {e}"))
}

impl Schemas {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<jsonschema::Validator>>> {
        self.by_type.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs (or replaces) the compiled schema of a type.
    pub fn set(&self, event_type: &str, validator: jsonschema::Validator) {
        let mut map = self.by_type.write().unwrap_or_else(|p| p.into_inner());
        map.insert(event_type.to_string(), Arc::new(validator));
    }

    /// Drops the schema of a type.
    pub fn remove(&self, event_type: &str) {
        let mut map = self.by_type.write().unwrap_or_else(|p| p.into_inner());
        map.remove(event_type);
    }

    /// Checks a payload against its type's schema, if the type has one.
    pub fn check(&self, event_type: &str, payload: Option<&RawValue>) -> Result<(), InvalidEvent> {
        let Some(validator) = self.read().get(event_type).cloned() else {
            return Ok(());
        };
        let text = payload.map_or("{}", RawValue::get);
        let value: Value =
            serde_json::from_str(text).map_err(|e| InvalidEvent::PayloadNotJson(e.to_string()))?;
        match validator.validate(&value) {
            Ok(()) => Ok(()),
            Err(e) => {
                let path = e.instance_path().as_str();
                Err(InvalidEvent::SchemaMismatch {
                    event_type: event_type.to_string(),
                    path: if path.is_empty() {
                        "/".into()
                    } else {
                        path.into()
                    },
                    message: e.masked().to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    #[test]
    fn validates_only_registered_types_and_names_the_path() {
        let s = Schemas::default();
        let schema = json!({
            "type": "object",
            "required": ["tenantId"],
            "properties": {"tenantId": {"type": "string"}, "priority": {"enum": [1, 2, 3]}}
        });
        s.set("TICKET_CREATED", compile(&schema).unwrap());
        assert!(s.check("other", Some(&raw(json!(42)))).is_ok());
        assert!(
            s.check("TICKET_CREATED", Some(&raw(json!({"tenantId": "a"}))))
                .is_ok()
        );

        let err = s
            .check(
                "TICKET_CREATED",
                Some(&raw(json!({"tenantId": "a", "priority": 9}))),
            )
            .unwrap_err();
        let InvalidEvent::SchemaMismatch { path, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(path, "/priority");
        assert!(err.to_string().contains("TICKET_CREATED"), "{err}");

        // An omitted payload is `{}`, which lacks the required field.
        let err = s.check("TICKET_CREATED", None).unwrap_err();
        assert!(err.to_string().contains("tenantId"), "{err}");

        s.remove("TICKET_CREATED");
        assert!(s.check("TICKET_CREATED", None).is_ok());
    }

    #[test]
    fn bad_and_oversized_schemas_are_refused() {
        assert!(compile(&json!({"type": "no-such-type"})).is_err());
        assert!(compile(&json!({"$ref": "http://example.invalid/schema.json"})).is_err());
        let huge = json!({"enum": vec!["x".repeat(1000); 300]});
        assert!(compile(&huge).unwrap_err().contains("limit"));
    }
}
