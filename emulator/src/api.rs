//! The contract between the HTTP layer (`server/`) and the vault state (`vault/`): the router turns
//! a request into an [`Op`], a [`crate::vault::Vault`] applies it and answers with a [`Reply`] or a
//! [`crate::error::KvError`].
//!
//! Nothing here knows about HTTP beyond status codes, and nothing in `vault/` parses URLs: ids are
//! built from [`Ctx::authority`], the `host[:port]` the client used, so every vault answers with the
//! ids its clients expect.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The three object collections of a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Collection {
    /// `/secrets`
    Secrets,
    /// `/keys`
    Keys,
    /// `/certificates`
    Certificates,
}

impl Collection {
    /// The path segment: `secrets`, `keys`, `certificates`.
    pub fn segment(self) -> &'static str {
        match self {
            Collection::Secrets => "secrets",
            Collection::Keys => "keys",
            Collection::Certificates => "certificates",
        }
    }

    /// The path segment of the deleted collection: `deletedsecrets`, ...
    pub fn deleted_segment(self) -> &'static str {
        match self {
            Collection::Secrets => "deletedsecrets",
            Collection::Keys => "deletedkeys",
            Collection::Certificates => "deletedcertificates",
        }
    }

    /// Lower-case singular noun used in messages: `secret`, `key`, `certificate`.
    pub fn noun(self) -> &'static str {
        match self {
            Collection::Secrets => "secret",
            Collection::Keys => "key",
            Collection::Certificates => "certificate",
        }
    }

    /// Capitalised singular noun: `Secret`, `Key`, `Certificate`.
    pub fn title(self) -> &'static str {
        match self {
            Collection::Secrets => "Secret",
            Collection::Keys => "Key",
            Collection::Certificates => "Certificate",
        }
    }

    /// The 404 error code: `SecretNotFound`, `KeyNotFound`, `CertificateNotFound`.
    pub fn not_found_code(self) -> &'static str {
        match self {
            Collection::Secrets => "SecretNotFound",
            Collection::Keys => "KeyNotFound",
            Collection::Certificates => "CertificateNotFound",
        }
    }

    /// Parses a path segment (case-insensitive, as the service is).
    pub fn from_segment(segment: &str) -> Option<Self> {
        match segment.to_ascii_lowercase().as_str() {
            "secrets" => Some(Collection::Secrets),
            "keys" => Some(Collection::Keys),
            "certificates" => Some(Collection::Certificates),
            _ => None,
        }
    }

    /// Parses a deleted-collection path segment (`deletedsecrets`, also `deletedSecrets`).
    pub fn from_deleted_segment(segment: &str) -> Option<Self> {
        match segment.to_ascii_lowercase().as_str() {
            "deletedsecrets" => Some(Collection::Secrets),
            "deletedkeys" => Some(Collection::Keys),
            "deletedcertificates" => Some(Collection::Certificates),
            _ => None,
        }
    }
}

/// Per-request context handed to the vault.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `host[:port]` exactly as the client addressed the vault (port omitted when 443); every id
    /// in a reply starts with `https://{authority}/`.
    pub authority: String,
    /// The vault's clock: wall clock plus the emulator's time shift, in Unix seconds.
    pub now: i64,
}

/// One data-plane operation, already routed and with its query parameters parsed.
///
/// `name` is the name exactly as it appeared in the path (the vault compares names
/// case-insensitively and echoes the name as first created). `version: None` means "latest"
/// (a trailing slash or no version segment). `after` is the opaque paging marker a previous
/// [`Reply::Page`] returned as `next`; `limit` is the page size (1–25, already validated).
/// Bodies are the parsed JSON request body (`Value::Null` when the request had none).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `GET /{coll}` (certificates: `includePending` is accepted and ignored).
    List {
        coll: Collection,
        after: Option<String>,
        limit: usize,
    },
    /// `GET /{coll}/{name}/versions`: 200 with an empty page for an unknown name.
    ListVersions {
        coll: Collection,
        name: String,
        after: Option<String>,
        limit: usize,
    },
    /// `GET /deleted{coll}`.
    ListDeleted {
        coll: Collection,
        after: Option<String>,
        limit: usize,
    },
    /// `GET /{coll}/{name}/{version?}`. `out_content_type` is the `outContentType` query
    /// parameter as sent (secrets only: the HTTP layer leaves it `None` for keys and certificates,
    /// where the service does not define it); the vault validates it and converts the value of a
    /// certificate-managed secret (§4.1 S3).
    Get {
        coll: Collection,
        name: String,
        version: Option<String>,
        out_content_type: Option<String>,
    },
    /// `GET /deleted{coll}/{name}`.
    GetDeleted { coll: Collection, name: String },
    /// `GET /certificates/{name}/policy`.
    GetCertificatePolicy { name: String },
    /// `GET /certificates/{name}/pending`.
    GetCertificateOperation { name: String },
    /// `PUT /secrets/{name}`.
    SetSecret { name: String, body: Value },
    /// `POST /keys/{name}/create`.
    CreateKey { name: String, body: Value },
    /// `PUT /keys/{name}` (import).
    ImportKey { name: String, body: Value },
    /// `POST /certificates/{name}/import`.
    ImportCertificate { name: String, body: Value },
    /// `POST /certificates/{name}/create`: 202 with a completed operation (self-signed issuer).
    CreateCertificate { name: String, body: Value },
    /// `PATCH /{coll}/{name}/{version?}`.
    Update {
        coll: Collection,
        name: String,
        version: Option<String>,
        body: Value,
    },
    /// `DELETE /{coll}/{name}`.
    Delete { coll: Collection, name: String },
    /// `DELETE /deleted{coll}/{name}`: 204.
    Purge { coll: Collection, name: String },
    /// `POST /deleted{coll}/{name}/recover`.
    Recover { coll: Collection, name: String },
    /// `POST /{coll}/{name}/backup`.
    Backup { coll: Collection, name: String },
    /// `POST /{coll}/restore`.
    Restore { coll: Collection, body: Value },
}

