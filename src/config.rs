//! Command line and environment -> validated `Settings`. Every flag also reads an environment
//! variable; PXB's own names are honoured (`BACKUP_INFO_METRICS_BACKFILL_HOURS`,
//! `PX_BACKUP_FEDERATED`). A bad value is an error that names it (exit code 64).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use crate::model::SourceId;

/// Default backfill window in Classic mode (PXB's chart default).
pub const CLASSIC_BACKFILL_HOURS: u64 = 24;
/// Default backfill window in Federated mode.
pub const FEDERATED_BACKFILL_HOURS: u64 = 1;
/// A year: a longer window is almost certainly a typo (minutes or seconds given as hours).
const MAX_BACKFILL_HOURS: u64 = 24 * 366;
/// PX-Backup's REST gateway as seen from a container of its own pod.
pub const DEFAULT_PXB_URL: &str = "http://127.0.0.1:10001";
/// px-central's Keycloak realm as seen from PX-Backup's namespace: the Service
/// `pxcentral-keycloak-http` (port 80, path `/auth`), the URL px-central itself gives PX-Backup.
pub const DEFAULT_PXB_OIDC_URL: &str = "http://pxcentral-keycloak-http/auth/realms/master";
/// px-central's public Keycloak client, the one its UI and PX-Backup's docs log in with.
pub const DEFAULT_PXB_OIDC_CLIENT_ID: &str = "pxcentral";
/// Polling faster than this would only load PX-Backup (tests use the minimum).
const MIN_PXB_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A page this large is already tens of megabytes of JSON.
const MAX_PXB_PAGE_SIZE: u64 = 100_000;
/// How long one request to PX-Backup may take, answer included: a page of 1,000 backups with
/// their resource details is several megabytes for PX-Backup to gather from its database.
pub const PXB_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Parser)]
#[command(
    name = "pxbackup-sidecar",
    version,
    about = "Prometheus exporter and Pure1 telemetry sidecar for Portworx Backup",
    long_about = "Exports Portworx Backup lifecycle metrics (backups, restores, schedules, clusters, \
                  backup locations) for Prometheus, keeps deleted backups visible for the backfill \
                  window, and uploads telemetry to Pure1 when px-backup-telemetry-config enables it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar.
    Run(Box<RunArgs>),
    /// Print the metric catalog (every family, its type, help and labels) as JSON.
    Catalog,
    /// Pure1 telemetry tools.
    Telemetry {
        #[command(subcommand)]
        command: TelemetryCommand,
    },
    /// The reference pages generated from the code: the flags and the metric catalog.
    Docs {
        #[command(subcommand)]
        command: DocsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// Print the command line's reference (every command and flag) as Markdown.
    Flags,
    /// Print the metric catalog as a Markdown table.
    Metrics,
    /// Write docs/flags.md and docs/metrics.md under the repository's root.
    Write {
        /// The repository's root.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TelemetryCommand {
    /// Print the next health, logs and clusters bundles exactly as they would leave
    /// (redacted, uncompressed, pretty JSON), without sending anything and without
    /// registering. Takes the same flags (and environment variables) as `run`.
    Preview(Box<RunArgs>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where objects come from: demo (a synthetic fleet, no cluster needed), ingest (POST
    /// /v1/events), kube (Stork CRs), pxb (PX-Backup's REST API). Repeat the flag or separate
    /// with commas.
    #[arg(
        long = "source",
        env = "PXBACKUP_SOURCES",
        value_delimiter = ',',
        default_value = "demo"
    )]
    pub sources: Vec<String>,

    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "PXBACKUP_LISTEN", default_value = "0.0.0.0:9977")]
    pub listen: String,

    /// Address for POST /v1/events (the ingest source). Loopback by default so that only the
    /// pod's own containers can push.
    #[arg(long, env = "PXBACKUP_INGEST_LISTEN", default_value = "127.0.0.1:9978")]
    pub ingest_listen: String,

    /// File holding a bearer token that ingest requests must present.
    #[arg(long, env = "PXBACKUP_INGEST_TOKEN_FILE")]
    pub ingest_token_file: Option<PathBuf>,

    /// Directory for the journal of backups and deleted-backup tombstones (so deleted backups
    /// survive a restart) and for telemetry's spool, cursors and certificate. Without it,
    /// deleted backups are kept in memory only.
    #[arg(long, env = "PXBACKUP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Hours a deleted backup stays visible (status="Deleted"). Default 24, or 1 with
    /// --federated; 0 drops deleted backups at once.
    #[arg(long, env = "BACKUP_INFO_METRICS_BACKFILL_HOURS")]
    pub backfill_hours: Option<String>,

    /// PXB runs in Federated mode (changes the default backfill window to 1 hour).
    #[arg(long, env = "PX_BACKUP_FEDERATED", num_args = 0..=1, default_missing_value = "true")]
    pub federated: Option<String>,

    /// At most this many resource series (VM resources, namespace resource types) per backup;
    /// what is cut is counted in pxbackup_sidecar_resource_series_dropped_total.
    #[arg(
        long,
        env = "PXBACKUP_MAX_RESOURCE_SERIES_PER_BACKUP",
        default_value_t = 500
    )]
    pub max_resource_series_per_backup: usize,

    /// Seed of the demo fleet (same seed, same fleet).
    #[arg(long, env = "PXBACKUP_DEMO_SEED", default_value_t = 42)]
    pub demo_seed: u64,

    /// How often the demo fleet moves on (humantime, e.g. 2s).
    #[arg(long, env = "PXBACKUP_DEMO_INTERVAL", default_value = "2s")]
    pub demo_interval: String,

    /// Log line format.
    #[arg(long, env = "PXBACKUP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax, e.g. info or pxbackup_sidecar=debug).
    #[arg(long, env = "PXBACKUP_LOG", default_value = "info")]
    pub log_level: String,

    /// Cluster name put on the objects of the kube source.
    #[arg(long, env = "PXBACKUP_CLUSTER_NAME", default_value = "")]
    pub cluster_name: String,

    /// Namespaces the kube source watches (comma separated); all when empty.
    #[arg(long, env = "PXBACKUP_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Kubeconfig for the kube source and the telemetry ConfigMap; in-cluster config otherwise.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Watch the telemetry ConfigMap through the Kubernetes API (NAMESPACE/NAME).
    #[arg(
        long,
        env = "PXBACKUP_TELEMETRY_CONFIGMAP",
        conflicts_with = "telemetry_config_file"
    )]
    pub telemetry_configmap: Option<String>,

    /// Watch the telemetry configuration in a mounted ConfigMap (directory) or a file.
    #[arg(long, env = "PXBACKUP_TELEMETRY_CONFIG_FILE")]
    pub telemetry_config_file: Option<PathBuf>,

    /// Log files or directories whose new lines are uploaded (redacted) with telemetry.
    #[arg(
        long = "telemetry-log-path",
        env = "PXBACKUP_TELEMETRY_LOG_PATHS",
        value_delimiter = ','
    )]
    pub telemetry_log_paths: Vec<PathBuf>,

    /// Override the Pure1 endpoint (https://... or dir:///path for air-gapped sites).
    #[arg(long, env = "PXBACKUP_TELEMETRY_ENDPOINT")]
    pub telemetry_endpoint: Option<String>,

    /// Extra CA bundle (PEM) trusted for Pure1 (a proxy's or a test peer's).
    #[arg(long, env = "PXBACKUP_TELEMETRY_CA_FILE")]
    pub telemetry_ca_file: Option<PathBuf>,

    /// PX-Backup's ConfigMap whose TELEMETRY_COLLECTION_ENABLED pauses every upload when it
    /// is not "true" (with --telemetry-configmap): NAME, in the telemetry ConfigMap's
    /// namespace, or NAMESPACE/NAME.
    #[arg(
        long,
        env = "PXBACKUP_TELEMETRY_PAUSE_CONFIGMAP",
        default_value = "px-backup-config"
    )]
    pub telemetry_pause_configmap: String,

    /// PX-Backup's REST gateway, for the pxb source (its port `http-rest-api`; https needs
    /// --pxb-ca-file when the certificate is not publicly trusted).
    #[arg(long, env = "PXBACKUP_PXB_URL", default_value = DEFAULT_PXB_URL)]
    pub pxb_url: String,

    /// File holding the bearer token for PX-Backup's API (a mounted Secret); re-read when it
    /// changes and when PX-Backup refuses the token.
    #[arg(long, env = "PXBACKUP_PXB_TOKEN_FILE")]
    pub pxb_token_file: Option<PathBuf>,

    /// CA bundle (PEM) trusted for an https --pxb-url (and an https --pxb-oidc-url).
    #[arg(long, env = "PXBACKUP_PXB_CA_FILE")]
    pub pxb_ca_file: Option<PathBuf>,

    /// PX-Backup's Keycloak realm (px-central's), where the pxb source logs in for its own
    /// token when OIDC credentials are given; the token endpoint is found through the realm's
    /// .well-known/openid-configuration.
    #[arg(long, env = "PXBACKUP_PXB_OIDC_URL", default_value = DEFAULT_PXB_OIDC_URL)]
    pub pxb_oidc_url: String,

    /// Keycloak client the pxb source logs in with.
    #[arg(long, env = "PXBACKUP_PXB_OIDC_CLIENT_ID", default_value = DEFAULT_PXB_OIDC_CLIENT_ID)]
    pub pxb_oidc_client_id: String,

    /// File holding the username of a PX-Backup user who can read the organizations polled
    /// (password grant, with --pxb-oidc-password-file); re-read when it changes.
    #[arg(long, env = "PXBACKUP_PXB_OIDC_USERNAME_FILE")]
    pub pxb_oidc_username_file: Option<PathBuf>,

    /// File holding that user's password; re-read when it changes.
    #[arg(long, env = "PXBACKUP_PXB_OIDC_PASSWORD_FILE")]
    pub pxb_oidc_password_file: Option<PathBuf>,

    /// File holding the secret of a confidential Keycloak client: alone, the
    /// client-credentials grant (a client with a service account); with a username and
    /// password, the client's authentication for the password grant. Re-read when it changes.
    #[arg(long, env = "PXBACKUP_PXB_OIDC_CLIENT_SECRET_FILE")]
    pub pxb_oidc_client_secret_file: Option<PathBuf>,

    /// Time from the start of one poll of PX-Backup to the start of the next (humantime).
    #[arg(long, env = "PXBACKUP_PXB_POLL_INTERVAL", default_value = "30s")]
    pub pxb_poll_interval: String,

    /// Organizations to poll (comma separated); every one GET /v1/organization returns when
    /// empty.
    #[arg(long, env = "PXBACKUP_PXB_ORGS", value_delimiter = ',')]
    pub pxb_orgs: Vec<String>,

    /// Objects asked for per page of an enumeration.
    #[arg(long, env = "PXBACKUP_PXB_PAGE_SIZE", default_value = "1000")]
    pub pxb_page_size: String,

    /// Secret (in the ConfigMap's namespace) that keeps the Pure1 client certificate and key
    /// when the configuration comes from the Kubernetes API.
    #[arg(
        long,
        env = "PXBACKUP_TELEMETRY_SECRET",
        default_value = "pure-telemetry-certs"
    )]
    pub telemetry_secret: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--source {0:?}: {1}")]
    Source(String, String),
    #[error("--{flag} {value:?} is not a socket address (host:port): {reason}")]
    Address {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("--backfill-hours / BACKUP_INFO_METRICS_BACKFILL_HOURS {0:?} is not a whole number of hours from 0 to {MAX_BACKFILL_HOURS}")]
    BackfillHours(String),
    #[error("--federated / PX_BACKUP_FEDERATED {0:?} is not true or false")]
    Federated(String),
    #[error("--demo-interval {0:?} is not a duration of at least 100ms (e.g. 2s)")]
    DemoInterval(String),
    #[error("--ingest-token-file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("--log-level {0:?}: {1}")]
    LogLevel(String, String),
    #[error("--telemetry-configmap {0:?} is not NAMESPACE/NAME")]
    TelemetryConfigMap(String),
    #[error("--telemetry-pause-configmap / PXBACKUP_TELEMETRY_PAUSE_CONFIGMAP {0:?} is not NAME or NAMESPACE/NAME")]
    TelemetryPauseConfigMap(String),
    #[error("--telemetry-endpoint {0:?}: {1}")]
    TelemetryEndpoint(String, String),
    #[error("--pxb-url / PXBACKUP_PXB_URL {0:?}: {1}")]
    PxbUrl(String, String),
    #[error("--pxb-poll-interval / PXBACKUP_PXB_POLL_INTERVAL {0:?} is not a duration of at least {MIN_PXB_POLL_INTERVAL:?} (e.g. 30s)")]
    PxbPollInterval(String),
    #[error("--pxb-page-size / PXBACKUP_PXB_PAGE_SIZE {0:?} is not a whole number from 1 to {MAX_PXB_PAGE_SIZE}")]
    PxbPageSize(String),
    #[error("--pxb-token-file {path}: {reason}")]
    PxbTokenFile { path: String, reason: String },
    #[error("--pxb-ca-file {path}: {reason}")]
    PxbCaFile { path: String, reason: String },
    #[error("--pxb-oidc-url / PXBACKUP_PXB_OIDC_URL {0:?}: {1}")]
    PxbOidcUrl(String, String),
    #[error("--pxb-oidc-client-id / PXBACKUP_PXB_OIDC_CLIENT_ID {0:?}: {1}")]
    PxbOidcClientId(String, String),
    #[error("--pxb-token-file (PXBACKUP_PXB_TOKEN_FILE) and {oidc} are both given: the pxb source either reads a token kept up to date for it, or logs in to Keycloak itself; give one of them")]
    PxbAuthConflict { oidc: String },
    #[error("{given} is given without {missing}: the password grant needs both")]
    PxbOidcIncomplete {
        given: &'static str,
        missing: &'static str,
    },
    #[error("{flag} {path}: {reason}")]
    PxbOidcFile {
        flag: &'static str,
        path: String,
        reason: String,
    },
}

