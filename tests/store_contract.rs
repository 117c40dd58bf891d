//! Runs the blob-store contract (`support::store_contract`) against every backend — the
//! in-memory fake, a local directory, and Azure Blob Storage on Azurite over HTTPS with both
//! ways kvkeep authenticates (bearer token from the product's `token-file` credential, and a
//! SAS URL read from a file) — plus the backend-specific behaviour each adapter promises.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use azure_core::time::{Duration as AzDuration, OffsetDateTime};
use bytes::Bytes;
use kvkeep::config::{AzureConfig, CaScope, CredentialConfig, StoreAuth, StoreConfig};
use kvkeep::model::BlobKey;
use kvkeep::store::{
    open_store, AzureAuth, AzureBlobStore, BlobStore, InMemoryStore, LocalStore, RetryOptions,
    RetryStore, StoreErrorKind,
};
use support::azurite::{account_sas, Azurite, FakeJwtCredential};
use support::config_files::write_private;
use support::e2e::azurite_with_container;
use support::store_contract::run_contract;
use tempfile::TempDir;

const CONTAINER: &str = "kvkeep-contract";

/// Small list pages, so the 25-key listing check spans four pages.
const PAGE_SIZE: u16 = 7;

fn key(s: &str) -> BlobKey {
    s.parse().expect("valid key")
}

