//! Vault leases of the [`AzureBlobStore`]: Azure blob leases on the lock blob `locks/{vault}`
//! (under the store prefix), through `BlobClient::acquire_lease`/`renew_lease`/`release_lease`/
//! `break_lease` of `azure_storage_blob` 1.x.
//!
//! Acquire is three requests, each safe to repeat: read the lock blob's properties (its lease
//! state and the last holder's record; if the blob does not exist yet, create it empty with
//! `If-None-Match: *` — another instance creating it first is fine); lease it with the holder's
//! proposed lease id; then record the holder as blob metadata (`kvkeep_instance`, `kvkeep_pid`,
//! `kvkeep_acquired_at`, and `kvkeep_task`/`kvkeep_run` for what it works on) under the new
//! lease. A lease state of `expired` or `broken` before the acquire means the last holder never
//! released: its record is the lease's [`Lease::abandoned`]. The service keeps another holder's
//! lease id to itself, so on `409 LeaseAlreadyPresent` the refusal names the holder from that
//! metadata (read again: it may have changed since).
//!
//! Lease answers are translated here: `LeaseAlreadyPresent` (and a lease that is breaking) is
//! [`LeaseError::Held`]; to a renew, `LeaseIdMismatchWithLeaseOperation` (another id holds it, or
//! nobody does), `LeaseIsBrokenAndCannotBeRenewed`, `LeaseNotPresentWithLeaseOperation`,
//! `LeaseLost` and a missing lock blob are [`LeaseError::Lost`]; to a release or break they mean
//! there is nothing left to end. Everything else goes through the store's usual translation.
//!
//! A container under an immutability policy refuses the metadata write (409
//! `BlobImmutableDueToPolicy` / `…LegalHold`); the error names `[store] lock_container_url`,
//! which keeps the locks in a container without one.

use azure_core::error::ErrorKind;
use azure_core::http::StatusCode;
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientBreakLeaseOptions,
    BlobClientGetPropertiesResultHeaders, BlobClientSetMetadataOptions, BlobClientUploadOptions,
    LeaseState,
};
use azure_storage_blob::BlobClient;
use bytes::Bytes;

use super::lease::{lock_key, HolderInfo, Lease, LeaseDuration, LeaseError, LeaseHolder};
use super::{AzureBlobStore, StoreError, StoreErrorKind, StoreOp};
use crate::model::VaultName;

/// The HTTP status and service error code of a failed request, when the service answered.
fn answer(error: &azure_core::Error) -> Option<(StatusCode, String)> {
    match error.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => Some((*status, error_code.clone().unwrap_or_default())),
        _ => None,
    }
}

/// What a lease answer means for a lease we hold (renew, release); `None` when it says nothing
/// about the lease (throttling, auth, transport …).
fn lost_because(status: StatusCode, code: &str) -> Option<&'static str> {
    match (status, code) {
        (StatusCode::Conflict, "LeaseIdMismatchWithLeaseOperation") => {
            Some("another holder has it, or it was released")
        }
        (StatusCode::Conflict, "LeaseIsBrokenAndCannotBeRenewed") => Some("it was broken"),
        (StatusCode::Conflict, "LeaseNotPresentWithLeaseOperation") => {
            Some("there is no lease on the lock blob any more")
        }
        (StatusCode::Conflict | StatusCode::PreconditionFailed, "LeaseLost") => {
            Some("the service reports it lost")
        }
        (StatusCode::NotFound, _) if code != "ContainerNotFound" => {
            Some("the lock blob was deleted")
        }
        _ => None,
    }
}

impl AzureBlobStore {
    fn lease_err(&self, op: StoreOp, vault: &VaultName, e: azure_core::Error) -> LeaseError {
        self.translate(op, lock_key(vault).as_str(), e).into()
    }

    fn lost(&self, vault: &VaultName, status: StatusCode, code: &str, why: &str) -> LeaseError {
        LeaseError::Lost {
            vault: vault.clone(),
            store: self.name.clone(),
            detail: format!("the service answered {status} {code}: {why}"),
        }
    }

