//! The pxb source's own Keycloak session against a fake Keycloak (tests/fake_keycloak) and the
//! fake PX-Backup (tests/fake_pxb) accepting only tokens that are live now: the real binary over
//! several token lifetimes, its failures and their log lines, its configuration errors, and
//! the client driven in process for the refused-token path and OpenID discovery. Nothing
//! secret (password, client secret, any token issued) may appear in a log line, a scrape, an
//! error, a `Debug` output or a telemetry bundle.

mod common;
mod fake_keycloak;
mod fake_pxb;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, free_port, Sidecar};
use fake_keycloak::{Client, FakeKeycloak};
use fake_pxb::FakePxb;
use pxbackup_sidecar::clock::Clock;
use pxbackup_sidecar::config::{OidcSettings, PxbSettings};
use pxbackup_sidecar::inventory::Inventory;
use pxbackup_sidecar::model::SourceId;
use pxbackup_sidecar::sources::pxb::auth::{AuthStats, GrantResult, TokenSource};
use pxbackup_sidecar::sources::pxb::{Poller, PxbClient};
use pxbackup_sidecar::sources::{SourceContext, SourceStatus};

const USER: &str = "pxb-reader";
const PASSWORD: &str = "Pa55-canary-7d1e";
const CLIENT_SECRET: &str = "client-secret-canary-93b2";

/// A fake PX-Backup with one empty organization, accepting `kc`'s live tokens only.
async fn pxb_for(kc: &FakeKeycloak) -> FakePxb {
    let pxb = FakePxb::start().await;
    pxb.add_org("default");
    pxb.accept_tokens(kc.validator());
    pxb
}

/// Credential files as a Secret volume holds them (rewritten by rename, as kubelet does).
struct Secret {
    dir: tempfile::TempDir,
}

impl Secret {
    fn new(pairs: &[(&str, &str)]) -> Secret {
        let s = Secret {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for (k, v) in pairs {
            s.put(k, v);
        }
        s
    }
    fn put(&self, key: &str, value: &str) {
        let next = self.dir.path().join(format!("..{key}.new"));
        std::fs::write(&next, format!("{value}\n")).expect("write");
        std::fs::rename(&next, self.path(key)).expect("rename");
    }
    fn path(&self, key: &str) -> PathBuf {
        self.dir.path().join(key)
    }
    fn arg(&self, key: &str) -> String {
        self.path(key).to_str().expect("utf-8 path").to_owned()
    }
}

/// The sample value of a series (exact name and labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

const UP: &str = r#"pxbackup_sidecar_source_up{source="pxb"}"#;

fn logins(text: &str, result: &str) -> f64 {
    value(
        text,
        &format!(r#"pxbackup_sidecar_pxb_oidc_logins_total{{result="{result}"}}"#),
    )
    .unwrap_or(-1.0)
}

fn refreshes(text: &str, result: &str) -> f64 {
    value(
        text,
        &format!(r#"pxbackup_sidecar_pxb_oidc_refreshes_total{{result="{result}"}}"#),
    )
    .unwrap_or(-1.0)
}

/// Fails naming the secret and where it was found.
fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !text.contains(s.as_str()),
            "a secret ({}...) in {what}",
            &s[..6.min(s.len())]
        );
    }
}

fn secrets_of(kc: &FakeKeycloak) -> Vec<String> {
    let mut all = kc.issued();
    all.extend([PASSWORD.to_owned(), CLIENT_SECRET.to_owned()]);
    all
}

async fn until<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn oidc_args<'a>(kc: &'a FakeKeycloak, pxb: &'a FakePxb, secret: &Secret) -> Vec<String> {
    [
        "--source",
        "pxb",
        "--pxb-url",
        &pxb.url,
        "--pxb-poll-interval",
        "500ms",
        "--pxb-oidc-url",
        &kc.realm_url,
        "--pxb-oidc-username-file",
        &secret.arg("username"),
        "--pxb-oidc-password-file",
        &secret.arg("password"),
    ]
    .map(str::to_owned)
    .to_vec()
}

fn spawn(args: &[String], logs: &Path) -> Sidecar {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Sidecar::spawn(&args, logs)
}

// ---------------------------------------------------------------------------------------------
// The binary