impl Op {
    /// A stable operation name for counters, fault rules and the request log, e.g.
    /// `secrets.list`, `keys.backup`, `certificates.restore`.
    pub fn name(&self) -> String {
        let (coll, verb) = match self {
            Op::List { coll, .. } => (*coll, "list"),
            Op::ListVersions { coll, .. } => (*coll, "list_versions"),
            Op::ListDeleted { coll, .. } => (*coll, "list_deleted"),
            Op::Get { coll, .. } => (*coll, "get"),
            Op::GetDeleted { coll, .. } => (*coll, "get_deleted"),
            Op::GetCertificatePolicy { .. } => (Collection::Certificates, "get_policy"),
            Op::GetCertificateOperation { .. } => (Collection::Certificates, "get_operation"),
            Op::SetSecret { .. } => (Collection::Secrets, "set"),
            Op::CreateKey { .. } => (Collection::Keys, "create"),
            Op::ImportKey { .. } => (Collection::Keys, "import"),
            Op::ImportCertificate { .. } => (Collection::Certificates, "import"),
            Op::CreateCertificate { .. } => (Collection::Certificates, "create"),
            Op::Update { coll, .. } => (*coll, "update"),
            Op::Delete { coll, .. } => (*coll, "delete"),
            Op::Purge { coll, .. } => (*coll, "purge"),
            Op::Recover { coll, .. } => (*coll, "recover"),
            Op::Backup { coll, .. } => (*coll, "backup"),
            Op::Restore { coll, .. } => (*coll, "restore"),
        };
        format!("{}.{verb}", coll.segment())
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A JSON body with a success status (200, or 202 for certificate create).
    Json { status: u16, body: Value },
    /// 204 with no body (purge).
    NoContent,
    /// One page of a list. `items` are the JSON list items (already shaped for the collection);
    /// `next` is `Some(marker)` when more items follow: the HTTP layer wraps it in a URL-safe
    /// `$skiptoken` and hands it back as `after` on the next request.
    Page {
        items: Vec<Value>,
        next: Option<String>,
    },
}

/// Bulk seeding request of the control plane: `count` objects named `{prefix}{i:05}` with
/// `versions` versions each. Keys are EC P-256 (cheap to make); certificates are self-signed and
/// come with their managed key and secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeedSpec {
    /// Which collection to fill.
    pub kind: Collection,
    /// Name prefix.
    pub prefix: String,
    /// How many objects.
    pub count: usize,
    /// Versions per object (at least 1).
    #[serde(default = "one")]
    pub versions: usize,
    /// Tags put on every version.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// Secret value size in bytes (secrets only).
    #[serde(default = "default_value_bytes")]
    pub value_bytes: usize,
}

impl SeedSpec {
    /// `count` objects of `kind` named `{prefix}…`, each with `versions` versions, no tags and
    /// the default 32-byte values.
    pub fn new(kind: Collection, prefix: &str, count: usize, versions: usize) -> Self {
        SeedSpec {
            kind,
            prefix: prefix.into(),
            count,
            versions,
            tags: Default::default(),
            value_bytes: default_value_bytes(),
        }
    }
}

fn one() -> usize {
    1
}

fn default_value_bytes() -> usize {
    32
}

/// What a seeding request created.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SeedReport {
    /// Objects created.
    pub objects: usize,
    /// Versions created (over all objects).
    pub versions: usize,
}

/// Counts of what a vault holds (for the control plane's listing).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectCounts {
    /// Active secrets, including certificate-managed ones.
    pub secrets: usize,
    /// Active keys, including certificate-managed ones.
    pub keys: usize,
    /// Active certificates.
    pub certificates: usize,
    /// Soft-deleted objects of any kind.
    pub deleted: usize,
}
