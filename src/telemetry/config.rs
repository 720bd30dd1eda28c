//! The `px-backup-telemetry-config` schema: parsing of the raw key/value data (from the
//! ConfigMap or a mounted file) and validation into a `TelemetryConfig`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub const CONFIGMAP_NAME: &str = "px-backup-telemetry-config";

/// The raw data of the ConfigMap; `None` when it does not exist (telemetry disabled).
pub type RawConfig = Option<BTreeMap<String, String>>;

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
pub const DEFAULT_LOGS_MAX_BYTES: usize = 1024 * 1024;

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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryConfig {
    pub enabled: bool,
    pub appliance_id: String,
    pub environment: Environment,
    pub endpoint: Endpoint,
    pub health_interval: Duration,
    pub logs_interval: Duration,
    pub clusters_interval: Duration,
    pub http_proxy: Option<String>,
    pub spool_max_bytes: u64,
    pub logs_max_bytes: usize,
}

/// What the sidecar knows besides the ConfigMap.
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    /// `--telemetry-endpoint`: used when the ConfigMap has no `endpoint` key.
    pub endpoint: Option<String>,
    /// The kube-system namespace UID (kube mode only); a file has no cluster to ask.
    pub appliance_id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("telemetry config key {key:?} has the bad value {value:?}: {reason}")]
pub struct InvalidValue {
    pub key: String,
    pub value: String,
    pub reason: String,
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> InvalidValue {
    InvalidValue {
        key: key.to_owned(),
        value: without_password(value),
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

fn positive(data: &BTreeMap<String, String>, key: &str, default: u64) -> Result<u64, InvalidValue> {
    match data.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid(key, v, "not a positive number of bytes")),
    }
}

/// Validates the raw data. `Ok` carries the keys that were not understood (to warn about);
/// a missing ConfigMap is a valid, disabled configuration.
pub fn validate(
    raw: &RawConfig,
    defaults: &Defaults,
) -> Result<(TelemetryConfig, Vec<String>), InvalidValue> {
    let empty = BTreeMap::new();
    let data = raw.as_ref().unwrap_or(&empty);
    let get = |k: &str| data.get(k).map(|v| v.trim());
    let enabled = match get("enabled") {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return Err(invalid("enabled", v, "must be \"true\" or \"false\"")),
    };
    let environment = match get("environment") {
        None | Some("") | Some("production") => Environment::Production,
        Some("staging") => Environment::Staging,
        Some(v) => return Err(invalid("environment", v, "must be production or staging")),
    };
    let endpoint = match get("endpoint").filter(|v| !v.is_empty()) {
        Some(v) => Endpoint::parse(v).map_err(|reason| invalid("endpoint", v, reason))?,
        None => match &defaults.endpoint {
            Some(v) => Endpoint::parse(v).map_err(|reason| invalid("endpoint", v, reason))?,
            None => Endpoint::for_environment(environment),
        },
    };
    let appliance_id = match get("appliance-id").filter(|v| !v.is_empty()) {
        Some(v) if v.len() > 128 || !v.chars().all(|c| c.is_ascii_graphic()) => {
            return Err(invalid(
                "appliance-id",
                v,
                "must be at most 128 printable ASCII characters",
            ))
        }
        Some(v) => v.to_owned(),
        None => match &defaults.appliance_id {
            Some(uid) => uid.clone(),
            // Only an enabled configuration needs an identity.
            None if enabled => {
                return Err(invalid(
                    "appliance-id",
                    "",
                    "required: there is no kube-system namespace UID to default to",
                ))
            }
            None => String::new(),
        },
    };
    let http_proxy = match get("http-proxy").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let ok = ["http://", "https://", "socks5://"]
                .iter()
                .any(|p| v.starts_with(p));
            if !ok || reqwest::Proxy::all(v).is_err() {
                return Err(invalid(
                    "http-proxy",
                    v,
                    "not a proxy URL (http://host:port)",
                ));
            }
            Some(v.to_owned())
        }
    };
    let config = TelemetryConfig {
        enabled,
        appliance_id,
        environment,
        endpoint,
        health_interval: interval(data, "health-interval", Duration::from_secs(600))?,
        logs_interval: interval(data, "logs-interval", Duration::from_secs(3600))?,
        clusters_interval: interval(data, "clusters-interval", Duration::from_secs(3600))?,
        http_proxy,
        spool_max_bytes: positive(data, "spool-max-bytes", DEFAULT_SPOOL_MAX_BYTES)?,
        logs_max_bytes: usize::try_from(positive(
            data,
            "logs-max-bytes",
            DEFAULT_LOGS_MAX_BYTES as u64,
        )?)
        .unwrap_or(DEFAULT_LOGS_MAX_BYTES),
    };
    let unknown = data
        .keys()
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok((config, unknown))
}

