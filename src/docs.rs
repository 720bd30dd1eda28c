//! The reference pages generated from the code they describe: the command line (from clap's
//! definition in `config`) and the metric catalog (from `families::catalog`). The files in
//! `docs/` are written by `pxbackup-sidecar docs write` and compared with these functions by
//! `tests/docs.rs`, so a flag or a family added in the code cannot leave its page behind.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command, CommandFactory};

use crate::config::Cli;
use crate::families;

/// What regenerates the pages, named in their header and in the staleness test's message.
pub const REGENERATE: &str = "cargo run -- docs write";

/// The generated pages, relative to the repository's root.
pub const FLAGS_PAGE: &str = "docs/flags.md";
pub const METRICS_PAGE: &str = "docs/metrics.md";

#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("{0}: not a directory (run `docs write` from the repository's root, or give --root)")]
    NoDocsDir(String),
    #[error("{path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the metric catalog cannot be read as JSON: {0}")]
    Catalog(String),
}

/// Every generated page: its path relative to the repository's root and its text.
pub fn pages() -> Result<Vec<(&'static str, String)>, DocsError> {
    Ok(vec![(FLAGS_PAGE, flags()), (METRICS_PAGE, metrics()?)])
}

/// Writes every page under `root` (the repository's root); returns the paths written.
pub fn write(root: &Path) -> Result<Vec<PathBuf>, DocsError> {
    let dir = root.join("docs");
    if !dir.is_dir() {
        return Err(DocsError::NoDocsDir(dir.display().to_string()));
    }
    let mut written = Vec::new();
    for (page, text) in pages()? {
        let path = root.join(page);
        std::fs::write(&path, text).map_err(|source| DocsError::Write {
            path: path.display().to_string(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

fn header(title: &str, from: &str) -> String {
    format!(
        "<!-- Generated from {from} by `{REGENERATE}`: do not edit by hand. -->\n\n# {title}\n\n"
    )
}

/// The command line as Markdown: the commands, then a table of each command's flags.
pub fn flags() -> String {
    let mut cli = Cli::command();
    // Built, the arguments carry their value names as `--help` shows them.
    cli.build();
    let name = cli.get_name().to_owned();
    let mut commands = Vec::new();
    collect(&cli, &name, &mut commands);

    let mut out = header(
        "Command line",
        "the command line's definition (`src/config.rs`)",
    );
    out.push_str("| command | what it does |\n|---|---|\n");
    for (path, cmd) in &commands {
        let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        let _ = writeln!(out, "| `{path}` | {} |", cell(&about));
    }
    out.push_str(
        "\nEvery flag that names an environment variable reads it when the flag is not given \
         (the flag wins). `<value>,…`: a comma-separated list, and the flag may be \
         repeated; `[<value>]`: the value may be left out.\n",
    );

    let mut shown: Vec<(String, Vec<String>)> = Vec::new();
    for (path, cmd) in &commands {
        let args: Vec<&Arg> = cmd.get_arguments().filter(|a| documented(a)).collect();
        if args.is_empty() {
            continue;
        }
        let _ = write!(out, "\n## `{path}`\n\n");
        let ids: Vec<String> = args.iter().map(|a| a.get_id().to_string()).collect();
        if let Some((same, _)) = shown.iter().find(|(_, earlier)| *earlier == ids) {
            let _ = writeln!(out, "Takes the same flags as `{same}`.");
            continue;
        }
        out.push_str("| flag | environment | default | meaning |\n|---|---|---|---|\n");
        for arg in args {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                usage(arg),
                env(arg),
                default(arg),
                meaning(arg)
            );
        }
        shown.push((path.clone(), ids));
    }
    out
}

/// The leaf commands, depth first, in their declared order, with their full invocation.
fn collect<'a>(cmd: &'a Command, path: &str, out: &mut Vec<(String, &'a Command)>) {
    let subcommands: Vec<&Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    if subcommands.is_empty() {
        out.push((path.to_owned(), cmd));
    }
    for sub in subcommands {
        collect(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

/// clap's own `--help` and `--version` are left out: every command has them.
fn documented(arg: &Arg) -> bool {
    !arg.is_hide_set()
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

fn usage(arg: &Arg) -> String {
    let mut text = match (arg.get_long(), arg.get_short()) {
        (Some(long), _) => format!("--{long}"),
        (None, Some(short)) => format!("-{short}"),
        (None, None) => String::new(),
    };
    let takes_values = arg.get_num_args().is_some_and(|n| n.takes_values());
    if takes_values {
        // clap names a value after its field (`<MAX_RESOURCE_SERIES_PER_BACKUP>`); a name
        // chosen in the definition (`value_name`) says more and is kept.
        let derived = arg.get_id().to_string().to_uppercase();
        let value = arg
            .get_value_names()
            .and_then(|names| names.first())
            .map(|n| n.to_string())
            .filter(|n| *n != derived)
            .unwrap_or_else(|| "value".to_owned());
        let mut value = format!("<{value}>");
        if arg.get_value_delimiter().is_some() {
            value.push_str(",…");
        }
        let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
        let value = if optional {
            format!("[{value}]")
        } else {
            value
        };
        text = if text.is_empty() {
            value
        } else {
            format!("{text} {value}")
        };
    }
    format!("`{}`", text.replace('|', "\\|"))
}

fn env(arg: &Arg) -> String {
    match arg.get_env() {
        Some(var) if !arg.is_hide_env_set() => format!("`{}`", var.to_string_lossy()),
        _ => String::new(),
    }
}

fn default(arg: &Arg) -> String {
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    match values.as_slice() {
        [] => String::new(),
        [one] if one.is_empty() => "`\"\"`".to_owned(),
        _ => format!("`{}`", values.join(",")),
    }
}

fn meaning(arg: &Arg) -> String {
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut text = cell(&help);
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    if !possible.is_empty() {
        let _ = write!(text, " One of {}.", possible.join(", "));
    }
    text
}

/// One table cell: a single line, its pipes escaped, ending as a sentence (clap drops the
/// final period of a one-line help).
fn cell(text: &str) -> String {
    let mut text = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|");
    if !text.is_empty() && !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    text
}

/// The metric catalog as a Markdown table: name, type, labels and help of every family, in
/// the catalog's order (the order of a scrape).
pub fn metrics() -> Result<String, DocsError> {
    // Read through the catalog's JSON, the form `pxbackup-sidecar catalog` prints and the
    // dashboards' tests read: the page shows exactly what that contract holds.
    let catalog =
        serde_json::to_value(families::catalog()).map_err(|e| DocsError::Catalog(e.to_string()))?;
    let entries = catalog
        .as_array()
        .ok_or_else(|| DocsError::Catalog("not a list".into()))?;
    let mut out = header(
        "Metrics",
        "the metric catalog (`pxbackup-sidecar catalog`, `src/families/`)",
    );
    out.push_str(
        "Every family the sidecar exports, in the order of a scrape. `pxbackup-sidecar catalog` \
         prints the same list as JSON. Counters are shown with their `_total` sample name.\n\n\
         | metric | type | labels | help |\n|---|---|---|---|\n",
    );
    for entry in entries {
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| DocsError::Catalog(format!("an entry without {name}: {entry}")))
        };
        let labels: Vec<String> = entry
            .get("labels")
            .and_then(|v| v.as_array())
            .ok_or_else(|| DocsError::Catalog(format!("an entry without labels: {entry}")))?
            .iter()
            .filter_map(|l| l.as_str())
            .map(|l| format!("`{l}`"))
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            field("name")?,
            field("type")?,
            labels.join(", "),
            cell(&field("help")?)
        );
    }
    Ok(out)
}
