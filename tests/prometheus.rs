//! Hostile label values pushed through ingest, scraped by a real Prometheus server (Debian's
//! package) on 127.0.0.1, and read back exactly through its query API.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, free_port, hostile_values, Sidecar};

struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(target: &str, dir: &std::path::Path) -> Prometheus {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: pxbackup-sidecar\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus on PATH (apt-get install prometheus; .ci/run does it)");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn query(prom: &Prometheus, q: &str) -> Option<serde_json::Value> {
    let r = client()
        .get(format!("{}/api/v1/query", prom.url))
        .query(&[("query", q)])
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&r.text().await.ok()?).ok()?;
    (v["status"] == "success").then(|| v["data"]["result"].clone())
}

#[tokio::test]
async fn hostile_label_values_survive_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let mut sc = Sidecar::spawn(&["--source", "ingest"], dir.path());
    sc.ready().await;
    let hostile = hostile_values();
    let batch: Vec<String> = hostile
        .iter()
        .map(|(id, value)| {
            serde_json::json!({
                "type": "backup", "op": "upsert", "uid": format!("uid-{id}"),
                "org_id": "default", "name": value, "cluster": value, "cluster_uid": "c",
                "schedule_name": id, "status": "Failed",
            })
            .to_string()
        })
        .collect();
    let (status, answer) = sc.push(&batch.join("\n")).await;
    assert_eq!(status, 200, "{answer}");

    let target = sc.metrics_url.trim_start_matches("http://").to_owned();
    let prom = start_prometheus(&target, dir.path());
    // Prometheus scrapes first some seconds after start: poll, do not sleep.
    let deadline = Instant::now() + Duration::from_secs(90);
    let series = loop {
        let r = query(&prom, "pxbackup_backup_status == 4").await;
        if let Some(r) = r.filter(|r| r.as_array().is_some_and(|a| a.len() == hostile.len())) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned the series; its log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let up = query(&prom, "up").await.unwrap();
    assert_eq!(up[0]["value"][1], "1", "{up}");

    let got: BTreeSet<(String, String, String)> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let m = &s["metric"];
            let text = |k: &str| m[k].as_str().unwrap_or("").to_owned();
            (text("schedule_name"), text("name"), text("cluster"))
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = hostile
        .iter()
        .map(|(id, v)| ((*id).to_owned(), v.clone(), v.clone()))
        .collect();
    assert_eq!(got, want);
}