/// One ConfigMap by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigMapRef {
    pub namespace: String,
    pub name: String,
}

/// Where the telemetry configuration comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TelemetryConfigSource {
    /// No source: telemetry stays disabled.
    None,
    /// Through the Kubernetes API: `px-backup-telemetry-config`, and PX-Backup's
    /// `px-backup-config` whose pause switch is honoured too.
    ConfigMap {
        config: ConfigMapRef,
        pause: ConfigMapRef,
    },
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub sources: Vec<SourceId>,
    pub listen: SocketAddr,
    pub ingest_listen: SocketAddr,
    /// A secret type: `Debug` (and so any log line) shows it as redacted.
    pub ingest_token: Option<SecretString>,
    /// Where `ingest_token` was read from: read again when it changes.
    pub ingest_token_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub federated: bool,
    pub backfill: Duration,
    pub max_resource_series_per_backup: usize,
    pub demo_seed: u64,
    pub demo_interval: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    pub cluster_name: String,
    pub namespaces: Vec<String>,
    pub kubeconfig: Option<PathBuf>,
    pub telemetry_config: TelemetryConfigSource,
    pub telemetry_log_paths: Vec<PathBuf>,
    pub telemetry_endpoint: Option<String>,
    pub telemetry_ca_file: Option<PathBuf>,
    pub telemetry_secret: String,
    pub pxb: PxbSettings,
}

