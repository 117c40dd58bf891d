//! Soft delete, recover, purge and the deleted-object reads (§7). Deleting a certificate also
//! soft-deletes its managed key and secret (unlisted, reachable by name); recovering or purging
//! the certificate carries them along.

use serde_json::Value;

use crate::api::{Collection, Ctx, Reply};
use crate::error::KvError;

use super::model::{canonical, Store};
use super::store::{deleted_bundle, ok, Payload, RenderCx, Timing};
use super::Vault;

impl Vault {
    /// `DELETE /{coll}/{name}`.
    pub(super) fn delete(
        &mut self,
        coll: Collection,
        name: &str,
        ctx: &Ctx,
    ) -> Result<Reply, KvError> {
        let key = canonical(coll, name)?;
        let t = self.timing(ctx.now);
        let cx = self.render_cx(ctx);
        let body = match coll {
            Collection::Secrets => delete_one(&mut self.secrets, &key, name, &t, &cx)?,
            Collection::Keys => delete_one(&mut self.keys, &key, name, &t, &cx)?,
            Collection::Certificates => {
                let body = delete_one(&mut self.certs, &key, name, &t, &cx)?;
                if self.keys.active.get(&key).is_some_and(|o| o.managed) {
                    self.keys.soft_delete(&key, &t, false);
                }
                if self.secrets.active.get(&key).is_some_and(|o| o.managed) {
                    self.secrets.soft_delete(&key, &t, false);
                }
                body
            }
        };
        if let Some(days) = t.retention_days {
            let due = ctx.now + i64::from(days) * 86_400;
            self.next_expiry = Some(self.next_expiry.map_or(due, |n| n.min(due)));
        }
        Ok(ok(body))
    }

    /// `GET /deleted{coll}/{name}`.
    pub(super) fn get_deleted(
        &self,
        coll: Collection,
        name: &str,
        ctx: &Ctx,
    ) -> Result<Reply, KvError> {
        let t = self.timing(ctx.now);
        let cx = self.render_cx(ctx);
        let body = with_store!(self, coll, s => deleted_bundle(s.visible_deleted(name, &t)?, &cx)?);
        Ok(ok(body))
    }

    /// `POST /deleted{coll}/{name}/recover`: every version comes back as it was.
    pub(super) fn recover(
        &mut self,
        coll: Collection,
        name: &str,
        ctx: &Ctx,
    ) -> Result<Reply, KvError> {
        let key = canonical(coll, name)?;
        let t = self.timing(ctx.now);
        let cx = self.render_cx(ctx);
        let body = match coll {
            Collection::Secrets => recover_one(&mut self.secrets, &key, name, &t, &cx)?,
            Collection::Keys => recover_one(&mut self.keys, &key, name, &t, &cx)?,
            Collection::Certificates => {
                let body = recover_one(&mut self.certs, &key, name, &t, &cx)?;
                if self.keys.deleted.get(&key).is_some_and(|o| o.managed) {
                    self.keys.recover(&key);
                }
                if self.secrets.deleted.get(&key).is_some_and(|o| o.managed) {
                    self.secrets.recover(&key);
                }
                body
            }
        };
        Ok(ok(body))
    }

    /// `DELETE /deleted{coll}/{name}`: 204, or 403 under purge protection.
    pub(super) fn purge(
        &mut self,
        coll: Collection,
        name: &str,
        ctx: &Ctx,
    ) -> Result<Reply, KvError> {
        let key = canonical(coll, name)?;
        let t = self.timing(ctx.now);
        with_store!(self, coll, s => s.visible_deleted(name, &t).map(|_| ()))?;
        if self.settings.purge_protection {
            return Err(KvError::purge_protected(
                &self.settings.name,
                &self.settings.region,
            ));
        }
        match coll {
            Collection::Secrets => {
                self.secrets.purge(&key, ctx.now);
            }
            Collection::Keys => {
                self.keys.purge(&key, ctx.now);
            }
            Collection::Certificates => {
                self.certs.purge(&key, ctx.now);
                if self.keys.deleted.get(&key).is_some_and(|o| o.managed) {
                    self.keys.purge(&key, ctx.now);
                }
                if self.secrets.deleted.get(&key).is_some_and(|o| o.managed) {
                    self.secrets.purge(&key, ctx.now);
                }
            }
        }
        Ok(Reply::NoContent)
    }

    /// Lazy expiry: drops soft-deleted objects whose scheduled purge date has passed. Cheap
    /// unless something is due, because the earliest due date is remembered.
    pub(super) fn expire(&mut self, now: i64) {
        if self.next_expiry.is_none_or(|due| now < due) {
            return;
        }
        self.secrets.expire(now);
        self.keys.expire(now);
        self.certs.expire(now);
        self.next_expiry = [
            self.secrets.next_expiry(),
            self.keys.next_expiry(),
            self.certs.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min();
    }
}

fn recover_one<P: Payload>(
    store: &mut Store<P>,
    key: &str,
    name: &str,
    t: &Timing,
    cx: &RenderCx,
) -> Result<Value, KvError> {
    store.visible_deleted(name, t)?;
    if store.active.contains_key(key) {
        return Err(KvError::new(
            409,
            "Conflict",
            format!(
                "{} {name} cannot be recovered: an object with the same name exists.",
                P::COLL.title()
            ),
        ));
    }
    let obj = store
        .recover(key)
        .ok_or_else(|| KvError::deleted_not_found(P::COLL, name))?;
    deleted_bundle(obj, cx)
}

/// Soft-deletes one live object (403 for a certificate's managed key or secret, 404 when absent)
/// and answers its deleted bundle.
fn delete_one<P: Payload>(
    store: &mut Store<P>,
    key: &str,
    name: &str,
    t: &Timing,
    cx: &RenderCx,
) -> Result<Value, KvError> {
    store.check_not_managed(key, "delete")?;
    let obj = store
        .soft_delete(key, t, true)
        .ok_or_else(|| KvError::not_found(P::COLL, name))?;
    deleted_bundle(&obj, cx)
}