/// Parses a file that holds the ConfigMap's data: `key: value` or `key=value` lines, `#`
/// comments, optional quotes. A whole ConfigMap manifest works too: only the keys under
/// `data:` are read.
pub fn parse_text(text: &str) -> BTreeMap<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let data_start = lines.iter().position(|l| l.trim_end() == "data:");
    let mut out = BTreeMap::new();
    let body: Box<dyn Iterator<Item = &&str>> = match data_start {
        Some(i) => Box::new(
            lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.starts_with([' ', '\t'])),
        ),
        None => Box::new(lines.iter()),
    };
    for line in body {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line == "---" {
            continue;
        }
        let split = match (line.find(':'), line.find('=')) {
            (Some(c), Some(e)) => c.min(e),
            (Some(c), None) => c,
            (None, Some(e)) => e,
            (None, None) => continue,
        };
        let key = line[..split].trim().trim_matches(['"', '\'']);
        let value = unquote(line[split + 1..].trim());
        if !key.is_empty() {
            out.insert(key.to_owned(), value.to_owned());
        }
    }
    out
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

    fn data(pairs: &[(&str, &str)]) -> RawConfig {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn missing_configmap_is_a_valid_disabled_config() {
        let (c, unknown) = validate(&None, &Defaults::default()).unwrap();
        assert!(!c.enabled && unknown.is_empty());
        assert_eq!(
            c.endpoint,
            Endpoint::for_environment(Environment::Production)
        );
        assert_eq!(c.health_interval, Duration::from_secs(600));
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let d = Defaults::default();
        for (k, v) in [
            ("enabled", "yes"),
            ("health-interval", "soon"),
            ("logs-interval", "0s"),
            ("environment", "prod"),
            ("endpoint", "http://x"),
            ("http-proxy", "proxy:3128"),
            ("spool-max-bytes", "-1"),
        ] {
            let e = validate(&data(&[("appliance-id", "a"), (k, v)]), &d).unwrap_err();
            assert_eq!((e.key.as_str(), e.value.as_str()), (k, v));
            assert!(e.to_string().contains(v), "{e}");
        }
    }

    #[test]
    fn appliance_id_defaults_to_the_namespace_uid_or_is_required() {
        let on = data(&[("enabled", "true")]);
        let e = validate(&on, &Defaults::default()).unwrap_err();
        assert_eq!(e.key, "appliance-id");
        let d = Defaults {
            appliance_id: Some("uid-1".into()),
            endpoint: Some("dir:///tmp/x".into()),
        };
        let (c, _) = validate(&on, &d).unwrap();
        assert_eq!(c.appliance_id, "uid-1");
        assert_eq!(c.endpoint, Endpoint::Dir("/tmp/x".into()));
        let (c, _) = validate(
            &data(&[("enabled", "true"), ("endpoint", "https://h:1/")]),
            &d,
        )
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
        let (c, unknown) = validate(
            &data(&[("environment", "staging"), ("colour", "blue")]),
            &Defaults::default(),
        )
        .unwrap();
        assert_eq!(
            c.endpoint,
            Endpoint::Pure1 {
                register: "https://register.staging-cloud-support.purestorage.com".into(),
                rest: "https://rest.staging-cloud-support.purestorage.com".into(),
            }
        );
        assert_eq!(unknown, vec!["colour".to_string()]);
    }

    #[test]
    fn text_forms() {
        let m = parse_text("# c\nenabled: \"true\"\nhealth-interval=2s\n appliance-id : 'org-1'\n");
        assert_eq!(m["enabled"], "true");
        assert_eq!(m["health-interval"], "2s");
        assert_eq!(m["appliance-id"], "org-1");
        let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  enabled: \"false\"\n  endpoint: https://h:8443\n";
        let m = parse_text(manifest);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m["endpoint"], "https://h:8443");
    }

    #[test]
    fn a_bad_proxy_url_is_reported_without_its_password() {
        for bad in ["ftp://alice:s3cret@proxy:3128", "alice:s3cret@proxy:3128"] {
            let e = invalid("http-proxy", bad, "not a proxy URL");
            let shown = e.to_string();
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("alice:[REDACTED]@proxy:3128"), "{shown}");
        }
        assert_eq!(without_password("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(without_password("soon"), "soon");
    }
}
