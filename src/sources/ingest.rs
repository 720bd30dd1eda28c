//! Push ingest: `POST /v1/events`, a batch of NDJSON events applied whole or not at all.
//!
//! For producers that are not Kubernetes objects (the PXB server, scripts). Unknown fields and
//! fields that do not belong to the event's type are errors, so that typos are caught; a bad
//! line gets 400 naming its line number and the reason, and nothing of the batch is applied.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::model::{
    Backup, BackupLocation, Cluster, Event, Kind, Object, Origin, Owner, Restore, Schedule,
    SourceId, Timestamp, Volume,
};
use crate::state::Shared;

/// Largest batch accepted; larger bodies get 413.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

#[derive(Debug, Default)]
pub struct IngestStats {
    pub applied: AtomicU64,
    pub rejected: AtomicU64,
    pub unauthorized: AtomicU64,
}

/// A line of a batch that could not be taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum WireKind {
    Backup,
    Restore,
    Schedule,
    Cluster,
    BackupLocation,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Op {
    Upsert,
    Delete,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct WireVolume {
    #[serde(default)]
    volume: String,
    #[serde(default)]
    pvc: String,
    #[serde(default)]
    pvc_namespace: String,
    #[serde(default)]
    storage_class: String,
    #[serde(default)]
    driver: String,
    status: Option<String>,
}

/// One line as sent. Every type's fields live here; `check_fields` rejects those that do not
/// belong to the line's type.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: WireKind,
    op: Op,
    uid: String,
    org_id: Option<String>,
    name: Option<String>,
    cluster: Option<String>,
    cluster_uid: Option<String>,
    schedule_name: Option<String>,
    namespaces: Option<Vec<String>>,
    backup_location: Option<String>,
    backup_object_type: Option<String>,
    backup: Option<String>,
    location_type: Option<String>,
    status: Option<String>,
    size_bytes: Option<u64>,
    resource_count: Option<u64>,
    volume_count: Option<u64>,
    interval_seconds: Option<u64>,
    volumes: Option<Vec<WireVolume>>,
    created_at: Option<String>,
    completed_at: Option<String>,
    deleted_at: Option<String>,
}

const OWNER: &[&str] = &["org_id", "name", "cluster", "cluster_uid"];

impl WireEvent {
    fn present(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        macro_rules! check {
            ($($field:ident),*) => {
                $(if self.$field.is_some() { out.push(stringify!($field)); })*
            };
        }
        check!(
            org_id,
            name,
            cluster,
            cluster_uid,
            schedule_name,
            namespaces,
            backup_location,
            backup_object_type,
            backup,
            location_type,
            status,
            size_bytes,
            resource_count,
            volume_count,
            interval_seconds,
            volumes,
            created_at,
            completed_at,
            deleted_at
        );
        out
    }

    fn allowed(&self) -> Vec<&'static str> {
        let own = |extra: &[&'static str]| [OWNER, extra].concat();
        match (self.op, self.kind) {
            (Op::Delete, _) => vec!["deleted_at"],
            (Op::Upsert, WireKind::Backup) => own(&[
                "schedule_name",
                "namespaces",
                "backup_location",
                "backup_object_type",
                "status",
                "size_bytes",
                "resource_count",
                "volumes",
                "created_at",
                "completed_at",
            ]),
            (Op::Upsert, WireKind::Restore) => own(&[
                "backup",
                "status",
                "size_bytes",
                "resource_count",
                "volume_count",
                "created_at",
                "completed_at",
            ]),
            (Op::Upsert, WireKind::Schedule) => own(&["status", "interval_seconds"]),
            (Op::Upsert, WireKind::Cluster) => vec!["org_id", "name", "status"],
            (Op::Upsert, WireKind::BackupLocation) => {
                vec!["org_id", "name", "location_type", "status"]
            }
        }
    }

    fn kind(&self) -> Kind {
        match self.kind {
            WireKind::Backup => Kind::Backup,
            WireKind::Restore => Kind::Restore,
            WireKind::Schedule => Kind::Schedule,
            WireKind::Cluster => Kind::Cluster,
            WireKind::BackupLocation => Kind::BackupLocation,
        }
    }

