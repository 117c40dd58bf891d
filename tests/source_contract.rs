//! The `VaultSource` contract suite: one set of scenarios run against every implementation —
//! the in-memory fake and the Azure SDK adapter talking HTTPS to the in-process emulator (host
//! routing, auth challenge verified at its default, the production transport and token-file
//! credential built from `[azure]`).
//!
//! A `Bed` gives a scenario its source plus what the scenario cannot do through the seam:
//! seeding (the emulator's control plane and SDK; the fake's own methods) and fault injection
//! (control-plane fault rules; the fake's failure rules). Fault scenarios go through
//! `RateLimitedSource` with a millisecond backoff, as production calls do.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kvkeep::config::{AzureConfig, CaScope, CredentialConfig, Limits, PayloadMode, VaultConfig};
use kvkeep::model::{ObjectKind, ObjectName, Validity, VaultName};
use kvkeep::source::{
    AzureSourceOptions, AzureVaultSource, BackoffOptions, FailureRule, InMemoryVaultSource,
    RateLimitOptions, RateLimiter, SdkRetryOptions, SeedObject, SourceErrorKind, SourceOp,
    VaultSource,
};
use kvkeep_emulator::api::{Collection, SeedSpec};
use kvkeep_emulator::server::{Emulator, EmulatorConfig, FaultKind, FaultSpec};
use kvkeep_emulator::vault::VaultSettings;

const VAULT: &str = "kv1";
const ALL_KINDS: [ObjectKind; 3] = [
    ObjectKind::Secrets,
    ObjectKind::Keys,
    ObjectKind::Certificates,
];

fn name(s: &str) -> ObjectName {
    s.parse().expect("object name")
}

/// Faults a scenario can inject; each bed realises them its own way.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// 429 on the next `count` calls of `op`; `retry_after_ms` through `x-ms-retry-after-ms`,
    /// `retry_after_s` through `Retry-After`.
    Throttle {
        op: SourceOp,
        kind: ObjectKind,
        count: u64,
        retry_after_ms: Option<u64>,
        retry_after_s: Option<u64>,
    },
    /// 503 on the next `count` calls.
    Unavailable {
        op: SourceOp,
        kind: ObjectKind,
        count: u64,
    },
    /// The connection drops without an answer on the next `count` calls.
    Reset {
        op: SourceOp,
        kind: ObjectKind,
        count: u64,
    },
    /// Every call of `op` fails with a server error, for good.
    Broken { op: SourceOp, kind: ObjectKind },
}

#[async_trait]
trait Bed: Send + Sync {
    /// The implementation under test.
    fn source(&self) -> Arc<dyn VaultSource>;
    /// The same, behind a rate limiter with millisecond backoff and `attempts` attempts.
    fn limited(&self, attempts: u32) -> Arc<dyn VaultSource>;
    /// `count` objects `{prefix}{i:05}` (the emulator's seed naming) with `versions` versions each (certificates come with
    /// their managed key and secret) and the tag `seeded=yes`.
    async fn seed(&self, kind: ObjectKind, prefix: &str, count: usize, versions: usize);
    /// A secret with exactly this value.
    async fn put_secret(&self, name: &str, value: &str);
    /// Sets `nbf`/`exp` of a secret's current version, as an application updates them (no new
    /// version).
    async fn set_secret_validity(&self, name: &str, validity: Validity);
    async fn inject(&self, fault: Fault);
    /// Faults that have fired so far.
    async fn fired(&self) -> u64;
    async fn clear_faults(&self);
    /// Text the transport's own TRACE logs contain while the canary is backed up, if any.
    fn wire_marker(&self) -> Option<&'static str> {
        None
    }
}

fn fast_limiter(attempts: u32) -> Arc<RateLimiter> {
    let limits = Limits {
        vault_share: 1.0,
        subscription_share: 1.0,
        concurrency: 4,
    };
    RateLimiter::new(RateLimitOptions {
        backoff: BackoffOptions {
            base: Duration::from_millis(5),
            max_attempts: attempts,
            jitter: 0.5,
            max_delay: Duration::from_secs(5),
        },
        ..RateLimitOptions::from_limits(&limits)
    })
}

// ---------------------------------------------------------------------------------------------
// The fake.

struct MemoryBed {
    source: Arc<InMemoryVaultSource>,
}

/// Lets a shared fake be wrapped by the limiter (which takes its source by value).
struct Shared(Arc<InMemoryVaultSource>);

/// What the fake bed programmed, to count fired faults: a programmed failure of `count` calls
/// of an operation has fired as often as that operation was called, up to `count`.
struct MemoryFaults {
    programmed: Mutex<Vec<(SourceOp, ObjectKind, u64)>>,
}

struct MemoryBedWithFaults {
    bed: MemoryBed,
    faults: MemoryFaults,
}

impl MemoryBedWithFaults {
    fn new() -> Self {
        MemoryBedWithFaults {
            bed: MemoryBed {
                source: Arc::new(InMemoryVaultSource::new(
                    VAULT.parse().expect("vault"),
                    1_700_000_000,
                )),
            },
            faults: MemoryFaults {
                programmed: Mutex::new(Vec::new()),
            },
        }
    }
}

