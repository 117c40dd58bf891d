//! Smoke test of the Azurite harness through the official `azure_storage_blob` crate: the blob
//! operations the backup sink relies on (container create, write-once upload, download, list,
//! leases) work with both ways kvkeep can authenticate — an Entra ID bearer token and a SAS URL —
//! and the harness really stops the emulator.

mod support;

use std::sync::Arc;

use azure_core::http::StatusCode;
use azure_core::Bytes;
use azure_storage_blob::models::{
    BlobClientAcquireLeaseResultHeaders, BlobClientRenewLeaseResultHeaders, BlobClientUploadOptions,
};
use azure_storage_blob::{BlobClient, BlobServiceClient};
use futures::TryStreamExt;
use support::azurite::{Azurite, FakeJwtCredential};

const CONTAINER: &str = "kvkeep-backups";
const BLOB: &str = "vaults/kv1/secrets/db-password/0123456789abcdef.age";

/// The status and service error code of a refused request, failing the test on anything else.
fn refusal<T>(result: azure_core::Result<T>, what: &str) -> (StatusCode, String) {
    match result {
        Ok(_) => panic!("{what}: expected the service to refuse, but it succeeded"),
        Err(error) => match error.kind() {
            azure_core::error::ErrorKind::HttpResponse {
                status, error_code, ..
            } => (*status, error_code.clone().unwrap_or_default()),
            _ => panic!("{what}: expected an HTTP error status, got {error:?}"),
        },
    }
}

async fn download(blob: &BlobClient) -> Bytes {
    blob.download(None)
        .await
        .expect("download the blob")
        .body
        .collect()
        .await
        .expect("read the downloaded body")
}

/// Everything a backup run does with a blob container, asserted as a user would see it.
async fn exercise_backup_sink(service: &BlobServiceClient) {
    let container = service.blob_container_client(CONTAINER);
    container
        .create(None)
        .await
        .expect("create the backup container");
    let blob = container.blob_client(BLOB);

    // Write-once: the first upload with If-None-Match: * creates the blob.
    let first = b"age-encryption.org/v1 first backup".to_vec();
    let created = blob
        .upload(
            Bytes::from(first.clone()).into(),
            Some(BlobClientUploadOptions::default().if_not_exists()),
        )
        .await
        .expect("first write-once upload");
    assert_eq!(created.raw_response.status(), StatusCode::Created);
    assert!(created.etag.is_some(), "a created blob has an ETag");

    // A second write-once upload of the same name is refused and leaves the blob unchanged.
    let second = blob
        .upload(
            Bytes::from_static(b"a different backup").into(),
            Some(BlobClientUploadOptions::default().if_not_exists()),
        )
        .await;
    let (status, code) = refusal(second, "second write-once upload of the same name");
    assert_eq!(status, StatusCode::Conflict, "error code {code}");
    assert_eq!(code, "BlobAlreadyExists");
    assert_eq!(download(&blob).await.as_ref(), first.as_slice());

    // Listing sees exactly the one blob.
    let listed: Vec<_> = container
        .list_blobs(None)
        .expect("start listing blobs")
        .try_collect()
        .await
        .expect("list blobs");
    let names: Vec<_> = listed.iter().map(|item| item.name.as_deref()).collect();
    assert_eq!(names, [Some(BLOB)]);
    let listed_len = listed[0].properties.as_ref().and_then(|p| p.content_length);
    assert_eq!(listed_len, Some(first.len() as u64));

    // Leases: acquire, renew (same id), writes without the lease id are refused while leased,
    // writes with it pass, release frees the blob again.
    let acquired = blob
        .acquire_lease(15, None)
        .await
        .expect("acquire a 15 s lease");
    let lease_id = acquired
        .lease_id()
        .expect("read the lease id header")
        .expect("the service returns a lease id");
    let renewed = blob
        .renew_lease(lease_id.clone(), None)
        .await
        .expect("renew the lease");
    assert_eq!(
        renewed.lease_id().expect("read the renewed lease id"),
        Some(lease_id.clone())
    );

    let leased = b"overwrite under lease".to_vec();
    let without_lease = blob.upload(Bytes::from(leased.clone()).into(), None).await;
    let (status, code) = refusal(
        without_lease,
        "overwrite of a leased blob without the lease id",
    );
    assert_eq!(status, StatusCode::PreconditionFailed, "error code {code}");
    assert_eq!(code, "LeaseIdMissing");
    assert_eq!(download(&blob).await.as_ref(), first.as_slice());

    blob.upload(
        Bytes::from(leased.clone()).into(),
        Some(BlobClientUploadOptions {
            lease_id: Some(lease_id.clone()),
            ..Default::default()
        }),
    )
    .await
    .expect("overwrite with the lease id");
    assert_eq!(download(&blob).await.as_ref(), leased.as_slice());

    blob.release_lease(lease_id, None)
        .await
        .expect("release the lease");
    blob.upload(Bytes::from_static(b"after release").into(), None)
        .await
        .expect("overwrite after the lease was released");
}

#[tokio::test]
async fn bearer_token_client_runs_the_backup_sink_operations() {
    let azurite = Azurite::start().await.expect("start azurite");
    let service = azurite
        .service_client_with_token()
        .expect("build a bearer-token blob service client");
    exercise_backup_sink(&service).await;

    // The token really is checked: one for another audience is refused.
    #[derive(Debug)]
    struct WrongAudience(FakeJwtCredential);
    #[async_trait::async_trait]
    impl azure_core::credentials::TokenCredential for WrongAudience {
        async fn get_token(
            &self,
            _scopes: &[&str],
            options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            self.0
                .get_token(&["https://vault.azure.net/.default"], options)
                .await
        }
    }
    let wrong = BlobServiceClient::new(
        azurite.service_url(),
        Some(Arc::new(WrongAudience(FakeJwtCredential::default()))),
        Some(azurite.blob_service_options()),
    )
    .expect("build a client with a wrong-audience credential");
    let (status, code) = refusal(
        wrong.blob_container_client("other").create(None).await,
        "container create with a token for another audience",
    );
    assert_eq!(status, StatusCode::Forbidden, "error code {code}");
}

#[tokio::test]
async fn sas_url_client_runs_the_backup_sink_operations() {
    let azurite = Azurite::start().await.expect("start azurite");
    let service = azurite
        .service_client_with_sas()
        .expect("build a SAS blob service client");
    assert!(
        service.url().query().is_some_and(|q| q.contains("sig=")),
        "the service URL carries the SAS"
    );
    exercise_backup_sink(&service).await;

    // Without the SAS (and without a credential) the same request is refused.
    let anonymous = BlobServiceClient::new(
        azurite.service_url(),
        None,
        Some(azurite.blob_service_options()),
    )
    .expect("build an anonymous client");
    let (status, code) = refusal(
        anonymous.blob_container_client("other").create(None).await,
        "anonymous container create",
    );
    assert_eq!(status, StatusCode::Forbidden, "error code {code}");
}

#[tokio::test]
async fn dropping_the_harness_stops_azurite() {
    let azurite = Azurite::start().await.expect("start azurite");
    let port = azurite.port();
    let address = (std::net::Ipv4Addr::LOCALHOST, port);
    std::net::TcpStream::connect(address).expect("azurite accepts connections while running");

    drop(azurite);

    let error = std::net::TcpStream::connect(address)
        .expect_err("nothing listens on azurite's port after the harness is dropped");
    assert_eq!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "port {port}"
    );
}