    fn into_event(self) -> Result<Event, String> {
        if self.uid.is_empty() {
            return Err("uid must not be empty".into());
        }
        let allowed = self.allowed();
        if let Some(f) = self.present().into_iter().find(|f| !allowed.contains(f)) {
            let what = match self.op {
                Op::Delete => "a delete".to_owned(),
                Op::Upsert => format!("a {} upsert", self.kind().as_str()),
            };
            return Err(format!("field `{f}` does not belong to {what}"));
        }
        if self.op == Op::Delete {
            return Ok(Event::Delete {
                kind: self.kind(),
                uid: self.uid,
                deleted_at: time("deleted_at", self.deleted_at.as_deref())?,
            });
        }
        let status = self
            .status
            .as_deref()
            .ok_or_else(|| "missing field `status`".to_owned())?;
        let owner = Owner {
            org_id: self.org_id.unwrap_or_default(),
            cluster: self.cluster.unwrap_or_default(),
            cluster_uid: self.cluster_uid.unwrap_or_default(),
        };
        let name = self.name.unwrap_or_default();
        let created_at = time("created_at", self.created_at.as_deref())?;
        let completed_at = time("completed_at", self.completed_at.as_deref())?;
        let object = match self.kind {
            WireKind::Backup => Object::Backup(Backup {
                uid: self.uid,
                name,
                owner,
                schedule_name: self.schedule_name.unwrap_or_default(),
                namespaces: self.namespaces.unwrap_or_default(),
                backup_location: self.backup_location.unwrap_or_default(),
                backup_object_type: self.backup_object_type.unwrap_or_default(),
                status: parse(status)?,
                size_bytes: self.size_bytes,
                resource_count: self.resource_count,
                volumes: self
                    .volumes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| {
                        Ok(Volume {
                            status: v.status.as_deref().map(parse).transpose()?,
                            volume: v.volume,
                            pvc: v.pvc,
                            pvc_namespace: v.pvc_namespace,
                            storage_class: v.storage_class,
                            driver: v.driver,
                        })
                    })
                    .collect::<Result<_, String>>()?,
                created_at,
                completed_at,
                ..Backup::default()
            }),
            WireKind::Restore => Object::Restore(Restore {
                uid: self.uid,
                name,
                owner,
                backup: self.backup.unwrap_or_default(),
                status: parse(status)?,
                size_bytes: self.size_bytes,
                resource_count: self.resource_count,
                volume_count: self.volume_count,
                created_at,
                completed_at,
            }),
            WireKind::Schedule => Object::Schedule(Schedule {
                uid: self.uid,
                name,
                owner,
                status: parse(status)?,
                interval_seconds: self.interval_seconds,
            }),
            WireKind::Cluster => Object::Cluster(Cluster {
                uid: self.uid,
                name,
                org_id: owner.org_id,
                status: parse(status)?,
            }),
            WireKind::BackupLocation => Object::BackupLocation(BackupLocation {
                uid: self.uid,
                name,
                org_id: owner.org_id,
                location_type: self.location_type.unwrap_or_default(),
                status: parse(status)?,
            }),
        };
        Ok(Event::Upsert(object))
    }
}

fn parse<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| e.to_string())
}

fn time(field: &str, value: Option<&str>) -> Result<Option<Timestamp>, String> {
    value
        .map(|v| {
            Timestamp::parse_rfc3339(v)
                .map_err(|e| format!("{field} {v:?} is not an RFC 3339 time: {e}"))
        })
        .transpose()
}

/// Parses a whole NDJSON batch. Blank lines are skipped; the first bad line fails the batch.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Event>, LineError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = body[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        LineError {
            line,
            reason: "not valid UTF-8".into(),
        }
    })?;
    let mut events = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line_error = |reason: String| LineError {
            line: i + 1,
            reason,
        };
        let wire: WireEvent = serde_json::from_str(raw).map_err(|e| line_error(e.to_string()))?;
        events.push(wire.into_event().map_err(line_error)?);
    }
    Ok(events)
}

#[derive(Clone)]
struct IngestContext {
    shared: Arc<Shared>,
    token: Option<SecretString>,
}

pub fn router(shared: Arc<Shared>, token: Option<SecretString>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(IngestContext { shared, token })
}

