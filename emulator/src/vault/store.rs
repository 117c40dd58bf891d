//! Collection-independent operations on a [`Store`]: lookups with the service's 404s, the
//! name-marker paging of §6, soft delete / recover / purge bookkeeping, the delete and purge lag
//! windows and lazy expiry. The collections plug in their JSON shapes through [`Payload`].

use std::ops::Bound;

use serde_json::{Map, Value};

use crate::api::{Collection, Reply};
use crate::error::KvError;

use super::body::AttrsPatch;
use super::model::{
    canonical, object_id, put_deletion, put_tags_managed, Deletion, Object, Recovery, Store, Tags,
    Version,
};

/// What the renderers need besides the object: the authority for ids and the vault's recovery
/// level for `attributes`.
#[derive(Debug, Clone)]
pub struct RenderCx<'a> {
    /// `host[:port]` of the request.
    pub authority: &'a str,
    /// Recovery level and days.
    pub recovery: Recovery,
}

/// The per-collection JSON shapes.
pub trait Payload: Clone {
    /// The collection this payload belongs to.
    const COLL: Collection;

    /// The full bundle of one version (secrets: with `value`).
    fn bundle(obj: &Object<Self>, v: &Version<Self>, cx: &RenderCx) -> Map<String, Value>;

    /// A list item; `versioned` selects the `/versions` form of the id.
    fn item(
        obj: &Object<Self>,
        v: &Version<Self>,
        cx: &RenderCx,
        versioned: bool,
    ) -> Map<String, Value>;
}

/// Lag windows and retention, copied out of the settings so the store need not know them.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The vault clock.
    pub now: i64,
    /// `delete_lag_secs`.
    pub delete_lag: i64,
    /// `purge_lag_secs`.
    pub purge_lag: i64,
    /// Soft-delete retention; `None` = deletes are permanent.
    pub retention_days: Option<u32>,
}

impl Timing {
    /// True while a delete is still "running" (only with a configured lag; a clock moved
    /// backwards by the control plane must not hide objects in a synchronous vault).
    pub fn in_delete_lag(&self, d: &Deletion) -> bool {
        self.delete_lag > 0 && self.now < d.deleted_date + self.delete_lag
    }
}

impl<P: Payload> Store<P> {
    /// A live object by (case-insensitive) name, or 404.
    pub fn live(&self, name: &str) -> Result<&Object<P>, KvError> {
        let key = canonical(P::COLL, name)?;
        self.active
            .get(&key)
            .ok_or_else(|| KvError::not_found(P::COLL, name))
    }

