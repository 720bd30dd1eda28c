//! The generated reference pages (docs/flags.md, docs/metrics.md) are what the code generates
//! today, and the binary prints and writes the same.

use std::path::{Path, PathBuf};
use std::process::Command;

use pxbackup_sidecar::docs;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Why a committed page differs from what the code generates, naming the first line that
/// differs; `None` when they are the same.
fn stale(page: &str, committed: Option<&str>, generated: &str) -> Option<String> {
    let fix = format!(
        "regenerate it with `{}` at the repository's root",
        docs::REGENERATE
    );
    let Some(committed) = committed else {
        return Some(format!("{page} is missing: {fix}"));
    };
    if committed == generated {
        return None;
    }
    let (mut old, mut new) = (committed.lines(), generated.lines());
    let mut line = 1;
    loop {
        match (old.next(), new.next()) {
            (Some(a), Some(b)) if a == b => line += 1,
            (a, b) => {
                let end = "(end of file)";
                let committed = a.unwrap_or(end);
                let generated = b.unwrap_or(end);
                return Some(format!(
                    "{page} is stale: {fix}\n  line {line} committed: {committed}\n  \
                     line {line} generated: {generated}"
                ));
            }
        }
    }
}

#[test]
fn the_generated_pages_are_current() {
    let mut problems = Vec::new();
    for (page, generated) in docs::pages().expect("the pages generate") {
        let committed = std::fs::read_to_string(root().join(page)).ok();
        problems.extend(stale(page, committed.as_deref(), &generated));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_stale_page_is_named_with_the_command_that_regenerates_it() {
    let generated = "# Title\n\n| a | b |\n| c | d |\n";
    assert_eq!(stale("docs/x.md", Some(generated), generated), None);
    let message = stale("docs/x.md", Some("# Title\n\n| a | b |\n"), generated)
        .expect("a missing line is stale");
    assert!(message.contains("docs/x.md is stale"), "{message}");
    assert!(message.contains("cargo run -- docs write"), "{message}");
    assert!(
        message.contains("line 4 committed: (end of file)"),
        "{message}"
    );
    let message = stale("docs/x.md", None, generated).expect("a missing page is stale");
    assert!(message.contains("docs/x.md is missing"), "{message}");
}

#[test]
fn the_pages_hold_every_flag_and_every_family() {
    let flags = docs::flags();
    for flag in [
        "--source",
        "--state-dir",
        "--backfill-hours",
        "--pxb-url",
        "--telemetry-configmap",
    ] {
        assert!(
            flags.contains(&format!("| `{flag} ")),
            "{flag} missing:\n{flags}"
        );
    }
    assert!(flags.contains("| `BACKUP_INFO_METRICS_BACKFILL_HOURS` |"));
    assert!(flags.contains("| `--log-format <value>` | `PXBACKUP_LOG_FORMAT` | `text` |"));
    assert!(flags.contains("One of `text`, `json`."));
    assert!(flags.contains("## `pxbackup-sidecar telemetry preview`\n\nTakes the same flags as `pxbackup-sidecar run`."));
    assert!(!flags.contains("`--help`"), "clap's own flags are left out");

    let metrics = docs::metrics().expect("the catalog reads");
    for family in pxbackup_sidecar::families::catalog() {
        assert!(
            metrics.contains(&format!("| `{}` |", family.name)),
            "{} missing",
            family.name
        );
    }
    assert!(metrics.contains("| `pxbackup_sidecar_events_applied_total` | counter | `source` |"));
}

fn sidecar(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pxbackup-sidecar"))
        .args(args)
        .output()
        .expect("run the binary")
}

#[test]
fn the_binary_prints_and_writes_the_generated_pages() {
    let out = sidecar(&["docs", "flags"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), docs::flags());
    let out = sidecar(&["docs", "metrics"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        docs::metrics().expect("the catalog reads")
    );

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docs-write");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Not the repository's root: no docs/ there, nothing written.
    let out = sidecar(&["docs", "write", "--root", dir.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a directory"),
        "{out:?}"
    );
    std::fs::create_dir(dir.join("docs")).expect("docs dir");
    let out = sidecar(&["docs", "write", "--root", dir.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{out:?}");
    for (page, generated) in docs::pages().expect("the pages generate") {
        let written = std::fs::read_to_string(dir.join(page)).expect("written page");
        assert_eq!(written, generated, "{page}");
    }
}