#[async_trait]
impl Bed for MemoryBedWithFaults {
    fn source(&self) -> Arc<dyn VaultSource> {
        self.bed.source.clone()
    }

    fn limited(&self, attempts: u32) -> Arc<dyn VaultSource> {
        Arc::new(fast_limiter(attempts).wrap(Shared(self.bed.source.clone()), None))
    }

    async fn seed(&self, kind: ObjectKind, prefix: &str, count: usize, versions: usize) {
        let tags = BTreeMap::from([("seeded".to_string(), "yes".to_string())]);
        for i in 0..count {
            let n = name(&format!("{prefix}{i:05}"));
            for v in 0..versions {
                let seed = SeedObject {
                    tags: tags.clone(),
                    enabled: true,
                    value: format!("value-{v}").into_bytes(),
                    content_type: None,
                    validity: Default::default(),
                };
                match kind {
                    ObjectKind::Certificates => {
                        self.bed.source.put_certificate(&n, seed);
                    }
                    _ => {
                        self.bed.source.put(kind, &n, seed);
                    }
                }
            }
        }
    }

    async fn put_secret(&self, secret: &str, value: &str) {
        self.bed
            .source
            .put(ObjectKind::Secrets, &name(secret), SeedObject::value(value));
    }

    async fn set_secret_validity(&self, secret: &str, validity: Validity) {
        self.bed
            .source
            .set_validity(ObjectKind::Secrets, &name(secret), validity);
    }

    async fn inject(&self, fault: Fault) {
        let (op, kind, error, count, retry_after) = match fault {
            Fault::Throttle {
                op,
                kind,
                count,
                retry_after_ms,
                retry_after_s,
            } => (
                op,
                kind,
                SourceErrorKind::Throttled,
                Some(count),
                retry_after_ms
                    .map(Duration::from_millis)
                    .or(retry_after_s.map(Duration::from_secs)),
            ),
            Fault::Unavailable { op, kind, count } | Fault::Reset { op, kind, count } => {
                (op, kind, SourceErrorKind::Transient, Some(count), None)
            }
            Fault::Broken { op, kind } => (op, kind, SourceErrorKind::Transient, None, None),
        };
        self.faults
            .programmed
            .lock()
            .expect("lock")
            .push((op, kind, count.unwrap_or(u64::MAX)));
        self.bed.source.fail(FailureRule {
            op: Some(op),
            kind: Some(kind),
            name: None,
            error,
            retry_after,
            times: count.map(|c| c as u32),
        });
    }

    async fn fired(&self) -> u64 {
        // Every programmed fault whose count was used up fired that many times.
        let programmed = self.faults.programmed.lock().expect("lock").clone();
        programmed
            .iter()
            .map(|(op, kind, count)| (*count).min(self.bed.source.calls(*op, *kind)))
            .sum()
    }

    async fn clear_faults(&self) {
        self.bed.source.clear_failures();
        self.faults.programmed.lock().expect("lock").clear();
    }
}

// ---------------------------------------------------------------------------------------------
// The emulator.

struct AzureBed {
    emulator: Option<Emulator>,
    /// The emulator runs on its own runtime, so its logs never reach a test's subscriber.
    runtime: Option<tokio::runtime::Runtime>,
    source: Arc<AzureVaultSource>,
    url: String,
    _token_dir: tempfile::TempDir,
}

