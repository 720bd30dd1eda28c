//! The `px-backup-telemetry-config` schema: parsing of the raw key/value data (from the
//! ConfigMap or a mounted file) and validation into a consent and a `TelemetryConfig`; and
//! PX-Backup's own pause switch (`TELEMETRY_COLLECTION_ENABLED` in `px-backup-config`).
//!
//! Consent is decided by the `enabled` key alone, before anything else is looked at: a typo in
//! another key can never keep telemetry running after a person switched it off.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub const CONFIGMAP_NAME: &str = "px-backup-telemetry-config";
/// PX-Backup's ConfigMap that holds its own runtime switch for telemetry collection.
pub const PAUSE_CONFIGMAP_NAME: &str = "px-backup-config";
/// The key of that ConfigMap; anything but "true" pauses every upload.
pub const PAUSE_KEY: &str = "TELEMETRY_COLLECTION_ENABLED";

/// What a configuration source last saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawConfig {
    /// Nothing read yet (start-up): nothing is decided, and nothing is sent.
    Pending,
    /// The ConfigMap (or file) does not exist.
    Missing,
    /// It exists but cannot be read or parsed (the reason, for the log): off.
    Unreadable(String),
    Data(BTreeMap<String, String>),
}

const KNOWN_KEYS: [&str; 10] = [
    "enabled",
    "appliance-id",
    "environment",
    "endpoint",
    "health-interval",
    "logs-interval",
    "clusters-interval",
    "http-proxy",
    "spool-max-bytes",
    "logs-max-bytes",
];

/// Shorter intervals would only hammer Pure1; tests use 1 s.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// The hard upper limit of `spool-max-bytes`: the chart sizes the state volume for it (see
/// charts/pxbackup-sidecar/values.yaml, `state.emptyDir.sizeLimit`).
pub const MAX_SPOOL_MAX_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_LOGS_MAX_BYTES: usize = 1024 * 1024;
/// A logs bundle larger than this would not fit a reasonable spool anyway.
pub const MAX_LOGS_MAX_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Production,
    Staging,
}

/// Where bundles go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Pure1 (or a stand-in): registration and uploads over HTTPS.
    Pure1 { register: String, rest: String },
    /// Air-gapped sites: bundles are written as files, no registration.
    Dir(PathBuf),
}

impl Endpoint {
    pub fn for_environment(env: Environment) -> Endpoint {
        let domain = match env {
            Environment::Production => "cloud-support.purestorage.com",
            Environment::Staging => "staging-cloud-support.purestorage.com",
        };
        Endpoint::Pure1 {
            register: format!("https://register.{domain}"),
            rest: format!("https://rest.{domain}"),
        }
    }

    /// `https://host[:port][/base]` (both register and rest calls go there) or `dir:///path`.
    pub fn parse(value: &str) -> Result<Endpoint, String> {
        if let Some(path) = value.strip_prefix("dir://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(
                    "a dir:// endpoint needs an absolute path (dir:///var/lib/telemetry)".into(),
                );
            }
            return Ok(Endpoint::Dir(PathBuf::from(path)));
        }
        let Some(rest) = value.strip_prefix("https://") else {
            return Err("must start with https:// or dir:///".into());
        };
        if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
            return Err("has no host".into());
        }
        let base = value.trim_end_matches('/').to_owned();
        Ok(Endpoint::Pure1 {
            register: base.clone(),
            rest: base,
        })
    }

    /// Where bundles end up, as one string: the spool is bound to it.
    pub fn destination(&self) -> String {
        match self {
            Endpoint::Pure1 { rest, .. } => rest.clone(),
            Endpoint::Dir(dir) => format!("dir://{}", dir.display()),
        }
    }
}

/// The `http-proxy` URL, which may carry a password: only `shown` (password replaced) is ever
/// printed.
#[derive(Clone)]
pub struct ProxyUrl {
    url: SecretString,
    shown: String,
}

impl ProxyUrl {
    pub fn new(url: &str) -> ProxyUrl {
        ProxyUrl {
            url: SecretString::from(url),
            shown: without_password(url),
        }
    }
    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }
}

