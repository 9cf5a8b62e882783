//! Payload schemas registered per event type: the JSON Schema documents the
//! dispatcher validates payloads of that type against at accept. The store
//! keeps the text; compiling and validating is the dispatcher's business.
//!
//! Keys: `schemas` = the event type (UTF-8) → the schema as JSON text.

use super::{Result, SledExt, Store, StoreError};

impl Store {
    /// Every registered schema, by event type.
    pub fn schemas(&self) -> Result<Vec<(String, serde_json::Value)>> {
        self.t()
            .schemas
            .iter()
            .map(|kv| {
                let (k, v) = kv.sled()?;
                let event_type = String::from_utf8(k.to_vec())
                    .map_err(|_| StoreError::Corrupt(format!("schemas: key {k:?} is not UTF-8")))?;
                let schema = serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("schemas: {event_type}: {e}")))?;
                Ok((event_type, schema))
            })
            .collect()
    }

    /// Registers or replaces the schema of an event type; audited and flushed.
    pub fn put_schema(
        &self,
        event_type: &str,
        schema: &serde_json::Value,
        actor: &str,
    ) -> Result<()> {
        let text = serde_json::to_vec(schema).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.t()
            .schemas
            .insert(event_type.as_bytes(), text)
            .sled()?;
        self.audit(actor, "schema.put", event_type, serde_json::Value::Null)?;
        self.sync_admin()
    }

    /// The schema of one event type.
    pub fn schema(&self, event_type: &str) -> Result<Option<serde_json::Value>> {
        let Some(v) = self.t().schemas.get(event_type.as_bytes()).sled()? else {
            return Ok(None);
        };
        serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("schemas: {event_type}: {e}")))
    }

    /// Removes the schema of an event type; whether there was one.
    pub fn delete_schema(&self, event_type: &str, actor: &str) -> Result<bool> {
        let existed = self
            .t()
            .schemas
            .remove(event_type.as_bytes())
            .sled()?
            .is_some();
        if existed {
            self.audit(actor, "schema.delete", event_type, serde_json::Value::Null)?;
            self.sync_admin()?;
        }
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use serde_json::json;

    #[test]
    fn put_list_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            s.put_schema("message", &json!({"type": "object"}), "t")
                .unwrap();
            s.put_schema("message", &json!({"required": ["id"]}), "t")
                .unwrap();
            s.put_schema("ticket", &json!(true), "t").unwrap();
        }
        let s = open(dir.path());
        assert_eq!(
            s.schemas().unwrap(),
            vec![
                ("message".to_string(), json!({"required": ["id"]})),
                ("ticket".to_string(), json!(true)),
            ]
        );
        assert!(s.delete_schema("ticket", "t").unwrap());
        assert!(!s.delete_schema("ticket", "t").unwrap());
        assert_eq!(s.schemas().unwrap().len(), 1);
        let (audit, _) = s.audit_log(10, None).unwrap();
        assert!(audit.iter().any(|a| a.action == "schema.delete"));
    }
}