/// What the pxb source needs: where PX-Backup is, how to authenticate, how to poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PxbSettings {
    /// http(s)://host:port, without a trailing slash.
    pub url: String,
    pub token_file: Option<PathBuf>,
    /// The source's own Keycloak session, when OIDC credentials are given (never together
    /// with `token_file`).
    pub oidc: Option<OidcSettings>,
    /// The PEM of --pxb-ca-file, read and checked at start.
    pub ca_pem: Option<Vec<u8>>,
    pub poll_interval: Duration,
    /// Empty: every organization PX-Backup lists.
    pub orgs: Vec<String>,
    pub page_size: u64,
    pub request_timeout: Duration,
}

/// Where the pxb source logs in to Keycloak, and the files its credentials are read from (the
/// secrets themselves are read by the session, and again when the files change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcSettings {
    /// The realm's URL (the issuer), without a trailing slash.
    pub url: String,
    pub client_id: String,
    /// The password grant: the files of the username and of the password.
    pub user_files: Option<(PathBuf, PathBuf)>,
    /// A confidential client's secret: the client-credentials grant when there is no user.
    pub client_secret_file: Option<PathBuf>,
}

impl Default for PxbSettings {
    fn default() -> Self {
        PxbSettings {
            url: DEFAULT_PXB_URL.to_owned(),
            token_file: None,
            oidc: None,
            ca_pem: None,
            poll_interval: Duration::from_secs(30),
            orgs: Vec::new(),
            page_size: 1000,
            request_timeout: PXB_REQUEST_TIMEOUT,
        }
    }
}

