//! pxbackup-sidecar: a Prometheus exporter and Pure1 telemetry sidecar for Portworx Backup.
//!
//! Data flows one way: `sources` turn what they see into `model::Event`s, the `inventory`
//! applies them (and keeps deleted backups as tombstones for the backfill window), the
//! `exposition` serves what the inventory rendered, and `telemetry` reads summaries of it.
//! `app` wires them, handing each part only what it needs; no part knows the one above it
//! (tests/architecture.rs keeps the module graph free of cycles).

pub mod app;
pub mod clock;
pub mod config;
pub mod docs;
pub mod exposition;
pub mod families;
pub mod inventory;
pub mod kubernetes;
pub mod logging;
pub mod model;
pub mod persistence;
pub mod priority;
pub mod sources;
pub mod telemetry;
pub mod tls;
