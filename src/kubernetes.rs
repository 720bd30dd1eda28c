//! The one Kubernetes client of the process, and the one lookup of the cluster's identity
//! (the UID of the `kube-system` namespace), shared by the kube source (which labels every
//! object with it) and telemetry (whose appliance id defaults to it). Built once in `app`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use tokio::sync::OnceCell;

/// The lookup's backoff: 1 s doubling to 30 s, so a cluster whose API server comes up late is
/// found soon after, without hammering one that is down.
const UID_RETRY_MIN: Duration = Duration::from_secs(1);
const UID_RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    #[error("--kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes configuration (no --kubeconfig / KUBECONFIG, ~/.kube/config or in-cluster service account): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

pub struct Kubernetes {
    client: Client,
    cluster_uid: OnceCell<String>,
}

impl Kubernetes {
    /// Builds the client from `--kubeconfig`, or else the usual places (KUBECONFIG,
    /// ~/.kube/config, the in-cluster service account). Reads files only: no request is made.
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Arc<Kubernetes>, KubeClientError> {
        crate::tls::install_crypto_provider();
        let config = match kubeconfig {
            Some(path) => {
                let wrap = |source| KubeClientError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                };
                let file = Kubeconfig::read_from(path).map_err(wrap)?;
                kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(wrap)?
            }
            None => kube::Config::infer().await?,
        };
        Ok(Kubernetes::with_client(Client::try_from(config)?))
    }

    /// The client in `slot`, built (from the settings' kubeconfig) on first use: every part
    /// of the process that asks gets the same one.
    pub async fn get_or_connect(
        slot: &mut Option<Arc<Kubernetes>>,
        settings: &crate::config::Settings,
    ) -> Result<Arc<Kubernetes>, KubeClientError> {
        if let Some(k) = slot {
            return Ok(k.clone());
        }
        let k = Kubernetes::connect(settings.kubeconfig.as_deref()).await?;
        *slot = Some(k.clone());
        Ok(k)
    }

    pub fn with_client(client: Client) -> Arc<Kubernetes> {
        Arc::new(Kubernetes {
            client,
            cluster_uid: OnceCell::new(),
        })
    }

    /// A handle on the shared client (cheap: clones share one connection pool).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The cluster's UUID: the UID of the `kube-system` namespace, which lives as long as the
    /// cluster. The first caller asks the API server, retrying with backoff until it answers
    /// (an error at start-up must not leave anyone without it for the life of the process);
    /// every other caller waits for that one answer. A caller that gives up (is dropped)
    /// leaves the lookup to the next one.
    pub async fn cluster_uid(&self) -> String {
        self.cluster_uid
            .get_or_init(|| lookup_cluster_uid(&self.client))
            .await
            .clone()
    }
}

async fn lookup_cluster_uid(client: &Client) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut backoff = backon::ExponentialBuilder::default()
        .with_min_delay(UID_RETRY_MIN)
        .with_max_delay(UID_RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        match api.get("kube-system").await {
            Ok(ns) => match ns.metadata.uid.filter(|u| !u.is_empty()) {
                Some(uid) => return uid,
                None => tracing::warn!("the kube-system namespace has no uid; retrying"),
            },
            Err(e) => tracing::warn!(
                error = %e,
                "cannot read the kube-system namespace (its uid identifies the cluster); retrying"
            ),
        }
        tokio::time::sleep(backoff.next().unwrap_or(UID_RETRY_MAX)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    #[tokio::test]
    async fn an_https_kubeconfig_builds_a_client() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n\
             current-context: c\nusers:\n- name: u\n  user:\n    token: t\n",
        )
        .expect("write kubeconfig");
        Kubernetes::connect(Some(&path))
            .await
            .expect("a client for an https server");
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_file() {
        let Err(err) = Kubernetes::connect(Some(Path::new("/nonexistent/kubeconfig"))).await else {
            panic!("a client from a file that does not exist");
        };
        assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
    }

    /// A mock API server that fails the first `failures` namespace reads with a 500.
    fn mock_client(failures: usize, calls: Arc<AtomicUsize>) -> Client {
        use axum::http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                assert_eq!(req.uri().path(), "/api/v1/namespaces/kube-system");
                let n = calls.fetch_add(1, SeqCst);
                let (status, body) = if n < failures {
                    (500, r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"down","reason":"InternalError","code":500}"#.to_owned())
                } else {
                    (200, r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"kube-system","uid":"uid-42"}}"#.to_owned())
                };
                let resp = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(body.into_bytes()))
                    .expect("response");
                send.send_response(resp);
            }
        });
        Client::new(service, "default")
    }

    #[tokio::test(start_paused = true)]
    async fn the_uid_lookup_retries_until_it_succeeds_and_is_made_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let kube = Kubernetes::with_client(mock_client(3, calls.clone()));
        let (a, b) = tokio::join!(kube.cluster_uid(), kube.cluster_uid());
        assert_eq!((a.as_str(), b.as_str()), ("uid-42", "uid-42"));
        assert_eq!(kube.cluster_uid().await, "uid-42");
        // Three failures, one success, shared by every caller.
        assert_eq!(calls.load(SeqCst), 4);
    }
}
