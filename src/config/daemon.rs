//! `[daemon]`: how `kvkeep daemon` runs — runs at once, how long a stop may take, and where
//! the health and metrics endpoint listens — and the name of this kvkeep instance, which the
//! daemon and every command run with the file (`kvkeep backup`, `kvkeep prune`) hold vault
//! leases under. Every key has a default, so the section is optional.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::parse_duration_within;
use super::validate::Check;
use crate::store::LeaseHolder;

/// Vaults backed up at once unless configured: a few side by side keep a slow or throttled
/// vault from holding up the rest without opening hundreds of connections.
pub const DEFAULT_MAX_PARALLEL_VAULTS: usize = 4;
/// More than this many vaults at once only piles up requests behind the subscription's
/// throttle budget, which every vault shares.
const MAX_PARALLEL_VAULTS: i64 = 64;
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// systemd's stop timeout must exceed this; an hour is already longer than anyone waits.
const MAX_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3_600);
/// Loopback unless configured: the endpoint is for a Prometheus agent and health checks on the
/// same host, and it names the vaults.
const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// How often the daemon syncs its index from the other instances' manifests unless
/// configured: reports lag other instances by at most this; a backup or prune syncs its vault
/// first anyway.
const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(300);
/// A day at most: past that reports mislead; a second at least (tests go that low).
const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(86_400);

/// `[daemon]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Vaults in flight at once.
    pub max_parallel_vaults: Option<Spanned<i64>>,
    /// How long a stop waits for the runs in flight.
    pub shutdown_timeout: Option<Spanned<String>>,
    /// `host:port` of the health and metrics endpoint; `""` turns it off.
    pub listen: Option<Spanned<String>>,
    /// The instance name vault leases are held under; default the host name.
    pub instance: Option<Spanned<String>>,
    /// How often the index is synced from other instances' manifests.
    pub sync_interval: Option<Spanned<String>>,
}

/// `[daemon]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonConfig {
    /// Vaults (backups or quick verifications) in flight at once.
    pub max_parallel_vaults: usize,
    /// How long SIGTERM waits for the objects in flight before the process exits anyway.
    #[serde(serialize_with = "super::model::duration_ser")]
    pub shutdown_timeout: Duration,
    /// The health and metrics endpoint's address; `None` when turned off.
    pub listen: Option<SocketAddr>,
    /// The instance name written as `instance`, checked; `None` = the host name (see
    /// [`DaemonConfig::lease_holder`]), which is read when a run needs it, not here, so that
    /// validation stays pure.
    pub instance: Option<String>,
    /// How often the daemon syncs every vault's runs from the manifests other instances wrote
    /// (with the catalog identity), so its reports and `kvkeep list runs` show them.
    #[serde(serialize_with = "super::model::duration_ser")]
    pub sync_interval: Duration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            max_parallel_vaults: DEFAULT_MAX_PARALLEL_VAULTS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            listen: DEFAULT_LISTEN.parse().ok(),
            instance: None,
            sync_interval: DEFAULT_SYNC_INTERVAL,
        }
    }
}

/// The instance name when neither `instance` nor the host name gives one.
pub const FALLBACK_INSTANCE: &str = "kvkeep";

impl DaemonConfig {
    /// Who this process holds vault leases as: `instance` when set, else the host name, else
    /// [`FALLBACK_INSTANCE`]. Every process started with one configuration file on one host
    /// gets the same holder, and so the same lease id: a restarted daemon takes its leases
    /// back at once, and the per-vault lock beside the index keeps the daemon and a
    /// `kvkeep backup` on that host apart.
    pub fn lease_holder(&self) -> LeaseHolder {
        let configured = self
            .instance
            .as_deref()
            .and_then(|name| LeaseHolder::new(name).ok());
        if let Some(holder) = configured {
            return holder;
        }
        match host_name().map(|name| LeaseHolder::new(&name)) {
            Some(Ok(holder)) => holder,
            found => {
                // A host name that cannot travel in a header (or none at all): hosts that
                // share the fallback share a lease id, so say how to tell them apart.
                tracing::warn!(
                    host_name_usable = found.is_some(),
                    instance = FALLBACK_INSTANCE,
                    "the host name cannot name this kvkeep instance; holding vault leases as \"kvkeep\": set [daemon] instance to a name unique among the hosts that share the store"
                );
                LeaseHolder::new(FALLBACK_INSTANCE)
                    .unwrap_or_else(|_| unreachable!("the fallback instance name is valid"))
            }
        }
    }
}

/// The name of this host: the kernel's, else `/etc/hostname`; `None` when neither says. Read
/// from the files rather than with `gethostname(2)`, which would need a new dependency.
pub(crate) fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
}

