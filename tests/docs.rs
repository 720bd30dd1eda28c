//! The documentation against the code and against itself: the generated reference pages
//! (docs/flags.md, docs/metrics.md) are what the code generates today, the binary prints and
//! writes the same, no other page keeps a hand-copied flag table, the README stays a page for
//! the people who run the sidecar, every relative link resolves, and nothing in the repository
//! points at an issue number or a document that is not in it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use pxbackup_sidecar::docs;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
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

/// Every tracked-looking text file of the repository, relative to its root: what a reader of
/// the repository can open. Build output and installed test tools are left out.
fn repository_files() -> Vec<String> {
    const SKIP: &[&str] = &[
        ".git",
        "target",
        "node_modules",
        "__pycache__",
        ".pytest_cache",
        "generated",
    ];
    let mut out = Vec::new();
    let mut dirs = vec![root().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !SKIP.contains(&name.as_str()) {
                    dirs.push(path);
                }
            } else if let Ok(relative) = path.strip_prefix(root()) {
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn markdown_files() -> Vec<String> {
    repository_files()
        .into_iter()
        .filter(|f| f.ends_with(".md"))
        .collect()
}

#[test]
fn no_page_keeps_a_hand_copied_flag_table() {
    let mut copies = Vec::new();
    for file in markdown_files().iter().filter(|f| *f != docs::FLAGS_PAGE) {
        for (n, line) in read(file).lines().enumerate() {
            let first_cell = line.trim_start_matches('|').split('|').next().unwrap_or("");
            if line.starts_with('|') && first_cell.trim().eq_ignore_ascii_case("flag") {
                copies.push(format!("{file}:{}: {line}", n + 1));
            }
        }
    }
    assert!(
        copies.is_empty(),
        "flag tables are generated into {} (link it instead):\n{}",
        docs::FLAGS_PAGE,
        copies.join("\n")
    );
    for page in [
        "README.md",
        "docs/pxb-source.md",
        "docs/kube-source.md",
        "docs/telemetry.md",
    ] {
        assert!(
            read(page).contains("flags.md"),
            "{page} does not link the flags"
        );
    }
    assert!(read("README.md").contains("docs/metrics.md"));
}

#[test]
fn the_readme_is_a_page_for_the_people_who_run_it() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(lines <= 300, "README.md has {lines} lines; at most 300");
    // The two commands, at the very top: the first code block.
    let first_block = readme
        .split("```")
        .nth(1)
        .expect("README.md has a code block");
    for command in ["cargo run -- run", "bash .ci/run"] {
        assert!(
            first_block.contains(command),
            "the first code block lacks {command}"
        );
    }
    for page in [
        "CONTRIBUTING.md",
        "docs/performance.md",
        "docs/decisions.md",
        "docs/pxb-source.md",
        "docs/kube-source.md",
        "docs/telemetry.md",
        "docs/ingest-source.md",
        "docs/state.md",
        "charts/pxbackup-sidecar/README.md",
    ] {
        assert!(
            readme.contains(&format!("]({page}")),
            "README.md does not link {page}"
        );
    }
}

/// Why each dependency is there: a row of CONTRIBUTING.md's dependency table, or a comment
/// right above it in Cargo.toml.
#[test]
fn why_each_dependency_is_there_is_written_down() {
    let contributing = read("CONTRIBUTING.md");
    let explained: BTreeSet<String> = contributing
        .lines()
        .filter(|l| l.starts_with("| "))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| cell.split(','))
        .filter_map(|name| name.split_whitespace().next())
        .map(|name| name.trim_matches('`').to_owned())
        .collect();
    let mut missing = Vec::new();
    let (mut section, mut commented) = (String::new(), false);
    for line in read("Cargo.toml").lines().map(str::trim) {
        if line.starts_with('[') {
            (section, commented) = (line.to_owned(), false);
            continue;
        }
        if line.starts_with('#') {
            commented = true;
            continue;
        }
        if section.contains("dependencies") {
            if let Some((name, _)) = line.split_once('=') {
                let name = name.trim();
                if !commented && !explained.contains(name) {
                    missing.push(format!("{section} {name}"));
                }
            }
        }
        commented = false;
    }
    assert!(
        missing.is_empty(),
        "say why each dependency is there (CONTRIBUTING.md's table, or a comment above it in \
         Cargo.toml): {missing:?}"
    );
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The text of a Markdown page outside fenced code blocks, line by line.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let base = anchor(heading.trim_start_matches('#'));
        let mut name = base.clone();
        let mut n = 0;
        while seen.contains(&name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        seen.insert(name);
    }
    seen
}

#[test]
fn anchors_follow_github() {
    assert_eq!(anchor(" `pxbackup-sidecar run`"), "pxbackup-sidecar-run");
    assert_eq!(
        anchor(" Push ingest: `POST /v1/events`"),
        "push-ingest-post-v1events"
    );
    let text = "# A\n```\n# not a heading\n```\n## A\n";
    assert_eq!(
        anchors(text),
        ["a", "a-1"].map(String::from).into_iter().collect()
    );
}

#[test]
fn relative_links_resolve() {
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").expect("regex");
    let code = regex::Regex::new(r"`[^`]*`").expect("regex");
    let mut broken = Vec::new();
    for file in markdown_files() {
        let text = read(&file);
        let dir = Path::new(&file).parent().unwrap_or(Path::new(""));
        for line in prose(&text) {
            let line = code.replace_all(line, "");
            for target in link.captures_iter(&line).map(|c| c[1].to_owned()) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path, fragment) = match target.split_once('#') {
                    Some((p, f)) => (p, Some(f)),
                    None => (target.as_str(), None),
                };
                let resolved = if path.is_empty() {
                    PathBuf::from(&file)
                } else {
                    dir.join(path)
                };
                let full = root().join(&resolved);
                if !full.exists() {
                    broken.push(format!("{file}: {target} (no {})", resolved.display()));
                    continue;
                }
                if let Some(fragment) = fragment {
                    let is_md = resolved.extension().is_some_and(|e| e == "md");
                    let text = std::fs::read_to_string(&full).unwrap_or_default();
                    if is_md && !anchors(&text).contains(fragment) {
                        broken.push(format!("{file}: {target} (no such heading)"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn nothing_refers_to_issue_numbers_or_to_documents_outside_the_repository() {
    // Our own tracker's numbers and the design notes kept outside the repository mean nothing
    // to a reader of it; upstream projects' issues are named with their project.
    let patterns =
        regex::Regex::new(r"(?i:\bissues?\s*#?\d+\b)|\bDESIGN\b|\b(ANCHORS|PXB_API)\.md")
            .expect("regex");
    let upstream = regex::Regex::new(r"github\.com/|[\w.-]+/[\w.-]+#\d+").expect("regex");
    let mut found = Vec::new();
    for file in repository_files() {
        if file == "tests/docs.rs" {
            continue; // the patterns themselves
        }
        let Ok(text) = std::fs::read_to_string(root().join(&file)) else {
            continue; // not text
        };
        for (n, line) in text.lines().enumerate() {
            if patterns.is_match(line) && !upstream.is_match(line) {
                found.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "say the fact or point at the repository's own docs:\n{}",
        found.join("\n")
    );
}