impl Drop for AzureBed {
    fn drop(&mut self) {
        drop(self.emulator.take());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn azure_source(
    emulator_url: &str,
    ca: &std::path::Path,
    token_file: &std::path::Path,
) -> AzureVaultSource {
    let host = emulator_url
        .trim_start_matches("https://")
        .split(':')
        .next()
        .expect("host")
        .to_string();
    let azure = AzureConfig {
        credential: CredentialConfig::TokenFile {
            path: token_file.to_path_buf(),
        },
        ca_file: Some(ca.to_path_buf()),
        ca_scope: CaScope::Services,
        resolve: BTreeMap::from([(host, "127.0.0.1".parse::<IpAddr>().expect("ip"))]),
        verify_challenge_resource: true,
    };
    let vault = VaultConfig {
        name: VAULT.parse().expect("vault"),
        url: emulator_url.to_string(),
        subscription: None,
        geography: None,
        schedule: None,
        kinds: ALL_KINDS.into_iter().collect(),
        include: vec![],
        exclude: vec![],
        skip_tags: BTreeMap::new(),
        payload: PayloadMode::Native,
        deep_scan_every: Duration::from_secs(86_400),
        jitter: std::time::Duration::ZERO,
        paused: false,
        verify_schedule: None,
        retention: Default::default(),
        rpo: None,
    };
    AzureVaultSource::from_config(
        &vault,
        &azure,
        AzureSourceOptions {
            retry: SdkRetryOptions {
                max_retries: 3,
                initial_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(100),
                max_elapsed: Duration::from_secs(10),
            },
            ..AzureSourceOptions::default()
        },
    )
    .expect("azure source")
}

impl AzureBed {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("emulator runtime");
        let handle = runtime.handle().clone();
        // `block_on` is not allowed inside the test's runtime: start from a plain thread.
        let emulator = std::thread::spawn(move || {
            handle.block_on(Emulator::start(EmulatorConfig {
                vaults: vec![VaultSettings::named(VAULT)],
                ..EmulatorConfig::default()
            }))
        })
        .join()
        .expect("emulator start thread")
        .expect("the emulator starts");
        let url = emulator.vault_url(VAULT).expect("kv1 served").to_string();
        let token_dir = tempfile::tempdir().expect("tempdir");
        let token_file = token_dir.path().join("token");
        // 0600: kvkeep refuses a token file others can read.
        kvkeep::fsutil::create_private_file(&token_file)
            .and_then(|mut f| f.write_all(b"fake-token\n"))
            .expect("token file");
        let source = Arc::new(azure_source(&url, &emulator.info().ca_cert, &token_file));
        AzureBed {
            emulator: Some(emulator),
            runtime: Some(runtime),
            source,
            url,
            _token_dir: token_dir,
        }
    }

    /// An SDK secret client on the emulator, as an application seeding the vault would use.
    fn secret_client(&self) -> azure_security_keyvault_secrets::SecretClient {
        use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
        SecretClient::new(
            &self.url,
            Arc::new(StaticToken),
            Some(SecretClientOptions {
                client_options: azure_core::http::ClientOptions {
                    transport: Some(azure_core::http::Transport::new(Arc::new(
                        self.emulator().http_client(),
                    ))),
                    ..Default::default()
                },
                ..Default::default()
            }),
        )
        .expect("secret client")
    }

    fn emulator(&self) -> &Emulator {
        self.emulator.as_ref().expect("emulator running")
    }

    fn collection(kind: ObjectKind) -> Collection {
        match kind {
            ObjectKind::Secrets => Collection::Secrets,
            ObjectKind::Keys => Collection::Keys,
            ObjectKind::Certificates => Collection::Certificates,
        }
    }

    fn op_name(op: SourceOp, kind: ObjectKind) -> String {
        let verb = match op {
            SourceOp::List => "list",
            SourceOp::ListVersions => "list_versions",
            SourceOp::Backup => "backup",
            SourceOp::Restore => "restore",
            SourceOp::ListDeleted => "list_deleted",
            SourceOp::GetDeleted => "get_deleted",
            SourceOp::Recover => "recover",
            SourceOp::Purge => "purge",
            SourceOp::Delete => "delete",
            SourceOp::GetProperties => "get",
        };
        format!("{}.{verb}", kind.as_str())
    }
}

/// A wrapper so the limiter can own a handle to the shared Azure source.
struct SharedAzure(Arc<AzureVaultSource>);

macro_rules! forward_source {
    ($t:ty) => {
        #[async_trait]
        impl VaultSource for $t {
            fn vault(&self) -> &VaultName {
                self.0.vault()
            }
            async fn list(
                &self,
                kind: ObjectKind,
            ) -> Result<Vec<kvkeep::source::ObjectSummary>, kvkeep::source::SourceError> {
                self.0.list(kind).await
            }
            async fn list_versions(
                &self,
                kind: ObjectKind,
                name: &ObjectName,
            ) -> Result<Vec<kvkeep::source::VersionInfo>, kvkeep::source::SourceError> {
                self.0.list_versions(kind, name).await
            }
            async fn backup(
                &self,
                kind: ObjectKind,
                name: &ObjectName,
            ) -> Result<kvkeep::source::BackupBlob, kvkeep::source::SourceError> {
                self.0.backup(kind, name).await
            }
            async fn list_deleted(
                &self,
                kind: ObjectKind,
            ) -> Result<Vec<kvkeep::source::DeletedInfo>, kvkeep::source::SourceError> {
                self.0.list_deleted(kind).await
            }
            async fn restore(
                &self,
                kind: ObjectKind,
                blob: &[u8],
            ) -> Result<kvkeep::source::RestoredObject, kvkeep::source::SourceError> {
                self.0.restore(kind, blob).await
            }
            async fn get_deleted(
                &self,
                kind: ObjectKind,
                name: &ObjectName,
            ) -> Result<Option<kvkeep::source::DeletedInfo>, kvkeep::source::SourceError> {
                self.0.get_deleted(kind, name).await
            }
            async fn recover(
                &self,
                kind: ObjectKind,
                name: &ObjectName,
            ) -> Result<(), kvkeep::source::SourceError> {
                self.0.recover(kind, name).await
            }
            async fn purge(
                &self,
                kind: ObjectKind,
                name: &ObjectName,
            ) -> Result<(), kvkeep::source::SourceError> {
                self.0.purge(kind, name).await
            }
            async fn delete(
                &self,
                kind: ObjectKind,
                name: &ObjectName,
            ) -> Result<(), kvkeep::source::SourceError> {
                self.0.delete(kind, name).await
            }
            async fn get_properties(
                &self,
                kind: ObjectKind,
                name: &ObjectName,
            ) -> Result<kvkeep::source::ObjectProperties, kvkeep::source::SourceError> {
                self.0.get_properties(kind, name).await
            }
        }
    };
}
forward_source!(SharedAzure);
forward_source!(Shared);

#[async_trait]
impl Bed for AzureBed {
    fn wire_marker(&self) -> Option<&'static str> {
        Some("/secrets/canary/backup")
    }

