//! Tests of handler administration: versions, rollback, enable/config,
//! delete and its sweep of everything the handler owned.

use serde_json::json;

use super::super::testutil::*;
use super::super::{StoreError, VersionRecord};
use crate::event::now_ms;
use crate::kv::{Kv, Namespace, Quota};

#[test]
fn deploys_number_versions_and_rollback_moves_the_pointer() {
    let (_d, s) = temp();
    assert_eq!(deploy(&s, "h"), 1);
    assert_eq!(deploy(&s, "h"), 2);
    assert_eq!(deploy(&s, "h"), 3);
    let versions: Vec<u32> = s.versions("h").unwrap().iter().map(|v| v.version).collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(s.rollback("h", None, "op").unwrap().active_version, 2);
    assert_eq!(s.rollback("h", None, "op").unwrap().active_version, 1);
    assert!(matches!(
        s.rollback("h", None, "op"),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.rollback("h", Some(3), "op").unwrap().active_version, 3);
    assert!(matches!(
        s.rollback("h", Some(9), "op"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.rollback("nope", None, "op"),
        Err(StoreError::NotFound(_))
    ));
    // Numbers are never reused after a rollback.
    assert_eq!(deploy(&s, "h"), 4);
    let v: VersionRecord = s.version("h", 2).unwrap().unwrap();
    assert_eq!((v.deployed_by.as_str(), v.module_bytes), ("test", 13));
    let (audit, _) = s.audit_log(100, None).unwrap();
    let actions: Vec<_> = audit.iter().rev().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "deploy", "deploy", "deploy", "rollback", "rollback", "rollback", "deploy"
        ]
    );
}

#[test]
fn enable_config_and_redeploy() {
    let (_d, s) = temp();
    deploy(&s, "h");
    let h = s.set_enabled("h", false, Some("crash loop"), "op").unwrap();
    assert!(!h.enabled);
    assert_eq!(h.disabled_reason.as_deref(), Some("crash loop"));
    let h = s.set_config("h", &json!({"v": 2}), "op").unwrap();
    assert_eq!(h.config, json!({"v": 2}));
    // Redeploy: config from the manifest, enabled state kept.
    deploy(&s, "h");
    let h = s.handler("h").unwrap().unwrap();
    assert_eq!((h.active_version, h.enabled), (2, false));
    assert_eq!(h.config, json!({"v": 1}));
    let h = s.set_enabled("h", true, Some("ignored"), "op").unwrap();
    assert!(h.enabled && h.disabled_reason.is_none());
    let huge = json!({"s": "x".repeat(crate::manifest::CONFIG_BYTES_MAX)});
    assert!(matches!(
        s.set_config("h", &huge, "op"),
        Err(StoreError::BadInput(_))
    ));
    assert!(matches!(
        s.set_enabled("nope", true, None, "op"),
        Err(StoreError::NotFound(_))
    ));
}

/// A name's incarnation is made at its first deploy, kept by every later
/// change, and made anew after a delete (cluster mode keys the handler's
/// KV by it).
#[test]
fn a_name_deployed_again_after_a_delete_is_a_new_incarnation() {
    let (_d, s) = temp();
    deploy(&s, "h");
    let first = s.handler("h").unwrap().unwrap().incarnation;
    assert_eq!(first.len(), 26, "a ULID: {first:?}");
    deploy(&s, "other");
    assert_ne!(s.handler("other").unwrap().unwrap().incarnation, first);
    deploy(&s, "h");
    s.set_enabled("h", false, None, "op").unwrap();
    s.set_config("h", &json!({"v": 2}), "op").unwrap();
    s.rollback("h", None, "op").unwrap();
    assert_eq!(s.handler("h").unwrap().unwrap().incarnation, first);
    s.delete_handler("h", "op").unwrap();
    deploy(&s, "h");
    let second = s.handler("h").unwrap().unwrap().incarnation;
    assert!(!second.is_empty() && second != first, "{second:?}");
    // A record stored before incarnations existed reads as one without.
    let old: crate::store::HandlerRecord = serde_json::from_value(json!({
        "name": "h", "active_version": 1, "enabled": true, "disabled_reason": null,
        "config": {}, "created_ms": 1, "updated_ms": 1,
    }))
    .unwrap();
    assert_eq!(old.incarnation, "");
    assert!(
        serde_json::to_value(&old)
            .unwrap()
            .get("incarnation")
            .is_none()
    );
}

#[test]
fn deploy_checks_module_and_name() {
    let (_d, s) = temp();
    assert!(matches!(
        s.deploy(&manifest("h"), "0".repeat(64).as_str(), 1, "op"),
        Err(StoreError::NotFound(_))
    ));
    let hash = s.put_module(b"m").unwrap();
    let mut m = manifest("h");
    m.name = "Bad Name".into();
    assert!(matches!(
        s.deploy(&m, &hash, 1, "op"),
        Err(StoreError::BadInput(_))
    ));
    assert!(s.handlers().unwrap().is_empty());
}

#[test]
fn delete_sweeps_what_the_handler_owned_and_nothing_else() {
    let (_d, s) = temp();
    deploy(&s, "h");
    deploy(&s, "h");
    deploy(&s, "other");
    let ns = |h: &str| Namespace {
        handler: h.into(),
        tenant: "t".into(),
        ..Namespace::default()
    };
    s.set(&ns("h"), "k", b"1", None, &Quota::UNLIMITED).unwrap();
    s.set(&ns("other"), "k", b"2", None, &Quota::UNLIMITED)
        .unwrap();
    let (e1, e2) = (event("a", "t"), event("b", "t"));
    s.accept(&[
        (e1.clone(), vec!["h".into(), "other".into()]),
        (e2.clone(), vec!["h".into()]),
    ])
    .unwrap();
    let p = s
        .pending()
        .unwrap()
        .into_iter()
        .find(|p| p.event_id == e2.id)
        .unwrap();
    let dl = s
        .dead_letter(&p, &entry("h", &e2, "trap", now_ms()))
        .unwrap();
    assert_eq!(s.handler_stats("h").unwrap().dead_lettered, 1);

    s.delete_handler("h", "op").unwrap();
    assert!(s.handler("h").unwrap().is_none());
    assert!(s.versions("h").unwrap().is_empty());
    assert_eq!(s.get(&ns("h"), "k").unwrap(), None);
    assert_eq!(
        s.get(&ns("other"), "k").unwrap().as_deref(),
        Some(&b"2"[..])
    );
    let pending = s.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].handler, "other");
    assert!(
        s.event(&e1.id).unwrap().is_some(),
        "still pending for `other`"
    );
    assert!(s.dead_letter_get(&dl.id).unwrap().is_none());
    assert_eq!(s.handler_stats("h").unwrap().processed, 0);
    assert!(
        s.module(&s.version("other", 1).unwrap().unwrap().module_hash)
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        s.delete_handler("h", "op"),
        Err(StoreError::NotFound(_))
    ));
    // A new handler of the same name starts over.
    assert_eq!(deploy(&s, "h"), 1);
}
