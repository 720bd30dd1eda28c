//! Pure1 telemetry: the `px-backup-telemetry-config` ConfigMap, registration with Pure1, and
//! scheduled uploads of health metrics, logs and onboarded cluster UUIDs.

pub mod metrics;