/// Validates `[daemon]`; `None` when a key is wrong (the problem is in `c`).
pub(super) fn validate(c: &mut Check, raw: RawDaemon) -> Option<DaemonConfig> {
    let mut config = DaemonConfig::default();
    let mut ok = true;
    if let Some(n) = &raw.max_parallel_vaults {
        match usize::try_from(*n.get_ref()) {
            Ok(v) if (1..=MAX_PARALLEL_VAULTS).contains(n.get_ref()) => {
                config.max_parallel_vaults = v
            }
            _ => {
                c.at(
                    "daemon.max_parallel_vaults",
                    n,
                    format!("must be between 1 and {MAX_PARALLEL_VAULTS}"),
                );
                ok = false;
            }
        }
    }
    if let Some(t) = &raw.shutdown_timeout {
        match parse_duration_within(t.get_ref(), Duration::from_secs(1), MAX_SHUTDOWN_TIMEOUT) {
            Ok(d) => config.shutdown_timeout = d,
            Err(e) => {
                c.at("daemon.shutdown_timeout", t, e);
                ok = false;
            }
        }
    }
    if let Some(t) = &raw.sync_interval {
        match parse_duration_within(t.get_ref(), Duration::from_secs(1), MAX_SYNC_INTERVAL) {
            Ok(d) => config.sync_interval = d,
            Err(e) => {
                c.at("daemon.sync_interval", t, e);
                ok = false;
            }
        }
    }
    if let Some(l) = &raw.listen {
        let text = l.get_ref().trim();
        if text.is_empty() {
            config.listen = None;
        } else {
            match text.parse::<SocketAddr>() {
                Ok(addr) => config.listen = Some(addr),
                Err(_) => {
                    c.at(
                        "daemon.listen",
                        l,
                        "not an address: write host:port with an IP address, e.g. \"127.0.0.1:9464\" or \"[::1]:9464\", or \"\" to turn the endpoint off",
                    );
                    ok = false;
                }
            }
        }
    }
    if let Some(name) = &raw.instance {
        match LeaseHolder::new(name.get_ref().trim()) {
            Ok(holder) => config.instance = Some(holder.instance().to_string()),
            Err(_) => {
                c.at(
                    "daemon.instance",
                    name,
                    "not an instance name: use 1 to 253 ascii letters, digits, '.', '_' and '-' (a host name fits), unique among the kvkeep instances that share the store",
                );
                ok = false;
            }
        }
    }
    ok.then_some(config)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigErrors};

    fn parse(daemon: &str) -> Result<Config, ConfigErrors> {
        crate::config::parse_minimal(daemon)
    }

    #[test]
    fn without_a_daemon_section_the_defaults_apply() {
        let c = parse("").expect("valid");
        assert_eq!(c.daemon.max_parallel_vaults, 4);
        assert_eq!(c.daemon.shutdown_timeout.as_secs(), 60);
        assert_eq!(c.daemon.sync_interval.as_secs(), 300);
        assert_eq!(
            c.daemon.listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9464")
        );
    }

    #[test]
    fn the_instance_names_the_lease_holder_and_defaults_to_the_host_name() {
        let c = parse("[daemon]\ninstance = \"web-1.example.com\"\n").expect("valid");
        assert_eq!(c.daemon.instance.as_deref(), Some("web-1.example.com"));
        assert_eq!(c.daemon.lease_holder().instance(), "web-1.example.com");
        let c = parse("").expect("valid");
        assert_eq!(c.daemon.instance, None);
        let expected = crate::config::host_name()
            .filter(|h| crate::store::LeaseHolder::new(h).is_ok())
            .unwrap_or_else(|| crate::config::FALLBACK_INSTANCE.to_string());
        assert_eq!(c.daemon.lease_holder().instance(), expected);
    }

    #[test]
    fn each_key_can_be_set_and_an_empty_listen_turns_the_endpoint_off() {
        let c =
            parse("[daemon]\nmax_parallel_vaults = 12\nshutdown_timeout = \"5m\"\nlisten = \"\"\nsync_interval = \"30s\"\n")
                .expect("valid");
        assert_eq!(c.daemon.sync_interval.as_secs(), 30);
        assert_eq!(c.daemon.max_parallel_vaults, 12);
        assert_eq!(c.daemon.shutdown_timeout.as_secs(), 300);
        assert_eq!(c.daemon.listen, None);
        let c = parse("[daemon]\nlisten = \"[::1]:9100\"\n").expect("valid");
        assert_eq!(
            c.daemon.listen.map(|a| a.to_string()).as_deref(),
            Some("[::1]:9100")
        );
    }

    #[test]
    fn bad_values_name_the_key_and_line_and_never_echo_the_value() {
        for (daemon, key, says) in [
            (
                "max_parallel_vaults = 0",
                "daemon.max_parallel_vaults",
                "between 1 and 64",
            ),
            (
                "max_parallel_vaults = 65",
                "daemon.max_parallel_vaults",
                "between 1 and 64",
            ),
            (
                "shutdown_timeout = \"canary-7f3\"",
                "daemon.shutdown_timeout",
                "not a duration",
            ),
            (
                "shutdown_timeout = \"2h\"",
                "daemon.shutdown_timeout",
                "at most 1h",
            ),
            (
                "sync_interval = \"2d\"",
                "daemon.sync_interval",
                "at most 1d",
            ),
            (
                "listen = \"canary-7f3:80\"",
                "daemon.listen",
                "not an address",
            ),
        ] {
            let errors = parse(&format!("[daemon]\n{daemon}\n"))
                .expect_err(daemon)
                .errors;
            assert_eq!(errors.len(), 1, "{daemon}: {errors:?}");
            let e = &errors[0];
            assert_eq!(e.path, key, "{daemon}");
            assert_eq!(e.line, Some(12), "{daemon}");
            assert!(e.message.contains(says), "{daemon}: {}", e.message);
            assert!(!e.to_string().contains("canary"), "{daemon}: {e}");
        }
        let errors = parse("[daemon]\ninstance = \"canary 7f3\"\n")
            .expect_err("bad instance")
            .errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "daemon.instance");
        assert!(
            errors[0].message.contains("not an instance name"),
            "{}",
            errors[0].message
        );
        assert!(!errors[0].to_string().contains("canary"), "{}", errors[0]);
        let unknown = parse("[daemon]\nlisten_port = 9\n").expect_err("unknown key");
        assert!(unknown.to_string().contains("listen_port"), "{unknown}");
    }
}