impl PartialEq for ProxyUrl {
    fn eq(&self, other: &ProxyUrl) -> bool {
        self.expose() == other.expose()
    }
}
impl Eq for ProxyUrl {}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// The settings of every key but `enabled`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryConfig {
    pub appliance_id: String,
    pub environment: Environment,
    pub endpoint: Endpoint,
    pub health_interval: Duration,
    pub logs_interval: Duration,
    pub clusters_interval: Duration,
    pub http_proxy: Option<ProxyUrl>,
    pub spool_max_bytes: u64,
    pub logs_max_bytes: usize,
}

impl TelemetryConfig {
    /// Who the bundles are made for and where they go: bundles spooled under one identity
    /// never leave under another.
    pub fn identity(&self) -> String {
        format!("{}\n{}", self.appliance_id, self.endpoint.destination())
    }
}

/// What the sidecar knows besides the ConfigMap.
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    /// `--telemetry-endpoint`: used when the ConfigMap has no `endpoint` key.
    pub endpoint: Option<String>,
    /// The kube-system namespace UID (API mode, once looked up); a file has no cluster to ask.
    pub appliance_id: Option<String>,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("telemetry config key {key:?} has the bad value \"{value}\": {reason}")]
pub struct InvalidValue {
    pub key: String,
    /// As it may be shown: the password of a proxy URL replaced, at most
    /// `logging::MAX_ECHO_BYTES` of it, control characters escaped (see `logging::echo`).
    pub value: String,
    pub reason: String,
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> InvalidValue {
    InvalidValue {
        key: key.to_owned(),
        value: crate::logging::echo(&without_password(value)),
        reason: reason.into(),
    }
}

/// `value` with the password of a `user:password@host` part replaced: a bad proxy URL is logged
/// and shown in errors, and its password must not be.
fn without_password(value: &str) -> String {
    let Some(at) = value.rfind('@') else {
        return value.to_owned();
    };
    let userinfo_start = value[..at].find("://").map_or(0, |i| i + 3);
    match value[userinfo_start..at].find(':') {
        Some(colon) => format!(
            "{}[REDACTED]{}",
            &value[..userinfo_start + colon + 1],
            &value[at..]
        ),
        None => value.to_owned(),
    }
}

fn interval(
    data: &BTreeMap<String, String>,
    key: &str,
    default: Duration,
) -> Result<Duration, InvalidValue> {
    match data.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => humantime::parse_duration(v)
            .ok()
            .filter(|d| (MIN_INTERVAL..=MAX_INTERVAL).contains(d))
            .ok_or_else(|| invalid(key, v, "not a duration from 1s to 7d (e.g. 10m, 1h)")),
    }
}

fn bytes(
    data: &BTreeMap<String, String>,
    key: &str,
    default: u64,
    max: u64,
) -> Result<u64, InvalidValue> {
    match data.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| invalid(key, v, format!("not a number of bytes from 1 to {max}"))),
    }
}

/// `Some` value, or `None` with the error noted.
fn keep<T>(bad: &mut Vec<InvalidValue>, r: Result<T, InvalidValue>) -> Option<T> {
    r.map_err(|e| bad.push(e)).ok()
}

/// The outcome of reading one configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validation {
    /// `enabled` is "true" (any case). Any other value, a bad one included, is off.
    pub consent: bool,
    /// Every bad value found (the `enabled` key's own included).
    pub invalid: Vec<InvalidValue>,
    /// The settings of the other keys when every one of them is valid.
    pub settings: Option<TelemetryConfig>,
    /// Keys that are not understood (warned about, otherwise ignored).
    pub unknown: Vec<String>,
}

