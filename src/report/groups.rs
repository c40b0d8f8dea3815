//! The `groups` JSON document of a crash database.

use crate::crashdb::{GroupList, SCHEMA_VERSION as DATABASE_SCHEMA_VERSION};
use crate::triage::signature::SIGNATURE_VERSION;

/// The `groups` JSON document (docs/json-schema.md): what `pymortem
/// groups --json` prints and the Python package returns.
pub fn groups_json(list: &GroupList, location: &str, since: Option<u64>) -> serde_json::Value {
    let groups: Vec<serde_json::Value> = list
        .groups
        .iter()
        .map(|g| {
            serde_json::json!({
                "signature": g.signature,
                "signature_text": g.signature_text,
                "count": g.count,
                "first_seen": g.first_seen,
                "last_seen": g.last_seen,
                "python_versions": g.python_versions,
                "hosts": g.hosts,
                "boots": g.boots,
                "example": g.example.as_ref().map(|p| p.to_string_lossy()),
            })
        })
        .collect();
    serde_json::json!({
        "schema": "groups",
        "schema_version": super::SCHEMA_VERSION,
        "signature_version": SIGNATURE_VERSION,
        "database": {
            "path": location,
            "schema_version": DATABASE_SCHEMA_VERSION,
        },
        "since": since,
        "crashes": list.crashes,
        "unreadable": list.unreadable,
        "total_groups": list.total_groups,
        "groups": groups,
    })
}