    /// A live object and one of its versions (`None` = latest), or 404 naming `name[/version]`.
    pub fn live_version(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(&Object<P>, &Version<P>), KvError> {
        let obj = self.live(name)?;
        let v = obj
            .version(version)
            .ok_or_else(|| not_found_version(P::COLL, name, version))?;
        Ok((obj, v))
    }

    /// The part of `PATCH` every collection shares: finds the live version (the same 404s as a
    /// read), applies the attribute patch and the tags, lets `edit` change the payload, stamps
    /// `updated`, and hands back the object and version for rendering.
    pub fn update_version(
        &mut self,
        name: &str,
        version: Option<&str>,
        patch: &AttrsPatch,
        tags: Option<Tags>,
        now: i64,
        edit: impl FnOnce(&mut Version<P>),
    ) -> Result<(&Object<P>, &Version<P>), KvError> {
        let key = canonical(P::COLL, name)?;
        let obj = self
            .active
            .get_mut(&key)
            .ok_or_else(|| KvError::not_found(P::COLL, name))?;
        let index = match version {
            None => obj.versions.len().checked_sub(1),
            Some(id) => obj.versions.iter().position(|v| v.id == id),
        }
        .ok_or_else(|| not_found_version(P::COLL, name, version))?;
        let v = &mut obj.versions[index];
        patch.apply(&mut v.attrs)?;
        if tags.is_some() {
            v.tags = tags;
        }
        edit(v);
        v.attrs.updated = now;
        let obj = &*obj;
        Ok((obj, &obj.versions[index]))
    }

    /// Refuses a create/import/set on a name that is soft-deleted (409 recoverable), still
    /// being deleted, or was purged within the purge-lag window (409 being deleted).
    pub fn check_creatable(&self, key: &str, name: &str, t: &Timing) -> Result<(), KvError> {
        if let Some(obj) = self.deleted.get(key) {
            let in_lag = obj.deletion.as_ref().is_some_and(|d| t.in_delete_lag(d));
            return Err(if in_lag {
                KvError::being_deleted(P::COLL, name)
            } else {
                KvError::deleted_but_recoverable(P::COLL, name)
            });
        }
        if self.in_purge_lag(key, t) {
            return Err(KvError::being_deleted(P::COLL, name));
        }
        Ok(())
    }

    /// Appends a version to the live object `key`, creating the object (with `name` as its
    /// display name) if needed, and returns the object.
    pub fn add_version(
        &mut self,
        key: String,
        name: &str,
        managed: bool,
        v: Version<P>,
    ) -> &Object<P> {
        let obj = self.active.entry(key).or_insert_with(|| Object {
            name: name.to_string(),
            managed,
            versions: Vec::new(),
            deletion: None,
        });
        obj.versions.push(v);
        obj
    }

    /// The 403 for writing a new version over a certificate's managed key or secret.
    pub fn check_not_managed(&self, key: &str, verb: &str) -> Result<(), KvError> {
        if self.active.get(key).is_some_and(|o| o.managed) {
            return Err(KvError::new(
                403,
                "Forbidden",
                format!(
                    "Operation \"{verb}\" is not allowed on this {}, since it is associated with a certificate. Perform the operation on the corresponding certificate.",
                    P::COLL.title()
                ),
            ));
        }
        Ok(())
    }

    /// True when `key` names an object, live or soft-deleted.
    pub fn holds(&self, key: &str) -> bool {
        self.active.contains_key(key) || self.deleted.contains_key(key)
    }

    /// True while `key` was purged less than `purge_lag` seconds ago.
    pub fn in_purge_lag(&self, key: &str, t: &Timing) -> bool {
        self.purged_at
            .get(key)
            .is_some_and(|at| t.now < at + t.purge_lag)
    }

    /// A deleted object visible on the deleted routes (not during the delete lag), or 404.
    pub fn visible_deleted(&self, name: &str, t: &Timing) -> Result<&Object<P>, KvError> {
        let key = canonical(P::COLL, name)?;
        self.deleted
            .get(&key)
            .filter(|o| o.deletion.as_ref().is_some_and(|d| !t.in_delete_lag(d)))
            .ok_or_else(|| KvError::deleted_not_found(P::COLL, name))
    }

    /// Moves a live object to the deleted store (or drops it when the vault has no soft
    /// delete) and returns it as it was at the moment of deletion.
    pub fn soft_delete(&mut self, key: &str, t: &Timing, listed: bool) -> Option<Object<P>> {
        let mut obj = self.active.remove(key)?;
        if let Some(days) = t.retention_days {
            obj.deletion = Some(Deletion {
                deleted_date: t.now,
                scheduled_purge_date: t.now + i64::from(days) * 86_400,
                listed,
            });
            self.deleted.insert(key.to_string(), obj.clone());
        }
        Some(obj)
    }

    /// Moves a deleted object back, versions untouched.
    pub fn recover(&mut self, key: &str) -> Option<&Object<P>> {
        let mut obj = self.deleted.remove(key)?;
        obj.deletion = None;
        Some(self.active.entry(key.to_string()).or_insert(obj))
    }

    /// Drops a deleted object for good and starts the purge-lag window.
    pub fn purge(&mut self, key: &str, now: i64) -> bool {
        let gone = self.deleted.remove(key).is_some();
        if gone {
            self.purged_at.insert(key.to_string(), now);
        }
        gone
    }

    /// Drops deleted objects whose scheduled purge date has passed; returns how many.
    pub fn expire(&mut self, now: i64) -> usize {
        let before = self.deleted.len();
        self.deleted.retain(|_, o| {
            o.deletion
                .as_ref()
                .is_none_or(|d| d.scheduled_purge_date > now)
        });
        before - self.deleted.len()
    }

    /// The earliest scheduled purge date among deleted objects.
    pub fn next_expiry(&self) -> Option<i64> {
        self.deleted
            .values()
            .filter_map(|o| o.deletion.as_ref().map(|d| d.scheduled_purge_date))
            .min()
    }

    /// `GET /{coll}`: live objects after the name marker.
    pub fn list(&self, after: Option<&str>, limit: usize, cx: &RenderCx) -> Reply {
        let start = after.map(str::to_ascii_lowercase);
        let iter = range_after(&self.active, start.as_deref()).filter_map(|(k, o)| {
            o.latest()
                .map(|v| (k, Value::Object(P::item(o, v, cx, false))))
        });
        page(iter, limit)
    }

    /// `GET /deleted{coll}`: listed deleted objects after the name marker.
    pub fn list_deleted(
        &self,
        after: Option<&str>,
        limit: usize,
        cx: &RenderCx,
        t: &Timing,
    ) -> Reply {
        let start = after.map(str::to_ascii_lowercase);
        let iter = range_after(&self.deleted, start.as_deref()).filter_map(|(k, o)| {
            let d = o
                .deletion
                .as_ref()
                .filter(|d| d.listed && !t.in_delete_lag(d))?;
            let v = o.latest()?;
            let mut item = P::item(o, v, cx, false);
            put_deletion(&mut item, cx.authority, P::COLL, &o.name, d);
            Some((k, Value::Object(item)))
        });
        page(iter, limit)
    }

    /// `GET /{coll}/{name}/versions`: an unknown name is an empty page (§16). Versions sort by
    /// `created`, then id; the marker is `{created}.{id}` of the last item.
    pub fn list_versions(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
        cx: &RenderCx,
    ) -> Result<Reply, KvError> {
        let key = canonical(P::COLL, name)?;
        let Some(obj) = self.active.get(&key) else {
            return Ok(Reply::Page {
                items: Vec::new(),
                next: None,
            });
        };
        let marker = after.map(parse_version_marker).transpose()?;
        let mut sorted: Vec<&Version<P>> = obj.versions.iter().collect();
        sorted.sort_by(|a, b| (a.attrs.created, &a.id).cmp(&(b.attrs.created, &b.id)));
        let iter = sorted
            .into_iter()
            .filter(|v| {
                marker
                    .as_ref()
                    .is_none_or(|(c, id)| (v.attrs.created, &v.id) > (*c, id))
            })
            .map(|v| {
                let key = format!("{}.{}", v.attrs.created, v.id);
                (key, Value::Object(P::item(obj, v, cx, true)))
            });
        Ok(page(iter, limit))
    }

    /// Live object count and soft-deleted object count (for the control plane).
    pub fn counts(&self) -> (usize, usize) {
        (self.active.len(), self.deleted.len())
    }
}

/// The bundle of an object's latest version without a secret value, with `recoveryId` etc. when
/// soft-deleted (delete, deleted reads, recover and restore all answer it).
pub fn deleted_bundle<P: Payload>(obj: &Object<P>, cx: &RenderCx) -> Result<Value, KvError> {
    let v = obj
        .latest()
        .ok_or_else(|| KvError::not_found(P::COLL, &obj.name))?;
    let mut m = P::bundle(obj, v, cx);
    // The deleted bundles of the spec examples carry no secret value.
    m.remove("value");
    if let Some(d) = &obj.deletion {
        put_deletion(&mut m, cx.authority, P::COLL, &obj.name, d);
    }
    Ok(Value::Object(m))
}

/// What every list item carries: the id under `id_field` (`/versions` form when `versioned`),
/// `attributes`, and `tags`/`managed`. The collections add their own fields.
pub fn item_base<P: Payload>(
    obj: &Object<P>,
    v: &Version<P>,
    cx: &RenderCx,
    id_field: &str,
    versioned: bool,
) -> Map<String, Value> {
    let mut m = Map::new();
    let version = versioned.then_some(v.id.as_str());
    let id = object_id(cx.authority, P::COLL, &obj.name, version);
    m.insert(id_field.into(), Value::String(id));
    m.insert("attributes".into(), v.attrs.to_json(&cx.recovery));
    put_tags_managed(&mut m, &v.tags, obj.managed);
    m
}

/// A 200 JSON reply.
pub fn ok(body: Value) -> Reply {
    Reply::Json { status: 200, body }
}

/// The 404 for a missing version, naming `name/version` like the service.
pub fn not_found_version(coll: Collection, name: &str, version: Option<&str>) -> KvError {
    match version {
        Some(v) => KvError::not_found(coll, &format!("{name}/{v}")),
        None => KvError::not_found(coll, name),
    }
}

fn range_after<'a, P>(
    map: &'a std::collections::BTreeMap<String, Object<P>>,
    after: Option<&str>,
) -> impl Iterator<Item = (String, &'a Object<P>)> + 'a {
    let lower = match after {
        Some(a) => Bound::Excluded(a.to_string()),
        None => Bound::Unbounded,
    };
    map.range((lower, Bound::Unbounded))
        .map(|(k, o)| (k.clone(), o))
}

/// Takes up to `limit` items; `next` is the last returned key, only when another item follows.
fn page(mut iter: impl Iterator<Item = (String, Value)>, limit: usize) -> Reply {
    let limit = limit.max(1);
    let mut items = Vec::new();
    let mut last = None;
    for (k, v) in iter.by_ref() {
        items.push(v);
        last = Some(k);
        if items.len() == limit {
            break;
        }
    }
    let next = if items.len() == limit && iter.next().is_some() {
        last
    } else {
        None
    };
    Reply::Page { items, next }
}

fn parse_version_marker(marker: &str) -> Result<(i64, String), KvError> {
    marker
        .split_once('.')
        .and_then(|(c, id)| Some((c.parse::<i64>().ok()?, id.to_string())))
        .ok_or_else(|| KvError::bad_parameter("The skip token is not valid."))
}
