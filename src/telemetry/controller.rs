//! The telemetry state machine: disabled -> registering -> enabled -> disabled, driven by the
//! configuration, PX-Backup's pause switch and registration results. `step` is the pure
//! transition function; the `Controller` decides what is wanted (`reconcile`: both switches
//! on, valid settings) and carries out the actions (registration, the upload loop, emptying
//! the spool after a switch-off).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::telemetry::config::{
    pause_state, validate, Defaults, Endpoint, Pause, RawConfig, TelemetryConfig, Validation,
};
use crate::telemetry::metrics::DropReason;
use crate::telemetry::pure1::{
    cert_info, renew_delay, Credentials, Identity, Registrar, RestClient, Transport,
};
use crate::telemetry::redact::Redactor;
use crate::telemetry::store::CredentialStore;
use crate::telemetry::uploader::{self, Sink, Stores, Uploads};
use crate::telemetry::TelemetryContext;

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
        // After a backoff: a certificate that cannot be used at all would otherwise be
        // refused, registered anew and refused again in a tight loop.
        (P::Enabled, I::CredentialsRejected) => (P::Registering, A::RetryRegistrationLater),
    }
}

/// What the controller needs besides the configuration.
pub struct Context {
    pub sidecar: TelemetryContext,
    /// The one clock for wall time (bundle ids and times, certificate expiry).
    pub clock: Clock,
    pub defaults: Defaults,
    pub store: Arc<CredentialStore>,
    pub stores: Stores,
    pub extra_ca_pem: Option<Vec<u8>>,
    pub component_sn: String,
    pub redactor: Arc<Redactor>,
}

/// What the controller watches.
pub struct Inputs {
    /// `px-backup-telemetry-config`.
    pub config: watch::Receiver<RawConfig>,
    /// PX-Backup's `px-backup-config` (API mode); `None`: there is no pause switch.
    pub pause: Option<watch::Receiver<RawConfig>>,
    /// The kube-system namespace UID once it is known (API mode): the default appliance id.
    pub cluster_uid: Option<watch::Receiver<Option<String>>>,
}

/// A certificate that uploaded this long before it was refused is taken to have worked.
const CERTIFICATE_PROVEN: Duration = Duration::from_secs(600);

/// How long a stop waits for a bundle already on the wire before abandoning it (it is then
/// dropped with the rest of the spool, or sent again under the same idempotency key).
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(5);

type RegistrationTask = JoinHandle<Result<Credentials, String>>;
type UploadTask = (CancellationToken, JoinHandle<Uploads>);

