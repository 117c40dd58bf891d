//! Soft delete, recover, purge, lag windows, expiry and recovery levels.

use serde_json::json;

use super::*;
use crate::vault::model::Recovery;

fn delete(coll: Collection, name: &str) -> Op {
    Op::Delete {
        coll,
        name: name.into(),
    }
}
fn get_deleted(coll: Collection, name: &str) -> Op {
    Op::GetDeleted {
        coll,
        name: name.into(),
    }
}
fn recover(coll: Collection, name: &str) -> Op {
    Op::Recover {
        coll,
        name: name.into(),
    }
}
fn purge(coll: Collection, name: &str) -> Op {
    Op::Purge {
        coll,
        name: name.into(),
    }
}

#[test]
fn delete_get_deleted_recover_purge_round_trip() {
    let mut v = vault();
    let first = set_secret(&mut v, "Life", "one");
    let second = ok_at(
        &mut v,
        Op::SetSecret {
            name: "life".into(),
            body: json!({"value": "two", "tags": {"k": "v"}}),
        },
        NOW + 1,
    );

    let deleted = ok_at(&mut v, delete(Collection::Secrets, "LIFE"), NOW + 10);
    assert_eq!(
        deleted["recoveryId"],
        format!("https://{AUTH}/deletedsecrets/Life")
    );
    assert_eq!(deleted["deletedDate"], NOW + 10);
    assert_eq!(deleted["scheduledPurgeDate"], NOW + 10 + 90 * 86_400);
    assert_eq!(deleted["id"], second["id"]);
    assert!(deleted.get("value").is_none());

    assert_eq!(
        err(&mut v, get(Collection::Secrets, "life", None)).status,
        404
    );
    let (items, _) = page(&mut v, list(Collection::Secrets, None, 25));
    assert!(items.is_empty());
    let (items, next) = page(
        &mut v,
        Op::ListDeleted {
            coll: Collection::Secrets,
            after: None,
            limit: 25,
        },
    );
    assert_eq!((items.len(), next), (1, None));
    assert_eq!(
        items[0]["recoveryId"],
        format!("https://{AUTH}/deletedsecrets/Life")
    );
    assert_id(&items[0]["id"], "secrets", "Life", false);
    let gd = ok(&mut v, get_deleted(Collection::Secrets, "life"));
    assert_eq!(gd["scheduledPurgeDate"], NOW + 10 + 90 * 86_400);
    assert_eq!(v.counts().deleted, 1);

    // The name is blocked while deleted.
    let e = err(
        &mut v,
        Op::SetSecret {
            name: "LIFE".into(),
            body: json!({"value": "x"}),
        },
    );
    assert_eq!(
        (e.status, e.inner.as_deref()),
        (409, Some("ObjectIsDeletedButRecoverable"))
    );
    assert!(e
        .message
        .starts_with("Secret LIFE is currently in a deleted but recoverable state"));

    let recovered = ok(&mut v, recover(Collection::Secrets, "life"));
    assert_eq!(recovered["id"], second["id"]);
    assert_eq!(
        ok(&mut v, get(Collection::Secrets, "life", None))["tags"],
        json!({"k": "v"})
    );
    let old = ok(
        &mut v,
        get(Collection::Secrets, "life", Some(&version_of(&first["id"]))),
    );
    assert_eq!(old["value"], "one");
    assert_eq!(old["attributes"]["created"], NOW);
    assert_eq!(
        err(&mut v, get_deleted(Collection::Secrets, "life")).status,
        404
    );

    ok(&mut v, delete(Collection::Secrets, "life"));
    assert_eq!(
        v.apply(&purge(Collection::Secrets, "life"), &ctx()),
        Ok(Reply::NoContent)
    );
    let e = err(&mut v, get_deleted(Collection::Secrets, "life"));
    assert_eq!(
        (e.status, e.message.as_str()),
        (404, "Deleted Secret not found: life")
    );
    assert_eq!(v.counts(), crate::api::ObjectCounts::default());
    // After the purge the name is free again.
    set_secret(&mut v, "life", "new");
}

#[test]
fn errors_on_missing_objects() {
    let mut v = vault();
    for op in [
        delete(Collection::Keys, "none"),
        get_deleted(Collection::Keys, "none"),
        recover(Collection::Keys, "none"),
        purge(Collection::Certificates, "none"),
    ] {
        let e = err(&mut v, op);
        assert_eq!(e.status, 404);
    }
    // A live object is not "deleted": purge and recover answer 404.
    set_secret(&mut v, "live", "x");
    assert_eq!(
        err(&mut v, purge(Collection::Secrets, "live")).message,
        "Deleted Secret not found: live"
    );
    assert_eq!(
        err(&mut v, recover(Collection::Secrets, "live")).status,
        404
    );
}

#[test]
fn purge_protection_answers_403_and_keeps_the_object() {
    let mut v = vault_with(|s| {
        s.purge_protection = true;
        s.recoverable_days = Some(7);
    });
    let b = set_secret(&mut v, "p", "x");
    assert_eq!(b["attributes"]["recoveryLevel"], "CustomizedRecoverable");
    assert_eq!(b["attributes"]["recoverableDays"], 7);
    ok(&mut v, delete(Collection::Secrets, "p"));
    let e = err(&mut v, purge(Collection::Secrets, "p"));
    assert_eq!((e.status, e.code.as_str()), (403, "Forbidden"));
    assert!(e
        .message
        .starts_with("Operation \"purge\" is not allowed because purge protection is enabled"));
    assert!(e.message.ends_with("Vault: kv1;location=westeurope"));
    assert_eq!(
        ok(&mut v, get_deleted(Collection::Secrets, "p"))["scheduledPurgeDate"],
        NOW + 7 * 86_400
    );
}

