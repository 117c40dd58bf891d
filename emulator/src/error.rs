//! Key Vault's error vocabulary: status, code, message and optional inner code, rendered as the
//! service's `{"error":{"code","message","innererror"?}}` body.

use serde_json::{json, Value};

use crate::api::Collection;

/// An error the emulator answers with, shaped like the real service's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct KvError {
    /// HTTP status.
    pub status: u16,
    /// `error.code`.
    pub code: String,
    /// `error.message`.
    pub message: String,
    /// `error.innererror.code`, when the service sends one.
    pub inner: Option<String>,
}

impl KvError {
    /// An error with the given status, code and message and no inner error.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        KvError {
            status,
            code: code.into(),
            message: message.into(),
            inner: None,
        }
    }

    /// Adds `innererror.code`.
    pub fn with_inner(mut self, inner: impl Into<String>) -> Self {
        self.inner = Some(inner.into());
        self
    }

    /// 400 BadParameter.
    pub fn bad_parameter(message: impl Into<String>) -> Self {
        KvError::new(400, "BadParameter", message)
    }

    /// 404 for a live object or version, with the service's wording (api 7.2+).
    pub fn not_found(coll: Collection, name_or_id: &str) -> Self {
        let noun = coll.noun();
        KvError::new(
            404,
            coll.not_found_code(),
            format!(
                "A {noun} with (name/id) {name_or_id} was not found in this key vault. If you recently deleted this {noun} you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        )
    }

    /// 404 on the deleted-object routes (short form).
    pub fn deleted_not_found(coll: Collection, name: &str) -> Self {
        KvError::new(
            404,
            coll.not_found_code(),
            format!("Deleted {} not found: {name}", coll.title()),
        )
    }

    /// 409 when the name is soft-deleted.
    pub fn deleted_but_recoverable(coll: Collection, name: &str) -> Self {
        let title = coll.title();
        let noun = coll.noun();
        KvError::new(
            409,
            "Conflict",
            format!("{title} {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the {noun} can only be recovered or purged."),
        )
        .with_inner("ObjectIsDeletedButRecoverable")
    }

    /// 409 while a delete is still in progress.
    pub fn being_deleted(coll: Collection, name: &str) -> Self {
        KvError::new(
            409,
            "Conflict",
            format!(
                "{} {name} is currently being deleted and cannot be re-created; retry later.",
                coll.title()
            ),
        )
        .with_inner("ObjectIsBeingDeleted")
    }

    /// 409 when a restore meets an existing name (or one purged moments ago).
    pub fn restore_conflict(coll: Collection, versioned_id: &str) -> Self {
        let noun = coll.noun();
        KvError::new(
            409,
            "Conflict",
            format!("There was a conflict restoring the {noun} '{versioned_id}'. This can happen if either: a second {noun} with the same name was created after the first {noun} was deleted; thus trying to restore a {noun} whose name is already in use. To fix this, rename the second {noun} to something else so that the restore works. The second probable cause of this exception is when multiple operations are performed in parallel against the {noun}. To avoid this error, perform operations against a {noun} in a sequential manner."),
        )
    }

    /// 400 for a backup blob that cannot be opened.
    pub fn malformed_backup() -> Self {
        KvError::new(400, "Malformed backup blob", "Backup blob is corrupt.")
    }

    /// 403 for purge under purge protection.
    pub fn purge_protected(vault: &str, region: &str) -> Self {
        KvError::new(
            403,
            "Forbidden",
            format!("Operation \"purge\" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed. Vault: {vault};location={region}"),
        )
    }

    /// 403 for a caller without the access-policy permission for `op` (`secrets.backup`): the
    /// service names the collection and the verb (`does not have secrets backup permission`).
    pub fn forbidden_by_policy(vault: &str, op: &str) -> Self {
        let permission = op.replacen('.', " ", 1);
        KvError::new(
            403,
            "Forbidden",
            format!("The user, group or application 'appid=00000000-0000-0000-0000-000000000000;oid=00000000-0000-0000-0000-000000000000;iss=https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/' does not have {permission} permission on key vault '{vault};location=emulator'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"),
        )
        .with_inner("ForbiddenByPolicy")
    }

    /// 403 for reading a disabled version.
    pub fn disabled(coll: Collection) -> Self {
        let noun = coll.noun();
        let mut title = coll.title().to_string();
        title.push_str("Disabled");
        KvError::new(
            403,
            "Forbidden",
            format!("Operation get is not allowed on a disabled {noun}."),
        )
        .with_inner(title)
    }

    /// 403 for backing up a certificate-managed key or secret.
    pub fn managed_backup(coll: Collection) -> Self {
        KvError::new(
            403,
            "Forbidden",
            format!("Operation \"backup\" is not allowed on this {}, since it is associated with a certificate. Perform the operation on the corresponding certificate. For more information refer to https://docs.microsoft.com/en-us/azure/key-vault/certificates/about-certificates#composition-of-a-certificate", coll.title()),
        )
    }

    /// 429 Throttled.
    pub fn throttled() -> Self {
        KvError::new(
            429,
            "Throttled",
            "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
        )
    }

    /// The JSON body the service sends.
    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(inner) = &self.inner {
            error["innererror"] = json!({ "code": inner });
        }
        json!({ "error": error })
    }
}