fn authorized(expected: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time in the token's length, so timing does not reveal a matching prefix.
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn post_events(
    State(ctx): State<IngestContext>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let stats = &ctx.shared.ingest;
    if !authorized(ctx.token.as_ref().map(|t| t.expose_secret()), &headers) {
        stats.unauthorized.fetch_add(1, Relaxed);
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "missing or wrong bearer token"})),
        )
            .into_response();
    }
    match parse_batch(&body) {
        Ok(events) => match ctx
            .shared
            .inventory
            .apply_off_runtime(Origin::source(SourceId::Ingest), events)
            .await
        {
            Ok(outcome) => {
                stats.applied.fetch_add(1, Relaxed);
                Json(serde_json::json!({"applied": outcome.applied, "ignored": outcome.ignored}))
                    .into_response()
            }
            Err(e) => {
                tracing::error!(error = %e, "applying an ingest batch failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(serde_json::json!({"error": "the batch could not be applied"})),
                )
                    .into_response()
            }
        },
        Err(e) => {
            stats.rejected.fetch_add(1, Relaxed);
            tracing::warn!(line = e.line, reason = %e.reason, "ingest batch rejected");
            (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": e.to_string(), "line": e.line})),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BackupStatus;

    const BACKUP: &str = r#"{"type":"backup","op":"upsert","uid":"9b1c","org_id":"default","name":"nightly-1","cluster":"prod-east","cluster_uid":"3e0f","schedule_name":"nightly","namespaces":["shop"],"backup_location":"s3-east","backup_object_type":"All","status":"Success","size_bytes":1073741824,"resource_count":42,"volumes":[{"volume":"pvc-1a2b","pvc":"data","pvc_namespace":"shop","storage_class":"px-csi","driver":"pxd","status":"Success"}],"created_at":"2026-11-23T01:00:00Z","completed_at":"2026-11-23T01:04:10Z"}"#;

    #[test]
    fn design_example_parses() {
        let body = format!(
            "{BACKUP}\n\n{}\n",
            r#"{"type":"backup","op":"delete","uid":"9b1c","deleted_at":"2026-11-23T09:00:00Z"}"#
        );
        let events = parse_batch(body.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        let Event::Upsert(Object::Backup(b)) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(b.status, BackupStatus::Success);
        assert_eq!(b.volumes[0].storage_class, "px-csi");
        assert_eq!(
            events[1],
            Event::Delete {
                kind: Kind::Backup,
                uid: "9b1c".into(),
                deleted_at: Some(Timestamp::parse_rfc3339("2026-11-23T09:00:00Z").unwrap())
            }
        );
    }

    fn error_of(body: &str) -> LineError {
        parse_batch(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn bad_lines_are_named() {
        let typo = BACKUP.replace("\"status\"", "\"sttaus\"");
        let e = error_of(&format!("{BACKUP}\n{typo}\n"));
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("sttaus"), "{e}");

        let e = error_of(&BACKUP.replace("\"Success\",\"size", "\"Sucess\",\"size"));
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("\"Sucess\""), "{e}");

        let e = error_of(
            r#"{"type":"restore","op":"upsert","uid":"r","status":"Success","volumes":[]}"#,
        );
        assert!(
            e.reason
                .contains("`volumes` does not belong to a restore upsert"),
            "{e}"
        );

        let e = error_of(r#"{"type":"backup","op":"delete","uid":"x","deleted_at":"yesterday"}"#);
        assert!(e.reason.contains("\"yesterday\""), "{e}");

        let e = error_of(r#"{"type":"volume","op":"upsert","uid":"x"}"#);
        assert!(e.reason.contains("volume"), "{e}");

        let e = error_of(r#"{"type":"cluster","op":"upsert","uid":""}"#);
        assert!(e.reason.contains("uid"), "{e}");

        let e = error_of("{\"type\":\"cluster\"\n");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn schedules_carry_their_interval() {
        let events = parse_batch(
            br#"{"type":"schedule","op":"upsert","uid":"s1","name":"nightly","status":"Active","interval_seconds":86400}"#,
        )
        .unwrap();
        let Event::Upsert(Object::Schedule(s)) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(s.interval_seconds, Some(86_400));
        let e = error_of(
            r#"{"type":"cluster","op":"upsert","uid":"c","status":"Online","interval_seconds":60}"#,
        );
        assert!(
            e.reason
                .contains("`interval_seconds` does not belong to a cluster upsert"),
            "{e}"
        );
    }

    #[test]
    fn token_compare() {
        let mut h = HeaderMap::new();
        assert!(authorized(None, &h));
        assert!(!authorized(Some("s3cret"), &h));
        h.insert(AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!authorized(Some("s3cret"), &h));
        h.insert(AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(Some("s3cret"), &h));
    }
}