#[test]
fn recovery_levels_follow_settings() {
    let mut s = VaultSettings::named("x");
    assert_eq!(Recovery::of(&s).level, "Recoverable+Purgeable");
    s.recoverable_days = Some(7);
    assert_eq!(Recovery::of(&s).level, "CustomizedRecoverable+Purgeable");
    s.purge_protection = true;
    assert_eq!(Recovery::of(&s).level, "CustomizedRecoverable");
    s.recoverable_days = Some(90);
    assert_eq!(Recovery::of(&s).level, "Recoverable");
    s.recoverable_days = None;
    assert_eq!(
        Recovery::of(&s),
        Recovery {
            level: "Purgeable",
            days: None
        }
    );
}

#[test]
fn purgeable_vault_deletes_permanently_without_recovery_fields() {
    let mut v = vault_with(|s| s.recoverable_days = None);
    let b = set_secret(&mut v, "gone", "x");
    assert_eq!(b["attributes"]["recoveryLevel"], "Purgeable");
    assert!(b["attributes"].get("recoverableDays").is_none());
    let d = ok(&mut v, delete(Collection::Secrets, "gone"));
    assert!(d.get("recoveryId").is_none() && d.get("scheduledPurgeDate").is_none());
    assert_eq!(d["id"], b["id"]);
    assert_eq!(
        err(&mut v, get_deleted(Collection::Secrets, "gone")).status,
        404
    );
    assert_eq!(v.counts().deleted, 0);
    set_secret(&mut v, "gone", "again");
}

#[test]
fn soft_deleted_objects_vanish_after_scheduled_purge_date() {
    let mut v = vault_with(|s| s.recoverable_days = Some(7));
    set_secret(&mut v, "old", "x");
    ok(&mut v, delete(Collection::Secrets, "old"));
    let due = NOW + 7 * 86_400;
    assert_eq!(
        ok_at(&mut v, get_deleted(Collection::Secrets, "old"), due - 1)["scheduledPurgeDate"],
        due
    );
    assert_eq!(
        err_at(&mut v, get_deleted(Collection::Secrets, "old"), due).status,
        404
    );
    assert_eq!(v.counts().deleted, 0);
    // The name can be reused at once (no purge lag for automatic purges).
    ok_at(
        &mut v,
        Op::SetSecret {
            name: "old".into(),
            body: json!({"value": "y"}),
        },
        due,
    );
}

#[test]
fn delete_lag_hides_the_deleted_object_and_answers_being_deleted() {
    let mut v = vault_with(|s| s.delete_lag_secs = 30);
    set_secret(&mut v, "slow", "x");
    ok(&mut v, delete(Collection::Secrets, "slow"));
    assert_eq!(
        err_at(&mut v, get_deleted(Collection::Secrets, "slow"), NOW + 29).status,
        404
    );
    let (items, _) = page_at(
        &mut v,
        Op::ListDeleted {
            coll: Collection::Secrets,
            after: None,
            limit: 25,
        },
        NOW + 29,
    );
    assert!(items.is_empty());
    let e = err_at(
        &mut v,
        Op::SetSecret {
            name: "slow".into(),
            body: json!({"value": "y"}),
        },
        NOW + 29,
    );
    assert_eq!(
        (e.status, e.inner.as_deref()),
        (409, Some("ObjectIsBeingDeleted"))
    );
    ok_at(&mut v, get_deleted(Collection::Secrets, "slow"), NOW + 30);
    let e = err_at(
        &mut v,
        Op::SetSecret {
            name: "slow".into(),
            body: json!({"value": "y"}),
        },
        NOW + 30,
    );
    assert_eq!(e.inner.as_deref(), Some("ObjectIsDeletedButRecoverable"));
}

#[test]
fn purge_lag_blocks_creates_for_a_while() {
    let mut v = vault_with(|s| s.purge_lag_secs = 10);
    set_secret(&mut v, "p", "x");
    ok(&mut v, delete(Collection::Secrets, "p"));
    assert_eq!(
        v.apply(&purge(Collection::Secrets, "p"), &ctx()),
        Ok(Reply::NoContent)
    );
    let e = err_at(
        &mut v,
        Op::SetSecret {
            name: "p".into(),
            body: json!({"value": "y"}),
        },
        NOW + 9,
    );
    assert_eq!(e.status, 409);
    ok_at(
        &mut v,
        Op::SetSecret {
            name: "p".into(),
            body: json!({"value": "y"}),
        },
        NOW + 10,
    );
}

#[test]
fn deleted_list_pages_by_name() {
    let mut v = vault();
    for i in 0..30 {
        set_secret(&mut v, &format!("d{i:02}"), "x");
        ok(&mut v, delete(Collection::Secrets, &format!("d{i:02}")));
    }
    let (first, next) = page(
        &mut v,
        Op::ListDeleted {
            coll: Collection::Secrets,
            after: None,
            limit: 25,
        },
    );
    assert_eq!(first.len(), 25);
    let (rest, next) = page(
        &mut v,
        Op::ListDeleted {
            coll: Collection::Secrets,
            after: next,
            limit: 25,
        },
    );
    assert_eq!((rest.len(), next), (5, None));
    assert_id(&rest[4]["id"], "secrets", "d29", false);
}