#[tokio::test]
async fn in_memory_store_meets_the_contract() {
    run_contract(&InMemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_store_meets_the_contract() {
    let dir = TempDir::new().expect("tempdir");
    let store = LocalStore::open(dir.path(), "kvkeep/").expect("open local store");
    run_contract(&store).await;
    assert_no_temp_files(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_store_without_prefix_meets_the_contract() {
    let dir = TempDir::new().expect("tempdir");
    run_contract(&LocalStore::open(dir.path(), "").expect("open")).await;
    assert_no_temp_files(dir.path());
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn assert_no_temp_files(dir: &Path) {
    let mut files = Vec::new();
    all_files(dir, &mut files);
    assert!(!files.is_empty());
    let temps: Vec<_> = files
        .iter()
        .filter(|p| p.to_string_lossy().contains('~'))
        .collect();
    assert!(temps.is_empty(), "temp files left behind: {temps:?}");
}

#[tokio::test]
async fn local_store_ignores_temp_files_left_by_a_crash() {
    let dir = TempDir::new().expect("tempdir");
    let store = LocalStore::open(dir.path(), "p").expect("open");
    store
        .put_new(&key("objects/a.age"), Bytes::from_static(b"a"))
        .await
        .expect("put");
    // What a crash between writing the temp file and linking it leaves behind.
    let leftover = dir.path().join("p/objects/b.age~0123456789abcdef.tmp");
    std::fs::write(&leftover, b"half-written").expect("write leftover");
    let listed = store.list("").await.expect("list");
    let keys: Vec<_> = listed.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["objects/a.age"]);
    // The interrupted blob can still be written, and the leftover stays harmless.
    store
        .put_new(&key("objects/b.age"), Bytes::from_static(b"b"))
        .await
        .expect("put over a leftover temp name");
    assert_eq!(
        store
            .get(&key("objects/b.age"))
            .await
            .expect("get")
            .as_ref(),
        b"b"
    );
    assert_eq!(store.list("objects/").await.expect("list").len(), 2);
}

/// Files a store did not write under keys (other tools' files, names that are not keys) are
/// not listed and do not break listing.
#[tokio::test]
async fn local_store_lists_only_key_shaped_files() {
    let dir = TempDir::new().expect("tempdir");
    let store = LocalStore::open(dir.path(), "").expect("open");
    store
        .put_new(&key("x/a.age"), Bytes::from_static(b"a"))
        .await
        .expect("put");
    std::fs::write(dir.path().join("x/has space.txt"), b"?").expect("write");
    std::fs::write(dir.path().join("x/ünï.txt"), b"?").expect("write");
    let keys: Vec<_> = store
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(keys, ["x/a.age"]);
}

const AS_NOBODY: &str = "KVKEEP_TEST_AS_UNPRIVILEGED";

/// Root ignores directory permissions, so when the suite runs as root (CI does) this test runs
/// itself again as `nobody` to see what an unprivileged daemon sees.
#[tokio::test]
async fn local_store_reports_permission_denied_as_forbidden() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    if euid == 0 && std::env::var_os(AS_NOBODY).is_none() {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().expect("current test binary");
        let output = std::process::Command::new(exe)
            .args([
                "local_store_reports_permission_denied_as_forbidden",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(AS_NOBODY, "1")
            .env("TMPDIR", "/tmp")
            .uid(65534)
            .gid(65534)
            .output()
            .expect("re-run this test as nobody (uid 65534)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "as nobody: {text}");
        assert!(text.contains("1 passed"), "the test ran as nobody: {text}");
        return;
    }

    let dir = TempDir::new().expect("tempdir");
    let store = LocalStore::open(dir.path(), "").expect("open");
    store
        .put_new(&key("ro/a.age"), Bytes::from_static(b"a"))
        .await
        .expect("put");
    let ro = dir.path().join("ro");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let err = store
        .put_new(&key("ro/b.age"), Bytes::from_static(b"b"))
        .await
        .expect_err("write into a read-only directory");
    assert_eq!(err.kind(), StoreErrorKind::Forbidden, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("ro/b.age") && text.contains("may read and write"),
        "{text}"
    );
    // Reading still works; nothing half-written is visible.
    assert_eq!(store.list("ro/").await.expect("list").len(), 1);

    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let err = store
        .list("ro/")
        .await
        .expect_err("list of an unreadable directory");
    assert_eq!(err.kind(), StoreErrorKind::Forbidden, "{err}");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
}

// ---------------------------------------------------------------------------------------------
// Azure Blob Storage on Azurite

/// A running Azurite with an empty container and the files kvkeep's configuration points at.
struct AzureFixture {
    azurite: Azurite,
    files: TempDir,
}

impl AzureFixture {
    async fn start() -> Self {
        AzureFixture {
            azurite: azurite_with_container(CONTAINER).await,
            files: TempDir::new().expect("tempdir"),
        }
    }

    fn container_url(&self) -> String {
        format!("{}/{CONTAINER}", self.azurite.service_url())
    }

    /// `[azure]` as an operator would write it for the emulator: a token file and its CA.
    fn azure_config(&self, token_audience: &str) -> AzureConfig {
        let now =
            OffsetDateTime::from_unix_timestamp(kvkeep::clock::now_unix()).expect("valid time");
        let token =
            FakeJwtCredential::default().token(token_audience, now, now + AzDuration::hours(1));
        let path = self
            .files
            .path()
            .join(format!("token-{}", token_audience.len()));
        // 0600: kvkeep refuses a token file others can read.
        write_private(&path, &format!("{token}\n"));
        AzureConfig {
            credential: CredentialConfig::TokenFile { path },
            ca_file: Some(self.azurite.ca_cert_path().to_path_buf()),
            ca_scope: CaScope::Services,
            resolve: BTreeMap::new(),
            verify_challenge_resource: true,
        }
    }

    /// A SAS URL file for the container, with the given account-SAS permissions.
    fn sas_file(&self, permissions: &str) -> PathBuf {
        let sas = account_sas(
            permissions,
            OffsetDateTime::from_unix_timestamp(kvkeep::clock::now_unix()).expect("valid time")
                + AzDuration::hours(1),
        )
        .expect("sign a sas");
        let path = self.files.path().join(format!("sas-{permissions}"));
        write_private(&path, &format!("{}?{sas}\n", self.container_url()));
        path
    }

    /// Client options exactly as production builds them, retries off (RetryStore's job).
    fn options(&self, azure: &AzureConfig) -> azure_core::http::ClientOptions {
        let mut options = kvkeep::azure::client_options(azure).expect("client options");
        options.retry = azure_core::http::RetryOptions::none();
        options
    }

    /// A store at `url` authenticating with `azure`'s credential, built as production does.
    fn credential_store(&self, azure: &AzureConfig, url: &str, prefix: &str) -> AzureBlobStore {
        let options = self.options(azure);
        let credential =
            kvkeep::azure::credential(&azure.credential, &options).expect("token-file credential");
        AzureBlobStore::new(
            url,
            AzureAuth::Credential(credential),
            options,
            prefix,
            None,
        )
        .expect("bearer store")
    }

    fn bearer_store(&self, prefix: &str) -> AzureBlobStore {
        let azure = self.azure_config("https://storage.azure.com");
        self.credential_store(&azure, &self.container_url(), prefix)
    }

    fn sas_store(&self, permissions: &str, prefix: &str) -> AzureBlobStore {
        let azure = self.azure_config("https://storage.azure.com");
        let auth = AzureAuth::sas_from_file(&self.sas_file(permissions)).expect("sas file");
        AzureBlobStore::new(
            &self.container_url(),
            auth,
            self.options(&azure),
            prefix,
            None,
        )
        .expect("sas store")
    }
}

#[tokio::test]
async fn azure_store_with_a_token_file_credential_meets_the_contract() {
    let fx = AzureFixture::start().await;
    let store = fx.bearer_store("kvkeep/").with_list_page_size(PAGE_SIZE);
    run_contract(&store).await;

    // The prefix is really part of the blob names in the container.
    let raw: Vec<String> = {
        use futures::TryStreamExt;
        fx.azurite
            .service_client_with_token()
            .expect("client")
            .blob_container_client(CONTAINER)
            .list_blobs(None)
            .expect("list")
            .try_collect::<Vec<_>>()
            .await
            .expect("list")
            .into_iter()
            .filter_map(|b| b.name)
            .collect()
    };
    assert!(
        !raw.is_empty() && raw.iter().all(|n| n.starts_with("kvkeep/")),
        "{raw:?}"
    );

    // The listing check's keys really span several pages at this page size, so the complete
    // listing above proves the store follows continuation markers.
    use futures::TryStreamExt;
    let pages = fx
        .azurite
        .service_client_with_token()
        .expect("client")
        .blob_container_client(CONTAINER)
        .list_blobs(Some(
            azure_storage_blob::models::BlobContainerClientListBlobsOptions {
                prefix: Some("kvkeep/listing/".to_string()),
                maxresults: Some(i32::from(PAGE_SIZE)),
                ..Default::default()
            },
        ))
        .expect("list")
        .into_pages()
        .try_collect::<Vec<_>>()
        .await
        .expect("pages");
    assert!(pages.len() >= 4, "{} pages", pages.len());
}

#[tokio::test]
async fn azure_store_with_a_sas_url_file_meets_the_contract() {
    let fx = AzureFixture::start().await;
    // Wrapped in the retry decorator, as open_store does in production.
    let store = RetryStore::new(
        Arc::new(fx.sas_store("racwdl", "").with_list_page_size(PAGE_SIZE)),
        RetryOptions::default(),
    );
    run_contract(&store).await;
}

#[tokio::test]
async fn open_store_builds_the_configured_azure_and_local_stores() {
    let fx = AzureFixture::start().await;
    let azure = fx.azure_config("https://storage.azure.com");
    let configs = [
        StoreConfig::Azure {
            container_url: fx.container_url(),
            auth: StoreAuth::Credential,
            prefix: "bearer/".to_string(),
            access_tier: Some(kvkeep::config::AccessTier::Cool),
            locks: None,
        },
        StoreConfig::Azure {
            container_url: fx.container_url(),
            auth: StoreAuth::Sas {
                url_file: fx.sas_file("racwdl"),
            },
            prefix: "sas/".to_string(),
            access_tier: None,
            locks: None,
        },
        StoreConfig::Local {
            path: fx.files.path().join("local"),
            prefix: "p/".to_string(),
        },
    ];
    for config in &configs {
        let store = open_store(config, &azure).await.expect("open_store");
        let k = key("manifests/kv1/20261128T190000Z-0123456789abcdef.age");
        store
            .put_new(&k, Bytes::from_static(b"manifest"))
            .await
            .expect("put");
        assert_eq!(store.get(&k).await.expect("get").as_ref(), b"manifest");
        let err = store
            .put_new(&k, Bytes::from_static(b"manifest"))
            .await
            .expect_err("write once");
        assert_eq!(err.kind(), StoreErrorKind::AlreadyExists);
        assert_eq!(
            store.list("manifests/").await.expect("list").len(),
            1,
            "{config:?}"
        );
    }
}

/// `[store] lock_container_url`: the backup container may be WORM, so the vaults' lock blobs
/// and their leases go to a second container, with the credential or with that container's own
/// SAS; the backups and what the store lists stay in the first.
#[tokio::test]
async fn open_store_keeps_lock_blobs_in_the_lock_container() {
    const LOCKS: &str = "kvkeep-locks";
    let fx = AzureFixture::start().await;
    fx.azurite
        .service_client_with_sas()
        .expect("harness client")
        .blob_container_client(LOCKS)
        .create(None)
        .await
        .expect("create the lock container");
    let lock_url = format!("{}/{LOCKS}", fx.azurite.service_url());
    let lock_sas = {
        let sas = account_sas(
            "racwdl",
            OffsetDateTime::from_unix_timestamp(kvkeep::clock::now_unix()).expect("valid time")
                + AzDuration::hours(1),
        )
        .expect("sign a sas");
        let path = fx.files.path().join("locks-sas");
        write_private(&path, &format!("{lock_url}?{sas}\n"));
        path
    };
    let azure = fx.azure_config("https://storage.azure.com");
    let configs = [
        (
            "bearer",
            StoreConfig::Azure {
                container_url: fx.container_url(),
                auth: StoreAuth::Credential,
                prefix: "bearer/".to_string(),
                access_tier: None,
                locks: Some(kvkeep::config::LockContainer {
                    container_url: lock_url.clone(),
                    auth: StoreAuth::Credential,
                }),
            },
        ),
        (
            "sas",
            StoreConfig::Azure {
                container_url: fx.container_url(),
                auth: StoreAuth::Sas {
                    url_file: fx.sas_file("racwdl"),
                },
                prefix: "sas/".to_string(),
                access_tier: None,
                locks: Some(kvkeep::config::LockContainer {
                    container_url: lock_url.clone(),
                    auth: StoreAuth::Sas { url_file: lock_sas },
                }),
            },
        ),
    ];
    let names = |container: &'static str| {
        let client = fx
            .azurite
            .service_client_with_sas()
            .expect("harness client")
            .blob_container_client(container);
        async move {
            use futures::TryStreamExt;
            client
                .list_blobs(None)
                .expect("list")
                .try_collect::<Vec<_>>()
                .await
                .expect("list")
                .into_iter()
                .filter_map(|b| b.name)
                .collect::<Vec<String>>()
        }
    };
    let vault: kvkeep::model::VaultName = "kv1".parse().expect("vault");
    for (prefix, config) in &configs {
        let store = open_store(config, &azure).await.expect("open_store");
        let k = key("manifests/kv1/20261128T190000Z-0123456789abcdef.age");
        store
            .put_new(&k, Bytes::from_static(b"manifest"))
            .await
            .expect("put");
        let holder = kvkeep::store::LeaseHolder::new("host-a").expect("holder");
        let lease = store
            .acquire_lease(&vault, &holder, kvkeep::store::LeaseDuration::DEFAULT)
            .await
            .expect("lease in the lock container");
        let other = kvkeep::store::LeaseHolder::new("host-b").expect("holder");
        let refused = store
            .acquire_lease(&vault, &other, kvkeep::store::LeaseDuration::DEFAULT)
            .await
            .expect_err("held");
        assert!(refused.to_string().contains("host-a"), "{refused}");
        store.release_lease(lease).await.expect("release");
        // The lock container holds the lock blob under the same prefix; the backup container
        // has none.
        let lock_blob = format!("{prefix}/locks/kv1");
        let (locks, backups) = (names(LOCKS).await, names(CONTAINER).await);
        assert!(locks.contains(&lock_blob), "{locks:?}");
        assert!(!backups.iter().any(|n| n.contains("locks/")), "{backups:?}");
        assert_eq!(
            store.list("").await.expect("list").len(),
            1,
            "the store lists the backups only"
        );
    }
}

#[tokio::test]
async fn azure_refusals_are_forbidden_with_a_hint_and_no_secret() {
    let fx = AzureFixture::start().await;
    let k = key("objects/kv1/x.age");

    // A token for another audience (here: Key Vault's) is refused by the storage service.
    let azure = fx.azure_config("https://vault.azure.net");
    let token = std::fs::read_to_string(match &azure.credential {
        CredentialConfig::TokenFile { path } => path.clone(),
        _ => unreachable!("azure_config uses a token file"),
    })
    .expect("read token");
    let store = fx.credential_store(&azure, &fx.container_url(), "");
    let err = store
        .put_new(&k, Bytes::from_static(b"x"))
        .await
        .expect_err("wrong audience");
    assert_eq!(err.kind(), StoreErrorKind::Forbidden, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("objects/kv1/x.age") && text.contains("storage blob data contributor"),
        "{text}"
    );
    assert!(
        !text.contains(token.trim()),
        "the token never appears: {text}"
    );

    // A read-only SAS cannot write; the message names the permissions and hides the signature.
    let store = fx.sas_store("rl", "");
    let err = store
        .put_new(&k, Bytes::from_static(b"x"))
        .await
        .expect_err("read-only sas");
    assert_eq!(err.kind(), StoreErrorKind::Forbidden, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("sas url grants") && text.contains("expires at"),
        "{text}"
    );
    assert!(!text.contains("sig="), "no signature: {text}");
    assert!(store
        .list("")
        .await
        .expect("a read-only sas may list")
        .is_empty());
}

#[tokio::test]
async fn azure_misconfigurations_fail_with_what_to_fix() {
    let fx = AzureFixture::start().await;
    let k = key("a.age");

    // A container that does not exist is not created behind the operator's back.
    let azure = fx.azure_config("https://storage.azure.com");
    let url = format!("{}/no-such-container", fx.azurite.service_url());
    let store = fx.credential_store(&azure, &url, "");
    let err = store
        .put_new(&k, Bytes::from_static(b"x"))
        .await
        .expect_err("no container");
    assert_eq!(err.kind(), StoreErrorKind::Permanent, "{err}");
    assert!(
        err.to_string().contains("container does not exist"),
        "{err}"
    );

    // Without the emulator's CA the TLS handshake fails, and the error says which setting fixes it.
    let untrusting = AzureConfig {
        ca_file: None,
        ..azure
    };
    let store = fx.credential_store(&untrusting, &fx.container_url(), "");
    let err = store.get(&k).await.expect_err("untrusted certificate");
    assert_eq!(err.kind(), StoreErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("ca_file"), "{err}");
}

/// `[azure] resolve` sends a host name the system cannot resolve to the configured address,
/// and TLS still verifies the certificate against that name.
#[tokio::test]
async fn resolve_overrides_reach_a_host_the_system_cannot_resolve() {
    let fx = AzureFixture::start().await;
    let mut azure = fx.azure_config("https://storage.azure.com");
    // Host-style, as on Azure (account in the host name); the test certificate covers
    // *.vault.localhost, and Azurite takes the account from the first label.
    let host = format!("{}.vault.localhost", support::azurite::ACCOUNT);
    azure
        .resolve
        .insert(host.clone(), std::net::Ipv4Addr::LOCALHOST.into());
    let url = format!("https://{host}:{}/{CONTAINER}", fx.azurite.port());
    let store = fx.credential_store(&azure, &url, "");
    let k = key("resolved.age");
    store
        .put_new(&k, Bytes::from_static(b"via resolve"))
        .await
        .expect("put through the resolve override");
    assert_eq!(store.get(&k).await.expect("get").as_ref(), b"via resolve");
}

/// Two stores over one container stand for two kvkeep processes: a restarted instance (same
/// name, so same lease id) takes its lease back at once from another process, another instance
/// is refused and told who holds the vault, and the lock blob sits under the store prefix with
/// the holder in its metadata.
#[tokio::test]
async fn azure_leases_span_processes_and_respect_the_prefix() {
    use kvkeep::store::{LeaseDuration, LeaseError, LeaseHolder};
    let fx = AzureFixture::start().await;
    let first = fx.bearer_store("kvkeep/");
    let second = fx.sas_store("racwdl", "kvkeep/");
    let kv1: kvkeep::model::VaultName = "kv1".parse().expect("vault");
    let web1 = LeaseHolder::new("web-1").expect("holder");
    let web2 = LeaseHolder::new("web-2").expect("holder");

    let old = first
        .acquire_lease(&kv1, &web1, LeaseDuration::DEFAULT)
        .await
        .expect("first process");
    let err = second
        .acquire_lease(&kv1, &web2, LeaseDuration::DEFAULT)
        .await
        .expect_err("held by web-1");
    let LeaseError::Held { by: Some(by), .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(by.instance, "web-1");
    assert!(err.to_string().contains("azure container"), "{err}");

    // web-1 restarted: its new process proposes the same id and gets the lease at once.
    let new = second
        .acquire_lease(&kv1, &web1, LeaseDuration::DEFAULT)
        .await
        .expect("a restart re-acquires at once");
    first.renew_lease(&old).await.expect("the same lease id");
    second.renew_lease(&new).await.expect("renew");

    // Another prefix is another store: its lock is its own.
    let other = fx.bearer_store("other/");
    other
        .acquire_lease(&kv1, &web2, LeaseDuration::DEFAULT)
        .await
        .expect("another prefix's vault kv1");

    let blob = fx
        .azurite
        .service_client_with_token()
        .expect("client")
        .blob_container_client(CONTAINER)
        .blob_client("kvkeep/locks/kv1");
    let props = blob.get_properties(None).await.expect("lock blob");
    use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders;
    let meta = props.metadata().expect("metadata");
    assert_eq!(
        meta.get("kvkeep_instance").map(String::as_str),
        Some("web-1"),
        "{meta:?}"
    );
    assert_eq!(props.content_length().expect("length"), Some(0));
    second.release_lease(new).await.expect("release");
}

/// The production takeover: a holder that dies is never broken, its Azure lease simply runs
/// out. The next holder finds it `expired` and is told what the dead one was doing; a restart
/// of the same instance while its lease still runs is told too (its own record).
#[tokio::test]
async fn an_expired_azure_lease_tells_the_next_holder_what_was_left_unfinished() {
    use kvkeep::store::{LeaseDuration, LeaseHolder, LeaseWork};
    let fx = AzureFixture::start().await;
    let store = fx.sas_store("racwdl", "expiry/");
    let kv1: kvkeep::model::VaultName = "kv1".parse().expect("vault");
    let run: kvkeep::model::RunId = "00000000000000aa".parse().expect("run id");
    let shortest = LeaseDuration::seconds(LeaseDuration::MIN_SECONDS).expect("15 s");
    let dying = LeaseHolder::new("web-1")
        .expect("holder")
        .for_work(LeaseWork::Backup { run: run.clone() });
    let first = store
        .acquire_lease(&kv1, &dying, shortest)
        .await
        .expect("acquire");
    assert_eq!(first.abandoned(), None);

    // web-1 restarts at once: the lease still runs, under its own lease id.
    let again = store
        .acquire_lease(&kv1, &dying, shortest)
        .await
        .expect("a restart re-acquires");
    let own = again.abandoned().expect("its own unfinished run");
    assert_eq!(
        (own.instance.as_str(), own.work.clone()),
        ("web-1", Some(LeaseWork::Backup { run: run.clone() }))
    );

    // Then it dies: nobody renews or releases, and the lease runs out by itself.
    tokio::time::sleep(std::time::Duration::from_secs(
        LeaseDuration::MIN_SECONDS + 2,
    ))
    .await;
    let next = store
        .acquire_lease(
            &kv1,
            &LeaseHolder::new("web-2").expect("holder"),
            LeaseDuration::DEFAULT,
        )
        .await
        .expect("an expired lease is free");
    let left = next.abandoned().expect("web-1 never released");
    assert_eq!(left.instance, "web-1");
    assert_eq!(left.work, Some(LeaseWork::Backup { run }));
    store.release_lease(next).await.expect("release");
}
