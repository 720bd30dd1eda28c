//! Where the registration (client certificate and key) lives: the Secret
//! `pure-telemetry-certs` (keys `cert`, `private_key`) when the configuration comes from the
//! Kubernetes API, files with mode 0600 in `<state-dir>/telemetry/` otherwise. Never a
//! ConfigMap, never a log line.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams};
use kube::Api;
use secrecy::{ExposeSecret, SecretString};

use crate::persistence::files;
use crate::telemetry::pure1::Credentials;

pub const DEFAULT_SECRET_NAME: &str = "pure-telemetry-certs";
const CERT_KEY: &str = "cert";
const PRIVATE_KEY_KEY: &str = "private_key";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("credential file {path}: {source}")]
    File { path: String, source: io::Error },
    #[error("Secret {name}: cannot encode it: {source}")]
    Encode {
        name: String,
        source: serde_json::Error,
    },
    #[error("Secret {name}: {source}")]
    Kube { name: String, source: kube::Error },
}

// Built once per process: the size of the kube variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum CredentialStore {
    Files(PathBuf),
    Secret { api: Api<Secret>, name: String },
}

impl CredentialStore {
    pub async fn load(&self) -> Result<Option<Credentials>, StoreError> {
        match self {
            CredentialStore::Files(dir) => {
                let read = |name: &str| {
                    let path = dir.join(name);
                    match files::read(&path) {
                        Ok(s) => Ok(Some(String::from_utf8_lossy(&s).into_owned())),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                        Err(source) => Err(StoreError::File {
                            path: path.display().to_string(),
                            source,
                        }),
                    }
                };
                Ok(match (read("client.crt")?, read("client.key")?) {
                    (Some(cert_pem), Some(key_pem)) => Some(Credentials {
                        cert_pem,
                        key_pem: SecretString::from(key_pem),
                    }),
                    _ => None,
                })
            }
            CredentialStore::Secret { api, name } => {
                let secret = api.get_opt(name).await.map_err(|source| StoreError::Kube {
                    name: name.clone(),
                    source,
                })?;
                let data = secret.and_then(|s| s.data).unwrap_or_default();
                let text = |k: &str| {
                    data.get(k)
                        .and_then(|b| String::from_utf8(b.0.clone()).ok())
                };
                Ok(match (text(CERT_KEY), text(PRIVATE_KEY_KEY)) {
                    (Some(cert_pem), Some(key_pem))
                        if !cert_pem.is_empty() && !key_pem.is_empty() =>
                    {
                        Some(Credentials {
                            cert_pem,
                            key_pem: SecretString::from(key_pem),
                        })
                    }
                    _ => None,
                })
            }
        }
    }

    pub async fn save(&self, creds: &Credentials) -> Result<(), StoreError> {
        match self {
            CredentialStore::Files(dir) => {
                write_private(
                    &dir.join("client.key"),
                    creds.key_pem.expose_secret().as_bytes(),
                )?;
                write_private(&dir.join("client.crt"), creds.cert_pem.as_bytes())
            }
            CredentialStore::Secret { api, name } => {
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "pxbackup-sidecar".to_owned(),
                        )])),
                        ..Default::default()
                    },
                    type_: Some("Opaque".into()),
                    data: Some(BTreeMap::from([
                        (
                            CERT_KEY.to_owned(),
                            ByteString(creds.cert_pem.clone().into_bytes()),
                        ),
                        (
                            PRIVATE_KEY_KEY.to_owned(),
                            ByteString(creds.key_pem.expose_secret().as_bytes().to_vec()),
                        ),
                    ])),
                    ..Default::default()
                };
                let mut value =
                    serde_json::to_value(&secret).map_err(|source| StoreError::Encode {
                        name: name.clone(),
                        source,
                    })?;
                // Server-side apply needs the type meta that the struct does not serialize.
                value["apiVersion"] = "v1".into();
                value["kind"] = "Secret".into();
                api.patch(
                    name,
                    &PatchParams::apply("pxbackup-sidecar").force(),
                    &Patch::Apply(value),
                )
                .await
                .map_err(|source| StoreError::Kube {
                    name: name.clone(),
                    source,
                })?;
                Ok(())
            }
        }
    }
}

/// Written to a temp file created 0600 and renamed, so the key is never readable by others,
/// not even for a moment, and never half written.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let err = |source| StoreError::File {
        path: path.display().to_string(),
        source,
    };
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(dir), Some(name)) => files::write_atomically(dir, name, bytes).map_err(err),
        _ => Err(err(io::Error::other("not a file path"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn files_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::Files(dir.path().to_owned());
        assert!(store.load().await.unwrap().is_none());
        let c = Credentials {
            cert_pem: "C".into(),
            key_pem: SecretString::from("K"),
        };
        store.save(&c).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(c));
        for f in ["client.crt", "client.key"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
}