/// Validates the data of the ConfigMap. Consent comes from `enabled` alone; the other keys
/// are checked each on its own, so that the log names every bad value at once.
pub fn validate(data: &BTreeMap<String, String>, defaults: &Defaults) -> Validation {
    let get = |k: &str| data.get(k).map(|v| v.trim());
    let mut bad = Vec::new();
    let consent = match get("enabled") {
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        None => false,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            bad.push(invalid(
                "enabled",
                v,
                "must be \"true\" or \"false\"; telemetry is off",
            ));
            false
        }
    };
    let environment = keep(
        &mut bad,
        match get("environment") {
            None | Some("") => Ok(Environment::Production),
            Some(v) if v.eq_ignore_ascii_case("production") => Ok(Environment::Production),
            Some(v) if v.eq_ignore_ascii_case("staging") => Ok(Environment::Staging),
            Some(v) => Err(invalid("environment", v, "must be production or staging")),
        },
    );
    let endpoint = match (
        get("endpoint").filter(|v| !v.is_empty()),
        &defaults.endpoint,
    ) {
        (Some(v), _) => keep(
            &mut bad,
            Endpoint::parse(v).map_err(|reason| invalid("endpoint", v, reason)),
        ),
        (None, Some(v)) => keep(
            &mut bad,
            Endpoint::parse(v).map_err(|reason| invalid("endpoint", v, reason)),
        ),
        (None, None) => environment.map(Endpoint::for_environment),
    };
    let appliance_id = keep(
        &mut bad,
        match get("appliance-id").filter(|v| !v.is_empty()) {
            Some(v) if v.len() > 128 || !v.chars().all(|c| c.is_ascii_graphic()) => Err(invalid(
                "appliance-id",
                v,
                "must be at most 128 printable ASCII characters",
            )),
            Some(v) => Ok(v.to_owned()),
            None => match &defaults.appliance_id {
                Some(uid) => Ok(uid.clone()),
                // Only an enabled configuration needs an identity.
                None if consent => Err(invalid(
                    "appliance-id",
                    "",
                    "required: there is no kube-system namespace UID (yet) to default to",
                )),
                None => Ok(String::new()),
            },
        },
    );
    let http_proxy = keep(
        &mut bad,
        match get("http-proxy").filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => {
                let scheme_ok = ["http://", "https://", "socks5://"]
                    .iter()
                    .any(|p| v.starts_with(p));
                if scheme_ok && reqwest::Proxy::all(v).is_ok() {
                    Ok(Some(ProxyUrl::new(v)))
                } else {
                    Err(invalid(
                        "http-proxy",
                        v,
                        "not a proxy URL (http://host:port)",
                    ))
                }
            }
        },
    );
    let health_interval = keep(
        &mut bad,
        interval(data, "health-interval", Duration::from_secs(600)),
    );
    let logs_interval = keep(
        &mut bad,
        interval(data, "logs-interval", Duration::from_secs(3600)),
    );
    let clusters_interval = keep(
        &mut bad,
        interval(data, "clusters-interval", Duration::from_secs(3600)),
    );
    let spool_max_bytes = keep(
        &mut bad,
        bytes(
            data,
            "spool-max-bytes",
            DEFAULT_SPOOL_MAX_BYTES,
            MAX_SPOOL_MAX_BYTES,
        ),
    );
    let logs_max_bytes = keep(
        &mut bad,
        bytes(
            data,
            "logs-max-bytes",
            DEFAULT_LOGS_MAX_BYTES as u64,
            MAX_LOGS_MAX_BYTES,
        ),
    );
    let settings = (|| {
        Some(TelemetryConfig {
            appliance_id: appliance_id?,
            environment: environment?,
            endpoint: endpoint?,
            health_interval: health_interval?,
            logs_interval: logs_interval?,
            clusters_interval: clusters_interval?,
            http_proxy: http_proxy?,
            spool_max_bytes: spool_max_bytes?,
            logs_max_bytes: usize::try_from(logs_max_bytes?).unwrap_or(DEFAULT_LOGS_MAX_BYTES),
        })
    })();
    let unknown = data
        .keys()
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    Validation {
        consent,
        invalid: bad,
        settings,
        unknown,
    }
}

/// PX-Backup's own switch, read from `px-backup-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pause {
    /// Not read yet: nothing is sent until it is.
    Pending,
    Running,
    /// Paused, and why (for the log).
    Paused(String),
}