/// Tokens living 8 s, sessions ending after 20 s (and all of them once more, mid-run), polls
/// every half second for a minute: every poll completes, PX-Backup never sees an expired
/// token, and the session logged in, refreshed and logged in again many times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_eight_second_tokens_and_no_poll_fails() {
    let kc = FakeKeycloak::start(Duration::from_secs(8), Duration::from_secs(20)).await;
    kc.session_max(Duration::from_secs(20));
    kc.add_user(USER, PASSWORD);
    let pxb = pxb_for(&kc).await;
    let secret = Secret::new(&[("username", USER), ("password", PASSWORD)]);
    let logs = tempfile::tempdir().expect("temp dir");
    let state = logs.path().join("state");
    let mut args = oidc_args(&kc, &pxb, &secret);
    args.extend(
        [
            "--log-level",
            "debug",
            "--state-dir",
            state.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    let mut sc = spawn(&args, logs.path());
    sc.ready().await;
    let started = Instant::now();
    let mut scrapes = String::new();
    let mut ended = false;
    let first_logins = logins(&sc.scrape().await, "success");
    while started.elapsed() < Duration::from_secs(60) {
        let text = sc.scrape().await;
        assert_eq!(
            value(&text, UP),
            Some(1.0),
            "the source went down:\n{}",
            sc.log()
        );
        if !ended && logins(&text, "success") > first_logins {
            // Just after the second login, an administrator signs every session out: its
            // first refresh, due 6 s after the login, is refused.
            kc.end_sessions();
            ended = true;
        }
        scrapes.push_str(&text);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(ended, "no second login in a minute");
    let text = sc.scrape().await;
    let log = sc.log();
    let requests = pxb.requests();
    assert!(requests.len() > 100, "{} requests", requests.len());
    let refused: Vec<_> = requests.iter().filter(|r| r.status != 200).collect();
    assert!(
        refused.is_empty(),
        "PX-Backup refused {} calls: {refused:?}",
        refused.len()
    );
    assert!(!log.contains("poll failed"), "{log}");
    // Sessions of 20 s: a login about every 24 s, and one after the sign-out.
    assert!(logins(&text, "success") >= 3.0, "{text}");
    assert!(refreshes(&text, "success") >= 6.0, "{text}");
    assert!(refreshes(&text, "refused") >= 1.0, "{text}");
    assert_eq!(
        logins(&text, "refused") + logins(&text, "failed"),
        0.0,
        "{text}"
    );
    assert_eq!(kc.count("password", 200) as f64, logins(&text, "success"));
    let expiry = value(&text, "pxbackup_sidecar_pxb_token_expiry_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now && expiry < now + 9.0, "{expiry} vs {now}");
    assert!(log.contains("logged in to PX-Backup's Keycloak"), "{log}");
    assert!(
        log.contains("Keycloak no longer accepts the refresh token"),
        "{log}"
    );
    assert!(
        log.contains("Token is not active") || log.contains("Session not active"),
        "{log}"
    );

    // Nothing secret anywhere: the log (at debug), the scrapes, and the telemetry bundles
    // (health with the self metrics, logs with this very log file) a preview would send.
    let secrets = secrets_of(&kc);
    assert!(secrets.len() > 10);
    assert_no_secret("the log", &log, &secrets);
    assert_no_secret("a scrape", &scrapes, &secrets);
    let conf = logs.path().join("telemetry.conf");
    std::fs::write(&conf, "enabled: \"false\"\nappliance-id: \"oidc-test\"\n").unwrap();
    let preview_state = logs.path().join("preview-state");
    let mut preview_args = oidc_args(&kc, &pxb, &secret);
    preview_args.extend(
        [
            "--log-level",
            "debug",
            "--state-dir",
            preview_state.to_str().unwrap(),
            "--telemetry-config-file",
            conf.to_str().unwrap(),
            "--telemetry-endpoint",
            "https://127.0.0.1:9",
            "--telemetry-log-path",
            sc.stderr_path.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    let out = Command::new(common::bin())
        .args(["telemetry", "preview"])
        .args(&preview_args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("the preview");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("pxbackup_sidecar_pxb_oidc_logins_total"),
        "{stdout}"
    );
    assert!(
        stdout.contains("logged in to PX-Backup"),
        "the log lines are in the bundle"
    );
    let secrets = secrets_of(&kc);
    assert_no_secret("the telemetry bundles", &stdout, &secrets);
    assert_no_secret("the preview's log", &stderr, &secrets);
    assert_eq!(sc.terminate().code(), Some(0));
    assert_no_secret("the log", &sc.log(), &secrets);
}

/// A wrong password: one warning naming the realm, the client, the user and Keycloak's error,
/// the source down and not ready, logins retried with backoff; the Secret fixed, the source
/// logs in at its next look at the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_one_clear_line_then_a_fixed_secret_is_picked_up() {
    let kc = FakeKeycloak::start(Duration::from_secs(60), Duration::from_secs(300)).await;
    kc.add_user(USER, PASSWORD);
    let pxb = pxb_for(&kc).await;
    let secret = Secret::new(&[("username", USER), ("password", "wrong-canary-5c2a")]);
    let logs = tempfile::tempdir().expect("temp dir");
    let sc = spawn(&oidc_args(&kc, &pxb, &secret), logs.path());
    let text = until("three refused logins", 20, async || {
        let text = sc_scrape(&sc).await?;
        (logins(&text, "refused") >= 3.0).then_some(text)
    })
    .await;
    assert_eq!(value(&text, UP), Some(0.0), "{text}");
    let ready = client()
        .get(format!("{}/readyz", sc.metrics_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Backoff: attempts 0.5-1 s, then 1-2 s, 2-4 s apart ...: few in these seconds.
    let text = sc.scrape().await;
    let attempts = logins(&text, "refused");
    assert!(
        (3.0..=6.0).contains(&attempts),
        "{attempts} attempts by {:?}",
        started.elapsed()
    );
    assert_eq!(kc.count("password", 401) as f64, attempts);
    assert!(
        pxb.requests().is_empty(),
        "PX-Backup was called without a token"
    );
    let log = sc.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("Keycloak"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    for needle in [
        kc.realm_url.as_str(),
        "client=pxcentral",
        &format!("user={USER}"),
        "refused the password grant (HTTP 401): invalid_grant: Invalid user credentials",
    ] {
        assert!(
            warnings[0].contains(needle),
            "{needle} is not in {}",
            warnings[0]
        );
    }
    // The poll's own failure says why too.
    assert!(log.contains("no PX-Backup token"), "{log}");

    secret.put("password", PASSWORD);
    let mut sc = sc;
    let fixed = Instant::now();
    sc.ready().await;
    assert!(
        fixed.elapsed() < Duration::from_secs(10),
        "{:?}",
        fixed.elapsed()
    );
    let text = sc.scrape().await;
    assert_eq!(value(&text, UP), Some(1.0));
    assert_eq!(logins(&text, "success"), 1.0);
    let mut secrets = secrets_of(&kc);
    secrets.push("wrong-canary-5c2a".into());
    assert_no_secret("the log", &sc.log(), &secrets);
}

async fn sc_scrape(sc: &Sidecar) -> Option<String> {
    let r = client()
        .get(format!("{}/metrics", sc.metrics_url))
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

/// An unknown client and an unreachable Keycloak: each one warning naming what failed, the
/// source down, retries counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_client_and_an_unreachable_keycloak_are_named() {
    let kc = FakeKeycloak::start(Duration::from_secs(60), Duration::from_secs(300)).await;
    kc.add_user(USER, PASSWORD);
    let pxb = pxb_for(&kc).await;
    let secret = Secret::new(&[("username", USER), ("password", PASSWORD)]);
    let logs = tempfile::tempdir().expect("temp dir");
    let mut args = oidc_args(&kc, &pxb, &secret);
    args.extend(["--pxb-oidc-client-id", "px-typo"].map(str::to_owned));
    let unknown = spawn(&args, logs.path());
    let closed = format!("http://127.0.0.1:{}/auth/realms/master", free_port());
    let mut args = oidc_args(&kc, &pxb, &secret);
    let at = args.iter().position(|a| a == "--pxb-oidc-url").unwrap();
    args[at + 1] = closed.clone();
    let unreachable = spawn(&args, logs.path());

    for (sc, result, needles) in [
        (
            &unknown,
            "refused",
            vec![
                "client=px-typo".to_owned(),
                "invalid_client: Invalid client or Invalid client credentials".to_owned(),
                kc.realm_url.clone(),
            ],
        ),
        (
            &unreachable,
            "failed",
            vec![closed.clone(), "onnect".to_owned()],
        ),
    ] {
        let text = until("two failed logins", 20, async || {
            let text = sc_scrape(sc).await?;
            (logins(&text, result) >= 2.0).then_some(text)
        })
        .await;
        assert_eq!(value(&text, UP), Some(0.0), "{text}");
        let log = sc.log();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("Keycloak"))
            .collect();
        assert_eq!(warnings.len(), 1, "{log}");
        for needle in &needles {
            assert!(
                warnings[0].contains(needle.as_str()),
                "{needle} is not in {}",
                warnings[0]
            );
        }
        assert_no_secret("the log", &log, &secrets_of(&kc));
    }
    assert!(pxb.requests().is_empty());
}

/// The client-credentials grant (a confidential client with a service account), configured
/// through the environment variables alone, as the chart does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_through_the_environment() {
    let kc = FakeKeycloak::start(Duration::from_secs(4), Duration::from_secs(300)).await;
    kc.add_client(
        "pxb-sidecar",
        Client {
            secret: Some(CLIENT_SECRET.into()),
            direct_access: false,
            service_account: true,
        },
    );
    let pxb = pxb_for(&kc).await;
    let secret = Secret::new(&[("clientSecret", CLIENT_SECRET)]);
    let logs = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let log_path = logs.path().join("sidecar.log");
    let mut child = Command::new(common::bin())
        .arg("run")
        .env("PXBACKUP_LISTEN", format!("127.0.0.1:{port}"))
        .env("PXBACKUP_SOURCES", "pxb")
        .env("PXBACKUP_PXB_URL", &pxb.url)
        .env("PXBACKUP_PXB_POLL_INTERVAL", "300ms")
        .env("PXBACKUP_PXB_OIDC_URL", &kc.realm_url)
        .env("PXBACKUP_PXB_OIDC_CLIENT_ID", "pxb-sidecar")
        .env(
            "PXBACKUP_PXB_OIDC_CLIENT_SECRET_FILE",
            secret.path("clientSecret"),
        )
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("spawn");
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    // Tokens of 4 s for 10 s: a login every 3 s (no refresh token), no refused call.
    let text = until("three logins", 20, async || {
        let text = client()
            .get(&metrics)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (logins(&text, "success") >= 3.0 && value(&text, UP) == Some(1.0)).then_some(text)
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(refreshes(&text, "success"), 0.0);
    assert!(kc.count("client_credentials", 200) >= 3);
    assert!(pxb.requests().iter().all(|r| r.status == 200));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("grant=\"client_credentials\"") || log.contains("grant=client_credentials"),
        "{log}"
    );
    assert_no_secret("the log", &log, &secrets_of(&kc));
}

#[test]
fn a_token_file_and_oidc_credentials_together_exit_64_naming_both() {
    let secret = Secret::new(&[
        ("username", USER),
        ("password", PASSWORD),
        ("token", "t0ken"),
    ]);
    let out = Command::new(common::bin())
        .args(["run", "--source", "pxb", "--pxb-token-file"])
        .arg(secret.path("token"))
        .arg("--pxb-oidc-username-file")
        .arg(secret.path("username"))
        .env("PXBACKUP_PXB_OIDC_PASSWORD_FILE", secret.path("password"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "--pxb-token-file",
        "--pxb-oidc-username-file",
        "--pxb-oidc-password-file",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    let out = Command::new(common::bin())
        .args(["run", "--source", "pxb", "--pxb-oidc-username-file"])
        .arg(secret.path("username"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without --pxb-oidc-password-file"));
}

// ---------------------------------------------------------------------------------------------
// In process

fn settings(pxb: &FakePxb, kc: &FakeKeycloak, secret: &Secret) -> PxbSettings {
    PxbSettings {
        url: pxb.url.clone(),
        oidc: Some(OidcSettings {
            url: kc.realm_url.clone(),
            client_id: "pxcentral".into(),
            user_files: Some((secret.path("username"), secret.path("password"))),
            client_secret_file: None,
        }),
        ..PxbSettings::default()
    }
}

fn source() -> SourceContext {
    SourceContext {
        inventory: Arc::new(Inventory::in_memory(
            Clock::System,
            Duration::from_secs(3600),
        )),
        status: Arc::new(SourceStatus::new(&[SourceId::Pxb])),
    }
}

/// A token PX-Backup refuses (revoked) is refreshed once and the call made again; a
/// PX-Backup that refuses every token gets one refresh and one retry per call, never a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_refreshed_once_and_the_call_made_again() {
    let kc = FakeKeycloak::start(Duration::from_secs(300), Duration::from_secs(600)).await;
    kc.add_user(USER, PASSWORD);
    let pxb = pxb_for(&kc).await;
    let secret = Secret::new(&[("username", USER), ("password", PASSWORD)]);
    let settings = settings(&pxb, &kc, &secret);
    let stats = Arc::new(AuthStats::default());
    let token = TokenSource::new(&settings, stats.clone()).expect("token source");
    let mut client = PxbClient::with_token(&settings, token).expect("client");
    let mut poller = Poller::new(source(), settings.clone());
    assert!(poller.poll(&mut client).await.complete);
    // A token younger than 2 s is not replaced (PX-Backup would be refusing the user).
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    kc.revoke_access_tokens();
    pxb.clear_requests();
    let report = poller.poll(&mut client).await;
    assert!(report.complete, "{report:?}");
    let statuses: Vec<u16> = pxb.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses[..2], [401, 200], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(stats.refreshes(GrantResult::Success), 1);
    assert_eq!(stats.logins(GrantResult::Success), 1);

    // Every token refused: the poll fails after one refresh and one retry.
    pxb.accept_tokens(Arc::new(|_: &str| false));
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    pxb.clear_requests();
    let report = poller.poll(&mut client).await;
    assert!(!report.complete);
    assert_eq!(pxb.requests().len(), 2, "{:?}", pxb.requests());
    let failure = &report.failures[0];
    assert!(
        failure.contains("refused the bearer token (HTTP 401) with a fresh token from Keycloak"),
        "{failure}"
    );
    assert!(failure.contains("client pxcentral"), "{failure}");
    assert_eq!(stats.refreshes(GrantResult::Success), 2);
    // Debug output of everything the test holds shows no secret.
    let debug = format!("{client:?} {settings:?} {report:?} {stats:?}");
    assert!(debug.contains("TokenSource::Oidc"), "{debug}");
    assert_no_secret("a Debug output", &debug, &secrets_of(&kc));
}

/// The token endpoint comes from the discovery document; without one, Keycloak's own path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_is_discovered_or_keycloaks_own() {
    for discovery in [true, false] {
        let kc = FakeKeycloak::start(Duration::from_secs(300), Duration::from_secs(600)).await;
        kc.add_user(USER, PASSWORD);
        kc.advertise_other_endpoint();
        kc.discovery(discovery);
        let pxb = pxb_for(&kc).await;
        let secret = Secret::new(&[("username", USER), ("password", PASSWORD)]);
        let settings = settings(&pxb, &kc, &secret);
        let mut client = PxbClient::new(&settings).expect("client");
        assert!(
            Poller::new(source(), settings)
                .poll(&mut client)
                .await
                .complete
        );
        let paths: Vec<String> = kc.grants().into_iter().map(|g| g.path).collect();
        let expected = if discovery {
            "/advertised/token"
        } else {
            "/auth/realms/master/protocol/openid-connect/token"
        };
        assert_eq!(paths, [expected], "discovery {discovery}");
    }
}

/// A Keycloak behind a proxy answering an HTML error page: named by status and type, the
/// page (which may echo the request, password included) is not quoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_oauth_answer_is_named_not_quoted() {
    let kc = FakeKeycloak::start(Duration::from_secs(300), Duration::from_secs(600)).await;
    kc.add_user(USER, PASSWORD);
    kc.broken(Some(502));
    let pxb = pxb_for(&kc).await;
    let secret = Secret::new(&[("username", USER), ("password", PASSWORD)]);
    let settings = settings(&pxb, &kc, &secret);
    let stats = Arc::new(AuthStats::default());
    let mut client = PxbClient::with_token(
        &settings,
        TokenSource::new(&settings, stats.clone()).unwrap(),
    )
    .unwrap();
    let report = Poller::new(source(), settings).poll(&mut client).await;
    assert!(!report.complete);
    let failure = &report.failures[0];
    assert!(failure.contains("HTTP 502 (text/html"), "{failure}");
    assert!(!failure.contains("upstream error"), "{failure}");
    assert_eq!(stats.logins(GrantResult::Failed), 1);
}
