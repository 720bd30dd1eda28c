//! A stand-in for Pure1 on 127.0.0.1: a real TLS server (tokio-rustls + hyper) with a test CA
//! that issues the server certificate and signs the CSRs it receives. Ping and register take
//! anonymous clients; the upload paths require the client certificate it issued (mTLS). It
//! records every request (path, headers, gunzipped body, status) and can be told to fail
//! uploads.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    /// The body as received (still gzipped for uploads).
    pub raw: Vec<u8>,
    /// The body after gunzip when Content-Encoding was gzip.
    pub body: Vec<u8>,
    pub status: u16,
    pub client_cert: bool,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

struct State {
    issuer: CertifiedIssuer<'static, KeyPair>,
    requests: Mutex<Vec<Recorded>>,
    /// 0 = answer uploads normally; otherwise this status.
    upload_status: AtomicU16,
    /// How long issued client certificates are valid; None = until 2030.
    cert_lifetime: Option<std::time::Duration>,
}

pub struct Peer {
    pub url: String,
    pub ca_pem: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "pure1 test CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

impl Peer {
    pub async fn start() -> Peer {
        Peer::start_with(None).await
    }

    /// A peer whose client certificates are valid for `cert_lifetime` only.
    pub async fn start_with(cert_lifetime: Option<std::time::Duration>) -> Peer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let issuer = ca();
        let server_key = KeyPair::generate().unwrap();
        let mut sp =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        sp.distinguished_name
            .push(DnType::CommonName, "pure1 test peer");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = sp.signed_by(&server_key, &issuer).unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(issuer.der().clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes()).unwrap();
        let tls = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![CertificateDer::from(server_cert.der().to_vec())], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let ca_pem = issuer.pem();
        let state = Arc::new(State {
            issuer,
            requests: Mutex::new(Vec::new()),
            upload_status: AtomicU16::new(0),
            cert_lifetime,
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, st) = (acceptor.clone(), st.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let client_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty());
                    let service = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(handle(&st, client_cert, req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Peer {
            url: format!("https://127.0.0.1:{}", addr.port()),
            ca_pem,
            state,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }

    /// Uploads of one kind that were accepted (200).
    pub fn accepted(&self, kind: &str) -> Vec<Recorded> {
        let path = format!("/telemetry/1.0/{kind}");
        self.requests()
            .into_iter()
            .filter(|r| r.path == path && r.status == 200)
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }

    /// Answer every upload with `status` (e.g. 503) until called again with `None`.
    pub fn fail_uploads(&self, status: Option<u16>) {
        self.state.upload_status.store(status.unwrap_or(0), SeqCst);
    }
}

fn reply(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

async fn handle(
    st: &State,
    client_cert: bool,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let raw = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or("<binary>").to_owned(),
            )
        })
        .collect();
    let gzipped = headers.get("content-encoding").is_some_and(|v| v == "gzip");
    let body = if gzipped {
        let mut out = Vec::new();
        match flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out) {
            Ok(_) => out,
            Err(_) => b"<bad gzip>".to_vec(),
        }
    } else {
        raw.clone()
    };
    let path = parts.uri.path().to_owned();
    let identified = headers
        .get("product-name")
        .is_some_and(|v| v == "px-backup")
        && ["appliance-id", "component-sn", "product-version"]
            .iter()
            .all(|h| headers.get(*h).is_some_and(|v| !v.is_empty()));
    let response = if !identified {
        reply(400, r#"{"error":"missing identity headers"}"#)
    } else {
        match (parts.method.as_str(), path.as_str()) {
            ("GET", "/auth/1.0/ping") => reply(200, "{}"),
            ("POST", "/auth/1.0/register") => register(st, &body),
            ("POST", p) if p.starts_with("/telemetry/1.0/") => {
                let kind = &p["/telemetry/1.0/".len()..];
                let forced = st.upload_status.load(SeqCst);
                if !client_cert {
                    reply(401, r#"{"error":"client certificate required"}"#)
                } else if !["health", "logs", "clusters"].contains(&kind)
                    || !gzipped
                    || headers.get("idempotency-key").is_none_or(|k| k.is_empty())
                {
                    reply(400, r#"{"error":"bad upload"}"#)
                } else if forced != 0 {
                    reply(forced, r#"{"error":"unavailable"}"#)
                } else {
                    reply(200, "{}")
                }
            }
            _ => reply(404, "{}"),
        }
    };
    st.requests.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        path,
        headers,
        raw,
        body,
        status: response.status().as_u16(),
        client_cert,
    });
    response
}

fn register(st: &State, body: &[u8]) -> Response<Full<Bytes>> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return reply(400, r#"{"error":"not JSON"}"#);
    };
    let Some(csr) = v["csr"].as_str() else {
        return reply(400, r#"{"error":"no csr"}"#);
    };
    let Ok(mut csr) = CertificateSigningRequestParams::from_pem(csr) else {
        return reply(400, r#"{"error":"bad csr"}"#);
    };
    csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    csr.params.is_ca = IsCa::NoCa;
    csr.params.not_after = match st.cert_lifetime {
        Some(d) => time::OffsetDateTime::now_utc() + d,
        None => rcgen::date_time_ymd(2030, 1, 1),
    };
    let cert = csr.signed_by(&st.issuer).unwrap();
    reply(
        200,
        serde_json::json!({"certificate": cert.pem()}).to_string(),
    )
}

/// A minimal HTTP CONNECT proxy that records the targets it tunnelled to.
pub struct ConnectProxy {
    pub url: String,
    pub targets: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnectProxy {
    pub async fn start() -> ConnectProxy {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut client = BufReader::new(client);
                    let mut request_line = String::new();
                    if client.read_line(&mut request_line).await.is_err() {
                        return;
                    }
                    loop {
                        let mut header = String::new();
                        match client.read_line(&mut header).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if header == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let mut parts = request_line.split_whitespace();
                    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
                        let _ = client
                            .get_mut()
                            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                            .await;
                        return;
                    };
                    seen.lock().unwrap().push(target.to_owned());
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                        let _ = client
                            .get_mut()
                            .write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                            .await;
                        return;
                    };
                    if client
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        ConnectProxy { url, targets, task }
    }
}