/// No ConfigMap or no key: PX-Backup collects (its default). The key set to anything but
/// "true" (any case), or a ConfigMap that cannot be read: paused, since consent cannot be
/// shown.
pub fn pause_state(raw: &RawConfig) -> Pause {
    match raw {
        RawConfig::Pending => Pause::Pending,
        RawConfig::Missing => Pause::Running,
        RawConfig::Unreadable(why) => Pause::Paused(format!("cannot be read: {why}")),
        RawConfig::Data(data) => match data.get(PAUSE_KEY).map(|v| v.trim()) {
            None => Pause::Running,
            Some(v) if v.eq_ignore_ascii_case("true") => Pause::Running,
            Some(v) => Pause::Paused(format!("{PAUSE_KEY}={v:?}")),
        },
    }
}

/// Parses a file that holds the ConfigMap's data: `key: value` or `key=value` lines, `#`
/// comments, optional quotes. A whole ConfigMap manifest works too: only the keys under
/// `data:` are read. A line that is none of these is an error (naming the line): a file that
/// cannot be understood must not be half understood.
pub fn parse_text(text: &str) -> Result<BTreeMap<String, String>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let data_start = lines.iter().position(|l| l.trim_end() == "data:");
    let mut out = BTreeMap::new();
    let body: Box<dyn Iterator<Item = (usize, &&str)>> = match data_start {
        Some(i) => Box::new(
            lines
                .iter()
                .enumerate()
                .skip(i + 1)
                .take_while(|(_, l)| l.trim().is_empty() || l.starts_with([' ', '\t'])),
        ),
        None => Box::new(lines.iter().enumerate()),
    };
    for (n, line) in body {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line == "---" {
            continue;
        }
        let split = match (line.find(':'), line.find('=')) {
            (Some(c), Some(e)) => c.min(e),
            (Some(c), None) => c,
            (None, Some(e)) => e,
            (None, None) => return Err(format!("line {} is not `key: value`", n + 1)),
        };
        let key = line[..split].trim().trim_matches(['"', '\'']);
        if key.is_empty() {
            return Err(format!("line {} has no key", n + 1));
        }
        let value = unquote(line[split + 1..].trim());
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_empty_configmap_is_a_valid_disabled_config() {
        let v = validate(&BTreeMap::new(), &Defaults::default());
        assert!(!v.consent && v.invalid.is_empty() && v.unknown.is_empty());
        let c = v.settings.unwrap();
        assert_eq!(
            c.endpoint,
            Endpoint::for_environment(Environment::Production)
        );
        assert_eq!(c.health_interval, Duration::from_secs(600));
    }

    #[test]
    fn only_true_in_any_case_is_consent() {
        let d = Defaults::default();
        for (value, consent, valid) in [
            ("true", true, true),
            ("TRUE", true, true),
            (" True ", true, true),
            ("false", false, true),
            ("False", false, true),
            ("yes", false, false),
            ("1", false, false),
            ("", false, false),
        ] {
            let v = validate(&data(&[("enabled", value), ("appliance-id", "a")]), &d);
            assert_eq!(v.consent, consent, "{value:?}");
            assert_eq!(v.invalid.is_empty(), valid, "{value:?}: {:?}", v.invalid);
            assert!(v.settings.is_some(), "the other keys are fine");
        }
    }

    #[test]
    fn a_typo_elsewhere_never_keeps_telemetry_on() {
        let v = validate(
            &data(&[("enabled", "false"), ("logs-interval", "2 minutes please")]),
            &Defaults::default(),
        );
        assert!(!v.consent);
        assert_eq!(v.invalid.len(), 1);
        assert_eq!(v.invalid[0].key, "logs-interval");
        assert_eq!(v.settings, None);
    }

    #[test]
    fn bad_values_name_key_and_value_and_are_all_reported() {
        let d = Defaults::default();
        for (k, v) in [
            ("health-interval", "soon"),
            ("logs-interval", "0s"),
            ("environment", "prod"),
            ("endpoint", "http://x"),
            ("http-proxy", "proxy:3128"),
            ("spool-max-bytes", "-1"),
            ("spool-max-bytes", "67108865"),
            ("logs-max-bytes", "0"),
        ] {
            let val = validate(&data(&[("appliance-id", "a"), (k, v)]), &d);
            let e = &val.invalid[0];
            assert_eq!((e.key.as_str(), e.value.as_str()), (k, v));
            assert!(e.to_string().contains(v), "{e}");
            assert_eq!(val.settings, None);
        }
        let val = validate(
            &data(&[("health-interval", "soon"), ("environment", "prod")]),
            &d,
        );
        assert_eq!(val.invalid.len(), 2, "{:?}", val.invalid);
    }

    #[test]
    fn the_spool_cap_has_a_hard_limit() {
        let d = Defaults::default();
        let at_limit = MAX_SPOOL_MAX_BYTES.to_string();
        let v = validate(&data(&[("spool-max-bytes", &at_limit)]), &d);
        assert_eq!(v.settings.unwrap().spool_max_bytes, MAX_SPOOL_MAX_BYTES);
    }

    #[test]
    fn appliance_id_defaults_to_the_namespace_uid_or_is_required() {
        let on = data(&[("enabled", "true")]);
        let v = validate(&on, &Defaults::default());
        assert!(v.consent);
        assert_eq!(v.invalid[0].key, "appliance-id");
        assert_eq!(v.settings, None);
        let d = Defaults {
            appliance_id: Some("uid-1".into()),
            endpoint: Some("dir:///tmp/x".into()),
        };
        let c = validate(&on, &d).settings.unwrap();
        assert_eq!(c.appliance_id, "uid-1");
        assert_eq!(c.endpoint, Endpoint::Dir("/tmp/x".into()));
        let c = validate(
            &data(&[("enabled", "true"), ("endpoint", "https://h:1/")]),
            &d,
        )
        .settings
        .unwrap();
        assert_eq!(
            c.endpoint,
            Endpoint::Pure1 {
                register: "https://h:1".into(),
                rest: "https://h:1".into()
            }
        );
    }

    #[test]
    fn staging_and_unknown_keys() {
        let v = validate(
            &data(&[("environment", "staging"), ("colour", "blue")]),
            &Defaults::default(),
        );
        assert_eq!(
            v.settings.unwrap().endpoint,
            Endpoint::Pure1 {
                register: "https://register.staging-cloud-support.purestorage.com".into(),
                rest: "https://rest.staging-cloud-support.purestorage.com".into(),
            }
        );
        assert_eq!(v.unknown, vec!["colour".to_string()]);
    }

    #[test]
    fn the_pause_switch() {
        let cm = |v: &str| RawConfig::Data(data(&[(PAUSE_KEY, v), ("OTHER", "x")]));
        assert_eq!(pause_state(&RawConfig::Pending), Pause::Pending);
        assert_eq!(pause_state(&RawConfig::Missing), Pause::Running);
        assert_eq!(
            pause_state(&RawConfig::Data(data(&[("OTHER", "x")]))),
            Pause::Running
        );
        assert_eq!(pause_state(&cm("true")), Pause::Running);
        assert_eq!(pause_state(&cm("True")), Pause::Running);
        for paused in ["false", "FALSE", "no", ""] {
            assert!(
                matches!(pause_state(&cm(paused)), Pause::Paused(_)),
                "{paused:?}"
            );
        }
        assert!(matches!(
            pause_state(&RawConfig::Unreadable("forbidden".into())),
            Pause::Paused(_)
        ));
    }

    #[test]
    fn text_forms() {
        let m = parse_text("# c\nenabled: \"true\"\nhealth-interval=2s\n appliance-id : 'org-1'\n")
            .unwrap();
        assert_eq!(m["enabled"], "true");
        assert_eq!(m["health-interval"], "2s");
        assert_eq!(m["appliance-id"], "org-1");
        let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  enabled: \"false\"\n  endpoint: https://h:8443\n";
        let m = parse_text(manifest).unwrap();
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m["endpoint"], "https://h:8443");
        let e = parse_text("enabled: true\nthis is not a key\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn a_proxy_password_is_never_shown() {
        for bad in ["ftp://alice:s3cret@proxy:3128", "alice:s3cret@proxy:3128"] {
            let e = invalid("http-proxy", bad, "not a proxy URL");
            let shown = e.to_string();
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("alice:[REDACTED]@proxy:3128"), "{shown}");
        }
        assert_eq!(without_password("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(without_password("soon"), "soon");
        let good = validate(
            &data(&[("http-proxy", "http://alice:s3cret@proxy:3128")]),
            &Defaults::default(),
        );
        let shown = format!("{:?}", good.settings.unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