impl Settings {
    /// How the inventory keeps deleted backups and resource series.
    pub fn inventory_options(&self) -> crate::inventory::Options {
        crate::inventory::Options {
            backfill: crate::inventory::BackfillWindow {
                window: self.backfill,
                federated: self.federated,
            },
            max_resource_series_per_backup: self.max_resource_series_per_backup,
        }
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "0" | "no" => Some(false),
        "true" | "1" | "yes" => Some(true),
        _ => None,
    }
}

/// A namespace or ConfigMap name: non-empty, no slash (the API server checks the rest).
fn valid_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('/')
}

fn address(flag: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|e: std::net::AddrParseError| ConfigError::Address {
            flag,
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

impl Settings {
    pub fn from_args(a: RunArgs) -> Result<Settings, ConfigError> {
        let mut sources = Vec::new();
        for s in a.sources.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let id: SourceId = s
                .parse()
                .map_err(|e| ConfigError::Source(s.to_owned(), e))?;
            if !sources.contains(&id) {
                sources.push(id);
            }
        }
        if sources.is_empty() {
            return Err(ConfigError::Source(String::new(), "no source given".into()));
        }
        let federated = match a.federated.as_deref() {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| ConfigError::Federated(v.to_owned()))?,
        };
        // PXB's chart passes the variable empty when the value is unset: that means default.
        let hours = match a.backfill_hours.as_deref().map(str::trim) {
            None | Some("") if federated => FEDERATED_BACKFILL_HOURS,
            None | Some("") => CLASSIC_BACKFILL_HOURS,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|h| *h <= MAX_BACKFILL_HOURS)
                .ok_or_else(|| ConfigError::BackfillHours(v.to_owned()))?,
        };
        let demo_interval = humantime::parse_duration(&a.demo_interval)
            .ok()
            .filter(|d| *d >= Duration::from_millis(100))
            .ok_or_else(|| ConfigError::DemoInterval(a.demo_interval.clone()))?;
        let ingest_token = match &a.ingest_token_file {
            None => None,
            Some(path) => {
                let err = |reason: String| ConfigError::TokenFile {
                    path: path.display().to_string(),
                    reason,
                };
                let token = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
                let token = token.trim().to_owned();
                if token.is_empty() {
                    return Err(err("the file is empty".into()));
                }
                Some(SecretString::from(token))
            }
        };
        tracing_subscriber::EnvFilter::try_new(&a.log_level)
            .map_err(|e| ConfigError::LogLevel(a.log_level.clone(), e.to_string()))?;
        let telemetry_config = match (&a.telemetry_configmap, &a.telemetry_config_file) {
            (Some(cm), _) => {
                let config = match cm.split_once('/') {
                    Some((ns, name)) if valid_name(ns) && valid_name(name) => ConfigMapRef {
                        namespace: ns.to_owned(),
                        name: name.to_owned(),
                    },
                    _ => return Err(ConfigError::TelemetryConfigMap(cm.clone())),
                };
                let p = a.telemetry_pause_configmap.trim();
                let pause = match p.split_once('/') {
                    None if valid_name(p) => ConfigMapRef {
                        namespace: config.namespace.clone(),
                        name: p.to_owned(),
                    },
                    Some((ns, name)) if valid_name(ns) && valid_name(name) => ConfigMapRef {
                        namespace: ns.to_owned(),
                        name: name.to_owned(),
                    },
                    _ => {
                        return Err(ConfigError::TelemetryPauseConfigMap(
                            a.telemetry_pause_configmap.clone(),
                        ))
                    }
                };
                TelemetryConfigSource::ConfigMap { config, pause }
            }
            (None, Some(path)) => TelemetryConfigSource::File(path.clone()),
            (None, None) => TelemetryConfigSource::None,
        };
        if let Some(e) = &a.telemetry_endpoint {
            if !(e.starts_with("https://") || e.starts_with("dir:///")) {
                return Err(ConfigError::TelemetryEndpoint(
                    e.clone(),
                    "must start with https:// or dir:///".into(),
                ));
            }
        }
        let pxb = pxb_settings(&a, sources.contains(&SourceId::Pxb))?;
        Ok(Settings {
            sources,
            listen: address("listen", &a.listen)?,
            ingest_listen: address("ingest-listen", &a.ingest_listen)?,
            ingest_token,
            ingest_token_file: a.ingest_token_file.clone(),
            state_dir: a.state_dir,
            federated,
            backfill: Duration::from_secs(hours * 3600),
            max_resource_series_per_backup: a.max_resource_series_per_backup,
            demo_seed: a.demo_seed,
            demo_interval,
            log_format: a.log_format,
            log_level: a.log_level,
            cluster_name: a.cluster_name,
            namespaces: a.namespaces.into_iter().filter(|n| !n.is_empty()).collect(),
            kubeconfig: a.kubeconfig,
            telemetry_config,
            telemetry_log_paths: a.telemetry_log_paths,
            telemetry_endpoint: a.telemetry_endpoint,
            telemetry_ca_file: a.telemetry_ca_file,
            telemetry_secret: a.telemetry_secret,
            pxb,
        })
    }
}

