//! The telemetry state machine: disabled -> registering -> enabled -> disabled, driven by the
//! configuration and by registration results. `step` is the pure transition function; the
//! `Controller` carries out its actions (spawning the registration and the upload loop).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::state::Shared;
use crate::telemetry::config::{
    validate, Defaults, Endpoint, RawConfig, TelemetryConfig, DEFAULT_SPOOL_MAX_BYTES,
};
use crate::telemetry::logs::LogCollector;
use crate::telemetry::pure1::{
    cert_info, renew_delay, Credentials, Identity, Registrar, RestClient, Transport,
};
use crate::telemetry::redact::Redactor;
use crate::telemetry::spool::Spool;
use crate::telemetry::store::CredentialStore;
use crate::telemetry::uploader::{Backoff, Sink, Uploads, BACKOFF_MAX};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Disabled,
    /// Enabled by the configuration, waiting for a client certificate.
    Registering,
    /// Uploading (with a certificate, or to a directory that needs none).
    Enabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The configuration says disabled (or is gone).
    Disable,
    /// The configuration says enabled; `registered` = a usable certificate is at hand (or
    /// the endpoint needs none).
    Enable {
        registered: bool,
    },
    /// An enabled configuration changed (intervals, endpoint, appliance id...).
    Changed {
        registered: bool,
    },
    Registered,
    RegistrationFailed,
    /// The certificate enters its renewal window.
    RenewDue,
    /// The endpoint keeps refusing the certificate (revoked): uploads have stopped.
    CredentialsRejected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Register,
    RetryRegistrationLater,
    StartUploads,
    StopUploads,
    RestartUploads,
    StopUploadsAndRegister,
    CancelRegistration,
    /// Register again while the current certificate keeps uploading.
    Renew,
    RetryRenewalLater,
}

pub fn step(phase: Phase, input: Input) -> (Phase, Action) {
    use Action as A;
    use Input as I;
    use Phase as P;
    match (phase, input) {
        (P::Disabled, I::Enable { registered: true } | I::Changed { registered: true }) => {
            (P::Enabled, A::StartUploads)
        }
        (P::Disabled, I::Enable { registered: false } | I::Changed { registered: false }) => {
            (P::Registering, A::Register)
        }
        (P::Disabled, _) => (P::Disabled, A::Nothing),

        (P::Registering, I::Disable) => (P::Disabled, A::CancelRegistration),
        (P::Registering, I::Enable { registered: true } | I::Changed { registered: true }) => {
            (P::Enabled, A::StartUploads)
        }
        // New appliance id or endpoint: the registration under way is for the old one.
        (P::Registering, I::Enable { registered: false } | I::Changed { registered: false }) => {
            (P::Registering, A::Register)
        }
        (P::Registering, I::Registered) => (P::Enabled, A::StartUploads),
        (P::Registering, I::RegistrationFailed) => (P::Registering, A::RetryRegistrationLater),
        (P::Registering, I::RenewDue | I::CredentialsRejected) => (P::Registering, A::Nothing),

        (P::Enabled, I::Disable) => (P::Disabled, A::StopUploads),
        (P::Enabled, I::Enable { registered: true } | I::Changed { registered: true }) => {
            (P::Enabled, A::RestartUploads)
        }
        (P::Enabled, I::Enable { registered: false } | I::Changed { registered: false }) => {
            (P::Registering, A::StopUploadsAndRegister)
        }
        (P::Enabled, I::RenewDue) => (P::Enabled, A::Renew),
        (P::Enabled, I::Registered) => (P::Enabled, A::RestartUploads),
        (P::Enabled, I::RegistrationFailed) => (P::Enabled, A::RetryRenewalLater),
        (P::Enabled, I::CredentialsRejected) => (P::Registering, A::Register),
    }
}

