//! The stored shape of vault objects, shared by the three collections: an object is a name with
//! an ordered list of versions, each version carrying common attributes plus a collection
//! specific payload. Also the name/version rules and the recovery-level mapping of §5.1.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::Collection;
use crate::error::KvError;

use super::VaultSettings;

/// Tags of one version (at most 15, string values).
pub type Tags = BTreeMap<String, String>;

/// The writable and read-only attributes every version carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attrs {
    /// `enabled`.
    pub enabled: bool,
    /// `nbf`, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// `exp`, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// `created`, Unix seconds.
    pub created: i64,
    /// `updated`, Unix seconds.
    pub updated: i64,
}

impl Attrs {
    /// Fresh attributes of a version created at `now`.
    pub fn new(now: i64) -> Self {
        Attrs {
            enabled: true,
            nbf: None,
            exp: None,
            created: now,
            updated: now,
        }
    }

    /// The `attributes` JSON object; recovery fields come from the vault's current settings
    /// because the service reports the vault's level, not the one at creation time.
    pub fn to_json(&self, recovery: &Recovery) -> Value {
        let mut m = Map::new();
        m.insert("enabled".into(), json!(self.enabled));
        if let Some(nbf) = self.nbf {
            m.insert("nbf".into(), json!(nbf));
        }
        if let Some(exp) = self.exp {
            m.insert("exp".into(), json!(exp));
        }
        m.insert("created".into(), json!(self.created));
        m.insert("updated".into(), json!(self.updated));
        m.insert("recoveryLevel".into(), json!(recovery.level));
        if let Some(days) = recovery.days {
            m.insert("recoverableDays".into(), json!(days));
        }
        Value::Object(m)
    }
}

/// One version of an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version<P> {
    /// 32 lowercase hex characters.
    pub id: String,
    /// Attributes.
    pub attrs: Attrs,
    /// Tags, `None` when the version never had any (the service then omits `tags`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Collection-specific payload.
    pub data: P,
}

impl<P> Version<P> {
    /// A version from its parts.
    pub fn new(id: &str, attrs: &Attrs, tags: Option<Tags>, data: P) -> Self {
        Version {
            id: id.to_string(),
            attrs: attrs.clone(),
            tags,
            data,
        }
    }
}

/// When and until when an object sits in the deleted store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deletion {
    /// `deletedDate`.
    pub deleted_date: i64,
    /// `scheduledPurgeDate`; the object vanishes once the vault clock reaches it.
    pub scheduled_purge_date: i64,
    /// False for the managed key and secret of a deleted certificate: they are reachable by name
    /// but absent from `/deletedkeys` and `/deletedsecrets` (§7).
    pub listed: bool,
}

/// An object: the name as first created and every version in creation order (the last one is
/// the latest, whatever its `created` second says).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object<P> {
    /// Display name (as first created).
    pub name: String,
    /// True for the key and secret backing a certificate.
    #[serde(default)]
    pub managed: bool,
    /// Versions, oldest first.
    pub versions: Vec<Version<P>>,
    /// Set while the object is soft-deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion: Option<Deletion>,
}

impl<P> Object<P> {
    /// The latest version. Objects are never stored without versions, but the lookup stays
    /// fallible so a logic slip becomes a 404 rather than a panic.
    pub fn latest(&self) -> Option<&Version<P>> {
        self.versions.last()
    }

    /// A version by id (`None` = latest).
    pub fn version(&self, id: Option<&str>) -> Option<&Version<P>> {
        match id {
            None => self.latest(),
            Some(id) => self.versions.iter().find(|v| v.id == id),
        }
    }

    /// Mutable access to a version by id (`None` = latest).
    pub fn version_mut(&mut self, id: Option<&str>) -> Option<&mut Version<P>> {
        match id {
            None => self.versions.last_mut(),
            Some(id) => self.versions.iter_mut().find(|v| v.id == id),
        }
    }
}

/// One collection: live objects, soft-deleted objects and recently purged names, all keyed by
/// the lowercase name so lookups and list order are case-insensitive.
#[derive(Debug, Clone)]
pub struct Store<P> {
    /// Live objects.
    pub active: BTreeMap<String, Object<P>>,
    /// Soft-deleted objects.
    pub deleted: BTreeMap<String, Object<P>>,
    /// Purge time of recently purged names (for the purge-lag window).
    pub purged_at: HashMap<String, i64>,
}

impl<P> Default for Store<P> {
    fn default() -> Self {
        Store {
            active: BTreeMap::new(),
            deleted: BTreeMap::new(),
            purged_at: HashMap::new(),
        }
    }
}

/// The recovery level and days the vault reports in every `attributes` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    /// `recoveryLevel`.
    pub level: &'static str,
    /// `recoverableDays`, absent for `Purgeable`.
    pub days: Option<u32>,
}

impl Recovery {
    /// §5.1: 90 days → `Recoverable`, fewer → `CustomizedRecoverable`, `+Purgeable` unless purge
    /// protection is on; no soft delete → `Purgeable`.
    pub fn of(settings: &VaultSettings) -> Self {
        match settings.recoverable_days {
            None => Recovery {
                level: "Purgeable",
                days: None,
            },
            Some(days) => {
                let level = match (days >= 90, settings.purge_protection) {
                    (true, false) => "Recoverable+Purgeable",
                    (true, true) => "Recoverable",
                    (false, false) => "CustomizedRecoverable+Purgeable",
                    (false, true) => "CustomizedRecoverable",
                };
                Recovery {
                    level,
                    days: Some(days),
                }
            }
        }
    }
}

/// The canonical (lowercase) key of a name, after checking the name rule of §2.3.
pub fn canonical(coll: Collection, name: &str) -> Result<String, KvError> {
    let ok = !name.is_empty()
        && name.len() <= 127
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(KvError::bad_parameter(format!(
            "The request URI contains an invalid name: {name}. {} names may only contain alphanumeric characters and dashes and must be between 1 and 127 characters long.",
            coll.title()
        )))
    }
}

/// A new random version id: 32 lowercase hex characters, like the service's.
pub fn new_version_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// `https://{authority}/{coll}/{name}[/{version}]`.
pub fn object_id(authority: &str, coll: Collection, name: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("https://{authority}/{}/{name}/{v}", coll.segment()),
        None => format!("https://{authority}/{}/{name}", coll.segment()),
    }
}

/// Adds `tags` (when present) and `managed` (when true) to a JSON object under construction.
pub fn put_tags_managed(m: &mut Map<String, Value>, tags: &Option<Tags>, managed: bool) {
    if let Some(tags) = tags {
        m.insert("tags".into(), json!(tags));
    }
    if managed {
        m.insert("managed".into(), json!(true));
    }
}

/// Adds the soft-delete fields to a bundle or item of a deleted object.
pub fn put_deletion(
    m: &mut Map<String, Value>,
    authority: &str,
    coll: Collection,
    obj_name: &str,
    d: &Deletion,
) {
    m.insert(
        "recoveryId".into(),
        json!(format!(
            "https://{authority}/{}/{obj_name}",
            coll.deleted_segment()
        )),
    );
    m.insert("deletedDate".into(), json!(d.deleted_date));
    m.insert("scheduledPurgeDate".into(), json!(d.scheduled_purge_date));
}