/// Checks the pxb flags. The files are read only when the source is enabled: the URL, interval
/// and page size have defaults and are checked always.
fn pxb_settings(a: &RunArgs, enabled: bool) -> Result<PxbSettings, ConfigError> {
    let url_error = |reason: &str| ConfigError::PxbUrl(a.pxb_url.clone(), reason.to_owned());
    let url = reqwest::Url::parse(a.pxb_url.trim()).map_err(|e| url_error(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(url_error("must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(url_error("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(url_error(
            "must not carry credentials; the token goes in --pxb-token-file",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(url_error("must not have a query or a fragment"));
    }
    let poll_interval = humantime::parse_duration(a.pxb_poll_interval.trim())
        .ok()
        .filter(|d| *d >= MIN_PXB_POLL_INTERVAL)
        .ok_or_else(|| ConfigError::PxbPollInterval(a.pxb_poll_interval.clone()))?;
    let page_size = a
        .pxb_page_size
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=MAX_PXB_PAGE_SIZE).contains(n))
        .ok_or_else(|| ConfigError::PxbPageSize(a.pxb_page_size.clone()))?;
    let mut orgs: Vec<String> = Vec::new();
    for org in a
        .pxb_orgs
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
    {
        if !orgs.iter().any(|o| o == org) {
            orgs.push(org.to_owned());
        }
    }
    let oidc = oidc_settings(a)?;
    let mut settings = PxbSettings {
        url: url.as_str().trim_end_matches('/').to_owned(),
        token_file: a.pxb_token_file.clone(),
        oidc,
        ca_pem: None,
        poll_interval,
        orgs,
        page_size,
        request_timeout: PXB_REQUEST_TIMEOUT,
    };
    if !enabled {
        return Ok(settings);
    }
    if let Some(path) = &a.pxb_token_file {
        let err = |reason: String| ConfigError::PxbTokenFile {
            path: path.display().to_string(),
            reason,
        };
        let token = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        if token.trim().is_empty() {
            return Err(err("the file is empty".into()));
        }
    }
    if let Some(oidc) = &settings.oidc {
        let user_files = oidc.user_files.iter().flat_map(|(u, p)| {
            [
                ("--pxb-oidc-username-file", u),
                ("--pxb-oidc-password-file", p),
            ]
        });
        let secret_file = oidc
            .client_secret_file
            .iter()
            .map(|s| ("--pxb-oidc-client-secret-file", s));
        for (flag, path) in user_files.chain(secret_file) {
            check_secret_file(flag, path)?;
        }
    }
    if let Some(path) = &a.pxb_ca_file {
        let err = |reason: String| ConfigError::PxbCaFile {
            path: path.display().to_string(),
            reason,
        };
        if url.scheme() != "https" {
            return Err(err(format!(
                "a CA applies to https only, and --pxb-url is {}",
                settings.url
            )));
        }
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => settings.ca_pem = Some(pem),
            Ok(_) => return Err(err("no PEM certificate in the file".into())),
            Err(e) => return Err(err(e.to_string())),
        }
    }
    Ok(settings)
}

/// The OIDC flags: `None` without credentials. The URL and client id have defaults and are
/// checked always, as is a token file given with OIDC credentials; the files are read only
/// when the source is on.
fn oidc_settings(a: &RunArgs) -> Result<Option<OidcSettings>, ConfigError> {
    let url_error =
        |reason: &str| ConfigError::PxbOidcUrl(a.pxb_oidc_url.clone(), reason.to_owned());
    let url = reqwest::Url::parse(a.pxb_oidc_url.trim()).map_err(|e| url_error(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(url_error("must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(url_error("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(url_error(
            "must not carry credentials; they go in --pxb-oidc-username-file and --pxb-oidc-password-file",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(url_error("must not have a query or a fragment"));
    }
    let client_id = a.pxb_oidc_client_id.trim();
    if client_id.is_empty() {
        return Err(ConfigError::PxbOidcClientId(
            a.pxb_oidc_client_id.clone(),
            "is empty".into(),
        ));
    }
    if client_id.chars().any(char::is_control) {
        return Err(ConfigError::PxbOidcClientId(
            a.pxb_oidc_client_id.clone(),
            "holds a control character".into(),
        ));
    }
    let given: Vec<&str> = [
        (&a.pxb_oidc_username_file, "--pxb-oidc-username-file"),
        (&a.pxb_oidc_password_file, "--pxb-oidc-password-file"),
        (
            &a.pxb_oidc_client_secret_file,
            "--pxb-oidc-client-secret-file",
        ),
    ]
    .into_iter()
    .filter(|(file, _)| file.is_some())
    .map(|(_, flag)| flag)
    .collect();
    if given.is_empty() {
        return Ok(None);
    }
    if a.pxb_token_file.is_some() {
        return Err(ConfigError::PxbAuthConflict {
            oidc: given.join(", "),
        });
    }
    let user_files = match (&a.pxb_oidc_username_file, &a.pxb_oidc_password_file) {
        (Some(u), Some(p)) => Some((u.clone(), p.clone())),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::PxbOidcIncomplete {
                given: "--pxb-oidc-username-file",
                missing: "--pxb-oidc-password-file",
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::PxbOidcIncomplete {
                given: "--pxb-oidc-password-file",
                missing: "--pxb-oidc-username-file",
            })
        }
    };
    Ok(Some(OidcSettings {
        url: url.as_str().trim_end_matches('/').to_owned(),
        client_id: client_id.to_owned(),
        user_files,
        client_secret_file: a.pxb_oidc_client_secret_file.clone(),
    }))
}

/// A credential file must be readable and not empty; what it holds is never quoted.
fn check_secret_file(flag: &'static str, path: &std::path::Path) -> Result<(), ConfigError> {
    let err = |reason: String| ConfigError::PxbOidcFile {
        flag,
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    if text.trim().is_empty() {
        return Err(err("the file is empty".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["pxbackup-sidecar", "run"];
        argv.extend_from_slice(args);
        let Command::Run(run) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not run")
        };
        Settings::from_args(*run)
    }

    #[test]
    fn backfill_defaults_follow_the_mode() {
        assert_eq!(
            settings(&[]).unwrap().backfill,
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(
            settings(&["--federated"]).unwrap().backfill,
            Duration::from_secs(3600)
        );
        assert_eq!(
            settings(&["--federated=false"]).unwrap().backfill,
            Duration::from_secs(24 * 3600)
        );
        let s = settings(&["--federated", "--backfill-hours", "6"]).unwrap();
        assert_eq!(s.backfill, Duration::from_secs(6 * 3600));
        assert_eq!(
            settings(&["--backfill-hours", "0"]).unwrap().backfill,
            Duration::ZERO
        );
        assert_eq!(
            settings(&["--backfill-hours", ""]).unwrap().backfill,
            Duration::from_secs(24 * 3600)
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = settings(&["--backfill-hours", "24h"]).unwrap_err();
        assert!(e.to_string().contains("\"24h\""), "{e}");
        let e = settings(&["--backfill-hours=-1"]).unwrap_err();
        assert!(e.to_string().contains("\"-1\""), "{e}");
        let e = settings(&["--federated=maybe"]).unwrap_err();
        assert!(e.to_string().contains("\"maybe\""), "{e}");
        let e = settings(&["--source", "demo,kuube"]).unwrap_err();
        assert!(e.to_string().contains("\"kuube\""), "{e}");
        let e = settings(&["--listen", "9977"]).unwrap_err();
        assert!(e.to_string().contains("\"9977\""), "{e}");
        let e = settings(&["--telemetry-configmap", "just-a-name"]).unwrap_err();
        assert!(e.to_string().contains("just-a-name"), "{e}");
        let e = settings(&[
            "--telemetry-configmap",
            "pxb/cm",
            "--telemetry-pause-configmap",
            "a/b/c",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("a/b/c"), "{e}");
        let e = settings(&["--telemetry-endpoint", "http://plain"]).unwrap_err();
        assert!(e.to_string().contains("http://plain"), "{e}");
        let e = settings(&["--ingest-token-file", "/nonexistent/token"]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/token"), "{e}");
    }

    #[test]
    fn the_pause_configmap_defaults_to_the_telemetry_namespace() {
        let cm = |namespace: &str, name: &str| ConfigMapRef {
            namespace: namespace.into(),
            name: name.into(),
        };
        let s = settings(&["--telemetry-configmap", "pxb/px-backup-telemetry-config"]).unwrap();
        assert_eq!(
            s.telemetry_config,
            TelemetryConfigSource::ConfigMap {
                config: cm("pxb", "px-backup-telemetry-config"),
                pause: cm("pxb", "px-backup-config"),
            }
        );
        let s = settings(&[
            "--telemetry-configmap",
            "pxb/t",
            "--telemetry-pause-configmap",
            "other/p",
        ])
        .unwrap();
        assert!(matches!(s.telemetry_config,
            TelemetryConfigSource::ConfigMap { pause, .. } if pause == cm("other", "p")));
    }

    #[test]
    fn the_ingest_token_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cr3t-canary\n").unwrap();
        let s = settings(&["--ingest-token-file", f.to_str().unwrap()]).unwrap();
        assert!(!format!("{s:?}").contains("s3cr3t-canary"));
        use secrecy::ExposeSecret;
        assert_eq!(s.ingest_token.unwrap().expose_secret(), "s3cr3t-canary");
    }

    #[test]
    fn pxb_flags_default_and_bad_values_are_named() {
        let s = settings(&["--source", "pxb"]).unwrap();
        assert_eq!(s.pxb.url, "http://127.0.0.1:10001");
        assert_eq!(s.pxb.poll_interval, Duration::from_secs(30));
        assert_eq!(s.pxb.page_size, 1000);
        assert!(s.pxb.orgs.is_empty() && s.pxb.token_file.is_none());
        let s = settings(&[
            "--pxb-url",
            "https://px-backup.px-backup.svc:10001/",
            "--pxb-orgs",
            "default, other,default",
            "--pxb-poll-interval",
            "1m",
            "--pxb-page-size",
            "250",
        ])
        .unwrap();
        assert_eq!(s.pxb.url, "https://px-backup.px-backup.svc:10001");
        assert_eq!(s.pxb.orgs, vec!["default", "other"]);
        assert_eq!(s.pxb.poll_interval, Duration::from_secs(60));
        assert_eq!(s.pxb.page_size, 250);

        for (args, needle) in [
            (vec!["--pxb-url", "px-backup:10001"], "px-backup:10001"),
            (vec!["--pxb-url", "ftp://px-backup"], "ftp://px-backup"),
            (vec!["--pxb-url", "http://u:p@px-backup"], "credentials"),
            (vec!["--pxb-poll-interval", "soon"], "\"soon\""),
            (vec!["--pxb-poll-interval", "10ms"], "\"10ms\""),
            (vec!["--pxb-page-size", "0"], "\"0\""),
            (vec!["--pxb-page-size", "1k"], "\"1k\""),
        ] {
            let e = settings(&args).unwrap_err();
            assert!(e.to_string().contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn pxb_files_are_checked_when_the_source_is_on() {
        let missing = ["--pxb-token-file", "/nonexistent/pxb-token"];
        assert!(settings(&missing).is_ok(), "not read without --source pxb");
        let e = settings(&[&["--source", "pxb"][..], &missing[..]].concat()).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/pxb-token"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = settings(&[
            "--source",
            "pxb",
            "--pxb-token-file",
            empty.to_str().unwrap(),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");

        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let ca = not_pem.to_str().unwrap();
        let https = ["--source", "pxb", "--pxb-url", "https://pxb:10001"];
        let e = settings(&[&https[..], &["--pxb-ca-file", ca][..]].concat()).unwrap_err();
        assert!(e.to_string().contains(ca), "{e}");
        let e = settings(&["--source", "pxb", "--pxb-ca-file", ca]).unwrap_err();
        assert!(e.to_string().contains("https only"), "{e}");
    }

    #[test]
    fn oidc_flags_default_to_px_centrals_keycloak() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.to_str().unwrap().to_owned()
        };
        let (user, password) = (file("username", "reader\n"), file("password", "pa55\n"));
        let s = settings(&[
            "--source",
            "pxb",
            "--pxb-oidc-username-file",
            &user,
            "--pxb-oidc-password-file",
            &password,
        ])
        .unwrap();
        let oidc = s.pxb.oidc.clone().unwrap();
        assert_eq!(
            oidc.url,
            "http://pxcentral-keycloak-http/auth/realms/master"
        );
        assert_eq!(oidc.client_id, "pxcentral");
        assert_eq!(
            oidc.user_files,
            Some((user.clone().into(), password.clone().into()))
        );
        assert!(oidc.client_secret_file.is_none() && s.pxb.token_file.is_none());
        assert!(!format!("{s:?}").contains("pa55"));

        let secret = file("secret", "s3cr3t");
        let s = settings(&[
            "--source",
            "pxb",
            "--pxb-oidc-url",
            "https://keycloak.example:8443/auth/realms/px/",
            "--pxb-oidc-client-id",
            " pxb-sidecar ",
            "--pxb-oidc-client-secret-file",
            &secret,
        ])
        .unwrap();
        let oidc = s.pxb.oidc.unwrap();
        assert_eq!(oidc.url, "https://keycloak.example:8443/auth/realms/px");
        assert_eq!(oidc.client_id, "pxb-sidecar");
        assert!(oidc.user_files.is_none());
        assert_eq!(oidc.client_secret_file, Some(secret.into()));
        // Without credentials there is no session, whatever the URL.
        assert!(settings(&["--source", "pxb"]).unwrap().pxb.oidc.is_none());
    }

    #[test]
    fn oidc_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.to_str().unwrap().to_owned()
        };
        let (user, password, token) = (file("u", "reader"), file("p", "pa55"), file("t", "tok"));
        let empty = file("empty", "\n");
        let on = ["--source", "pxb"];
        for (args, needles) in [
            (
                vec![
                    "--pxb-token-file",
                    &token,
                    "--pxb-oidc-username-file",
                    &user,
                    "--pxb-oidc-password-file",
                    &password,
                ],
                vec![
                    "--pxb-token-file",
                    "--pxb-oidc-username-file, --pxb-oidc-password-file",
                    "give one",
                ],
            ),
            (
                vec![
                    "--pxb-token-file",
                    &token,
                    "--pxb-oidc-client-secret-file",
                    &password,
                ],
                vec!["--pxb-token-file", "--pxb-oidc-client-secret-file"],
            ),
            (
                vec!["--pxb-oidc-username-file", &user],
                vec!["--pxb-oidc-username-file is given without --pxb-oidc-password-file"],
            ),
            (
                vec!["--pxb-oidc-password-file", &password],
                vec!["--pxb-oidc-password-file is given without --pxb-oidc-username-file"],
            ),
            (
                vec!["--pxb-oidc-url", "pxcentral-keycloak-http/auth"],
                vec!["\"pxcentral-keycloak-http/auth\""],
            ),
            (
                vec!["--pxb-oidc-url", "ftp://kc/auth"],
                vec!["\"ftp://kc/auth\"", "http://"],
            ),
            (
                vec!["--pxb-oidc-url", "http://admin:pw@kc/auth"],
                vec!["credentials"],
            ),
            (vec!["--pxb-oidc-url", "http://kc/auth?x=1"], vec!["query"]),
            (
                vec!["--pxb-oidc-client-id", " "],
                vec!["--pxb-oidc-client-id", "empty"],
            ),
        ] {
            let e = settings(&[&on[..], &args[..]].concat())
                .unwrap_err()
                .to_string();
            for needle in needles {
                assert!(e.contains(needle), "{args:?}: {e}");
            }
            assert!(!e.contains("pa55"), "{e}");
        }
        // Giving both is wrong even with the source off; the files are read only when on.
        let e = settings(&[
            "--pxb-token-file",
            &token,
            "--pxb-oidc-client-secret-file",
            "/nonexistent/s",
        ])
        .unwrap_err();
        assert!(matches!(e, ConfigError::PxbAuthConflict { .. }), "{e}");
        assert!(settings(&["--pxb-oidc-client-secret-file", "/nonexistent/s"]).is_ok());
        for (flag, path, reason) in [
            (
                "--pxb-oidc-client-secret-file",
                "/nonexistent/s",
                "No such file",
            ),
            ("--pxb-oidc-client-secret-file", empty.as_str(), "empty"),
        ] {
            let e = settings(&[&on[..], &[flag, path][..]].concat())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(flag) && e.contains(path) && e.contains(reason),
                "{e}"
            );
        }
        let e = settings(
            &[
                &on[..],
                &[
                    "--pxb-oidc-username-file",
                    &empty,
                    "--pxb-oidc-password-file",
                    &password,
                ][..],
            ]
            .concat(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--pxb-oidc-username-file") && e.contains("empty"),
            "{e}"
        );
    }

    #[test]
    fn sources_repeat_or_comma_separate() {
        let s = settings(&["--source", "demo,ingest", "--source", "demo"]).unwrap();
        assert_eq!(s.sources, vec![SourceId::Demo, SourceId::Ingest]);
    }
}