/// What the controller needs besides the configuration.
pub struct Context {
    pub shared: Arc<Shared>,
    pub defaults: Defaults,
    pub store: Arc<CredentialStore>,
    /// `<state-dir>/telemetry`: spool, log cursors (and credentials in file mode).
    pub dir: PathBuf,
    pub log_paths: Vec<PathBuf>,
    pub extra_ca_pem: Option<Vec<u8>>,
    pub component_sn: String,
    pub redactor: Arc<Redactor>,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// How long a stop or restart waits for a bundle already on the wire.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(5);

type RegistrationTask = JoinHandle<Result<Credentials, String>>;

pub struct Controller {
    ctx: Context,
    phase: Phase,
    /// The configuration in force when enabled; `None` when disabled.
    active: Option<TelemetryConfig>,
    credentials: Option<Credentials>,
    registration: Option<RegistrationTask>,
    registration_backoff: Backoff,
    retry_at: Option<Instant>,
    renew_at: Option<Instant>,
    uploads: Option<UploadTask>,
    /// Spool and log cursors while no upload loop owns them.
    parked: Option<(Spool, LogCollector)>,
}

async fn join_opt(task: &mut Option<RegistrationTask>) -> Result<Credentials, String> {
    match task {
        Some(t) => {
            let r = t
                .await
                .unwrap_or_else(|e| Err(format!("registration task: {e}")));
            *task = None;
            r
        }
        None => std::future::pending().await,
    }
}

type UploadTask = (CancellationToken, JoinHandle<Uploads>);

/// Resolves when the upload loop ends by itself (refused certificate) or after a stop.
async fn join_uploads(task: &mut Option<UploadTask>) -> Result<Uploads, tokio::task::JoinError> {
    match task {
        Some((_, handle)) => {
            let r = handle.await;
            *task = None;
            r
        }
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Controller {
    pub fn new(ctx: Context) -> std::io::Result<Controller> {
        let spool = Spool::open(&ctx.dir.join("spool"), DEFAULT_SPOOL_MAX_BYTES)?;
        let logs = LogCollector::open(ctx.log_paths.clone(), ctx.dir.join("log-cursors.json"));
        ctx.shared.telemetry.set_spool_bytes(spool.bytes());
        Ok(Controller {
            ctx,
            phase: Phase::Disabled,
            active: None,
            credentials: None,
            registration: None,
            registration_backoff: Backoff::new(Duration::from_secs(1), BACKOFF_MAX),
            retry_at: None,
            renew_at: None,
            uploads: None,
            parked: Some((spool, logs)),
        })
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub async fn run(mut self, mut rx: watch::Receiver<RawConfig>, stop: CancellationToken) {
        let first = rx.borrow_and_update().clone();
        self.on_config(first).await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let raw = rx.borrow_and_update().clone();
                    self.on_config(raw).await;
                }
                result = join_opt(&mut self.registration) => self.on_registration(result).await,
                ended = join_uploads(&mut self.uploads) => self.on_uploads_ended(ended).await,
                _ = sleep_opt(self.retry_at) => {
                    self.retry_at = None;
                    self.start_registration();
                }
                _ = sleep_opt(self.renew_at) => {
                    self.renew_at = None;
                    self.transition(Input::RenewDue).await;
                }
            }
        }
        if let Some(t) = self.registration.take() {
            t.abort();
        }
        self.take_back_uploads().await;
    }

    /// Stops the upload loop and takes the spool and log cursors back. A bundle in flight gets
    /// `IN_FLIGHT_GRACE` to finish; past that it is abandoned, which loses nothing: it is
    /// still in the spool and goes again, under the same idempotency key.
    async fn take_back_uploads(&mut self) {
        let Some((token, mut handle)) = self.uploads.take() else {
            return;
        };
        token.cancel();
        match tokio::time::timeout(IN_FLIGHT_GRACE, &mut handle).await {
            Ok(Ok(u)) => self.parked = Some((u.spool, u.logs)),
            Ok(Err(e)) => tracing::error!(error = %e, "telemetry upload loop ended abnormally"),
            Err(_) => {
                handle.abort();
                tracing::warn!("a telemetry upload did not finish in time; it stays spooled");
            }
        }
    }

    fn registered_for(&self, cfg: &TelemetryConfig) -> bool {
        match cfg.endpoint {
            Endpoint::Dir(_) => true,
            Endpoint::Pure1 { .. } => self
                .credentials
                .as_ref()
                .is_some_and(|c| c.usable_for(&cfg.appliance_id, now_unix())),
        }
    }

    pub async fn on_config(&mut self, raw: RawConfig) {
        let metrics = &self.ctx.shared.telemetry;
        let cfg = match validate(&raw, &self.ctx.defaults) {
            Err(e) => {
                metrics.set_config_valid(false);
                tracing::error!(key = %e.key, value = %e.value, reason = %e.reason,
                    "invalid telemetry configuration; the last valid one stays in force");
                return;
            }
            Ok((cfg, unknown)) => {
                metrics.set_config_valid(true);
                for key in unknown {
                    tracing::warn!(key = %key, "unknown telemetry configuration key ignored");
                }
                cfg
            }
        };
        let desired = cfg.enabled.then_some(cfg);
        if desired == self.active {
            return;
        }
        if let Some(cfg) = &desired {
            if matches!(cfg.endpoint, Endpoint::Pure1 { .. }) && self.credentials.is_none() {
                match self.ctx.store.load().await {
                    Ok(c) => self.credentials = c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the stored telemetry registration")
                    }
                }
            }
        }
        let input = match (&self.active, &desired) {
            (_, None) => Input::Disable,
            (None, Some(c)) => Input::Enable {
                registered: self.registered_for(c),
            },
            (Some(_), Some(c)) => Input::Changed {
                registered: self.registered_for(c),
            },
        };
        tracing::info!(
            enabled = desired.is_some(),
            "telemetry configuration applied"
        );
        self.active = desired;
        metrics.set_enabled(self.active.is_some());
        self.transition(input).await;
    }

