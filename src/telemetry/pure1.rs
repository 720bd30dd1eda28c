//! The Pure1 wire contract: ping, registration (CSR -> client certificate) and uploads over
//! mTLS. See docs/telemetry.md for the contract itself.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::telemetry::config::ProxyUrl;
use crate::telemetry::metrics::UploadKind;

pub const PRODUCT_NAME: &str = "px-backup";
/// Renew this long before the certificate's notAfter.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Pure1Error {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("{what}: {source}")]
    Http {
        what: &'static str,
        source: reqwest::Error,
    },
    #[error("{what}: HTTP {status}")]
    Status { what: &'static str, status: u16 },
    #[error("registration answer: {0}")]
    Answer(String),
    #[error("cannot make the key pair or CSR: {0}")]
    Csr(#[from] rcgen::Error),
}

impl Pure1Error {
    /// The endpoint refuses the client certificate (revoked, or unknown to it).
    pub fn is_auth_rejection(&self) -> bool {
        matches!(
            self,
            Pure1Error::Status {
                status: 401 | 403,
                ..
            }
        )
    }

    /// A rejection that a retry of the same bundle cannot fix (4xx other than 401/403/408/429:
    /// an expired or not yet known certificate and throttling are worth retrying).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Pure1Error::Status { status, .. }
            if (400..500).contains(status) && ![401, 403, 408, 429].contains(status))
    }
}

/// What identifies this sidecar on every request.
#[derive(Clone, Debug)]
pub struct Identity {
    pub appliance_id: String,
    pub component_sn: String,
}

impl Identity {
    fn headers(&self) -> Result<HeaderMap, Pure1Error> {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| -> Result<(), Pure1Error> {
            let v = HeaderValue::from_str(value).map_err(|_| {
                Pure1Error::Client(format!(
                    "header {name} has a value that is not printable ASCII"
                ))
            })?;
            h.insert(HeaderName::from_static(name), v);
            Ok(())
        };
        put("product-name", PRODUCT_NAME)?;
        put("appliance-id", &self.appliance_id)?;
        put("component-sn", &self.component_sn)?;
        put("product-version", env!("CARGO_PKG_VERSION"))?;
        Ok(h)
    }
}

/// TLS and proxy settings shared by every client.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    /// Extra trusted CAs (PEM), on top of the platform's roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    pub http_proxy: Option<ProxyUrl>,
}

/// A client certificate issued by Pure1 and its private key (both PEM). The key is a secret
/// type: no `Debug` or log line can print it.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub cert_pem: String,
    pub key_pem: SecretString,
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Credentials) -> bool {
        self.cert_pem == other.cert_pem
            && self.key_pem.expose_secret() == other.key_pem.expose_secret()
    }
}
impl Eq for Credentials {}

/// What the certificate says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: String,
    pub not_after_unix: i64,
}

pub fn cert_info(cert_pem: &str) -> Result<CertInfo, String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = pem.parse_x509().map_err(|e| e.to_string())?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(CertInfo {
        common_name,
        not_after_unix: cert.validity().not_after.timestamp(),
    })
}

/// A certificate this close to its end is not used any more: register again first.
pub const MIN_REMAINING: Duration = Duration::from_secs(3600);

impl Credentials {
    /// Usable for `appliance_id` now: issued for it and not about to expire. Renewal (30
    /// days ahead) is the renewal timer's business, not a reason to register at start-up.
    pub fn usable_for(&self, appliance_id: &str, now_unix: i64) -> bool {
        match cert_info(&self.cert_pem) {
            Ok(info) => {
                info.common_name == appliance_id
                    && info.not_after_unix - now_unix > MIN_REMAINING.as_secs() as i64
            }
            Err(_) => false,
        }
    }
}

/// How long until the certificate should be renewed: 30 days before its end; a certificate
/// issued for less than that is renewed halfway through what is left (at least an hour
/// later), so a short-lived certificate never turns renewal into a loop.
pub fn renew_delay(not_after_unix: i64, now_unix: i64) -> Duration {
    let left = (not_after_unix - now_unix).max(0) as u64;
    let before = RENEW_BEFORE.as_secs();
    let secs = if left > before {
        left - before
    } else {
        (left / 2).max(MIN_REMAINING.as_secs())
    };
    Duration::from_secs(secs)
}

/// A new ECDSA P-256 key and a CSR whose CN is the appliance id.
pub fn make_csr(appliance_id: &str) -> Result<(String, SecretString), Pure1Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, appliance_id);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, PRODUCT_NAME);
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, SecretString::from(key.serialize_pem())))
}

fn builder(transport: &Transport) -> Result<reqwest::ClientBuilder, Pure1Error> {
    let mut b = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10));
    if let Some(pem) = &transport.extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| Pure1Error::Client(format!("the CA file: {e}")))?;
        b = b.tls_certs_merge(certs);
    }
    // Only the ConfigMap decides about a proxy: an ambient HTTPS_PROXY meant for something
    // else must not silently reroute telemetry.
    b = match &transport.http_proxy {
        Some(url) => b.proxy(
            reqwest::Proxy::all(url.expose()).map_err(|e| Pure1Error::Client(e.to_string()))?,
        ),
        None => b.no_proxy(),
    };
    Ok(b)
}