    /// Who holds the lease, as the lock blob's metadata says; `None` if it cannot be read.
    async fn recorded_holder(&self, blob: &BlobClient) -> Option<HolderInfo> {
        let response = blob.get_properties(None).await.ok()?;
        HolderInfo::from_metadata(&response.metadata().ok()?)
    }

    /// Creates the empty lock blob unless it exists. Any conflict means it exists (perhaps
    /// created by another instance a moment ago): the lease request that follows tells.
    async fn create_lock_blob(
        &self,
        vault: &VaultName,
        blob: &BlobClient,
    ) -> Result<(), LeaseError> {
        let options = BlobClientUploadOptions::default().if_not_exists();
        match blob.upload(Bytes::new().into(), Some(options)).await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    answer(&e),
                    Some((StatusCode::Conflict | StatusCode::PreconditionFailed, _))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.lease_err(StoreOp::AcquireLease, vault, e)),
        }
    }

    pub(super) async fn acquire_lease_azure(
        &self,
        vault: &VaultName,
        holder: &LeaseHolder,
        duration: LeaseDuration,
    ) -> Result<Lease, LeaseError> {
        let op = StoreOp::AcquireLease;
        let key = lock_key(vault);
        let blob = self.blob(&key);
        let now = crate::clock::now_unix();
        // What the lock blob says before it is leased: whether the last lease was released
        // (its holder finished) and who held it. A missing blob is created at once.
        let abandoned = match blob.get_properties(None).await {
            Ok(properties) => {
                let recorded = || {
                    properties
                        .metadata()
                        .ok()
                        .and_then(|m| HolderInfo::from_metadata(&m))
                };
                match properties.lease_state().ok().flatten() {
                    Some(LeaseState::Expired | LeaseState::Broken) => recorded(),
                    // Leased, and the acquire below succeeds only with our own lease id: our
                    // previous process (a restart) if the record names us. A record naming
                    // another holder is the one before our own acquire whose answer was lost
                    // (a retry): it says nothing about unfinished work.
                    Some(LeaseState::Leased) => {
                        recorded().filter(|r| r.instance == holder.instance())
                    }
                    _ => None,
                }
            }
            Err(e) if matches!(answer(&e), Some((StatusCode::NotFound, code)) if code != "ContainerNotFound") =>
            {
                self.create_lock_blob(vault, &blob).await?;
                None
            }
            Err(e) => return Err(self.lease_err(op, vault, e)),
        };
        let mut created = false;
        loop {
            let options = BlobClientAcquireLeaseOptions {
                proposed_lease_id: Some(holder.lease_id().to_string()),
                ..Default::default()
            };
            let Err(e) = blob
                .acquire_lease(duration.azure_seconds(), Some(options))
                .await
            else {
                break;
            };
            match answer(&e) {
                // The first lease on this vault: create its lock blob, once, and lease again.
                Some((StatusCode::NotFound, code)) if code != "ContainerNotFound" && !created => {
                    self.create_lock_blob(vault, &blob).await?;
                    created = true;
                }
                Some((StatusCode::Conflict, code))
                    if code == "LeaseAlreadyPresent"
                        || code == "LeaseIsBreakingAndCannotBeAcquired" =>
                {
                    return Err(LeaseError::Held {
                        vault: vault.clone(),
                        store: self.name.clone(),
                        by: self.recorded_holder(&blob).await,
                    });
                }
                _ => return Err(self.lease_err(op, vault, e)),
            }
        }

        let options = BlobClientSetMetadataOptions {
            lease_id: Some(holder.lease_id().to_string()),
            ..Default::default()
        };
        let recorded = blob
            .set_metadata(&holder.info_at(now).to_metadata(), Some(options))
            .await;
        if let Err(e) = recorded {
            let err = match answer(&e) {
                Some((status, code)) if code.starts_with("BlobImmutableDueTo") => StoreError::new(
                    StoreErrorKind::Immutable,
                    op,
                    key.as_str(),
                    self.name.clone(),
                    format!("the service answered {status} {code}: the container is under an immutability policy or legal hold, which forbids recording the lease holder on the lock blob; keep the locks in a container without one with [store] lock_container_url (see the README, \"Locks\")"),
                )
                .into(),
                Some((status, code)) => match lost_because(status, &code) {
                    Some(why) => self.lost(vault, status, &code, why),
                    None => self.lease_err(op, vault, e),
                },
                None => self.lease_err(op, vault, e),
            };
            // The caller will not know it holds the lease: end it rather than leave the vault
            // locked until it expires (or for ever, for an infinite lease). Best effort; a
            // retry of the acquire takes it again anyway.
            let _ = blob
                .release_lease(holder.lease_id().to_string(), None)
                .await;
            return Err(err);
        }
        Ok(Lease::new(vault.clone(), holder.clone(), duration, now).after_abandoned(abandoned))
    }

    pub(super) async fn renew_lease_azure(&self, lease: &Lease) -> Result<(), LeaseError> {
        let vault = lease.vault();
        match self
            .blob(&lease.key())
            .renew_lease(lease.holder().lease_id().to_string(), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match answer(&e).and_then(|(s, c)| lost_because(s, &c).map(|w| (s, c, w))) {
                Some((status, code, why)) => Err(self.lost(vault, status, &code, why)),
                None => Err(self.lease_err(StoreOp::RenewLease, vault, e)),
            },
        }
    }

    pub(super) async fn release_lease_azure(&self, lease: &Lease) -> Result<(), LeaseError> {
        match self
            .blob(&lease.key())
            .release_lease(lease.holder().lease_id().to_string(), None)
            .await
        {
            Ok(_) => Ok(()),
            // Not ours any more (broken and taken, released, blob gone): nothing to release.
            Err(e) if answer(&e).is_some_and(|(s, c)| lost_because(s, &c).is_some()) => Ok(()),
            Err(e) => Err(self.lease_err(StoreOp::ReleaseLease, lease.vault(), e)),
        }
    }

    pub(super) async fn break_lease_azure(&self, vault: &VaultName) -> Result<(), LeaseError> {
        let options = BlobClientBreakLeaseOptions {
            break_period: Some(0),
            ..Default::default()
        };
        match self.blob(&lock_key(vault)).break_lease(Some(options)).await {
            Ok(_) => Ok(()),
            // No lease, or no lock blob yet: nothing to break.
            Err(e)
                if matches!(
                    answer(&e),
                    Some((StatusCode::Conflict, c)) if c == "LeaseNotPresentWithLeaseOperation" || c == "LeaseAlreadyBroken"
                ) || matches!(answer(&e), Some((StatusCode::NotFound, c)) if c != "ContainerNotFound") =>
            {
                Ok(())
            }
            Err(e) => Err(self.lease_err(StoreOp::BreakLease, vault, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_answers_that_mean_the_lease_is_gone() {
        let lost = [
            (StatusCode::Conflict, "LeaseIdMismatchWithLeaseOperation"),
            (StatusCode::Conflict, "LeaseIsBrokenAndCannotBeRenewed"),
            (StatusCode::Conflict, "LeaseNotPresentWithLeaseOperation"),
            (StatusCode::PreconditionFailed, "LeaseLost"),
            (StatusCode::NotFound, "BlobNotFound"),
        ];
        for (status, code) in lost {
            assert!(lost_because(status, code).is_some(), "{status} {code}");
        }
        let not_about_the_lease = [
            (StatusCode::NotFound, "ContainerNotFound"),
            (StatusCode::Conflict, "LeaseAlreadyPresent"),
            (StatusCode::TooManyRequests, ""),
            (StatusCode::Forbidden, "AuthorizationPermissionMismatch"),
            (StatusCode::InternalServerError, "InternalError"),
        ];
        for (status, code) in not_about_the_lease {
            assert!(lost_because(status, code).is_none(), "{status} {code}");
        }
    }
}