    async fn on_uploads_ended(&mut self, ended: Result<Uploads, tokio::task::JoinError>) {
        match ended {
            Ok(u) => {
                let rejected = u.credentials_rejected();
                self.parked = Some((u.spool, u.logs));
                if rejected {
                    self.credentials = None;
                    self.ctx.shared.telemetry.set_registered(false);
                    self.transition(Input::CredentialsRejected).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "telemetry upload loop ended abnormally"),
        }
    }

    async fn on_registration(&mut self, result: Result<Credentials, String>) {
        match result {
            Ok(creds) => {
                tracing::info!("registered with Pure1; client certificate stored");
                self.credentials = Some(creds);
                self.registration_backoff.reset();
                self.ctx.shared.telemetry.set_registered(true);
                self.transition(Input::Registered).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Pure1 registration failed");
                self.transition(Input::RegistrationFailed).await;
            }
        }
    }

    async fn transition(&mut self, input: Input) {
        let (next, action) = step(self.phase, input);
        tracing::debug!(from = ?self.phase, to = ?next, ?input, ?action, "telemetry transition");
        self.phase = next;
        match action {
            Action::Nothing => {}
            Action::Register => self.start_registration(),
            Action::RetryRegistrationLater => {
                self.retry_at = Some(Instant::now() + self.registration_backoff.next_delay());
            }
            Action::RetryRenewalLater => {
                self.renew_at = Some(Instant::now() + self.registration_backoff.next_delay());
            }
            Action::StartUploads => self.start_uploads().await,
            Action::StopUploads => self.stop_uploads(),
            Action::RestartUploads => {
                self.stop_uploads();
                self.start_uploads().await;
            }
            Action::StopUploadsAndRegister => {
                self.stop_uploads();
                self.start_registration();
            }
            Action::CancelRegistration => {
                if let Some(t) = self.registration.take() {
                    t.abort();
                }
                self.retry_at = None;
            }
            Action::Renew => self.start_registration(),
        }
    }

    fn identity(&self, cfg: &TelemetryConfig) -> Identity {
        Identity {
            appliance_id: cfg.appliance_id.clone(),
            component_sn: if self.ctx.component_sn.is_empty() {
                cfg.appliance_id.clone()
            } else {
                self.ctx.component_sn.clone()
            },
        }
    }

    fn transport(&self, cfg: &TelemetryConfig) -> Transport {
        Transport {
            extra_ca_pem: self.ctx.extra_ca_pem.clone(),
            http_proxy: cfg.http_proxy.clone(),
        }
    }

    fn start_registration(&mut self) {
        if let Some(t) = self.registration.take() {
            t.abort();
        }
        self.retry_at = None;
        let Some(cfg) = self.active.clone() else {
            return;
        };
        let Endpoint::Pure1 { register, .. } = &cfg.endpoint else {
            return;
        };
        let (identity, transport) = (self.identity(&cfg), self.transport(&cfg));
        let (register, store) = (register.clone(), self.ctx.store.clone());
        tracing::info!(endpoint = %register, appliance_id = %cfg.appliance_id, "registering with Pure1");
        self.registration = Some(tokio::spawn(async move {
            let registrar =
                Registrar::new(&register, &identity, &transport).map_err(|e| e.to_string())?;
            let creds = registrar
                .register(&identity.appliance_id)
                .await
                .map_err(|e| e.to_string())?;
            store.save(&creds).await.map_err(|e| e.to_string())?;
            Ok(creds)
        }));
    }

    fn stop_uploads(&mut self) {
        // The handle stays: the next start waits for the bundle in flight and takes the
        // spool back from it.
        if let Some((token, _)) = &self.uploads {
            token.cancel();
        }
        self.renew_at = None;
    }

    async fn start_uploads(&mut self) {
        self.take_back_uploads().await;
        let Some(cfg) = self.active.clone() else {
            return;
        };
        let sink = match &cfg.endpoint {
            Endpoint::Dir(dir) => Sink::Dir(dir.clone()),
            Endpoint::Pure1 { rest, .. } => {
                let Some(creds) = self.credentials.clone() else {
                    self.phase = Phase::Registering;
                    self.start_registration();
                    return;
                };
                match RestClient::new(rest, &self.identity(&cfg), &self.transport(&cfg), &creds) {
                    Ok(c) => {
                        if let Ok(info) = cert_info(&creds.cert_pem) {
                            let delay = renew_delay(info.not_after_unix, now_unix());
                            // None past the end of tokio's clock: no renewal timer needed then.
                            self.renew_at = Instant::now().checked_add(delay);
                        }
                        Sink::Pure1(c)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the stored client certificate is unusable; registering again");
                        self.credentials = None;
                        self.ctx.shared.telemetry.set_registered(false);
                        self.phase = Phase::Registering;
                        self.start_registration();
                        return;
                    }
                }
            }
        };
        let (mut spool, logs) = match self.parked.take() {
            Some(p) => p,
            None => match Spool::open(&self.ctx.dir.join("spool"), cfg.spool_max_bytes) {
                Ok(s) => (
                    s,
                    LogCollector::open(
                        self.ctx.log_paths.clone(),
                        self.ctx.dir.join("log-cursors.json"),
                    ),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the telemetry spool; uploads not started");
                    return;
                }
            },
        };
        spool.set_max_bytes(cfg.spool_max_bytes);
        if matches!(cfg.endpoint, Endpoint::Pure1 { .. }) {
            self.ctx.shared.telemetry.set_registered(true);
        }
        let uploads = Uploads {
            shared: self.ctx.shared.clone(),
            config: cfg,
            sink,
            spool,
            logs,
            redactor: self.ctx.redactor.clone(),
            rejections: 0,
        };
        let token = CancellationToken::new();
        let handle = tokio::spawn(uploads.run(token.clone()));
        self.uploads = Some((token, handle));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;
    use crate::sources::SourceStatus;
    use std::collections::BTreeMap;

    #[test]
    fn transitions() {
        use Action as A;
        use Input as I;
        use Phase as P;
        let cases = [
            (P::Disabled, I::Disable, P::Disabled, A::Nothing),
            (
                P::Disabled,
                I::Enable { registered: false },
                P::Registering,
                A::Register,
            ),
            (
                P::Disabled,
                I::Enable { registered: true },
                P::Enabled,
                A::StartUploads,
            ),
            (
                P::Registering,
                I::RegistrationFailed,
                P::Registering,
                A::RetryRegistrationLater,
            ),
            (P::Registering, I::Registered, P::Enabled, A::StartUploads),
            (
                P::Registering,
                I::Disable,
                P::Disabled,
                A::CancelRegistration,
            ),
            (P::Enabled, I::Disable, P::Disabled, A::StopUploads),
            (
                P::Enabled,
                I::Changed { registered: true },
                P::Enabled,
                A::RestartUploads,
            ),
            (
                P::Enabled,
                I::Changed { registered: false },
                P::Registering,
                A::StopUploadsAndRegister,
            ),
            (P::Enabled, I::RenewDue, P::Enabled, A::Renew),
            (P::Enabled, I::Registered, P::Enabled, A::RestartUploads),
            (
                P::Enabled,
                I::RegistrationFailed,
                P::Enabled,
                A::RetryRenewalLater,
            ),
        ];
        for (from, input, to, action) in cases {
            assert_eq!(step(from, input), (to, action), "{from:?} + {input:?}");
        }
    }

    fn raw(pairs: &[(&str, &str)]) -> RawConfig {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    fn bundles(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.retain(|n| n.ends_with(".json.gz"));
        v.sort();
        v
    }

    /// The whole controller on a paused clock, writing to a directory endpoint (no network):
    /// enable, a bad value keeps the old config, disable stops everything, re-enable resumes.
    #[tokio::test(start_paused = true)]
    async fn enable_bad_value_disable_on_a_paused_clock() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let inv = Arc::new(Inventory::in_memory(
            crate::clock::Clock::System,
            Duration::from_secs(3600),
        ));
        let shared = Arc::new(Shared::new(inv, SourceStatus::new(&[])));
        let ctx = Context {
            shared: shared.clone(),
            defaults: Defaults::default(),
            store: Arc::new(CredentialStore::Files(tmp.path().to_owned())),
            dir: tmp.path().join("telemetry"),
            log_paths: vec![],
            extra_ca_pem: None,
            component_sn: "pod-0".into(),
            redactor: Arc::new(Redactor::new().unwrap()),
        };
        let endpoint = format!("dir://{}", out.display());
        let on = raw(&[
            ("enabled", "true"),
            ("appliance-id", "org-1"),
            ("endpoint", &endpoint),
            ("health-interval", "10s"),
            ("clusters-interval", "1h"),
        ]);
        let (tx, rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let controller = Controller::new(ctx).unwrap();
        assert_eq!(controller.phase(), Phase::Disabled);
        let task = tokio::spawn(controller.run(rx, stop.clone()));

        let wait_for = |n: usize| {
            let out = out.clone();
            async move {
                for _ in 0..2000 {
                    if bundles(&out).len() >= n {
                        return;
                    }
                    // Real time for the blocking file writes, paused time otherwise.
                    tokio::task::yield_now().await;
                    std::thread::sleep(Duration::from_millis(1));
                }
                panic!("{n} bundles never came: {:?}", bundles(&out));
            }
        };
        tx.send(on.clone()).unwrap();
        wait_for(2).await; // health and clusters at once (no logs configured)
        assert!(shared.telemetry.enabled());
        tokio::time::sleep(Duration::from_secs(10)).await;
        wait_for(3).await; // health again after its interval

        let mut bad = on.clone().unwrap();
        bad.insert("health-interval".into(), "soon".into());
        tx.send(Some(bad)).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!shared.telemetry.config_valid());
        tokio::time::sleep(Duration::from_secs(10)).await;
        wait_for(4).await; // the old 10 s interval is still in force

        tx.send(raw(&[("enabled", "false")])).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(shared.telemetry.config_valid());
        assert!(!shared.telemetry.enabled());
        let before = bundles(&out).len();
        tokio::time::sleep(Duration::from_secs(60)).await;
        for _ in 0..50 {
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(bundles(&out).len(), before, "uploads went on after disable");

        tx.send(on).unwrap();
        wait_for(before + 2).await;
        stop.cancel();
        task.await.unwrap();
    }
}