#[derive(Serialize)]
struct RegisterRequest<'a> {
    csr: &'a str,
}

#[derive(Deserialize)]
struct RegisterAnswer {
    certificate: String,
}

/// Talks to the register host (no client certificate).
pub struct Registrar {
    http: reqwest::Client,
    base: String,
}

impl Registrar {
    pub fn new(
        base: &str,
        identity: &Identity,
        transport: &Transport,
    ) -> Result<Registrar, Pure1Error> {
        let http = builder(transport)?
            .default_headers(identity.headers()?)
            .build()
            .map_err(|e| Pure1Error::Client(e.to_string()))?;
        Ok(Registrar {
            http,
            base: base.to_owned(),
        })
    }

    pub async fn ping(&self) -> Result<(), Pure1Error> {
        let what = "ping";
        let r = self
            .http
            .get(format!("{}/auth/1.0/ping", self.base))
            .send()
            .await
            .map_err(|source| Pure1Error::Http { what, source })?;
        match r.status().as_u16() {
            200 => Ok(()),
            status => Err(Pure1Error::Status { what, status }),
        }
    }

    /// Ping, then register a fresh key; the key never leaves this process except into the
    /// credential store.
    pub async fn register(&self, appliance_id: &str) -> Result<Credentials, Pure1Error> {
        self.ping().await?;
        let (csr, key_pem) = make_csr(appliance_id)?;
        let what = "register";
        let r = self
            .http
            .post(format!("{}/auth/1.0/register", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(
                serde_json::to_vec(&RegisterRequest { csr: &csr })
                    .map_err(|e| Pure1Error::Answer(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|source| Pure1Error::Http { what, source })?;
        let status = r.status().as_u16();
        if status != 200 {
            return Err(Pure1Error::Status { what, status });
        }
        let body = r
            .bytes()
            .await
            .map_err(|source| Pure1Error::Http { what, source })?;
        let answer: RegisterAnswer = serde_json::from_slice(&body)
            .map_err(|e| Pure1Error::Answer(crate::logging::bounded(&e.to_string())))?;
        cert_info(&answer.certificate).map_err(Pure1Error::Answer)?;
        Ok(Credentials {
            cert_pem: answer.certificate,
            key_pem,
        })
    }
}

/// Sends bundles to the rest host with the client certificate.
pub struct RestClient {
    http: reqwest::Client,
    base: String,
}

impl RestClient {
    pub fn new(
        base: &str,
        identity: &Identity,
        transport: &Transport,
        credentials: &Credentials,
    ) -> Result<RestClient, Pure1Error> {
        // Zeroed when dropped: this buffer holds the private key.
        let mut pem = secrecy::zeroize::Zeroizing::new(credentials.cert_pem.clone().into_bytes());
        pem.push(b'\n');
        pem.extend_from_slice(credentials.key_pem.expose_secret().as_bytes());
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| Pure1Error::Client(format!("the client certificate: {e}")))?;
        let http = builder(transport)?
            .identity(id)
            .default_headers(identity.headers()?)
            .build()
            .map_err(|e| Pure1Error::Client(e.to_string()))?;
        Ok(RestClient {
            http,
            base: base.to_owned(),
        })
    }

    pub async fn upload(
        &self,
        kind: UploadKind,
        key: &str,
        gz_body: Vec<u8>,
    ) -> Result<(), Pure1Error> {
        let what = "upload";
        let r = self
            .http
            .post(format!("{}/telemetry/1.0/{}", self.base, kind.as_str()))
            .header("Idempotency-Key", key)
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(gz_body)
            .send()
            .await
            .map_err(|source| Pure1Error::Http { what, source })?;
        match r.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(Pure1Error::Status { what, status }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_names_the_appliance_and_keys_stay_out_of_debug() {
        let (csr, key) = make_csr("org-42").unwrap();
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        let cn = parsed
            .params
            .distinguished_name
            .get(&rcgen::DnType::CommonName);
        assert_eq!(cn, Some(&rcgen::DnValue::Utf8String("org-42".into())));
        let key = key.expose_secret().to_owned();
        let creds = Credentials {
            cert_pem: String::new(),
            key_pem: SecretString::from(key.clone()),
        };
        assert!(!format!("{creds:?}").contains(&key[30..60]));
    }

    #[test]
    fn freshness_follows_cn_and_expiry() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "org-1");
        p.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let cert = p.self_signed(&key).unwrap();
        let c = Credentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem().into(),
        };
        let info = cert_info(&c.cert_pem).unwrap();
        assert_eq!(info.common_name, "org-1");
        assert_eq!(info.not_after_unix, 1_893_456_000);
        let end = 1_893_456_000;
        assert!(c.usable_for("org-1", end - 29 * 86400));
        assert!(!c.usable_for("org-1", end - 600));
        assert!(!c.usable_for("org-2", 0));
        assert_eq!(
            renew_delay(end, end - 31 * 86400),
            Duration::from_secs(86400)
        );
        assert_eq!(
            renew_delay(end, end - 10 * 86400),
            Duration::from_secs(5 * 86400)
        );
        assert_eq!(renew_delay(end, end - 60), MIN_REMAINING);
    }
}