    fn source(&self) -> Arc<dyn VaultSource> {
        self.source.clone()
    }

    fn limited(&self, attempts: u32) -> Arc<dyn VaultSource> {
        Arc::new(fast_limiter(attempts).wrap(SharedAzure(self.source.clone()), None))
    }

    async fn seed(&self, kind: ObjectKind, prefix: &str, count: usize, versions: usize) {
        let report = self
            .emulator()
            .control()
            .seed(
                VAULT,
                &SeedSpec {
                    kind: Self::collection(kind),
                    prefix: prefix.to_string(),
                    count,
                    versions,
                    tags: BTreeMap::from([("seeded".to_string(), "yes".to_string())]),
                    value_bytes: 16,
                },
            )
            .await
            .expect("seed");
        assert_eq!(report.objects, count, "seeded objects");
    }

    async fn put_secret(&self, secret: &str, value: &str) {
        use azure_security_keyvault_secrets::models::SetSecretParameters;
        self.secret_client()
            .set_secret(
                secret,
                SetSecretParameters {
                    value: Some(value.to_string()),
                    ..Default::default()
                }
                .try_into()
                .expect("body"),
                None,
            )
            .await
            .expect("set secret");
    }

    async fn set_secret_validity(&self, secret: &str, validity: Validity) {
        use azure_core::time::OffsetDateTime;
        use azure_security_keyvault_secrets::models::{
            SecretAttributes, UpdateSecretPropertiesParameters,
        };
        let time = |t: Option<i64>| {
            t.map(|t| OffsetDateTime::from_unix_timestamp(t).expect("time in range"))
        };
        self.secret_client()
            .update_secret_properties(
                secret,
                UpdateSecretPropertiesParameters {
                    secret_attributes: Some(SecretAttributes {
                        not_before: time(validity.not_before),
                        expires: time(validity.expires),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .try_into()
                .expect("body"),
                None,
            )
            .await
            .expect("update secret properties");
    }

    async fn inject(&self, fault: Fault) {
        let spec =
            |op: SourceOp, kind: ObjectKind, fault_kind: FaultKind, count: Option<u64>| FaultSpec {
                vault: Some(VAULT.to_string()),
                op: Some(Self::op_name(op, kind)),
                kind: fault_kind,
                count,
                rate: None,
                retry_after_seconds: None,
                retry_after_ms: None,
                latency_ms: None,
                page_size: None,
                next_link_host: None,
            };
        let spec = match fault {
            Fault::Throttle {
                op,
                kind,
                count,
                retry_after_ms,
                retry_after_s,
            } => FaultSpec {
                retry_after_ms,
                retry_after_seconds: retry_after_s,
                ..spec(op, kind, FaultKind::Throttle, Some(count))
            },
            Fault::Unavailable { op, kind, count } => {
                spec(op, kind, FaultKind::Error503, Some(count))
            }
            Fault::Reset { op, kind, count } => spec(op, kind, FaultKind::Reset, Some(count)),
            Fault::Broken { op, kind } => spec(op, kind, FaultKind::Error500, None),
        };
        self.emulator()
            .control()
            .add_fault(&spec)
            .await
            .expect("fault accepted");
    }

    async fn fired(&self) -> u64 {
        self.emulator()
            .control()
            .faults()
            .await
            .expect("faults")
            .iter()
            .map(|f| f.fired)
            .sum()
    }

    async fn clear_faults(&self) {
        self.emulator()
            .control()
            .clear_faults()
            .await
            .expect("clear faults");
    }
}

/// A fixed token for seeding through the SDK directly.
#[derive(Debug)]
struct StaticToken;

#[async_trait]
impl azure_core::credentials::TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        Ok(azure_core::credentials::AccessToken {
            token: azure_core::credentials::Secret::new("fake-token".to_string()),
            expires_on: azure_core::time::OffsetDateTime::from_unix_timestamp(
                kvkeep::clock::now_unix(),
            )
            .expect("valid time")
                + azure_core::time::Duration::hours(1),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

/// More than three pages of every kind, with the managed key and secret of each certificate
/// flagged; versions of an object with more than one page of them.
async fn lists_every_page_and_flags_managed_objects(bed: &dyn Bed) {
    for kind in ALL_KINDS {
        bed.seed(kind, &format!("bulk{}", kind.as_str()), 80, 1)
            .await;
    }
    let source = bed.source();
    let secrets = source
        .list(ObjectKind::Secrets)
        .await
        .expect("list secrets");
    let keys = source.list(ObjectKind::Keys).await.expect("list keys");
    let certificates = source
        .list(ObjectKind::Certificates)
        .await
        .expect("list certificates");
    assert_eq!(certificates.len(), 80, "every page of certificates");
    assert!(certificates.iter().all(|c| !c.managed));
    for (kind, listed) in [(ObjectKind::Secrets, &secrets), (ObjectKind::Keys, &keys)] {
        assert_eq!(listed.len(), 160, "{kind}: 80 own + 80 managed, every page");
        let managed: Vec<_> = listed.iter().filter(|o| o.managed).collect();
        assert_eq!(managed.len(), 80, "{kind}: the certificates' companions");
        assert!(managed
            .iter()
            .all(|o| o.name.as_str().starts_with("bulkcertificates")));
        assert!(listed.iter().all(|o| o.kind == kind));
    }
    for listed in [&secrets, &keys, &certificates] {
        let unmanaged = listed.iter().filter(|o| !o.managed);
        for o in unmanaged {
            assert!(o.updated.is_some(), "{} has updated", o.name);
            assert!(o.enabled);
            assert_eq!(o.tags.get("seeded").map(String::as_str), Some("yes"));
        }
        let mut names: Vec<_> = listed.iter().map(|o| o.name.canonical()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), listed.len(), "no object listed twice");
    }

    bed.seed(ObjectKind::Secrets, "deep", 1, 30).await;
    let versions = source
        .list_versions(ObjectKind::Secrets, &name("deep00000"))
        .await
        .expect("versions");
    assert_eq!(versions.len(), 30, "every page of versions");
    let mut ids: Vec<_> = versions.iter().map(|v| v.version.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "distinct version ids");
    assert!(versions.iter().all(|v| v.created.is_some() && v.enabled));
    assert!(source
        .list_versions(ObjectKind::Secrets, &name("never-was"))
        .await
        .expect("versions of an unknown name")
        .is_empty());
}

/// The listing carries `nbf` and `exp` of the current version (what the expiry report records),
/// absent ones as `None`, and an update of them shows in the next listing.
async fn lists_the_validity_period_of_the_current_version(bed: &dyn Bed) {
    bed.put_secret("rotating", "v1").await;
    bed.put_secret("forever", "v1").await;
    let period = Validity {
        not_before: Some(1_700_000_000),
        expires: Some(1_900_000_000),
    };
    bed.set_secret_validity("rotating", period).await;
    let source = bed.source();
    let listed = |all: &[kvkeep::source::ObjectSummary], n: &str| {
        all.iter()
            .find(|o| o.name.as_str() == n)
            .map(|o| o.validity)
            .unwrap_or_else(|| panic!("{n} listed"))
    };
    let secrets = source.list(ObjectKind::Secrets).await.expect("list");
    assert_eq!(listed(&secrets, "rotating"), period);
    assert_eq!(listed(&secrets, "forever"), Validity::default());

    let renewed = Validity {
        expires: Some(1_950_000_000),
        ..period
    };
    bed.set_secret_validity("rotating", renewed).await;
    let secrets = source.list(ObjectKind::Secrets).await.expect("list");
    assert_eq!(listed(&secrets, "rotating"), renewed);
    let versions = source
        .list_versions(ObjectKind::Secrets, &name("rotating"))
        .await
        .expect("versions");
    assert_eq!(versions.len(), 1, "an attribute update makes no version");
}

/// backup → delete → purge → restore, per kind: the versions come back with their ids.
async fn backup_delete_purge_restore_keeps_versions(bed: &dyn Bed) {
    let source = bed.source();
    for kind in ALL_KINDS {
        let prefix = format!("rt{}", kind.as_str());
        bed.seed(kind, &prefix, 1, 3).await;
        let n = name(&format!("{prefix}00000"));
        let mut before = source.list_versions(kind, &n).await.expect("versions");
        assert_eq!(before.len(), 3, "{kind}");
        let current = source.get_properties(kind, &n).await.expect("properties");
        assert!(before.iter().any(|v| v.version == current.version));

        let blob = source.backup(kind, &n).await.expect("backup");
        assert!(!blob.is_empty());

        source.delete(kind, &n).await.expect("delete");
        let deleted = source
            .get_deleted(kind, &n)
            .await
            .expect("get deleted")
            .expect("soft-deleted");
        assert_eq!(deleted.name.canonical(), n.canonical());
        assert!(deleted.deleted_on.is_some());
        let listed = source.list_deleted(kind).await.expect("list deleted");
        let entry = listed
            .iter()
            .find(|d| d.name.canonical() == n.canonical())
            .unwrap_or_else(|| panic!("{kind} {n} is in the deleted listing: {listed:?}"));
        assert_eq!(entry.scheduled_purge, deleted.scheduled_purge, "{kind}");
        assert!(
            listed.iter().all(|d| !d.managed),
            "a certificate's managed key/secret is not listed on its own: {listed:?}"
        );
        let err = source
            .backup(kind, &n)
            .await
            .expect_err("backup of deleted");
        assert_eq!(err.kind(), SourceErrorKind::NotFound, "{err}");

        let err = source
            .restore(kind, blob.as_bytes())
            .await
            .expect_err("restore over a soft-deleted name");
        assert_eq!(err.kind(), SourceErrorKind::Conflict, "{err}");
        assert_eq!(err.code(), Some("Conflict"), "{err}");

        source.purge(kind, &n).await.expect("purge");
        assert!(source.get_deleted(kind, &n).await.expect("get").is_none());
        assert!(
            source
                .list_deleted(kind)
                .await
                .expect("list deleted")
                .iter()
                .all(|d| d.name.canonical() != n.canonical()),
            "{kind} {n} is no longer listed as deleted after the purge"
        );

        let restored = source
            .restore(kind, blob.as_bytes())
            .await
            .expect("restore");
        assert_eq!(restored.name.canonical(), n.canonical());
        assert_eq!(
            restored.version, current.version,
            "{kind}: current version kept"
        );
        let mut after = source.list_versions(kind, &n).await.expect("versions");
        before.sort_by(|a, b| a.version.cmp(&b.version));
        after.sort_by(|a, b| a.version.cmp(&b.version));
        assert_eq!(
            before.iter().map(|v| &v.version).collect::<Vec<_>>(),
            after.iter().map(|v| &v.version).collect::<Vec<_>>(),
            "{kind}: every version id kept"
        );
        let props = source.get_properties(kind, &n).await.expect("properties");
        assert_eq!(props.version, current.version);
        assert_eq!(props.tags.get("seeded").map(String::as_str), Some("yes"));

        if kind == ObjectKind::Certificates {
            for companion in [ObjectKind::Keys, ObjectKind::Secrets] {
                let listed = source.list(companion).await.expect("list");
                assert!(
                    listed
                        .iter()
                        .any(|o| o.managed && o.name.canonical() == n.canonical()),
                    "the certificate's managed {companion} is restored with it"
                );
            }
        }
    }
}

async fn recover_brings_back_every_version(bed: &dyn Bed) {
    let source = bed.source();
    bed.seed(ObjectKind::Keys, "rec", 1, 2).await;
    let n = name("rec00000");
    let before = source
        .list_versions(ObjectKind::Keys, &n)
        .await
        .expect("versions");
    source.delete(ObjectKind::Keys, &n).await.expect("delete");
    assert!(source
        .list(ObjectKind::Keys)
        .await
        .expect("list")
        .iter()
        .all(|o| o.name.canonical() != "rec00000"));
    source.recover(ObjectKind::Keys, &n).await.expect("recover");
    let after = source
        .list_versions(ObjectKind::Keys, &n)
        .await
        .expect("versions");
    assert_eq!(before.len(), after.len());
    assert!(source
        .get_deleted(ObjectKind::Keys, &n)
        .await
        .expect("get")
        .is_none());
}

/// The vendor's refusals arrive as the seam's vocabulary, naming vault, kind and object.
async fn errors_are_translated(bed: &dyn Bed) {
    let source = bed.source();
    let missing = name("no-such-thing");
    for kind in ALL_KINDS {
        let err = source.backup(kind, &missing).await.expect_err("missing");
        assert_eq!(err.kind(), SourceErrorKind::NotFound, "{err}");
        assert_eq!(err.name(), Some("no-such-thing"));
        let text = err.to_string();
        assert!(
            text.contains("no-such-thing") && text.contains(VAULT) && text.contains("backup"),
            "{text}"
        );
        let err = source
            .get_properties(kind, &missing)
            .await
            .expect_err("missing");
        assert_eq!(err.kind(), SourceErrorKind::NotFound, "{err}");
        assert!(source
            .get_deleted(kind, &missing)
            .await
            .expect("get")
            .is_none());
        let err = source.purge(kind, &missing).await.expect_err("not deleted");
        assert_eq!(err.kind(), SourceErrorKind::NotFound, "{err}");
    }

    bed.seed(ObjectKind::Certificates, "cert", 1, 1).await;
    let cert = name("cert00000");
    for companion in [ObjectKind::Keys, ObjectKind::Secrets] {
        let err = source
            .backup(companion, &cert)
            .await
            .expect_err("backup of a managed object");
        assert_eq!(err.kind(), SourceErrorKind::Forbidden, "{companion}: {err}");
        assert!(err.to_string().contains("cert00000"), "{err}");
    }

    bed.seed(ObjectKind::Secrets, "live", 1, 1).await;
    let live = name("live00000");
    let blob = source
        .backup(ObjectKind::Secrets, &live)
        .await
        .expect("backup");
    let err = source
        .restore(ObjectKind::Secrets, blob.as_bytes())
        .await
        .expect_err("restore over an active name");
    assert_eq!(err.kind(), SourceErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains(VAULT), "{err}");

    let mut garbage = blob.into_bytes();
    let mid = garbage.len() / 2;
    for b in &mut garbage[mid..mid + 8] {
        *b ^= 0x5a;
    }
    let err = source
        .restore(ObjectKind::Secrets, &garbage)
        .await
        .expect_err("corrupt blob");
    assert_eq!(err.kind(), SourceErrorKind::Permanent, "{err}");
    assert!(!err.is_retryable());
}

/// Throttling (with and without a retry delay), 503s and dropped connections are ridden out.
async fn faults_are_ridden_out(bed: &dyn Bed) {
    bed.seed(ObjectKind::Secrets, "f", 30, 1).await;
    bed.seed(ObjectKind::Keys, "fk", 1, 1).await;
    bed.seed(ObjectKind::Certificates, "fc", 1, 1).await;
    let source = bed.limited(6);
    let faults = [
        Fault::Throttle {
            op: SourceOp::List,
            kind: ObjectKind::Secrets,
            count: 2,
            retry_after_ms: None,
            retry_after_s: None,
        },
        Fault::Throttle {
            op: SourceOp::Backup,
            kind: ObjectKind::Secrets,
            count: 1,
            retry_after_ms: Some(30),
            retry_after_s: None,
        },
        Fault::Throttle {
            op: SourceOp::Backup,
            kind: ObjectKind::Keys,
            count: 1,
            retry_after_ms: None,
            retry_after_s: Some(1),
        },
        Fault::Unavailable {
            op: SourceOp::GetProperties,
            kind: ObjectKind::Secrets,
            count: 2,
        },
        Fault::Reset {
            op: SourceOp::List,
            kind: ObjectKind::Certificates,
            count: 2,
        },
        Fault::Reset {
            op: SourceOp::ListVersions,
            kind: ObjectKind::Secrets,
            count: 1,
        },
    ];
    for fault in faults {
        bed.inject(fault).await;
    }
    let listed = source.list(ObjectKind::Secrets).await.expect("list");
    assert_eq!(listed.len(), 31, "30 secrets and the certificate's");
    source
        .backup(ObjectKind::Secrets, &name("f00000"))
        .await
        .expect("backup after a 429 with x-ms-retry-after-ms");
    source
        .backup(ObjectKind::Keys, &name("fk00000"))
        .await
        .expect("backup after a 429 with Retry-After");
    source
        .get_properties(ObjectKind::Secrets, &name("f00001"))
        .await
        .expect("get after 503s");
    assert_eq!(
        source
            .list(ObjectKind::Certificates)
            .await
            .expect("list after resets")
            .len(),
        1
    );
    assert_eq!(
        source
            .list_versions(ObjectKind::Secrets, &name("f00002"))
            .await
            .expect("versions after a reset")
            .len(),
        1
    );
    assert_eq!(
        bed.fired().await,
        2 + 1 + 1 + 2 + 2 + 1,
        "every fault fired"
    );
    bed.clear_faults().await;
}

/// An object that keeps failing ends in an error that names it, after bounded attempts.
async fn a_broken_object_is_named(bed: &dyn Bed) {
    bed.seed(ObjectKind::Secrets, "broken", 1, 1).await;
    bed.inject(Fault::Broken {
        op: SourceOp::Backup,
        kind: ObjectKind::Secrets,
    })
    .await;
    let err = bed
        .limited(3)
        .backup(ObjectKind::Secrets, &name("broken00000"))
        .await
        .expect_err("fails for good");
    assert_eq!(err.kind(), SourceErrorKind::Transient, "{err}");
    assert_eq!(err.op(), SourceOp::Backup);
    assert_eq!(err.name(), Some("broken00000"));
    let text = err.to_string();
    assert!(
        text.contains("broken00000") && text.contains("secret") && text.contains(VAULT),
        "{text}"
    );
    assert!(bed.fired().await >= 3, "three attempts reached the vault");
    bed.clear_faults().await;
}

/// Logs captured at TRACE while a secret goes through list, backup, get-properties and restore
/// never contain its value.
async fn secret_values_stay_out_of_logs(bed: &dyn Bed) {
    const CANARY: &str = "canary-7f3a9c2e-do-not-log";
    bed.put_secret("canary", CANARY).await;
    let source = bed.source();
    let n = name("canary");

    let buffer = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(buffer.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let listed = source.list(ObjectKind::Secrets).await.expect("list");
    assert!(listed.iter().any(|o| o.name == n));
    let blob = source
        .backup(ObjectKind::Secrets, &n)
        .await
        .expect("backup");
    let props = source
        .get_properties(ObjectKind::Secrets, &n)
        .await
        .expect("properties");
    source
        .delete(ObjectKind::Secrets, &n)
        .await
        .expect("delete");
    source.purge(ObjectKind::Secrets, &n).await.expect("purge");
    let restored = source
        .restore(ObjectKind::Secrets, blob.as_bytes())
        .await
        .expect("restore");
    tracing::info!(?props, ?restored, ?blob, "values seen by the test");
    drop(guard);

    let logs = buffer.text();
    assert!(
        logs.contains("values seen by the test"),
        "the subscriber captured the run"
    );
    if let Some(marker) = bed.wire_marker() {
        assert!(
            logs.contains(marker),
            "the SDK's request logs were captured"
        );
    }
    assert!(!logs.contains(CANARY), "the secret value reached a log");
    assert!(
        !logs.contains("fake-token"),
        "the bearer token reached a log"
    );
    assert!(!format!("{props:?}{restored:?}{blob:?}").contains(CANARY));
}

/// Listing the versions of an object at 450 versions or more warns, naming vault, kind and
/// object: backups fail past 500.
async fn warns_near_the_version_limit(bed: &dyn Bed) {
    bed.seed(ObjectKind::Secrets, "old", 1, 450).await;
    let source = bed.source();
    let buffer = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(buffer.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let versions = source
        .list_versions(ObjectKind::Secrets, &name("old00000"))
        .await
        .expect("versions");
    drop(guard);
    assert_eq!(versions.len(), 450);
    let logs = buffer.text();
    assert!(
        logs.contains("WARN")
            && logs.contains("vault=kv1")
            && logs.contains("kind=secrets")
            && logs.contains("name=old00000")
            && logs.contains("versions=450"),
        "{logs}"
    );
}

/// A `MakeWriter` collecting everything into one buffer.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Every scenario on every implementation.

macro_rules! contract {
    ($($scenario:ident),* $(,)?) => {
        mod in_memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $scenario() {
                    let bed = MemoryBedWithFaults::new();
                    super::$scenario(&bed).await;
                }
            )*
        }
        mod azure_on_emulator {
            use super::*;
            $(
                #[tokio::test]
                async fn $scenario() {
                    let bed = AzureBed::new();
                    super::$scenario(&bed).await;
                }
            )*
        }
    };
}

contract!(
    lists_every_page_and_flags_managed_objects,
    backup_delete_purge_restore_keeps_versions,
    recover_brings_back_every_version,
    errors_are_translated,
    faults_are_ridden_out,
    a_broken_object_is_named,
    secret_values_stay_out_of_logs,
    warns_near_the_version_limit,
    lists_the_validity_period_of_the_current_version,
);

// ---------------------------------------------------------------------------------------------
// Adapter-specific checks.

/// The raw adapter surfaces 429 as `Throttled` with the service's delay, for the limiter to
/// honour (the SDK itself must not retry it).
#[tokio::test]
async fn azure_surfaces_throttling_with_its_delay() {
    let bed = AzureBed::new();
    bed.seed(ObjectKind::Secrets, "t", 1, 1).await;
    bed.inject(Fault::Throttle {
        op: SourceOp::Backup,
        kind: ObjectKind::Secrets,
        count: 1,
        retry_after_ms: Some(1500),
        retry_after_s: None,
    })
    .await;
    let err = bed
        .source()
        .backup(ObjectKind::Secrets, &name("t00000"))
        .await
        .expect_err("429 reaches kvkeep");
    assert_eq!(err.kind(), SourceErrorKind::Throttled, "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_millis(1500)));
    assert_eq!(err.code(), Some("Throttled"));
    assert_eq!(bed.fired().await, 1, "the SDK sent the request once");

    bed.inject(Fault::Throttle {
        op: SourceOp::Backup,
        kind: ObjectKind::Secrets,
        count: 1,
        retry_after_ms: None,
        retry_after_s: None,
    })
    .await;
    let err = bed
        .source()
        .backup(ObjectKind::Secrets, &name("t00000"))
        .await
        .expect_err("429 without a delay");
    assert_eq!(err.kind(), SourceErrorKind::Throttled);
    assert_eq!(err.retry_after(), None);
}

/// A page whose nextLink names another host is not followed: no request, and so no bearer
/// token, leaves for that host; the listing fails with an error that says why. The other host is
/// a second loopback address with a listener that counts connections.
#[tokio::test]
async fn a_next_link_to_another_host_is_refused_before_any_request() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let bed = AzureBed::new();
    bed.seed(ObjectKind::Secrets, "p", 3, 1).await;
    let foreign = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("a second loopback address");
    let foreign_addr = foreign.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = tokio::spawn(async move {
        while let Ok((stream, _)) = foreign.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    bed.emulator()
        .control()
        .add_fault(&FaultSpec {
            vault: Some(VAULT.to_string()),
            op: Some("secrets.list".to_string()),
            kind: FaultKind::ForeignNextLink,
            count: Some(1),
            rate: None,
            retry_after_seconds: None,
            retry_after_ms: None,
            latency_ms: None,
            page_size: None,
            next_link_host: Some(foreign_addr.to_string()),
        })
        .await
        .expect("fault accepted");
    bed.emulator()
        .control()
        .clear_counters()
        .await
        .expect("clear counters");

    let err = bed
        .source()
        .list(ObjectKind::Secrets)
        .await
        .expect_err("a foreign nextLink is refused");
    let text = err.to_string();
    assert_eq!(err.kind(), SourceErrorKind::Permanent, "{text}");
    assert!(
        text.contains("refused") && text.contains(&foreign_addr.to_string()),
        "the error names the foreign host: {text}"
    );
    assert_eq!(
        bed.fired().await,
        1,
        "the first page carried the foreign link"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "nothing connected to the foreign host"
    );
    let counters = bed.emulator().control().counters().await.expect("counters");
    assert_eq!(
        counters
            .vaults
            .get(VAULT)
            .and_then(|c| c.get("secrets.list")),
        Some(&1),
        "only the first page was requested: {counters:?}"
    );
    listener.abort();

    // Without the fault the same listing works: the policy lets the vault's own links through.
    let listed = bed.source().list(ObjectKind::Secrets).await.expect("list");
    assert_eq!(listed.len(), 3);
}

/// The fake counts calls, so backup tests can assert that a no-change run makes none.
#[tokio::test]
async fn the_fake_counts_calls_per_operation() {
    let bed = MemoryBedWithFaults::new();
    bed.seed(ObjectKind::Secrets, "c", 2, 1).await;
    let source = bed.bed.source.clone();
    source.list(ObjectKind::Secrets).await.expect("list");
    source
        .backup(ObjectKind::Secrets, &name("c00000"))
        .await
        .expect("backup");
    assert_eq!(source.calls(SourceOp::List, ObjectKind::Secrets), 1);
    assert_eq!(source.calls(SourceOp::Backup, ObjectKind::Secrets), 1);
    assert_eq!(source.calls_of(SourceOp::Backup), 1);
    source.clear_calls();
    assert_eq!(source.calls_of(SourceOp::Backup), 0);
}