pub struct Controller {
    ctx: Context,
    phase: Phase,
    raw: RawConfig,
    pause: Pause,
    /// The validation of `raw` (when it is data), to log only what changed.
    validation: Option<Validation>,
    /// The settings of the last configuration whose keys (other than `enabled`) were all
    /// valid: they stay in force while a bad value is fixed.
    last_valid: Option<TelemetryConfig>,
    /// The configuration in force while telemetry runs; `None` when off.
    active: Option<TelemetryConfig>,
    credentials: Option<Credentials>,
    registration: Option<RegistrationTask>,
    registration_backoff: backon::ExponentialBackoff,
    retry_at: Option<Instant>,
    /// When the uploads with the current certificate started: one that served a while before
    /// it was refused starts the registration backoff afresh.
    uploads_started: Option<Instant>,
    renew_at: Option<Instant>,
    uploads: Option<UploadTask>,
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

/// Resolves when the upload loop ends by itself (refused certificate).
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

/// Waits for a change of an optional watch; never resolves for an absent one, nor after its
/// sender is gone (the last value stays in force).
async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) {
    match rx {
        Some(r) => {
            if r.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

impl Controller {
    pub fn new(ctx: Context) -> Controller {
        Controller {
            ctx,
            phase: Phase::Disabled,
            raw: RawConfig::Pending,
            pause: Pause::Pending,
            validation: None,
            last_valid: None,
            active: None,
            credentials: None,
            registration: None,
            registration_backoff: uploader::backoff(),
            retry_at: None,
            uploads_started: None,
            renew_at: None,
            uploads: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    fn now_unix(&self) -> i64 {
        self.ctx.clock.now().as_millis() / 1000
    }

    pub async fn run(mut self, inputs: Inputs, stop: CancellationToken) {
        let Inputs {
            config: mut rx,
            mut pause,
            mut cluster_uid,
        } = inputs;
        // Without a pause switch, nothing pauses.
        if pause.is_none() {
            self.pause = Pause::Running;
        }
        self.raw = rx.borrow_and_update().clone();
        if let Some(p) = &mut pause {
            self.pause = pause_state(&p.borrow_and_update());
        }
        if let Some(u) = &mut cluster_uid {
            self.ctx.defaults.appliance_id = u.borrow_and_update().clone();
        }
        self.read_config();
        self.reconcile().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                r = rx.changed() => {
                    if r.is_err() {
                        break;
                    }
                    self.raw = rx.borrow_and_update().clone();
                    self.read_config();
                    self.reconcile().await;
                }
                () = changed(&mut pause) => {
                    if let Some(p) = &mut pause {
                        self.pause = pause_state(&p.borrow_and_update());
                    }
                    self.reconcile().await;
                }
                () = changed(&mut cluster_uid) => {
                    if let Some(u) = &mut cluster_uid {
                        self.ctx.defaults.appliance_id = u.borrow_and_update().clone();
                    }
                    tracing::info!("cluster identity known; it is the default telemetry appliance-id");
                    self.read_config();
                    self.reconcile().await;
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
        self.stop_uploads().await;
    }

    /// Validates the configuration read last, updates `config_valid` and logs what changed.
    fn read_config(&mut self) {
        let metrics = &self.ctx.sidecar.metrics;
        let validation = match &self.raw {
            RawConfig::Pending => None,
            RawConfig::Missing => {
                metrics.set_config_valid(true);
                None
            }
            RawConfig::Unreadable(why) => {
                metrics.set_config_valid(false);
                tracing::error!(reason = %crate::logging::bounded(why), "the telemetry configuration cannot be read; telemetry is off");
                None
            }
            RawConfig::Data(data) => {
                let v = validate(data, &self.ctx.defaults);
                metrics.set_config_valid(v.invalid.is_empty());
                let before = self.validation.as_ref();
                if before.map(|b| &b.invalid) != Some(&v.invalid) {
                    for e in &v.invalid {
                        let effect = if e.key == "enabled" || !v.consent {
                            "telemetry is off"
                        } else if self.last_valid.is_some() {
                            "the last valid settings stay in force"
                        } else {
                            "telemetry stays off until the configuration is valid"
                        };
                        tracing::error!(key = %crate::logging::echo(&e.key),
                            value = %crate::logging::echo(&e.value), reason = %e.reason, effect,
                            "invalid telemetry configuration value");
                    }
                }
                if before.map(|b| &b.unknown) != Some(&v.unknown) {
                    for key in &v.unknown {
                        tracing::warn!(key = %crate::logging::echo(key), "unknown telemetry configuration key ignored");
                    }
                }
                if let Some(settings) = &v.settings {
                    self.last_valid = Some(settings.clone());
                }
                Some(v)
            }
        };
        self.validation = validation;
    }

    /// Decides from both switches and the settings whether telemetry runs, and with what;
    /// carries it out. Switching off always wins, and empties the spool.
    async fn reconcile(&mut self) {
        let consent = self.validation.as_ref().is_some_and(|v| v.consent);
        let decided = !matches!(self.raw, RawConfig::Pending);
        let metrics = &self.ctx.sidecar.metrics;
        metrics.set_paused(matches!(self.pause, Pause::Paused(_)));
        // Why the spool must be emptied, when telemetry must be off.
        let (desired, purge) = if !consent {
            (None, decided.then_some(DropReason::Disabled))
        } else {
            match &self.pause {
                Pause::Pending => (None, None),
                Pause::Paused(_) => (None, Some(DropReason::Paused)),
                Pause::Running => {
                    let settings = self
                        .validation
                        .as_ref()
                        .and_then(|v| v.settings.clone())
                        .or_else(|| self.last_valid.clone())
                        .filter(|s| !s.appliance_id.is_empty());
                    (settings, None)
                }
            }
        };
        if desired != self.active {
            if desired.is_some() {
                self.load_credentials().await;
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
            match (&desired, &self.pause) {
                (None, Pause::Paused(why)) if consent => {
                    tracing::info!(switch = %crate::logging::bounded(why), "telemetry paused by PX-Backup")
                }
                _ => tracing::info!(
                    enabled = desired.is_some(),
                    "telemetry configuration applied"
                ),
            }
            self.active = desired;
            self.ctx.sidecar.metrics.set_enabled(self.active.is_some());
            self.transition(input).await;
        }
        if let Some(reason) = purge {
            self.purge_spool(reason).await;
        }
    }

    async fn load_credentials(&mut self) {
        if self.credentials.is_some() {
            return;
        }
        match self.ctx.store.load().await {
            Ok(c) => self.credentials = c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored telemetry registration")
            }
        }
    }

    /// Empties the spool after a switch-off: nothing queued leaves afterwards.
    async fn purge_spool(&self, reason: DropReason) {
        let (stores, metrics) = (self.ctx.stores.clone(), self.ctx.sidecar.metrics.clone());
        let purged = tokio::task::spawn_blocking(move || {
            uploader::lock(&stores.spool).purge(reason, &metrics)
        })
        .await;
        if let Err(e) = purged.map_err(std::io::Error::other).and_then(|r| r) {
            tracing::error!(error = %e, "cannot empty the telemetry spool; nothing is sent from it while telemetry is off");
        }
    }

    /// Stops the upload loop: nothing new starts; a bundle on the wire gets `IN_FLIGHT_GRACE`
    /// to finish, after which it is abandoned.
    async fn stop_uploads(&mut self) {
        self.renew_at = None;
        let Some((token, mut handle)) = self.uploads.take() else {
            return;
        };
        token.cancel();
        match tokio::time::timeout(IN_FLIGHT_GRACE, &mut handle).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "telemetry upload loop ended abnormally"),
            Err(_) => {
                handle.abort();
                tracing::warn!("a telemetry upload did not finish in time; abandoned");
            }
        }
    }

    fn registered_for(&self, cfg: &TelemetryConfig) -> bool {
        match cfg.endpoint {
            Endpoint::Dir(_) => true,
            Endpoint::Pure1 { .. } => self
                .credentials
                .as_ref()
                .is_some_and(|c| c.usable_for(&cfg.appliance_id, self.now_unix())),
        }
    }

    async fn on_uploads_ended(&mut self, ended: Result<Uploads, tokio::task::JoinError>) {
        match ended {
            Ok(u) => {
                if u.credentials_rejected() {
                    if self
                        .uploads_started
                        .is_some_and(|t| t.elapsed() > CERTIFICATE_PROVEN)
                    {
                        self.registration_backoff = uploader::backoff();
                    }
                    self.credentials = None;
                    self.ctx.sidecar.metrics.set_registered(false);
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
                // The backoff is not reset here: only a certificate that uploads for a while
                // proves the registration worked (see `on_uploads_ended`).
                self.ctx.sidecar.metrics.set_registered(true);
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
                let delay = uploader::next_delay(&mut self.registration_backoff);
                self.retry_at = Some(Instant::now() + delay);
            }
            Action::RetryRenewalLater => {
                let delay = uploader::next_delay(&mut self.registration_backoff);
                self.renew_at = Some(Instant::now() + delay);
            }
            Action::StartUploads => self.start_uploads().await,
            Action::StopUploads => self.stop_uploads().await,
            Action::RestartUploads => {
                self.stop_uploads().await;
                self.start_uploads().await;
            }
            Action::StopUploadsAndRegister => {
                self.stop_uploads().await;
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

    async fn start_uploads(&mut self) {
        self.stop_uploads().await;
        self.uploads_started = Some(Instant::now());
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
                            let delay = renew_delay(info.not_after_unix, self.now_unix());
                            // None past the end of tokio's clock: no renewal timer needed then.
                            self.renew_at = Instant::now().checked_add(delay);
                        }
                        Sink::Pure1(c)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the stored client certificate is unusable; registering again");
                        self.credentials = None;
                        self.ctx.sidecar.metrics.set_registered(false);
                        self.phase = Phase::Registering;
                        self.start_registration();
                        return;
                    }
                }
            }
        };
        // The spool is bound to who the bundles are for and where they go: what was made for
        // another appliance id or endpoint is dropped before anything is sent.
        let (stores, metrics) = (self.ctx.stores.clone(), self.ctx.sidecar.metrics.clone());
        let (identity, max_bytes) = (cfg.identity(), cfg.spool_max_bytes);
        let ready = tokio::task::spawn_blocking(move || {
            let mut spool = uploader::lock(&stores.spool);
            spool.claim(&identity, &metrics)?;
            spool.set_max_bytes(max_bytes, &metrics)
        })
        .await;
        if let Err(e) = ready.map_err(std::io::Error::other).and_then(|r| r) {
            tracing::error!(error = %e, "cannot prepare the telemetry spool; uploads not started");
            return;
        }
        if matches!(cfg.endpoint, Endpoint::Pure1 { .. }) {
            self.ctx.sidecar.metrics.set_registered(true);
        }
        let uploads = Uploads {
            sidecar: self.ctx.sidecar.clone(),
            clock: self.ctx.clock.clone(),
            config: cfg,
            sink,
            stores: self.ctx.stores.clone(),
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

    #[test]
    fn a_refused_certificate_registers_again_only_after_a_backoff() {
        // An unusable certificate is refused at once; registering again at once would loop.
        assert_eq!(
            step(Phase::Enabled, Input::CredentialsRejected),
            (Phase::Registering, Action::RetryRegistrationLater)
        );
        assert_eq!(
            step(Phase::Registering, Input::RegistrationFailed),
            (Phase::Registering, Action::RetryRegistrationLater)
        );
    }
    use crate::inventory::Inventory;
    use crate::sources::SourceStatus;
    use crate::telemetry::metrics::UploadKind;
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
        RawConfig::Data(
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

    /// Gives blocking-pool work (file writes) real time to finish while tokio time is paused.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The controller's tests read telemetry's own metrics only.
    struct NoFamilies;

    impl crate::exposition::Collector for NoFamilies {
        fn collect(&self, _: &mut crate::exposition::FamilyWriter<'_>) {}
    }

    struct Rig {
        tmp: tempfile::TempDir,
        sidecar: TelemetryContext,
        stores: Stores,
        config: watch::Sender<RawConfig>,
        pause: watch::Sender<RawConfig>,
        stop: CancellationToken,
        task: JoinHandle<()>,
    }

    impl Rig {
        /// A controller on a paused clock whose bundles go to a directory (no network).
        fn start(with_pause: bool) -> Rig {
            Rig::build(with_pause, None)
        }

        fn build(with_pause: bool, cluster_uid: Option<watch::Receiver<Option<String>>>) -> Rig {
            let tmp = tempfile::tempdir().unwrap();
            let clock = Clock::tokio_anchored(crate::model::Timestamp::from_secs(1_795_395_600));
            let inv = Arc::new(Inventory::in_memory(
                clock.clone(),
                Duration::from_secs(3600),
            ));
            let sidecar = TelemetryContext {
                inventory: inv,
                sources: Arc::new(SourceStatus::new(&[])),
                metrics: Arc::default(),
                self_metrics: Arc::new(NoFamilies),
            };
            let dir = tmp.path().join("telemetry");
            let stores = Stores {
                spool: Arc::new(std::sync::Mutex::new(
                    crate::telemetry::spool::Spool::open(&dir.join("spool"), 1 << 20).unwrap(),
                )),
                logs: Arc::new(std::sync::Mutex::new(
                    crate::telemetry::logs::LogCollector::open(vec![], dir.join("cursors.json")),
                )),
            };
            let ctx = Context {
                sidecar: sidecar.clone(),
                clock,
                defaults: Defaults::default(),
                store: Arc::new(CredentialStore::Files(tmp.path().to_owned())),
                stores: stores.clone(),
                extra_ca_pem: None,
                component_sn: "pod-0".into(),
                redactor: Arc::new(Redactor::new().unwrap()),
            };
            let (config, config_rx) = watch::channel(RawConfig::Pending);
            let (pause, pause_rx) = watch::channel(RawConfig::Missing);
            let inputs = Inputs {
                config: config_rx,
                pause: with_pause.then_some(pause_rx),
                cluster_uid,
            };
            let stop = CancellationToken::new();
            let controller = Controller::new(ctx);
            assert_eq!(controller.phase(), Phase::Disabled);
            let task = tokio::spawn(controller.run(inputs, stop.clone()));
            Rig {
                tmp,
                sidecar,
                stores,
                config,
                pause,
                stop,
                task,
            }
        }

        fn out(&self) -> std::path::PathBuf {
            self.tmp.path().join("out")
        }

        /// `on()` with some keys changed.
        fn on_with(&self, changes: &[(&str, &str)]) -> RawConfig {
            let RawConfig::Data(mut d) = self.on() else {
                unreachable!("on() is data")
            };
            for (k, v) in changes {
                d.insert(k.to_string(), v.to_string());
            }
            RawConfig::Data(d)
        }

        /// Enabled, 10 s health interval, bundles into `out()`.
        fn on(&self) -> RawConfig {
            raw(&[
                ("enabled", "true"),
                ("appliance-id", "org-1"),
                ("endpoint", &format!("dir://{}", self.out().display())),
                ("health-interval", "10s"),
                ("clusters-interval", "1h"),
            ])
        }

        fn spooled(&self) -> usize {
            uploader::lock(&self.stores.spool).len()
        }

        async fn wait_for(&self, n: usize) {
            for _ in 0..200 {
                if bundles(&self.out()).len() >= n {
                    return;
                }
                settle().await;
            }
            panic!("{n} bundles never came: {:?}", bundles(&self.out()));
        }

        async fn stop(self) {
            self.stop.cancel();
            self.task.await.unwrap();
        }
    }

    /// Enable, a bad value keeps the old settings, disable stops everything, re-enable
    /// resumes.
    #[tokio::test(start_paused = true)]
    async fn enable_bad_value_disable_on_a_paused_clock() {
        let rig = Rig::start(false);
        let on = rig.on();
        rig.config.send(on.clone()).unwrap();
        rig.wait_for(2).await; // health and clusters at once (no logs configured)
        assert!(rig.sidecar.metrics.enabled());
        tokio::time::sleep(Duration::from_secs(10)).await;
        rig.wait_for(3).await; // health again after its interval

        rig.config
            .send(rig.on_with(&[("health-interval", "soon")]))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!rig.sidecar.metrics.config_valid());
        assert!(rig.sidecar.metrics.enabled());
        tokio::time::sleep(Duration::from_secs(10)).await;
        rig.wait_for(4).await; // the old 10 s interval is still in force

        rig.config.send(raw(&[("enabled", "false")])).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(rig.sidecar.metrics.config_valid());
        assert!(!rig.sidecar.metrics.enabled());
        let before = bundles(&rig.out()).len();
        tokio::time::sleep(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(
            bundles(&rig.out()).len(),
            before,
            "uploads went on after disable"
        );

        rig.config.send(on).unwrap();
        rig.wait_for(before + 2).await;
        rig.stop().await;
    }

    /// Each way of switching off, with bundles waiting in the spool (the destination is
    /// unwritable): off at once, nothing more is written, the spool is emptied and counted
    /// under its reason.
    #[tokio::test(start_paused = true)]
    async fn every_switch_off_empties_the_spool() {
        type SwitchOff = Box<dyn Fn(&Rig)>;
        let off_cases: [(&str, SwitchOff, DropReason); 6] = [
            (
                "false with a typo elsewhere",
                Box::new(|r: &Rig| {
                    let off = [("enabled", "false"), ("logs-interval", "2 minutes please")];
                    r.config.send(r.on_with(&off)).unwrap();
                }),
                DropReason::Disabled,
            ),
            (
                "False",
                Box::new(|r: &Rig| r.config.send(r.on_with(&[("enabled", "False")])).unwrap()),
                DropReason::Disabled,
            ),
            (
                "a typo in enabled",
                Box::new(|r: &Rig| r.config.send(r.on_with(&[("enabled", "yes")])).unwrap()),
                DropReason::Disabled,
            ),
            (
                "ConfigMap deleted",
                Box::new(|r: &Rig| r.config.send(RawConfig::Missing).unwrap()),
                DropReason::Disabled,
            ),
            (
                "ConfigMap unreadable",
                Box::new(|r: &Rig| {
                    r.config
                        .send(RawConfig::Unreadable("forbidden".into()))
                        .unwrap()
                }),
                DropReason::Disabled,
            ),
            (
                "PX-Backup's pause key",
                Box::new(|r: &Rig| {
                    r.pause
                        .send(raw(&[("TELEMETRY_COLLECTION_ENABLED", "false")]))
                        .unwrap()
                }),
                DropReason::Paused,
            ),
        ];
        for (case, switch_off, reason) in off_cases {
            let rig = Rig::start(true);
            // A file where the directory should be: every write fails, bundles pile up.
            std::fs::write(rig.out(), b"not a directory").unwrap();
            rig.config.send(rig.on()).unwrap();
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(10)).await;
                settle().await;
            }
            assert!(rig.spooled() >= 2, "{case}: {}", rig.spooled());
            assert!(rig.sidecar.metrics.enabled(), "{case}");
            switch_off(&rig);
            tokio::time::sleep(Duration::from_millis(1)).await;
            settle().await;
            assert!(!rig.sidecar.metrics.enabled(), "{case}");
            assert_eq!(rig.spooled(), 0, "{case}: spool not emptied");
            let dropped: u64 = UploadKind::ALL
                .iter()
                .map(|k| rig.sidecar.metrics.dropped(*k, reason))
                .sum();
            assert!(dropped >= 2, "{case}: {dropped} counted as {reason:?}");
            // The destination works again: still nothing goes out.
            std::fs::remove_file(rig.out()).unwrap();
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_secs(10)).await;
                settle().await;
            }
            assert!(
                bundles(&rig.out()).is_empty(),
                "{case}: sent after the switch-off"
            );
            assert_eq!(rig.spooled(), 0, "{case}");
            rig.stop().await;
        }
    }

    /// Both switches: PX-Backup's pause stops what the ConfigMap enables, and resuming
    /// starts again; while the pause switch is not read yet, nothing starts.
    #[tokio::test(start_paused = true)]
    async fn either_switch_off_means_off() {
        let rig = Rig::start(true);
        rig.pause.send(RawConfig::Pending).unwrap();
        rig.config.send(rig.on()).unwrap();
        tokio::time::sleep(Duration::from_secs(20)).await;
        settle().await;
        assert!(
            bundles(&rig.out()).is_empty(),
            "started before the pause switch was read"
        );
        rig.pause
            .send(raw(&[("TELEMETRY_COLLECTION_ENABLED", "true")]))
            .unwrap();
        rig.wait_for(2).await;
        rig.pause
            .send(raw(&[("TELEMETRY_COLLECTION_ENABLED", "FALSE")]))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        settle().await;
        assert!(rig.sidecar.metrics.paused() && !rig.sidecar.metrics.enabled());
        let n = bundles(&rig.out()).len();
        tokio::time::sleep(Duration::from_secs(60)).await;
        settle().await;
        assert_eq!(bundles(&rig.out()).len(), n);
        rig.pause.send(RawConfig::Missing).unwrap();
        rig.wait_for(n + 1).await;
        assert!(!rig.sidecar.metrics.paused() && rig.sidecar.metrics.enabled());
        rig.stop().await;
    }

    /// Bundles spooled for one appliance id never leave under another.
    #[tokio::test(start_paused = true)]
    async fn a_new_identity_empties_the_spool() {
        let rig = Rig::start(false);
        std::fs::write(rig.out(), b"not a directory").unwrap();
        rig.config.send(rig.on()).unwrap();
        tokio::time::sleep(Duration::from_secs(20)).await;
        settle().await;
        assert!(rig.spooled() >= 2);
        rig.config
            .send(rig.on_with(&[("appliance-id", "org-2")]))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        settle().await;
        let dropped: u64 = UploadKind::ALL
            .iter()
            .map(|k| rig.sidecar.metrics.dropped(*k, DropReason::IdentityChanged))
            .sum();
        assert!(dropped >= 2, "{dropped}");
        assert!(rig.sidecar.metrics.enabled());
        rig.stop().await;
    }

    /// An enabled configuration whose appliance id must come from the cluster waits for it,
    /// and starts as soon as it is known.
    #[tokio::test(start_paused = true)]
    async fn the_cluster_uid_arriving_late_enables() {
        let (uid, uid_rx) = watch::channel(None);
        let rig = Rig::build(false, Some(uid_rx));
        let RawConfig::Data(mut on) = rig.on() else {
            unreachable!()
        };
        on.remove("appliance-id");
        rig.config.send(RawConfig::Data(on)).unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        settle().await;
        let t = &rig.sidecar.metrics;
        assert!(!t.enabled() && !t.config_valid());
        uid.send(Some("kube-system-uid".into())).unwrap();
        rig.wait_for(2).await;
        assert!(t.enabled() && t.config_valid());
        rig.stop().await;
    }

    /// Making bundles reads the inventory's summary only: a tombstone past its expiry stays
    /// for the expiry task (no journal compaction or expiry from telemetry).
    #[tokio::test(start_paused = true)]
    async fn making_bundles_changes_nothing_in_the_inventory() {
        use crate::model::{Backup, BackupStatus, Event, Object, Origin, SourceId};
        let rig = Rig::start(false);
        let inv = &rig.sidecar.inventory;
        let backup = Backup {
            uid: "b1".into(),
            name: "b1".into(),
            status: BackupStatus::Success,
            ..Backup::default()
        };
        let origin = Origin::source(SourceId::Demo);
        let _ = inv.apply(&origin, vec![Event::Upsert(Object::Backup(backup))]);
        let _ = inv.apply(
            &origin,
            vec![Event::Delete {
                kind: crate::model::Kind::Backup,
                uid: "b1".into(),
                deleted_at: None,
            }],
        );
        assert_eq!(inv.counts().tombstones, 1);
        tokio::time::sleep(Duration::from_secs(7200)).await; // past the 1 h backfill
        rig.config.send(rig.on()).unwrap();
        rig.wait_for(2).await;
        assert_eq!(inv.counts().tombstones, 1);
        rig.stop().await;
    }
}
