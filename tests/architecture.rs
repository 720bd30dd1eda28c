//! The module graph. Data flows one way: sources -> inventory -> exposition / telemetry, with
//! model, clock, families and persistence at the bottom, and `app` (the wiring) above
//! everything. No two top-level modules may depend on each other, directly or round a longer
//! cycle: a cycle means no part can be understood, tested or changed without the others.
//!
//! The graph is read from the source text the way the compiler finds it: from src/lib.rs along
//! `mod` declarations, every `crate::<module>` (and `super::` reaching the crate root) outside
//! `#[cfg(test)]` code. Tests may look across (an inventory test reads the rendered
//! exposition); the product may not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> the top-level modules it uses.
type Graph = BTreeMap<String, BTreeSet<String>>;
/// Top-level module -> the paths it names in other modules, two segments deep.
type Items = BTreeMap<String, BTreeSet<String>>;

/// Edges that would turn the flow around even where they close no cycle yet.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    (
        "inventory",
        "exposition",
        "the inventory renders; serving is the exposition's",
    ),
    (
        "sources",
        "exposition",
        "sources feed the inventory and never touch metrics",
    ),
    (
        "sources",
        "telemetry",
        "sources feed the inventory and never touch metrics",
    ),
    (
        "exposition",
        "telemetry",
        "telemetry's families reach a scrape as a Collector",
    ),
    (
        "families",
        "inventory",
        "metric descriptions are below the inventory",
    ),
    (
        "persistence",
        "inventory",
        "the journal stores records; the inventory decides",
    ),
];

/// The bottom: these use nothing but each other.
const BOTTOM: &[&str] = &["model", "clock", "families", "persistence", "priority"];

/// What of the sources a reader may name: telemetry the status only (the health bundle gets
/// the sidecar's own metrics as a Collector, not the ingest counters); the exposition also the
/// ingest counters and the pxb source's Keycloak counters, for the self metrics.
const SOURCES_READ_BY: &[(&str, &[&str])] = &[
    ("telemetry", &["sources::SourceStatus"]),
    (
        "exposition",
        &["sources::SourceStatus", "sources::ingest", "sources::pxb"],
    ),
];

#[test]
fn the_module_graph_has_no_cycle() {
    let (graph, _) = crate_graph();
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "the modules depend on each other in a cycle: {}\n{}",
            cycle.join(" -> "),
            describe(&graph)
        );
    }
}

#[test]
fn data_flows_one_way() {
    let (graph, items) = crate_graph();
    let mut wrong = Vec::new();
    for (from, to, why) in FORBIDDEN {
        if uses(&graph, from, to) {
            wrong.push(format!("{from} -> {to}: {why}"));
        }
    }
    for (from, deps) in &graph {
        if from != "app" && deps.contains("app") {
            wrong.push(format!("{from} -> app: the wiring is above every part"));
        }
        if BOTTOM.contains(&from.as_str()) {
            for to in deps.iter().filter(|to| !BOTTOM.contains(&to.as_str())) {
                wrong.push(format!("{from} -> {to}: {from} is at the bottom"));
            }
        }
    }
    for (reader, allowed) in SOURCES_READ_BY {
        let named = items.get(*reader).into_iter().flatten();
        for item in named.filter(|i| i.starts_with("sources::") && !allowed.contains(&i.as_str())) {
            wrong.push(format!("{reader} -> {item}: it is handed {allowed:?} only"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n{}",
        wrong.join("\n"),
        describe(&graph)
    );
}

/// The reader itself: what it must see and what it must not, and that a cycle is found.
#[test]
fn the_reader_finds_paths_and_cycles() {
    let text = r##"
        //! Docs name crate::docs.
        use crate::model::Kind;
        use crate::{clock, families::text};
        pub(crate) fn f() -> crate::inventory::Inventory { todo!() }
        const S: &str = "crate::string";
        const R: &str = r#"crate::raw " still raw"#;
        const C: char = '"'; fn g<'a>(x: &'a str) -> &'a str { x }
        /* crate::block /* nested */ crate::still_block */
        #[cfg(test)]
        mod tests { use crate::exposition; }
        #[cfg(test)]
        use crate::telemetry;
        #[cfg(test)]
        fn helper() -> [u8; 2] { crate::sources::x(); [0; 2] }
        fn h() { super::kubernetes::y(); }
        #[cfg(test)]
        mod more;
        mod child;
    "##;
    let scan = scan(text, &["top".to_owned()]);
    assert_eq!(
        scan.uses,
        ["clock", "families", "inventory", "kubernetes", "model"]
            .map(String::from)
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(
        scan.items,
        [
            "clock",
            "families::text",
            "inventory::Inventory",
            "kubernetes::y",
            "model::Kind"
        ]
        .map(String::from)
        .into_iter()
        .collect::<BTreeSet<_>>()
    );
    assert_eq!(scan.mods, [(Vec::<String>::new(), "child".to_owned())]);
    assert_eq!(scan.test_mods, [(Vec::<String>::new(), "more".to_owned())]);

    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .into_iter()
        .fold(Graph::new(), |mut g, (from, to)| {
            g.entry(from.into()).or_default().insert(to.into());
            g
        });
    assert_eq!(
        find_cycle(&graph).map(|c| c.join(" -> ")).as_deref(),
        Some("a -> b -> c -> a")
    );
    let mut acyclic = graph.clone();
    if let Some(deps) = acyclic.get_mut("c") {
        deps.remove("a");
    }
    assert_eq!(find_cycle(&acyclic), None);
}

fn uses(graph: &Graph, from: &str, to: &str) -> bool {
    graph.get(from).is_some_and(|deps| deps.contains(to))
}

fn describe(graph: &Graph) -> String {
    let lines: Vec<String> = graph
        .iter()
        .map(|(m, deps)| {
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            format!("  {m} -> {}", deps.join(", "))
        })
        .collect();
    format!("the module graph:\n{}", lines.join("\n"))
}

/// A cycle as the modules along it, the first repeated at the end; the first found in name
/// order, so that the message is stable.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        graph: &Graph,
        node: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|m| m == node)?;
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut marks, &mut Vec::new()))
}

// ---- Reading the crate ----

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The graph of the library's top-level modules, from src/lib.rs down its `mod` tree, and the
/// paths each names in the others.
fn crate_graph() -> (Graph, Items) {
    let root = src();
    let lib = root.join("lib.rs");
    let top = scan(&read(&lib), &[]);
    assert!(top.uses.is_empty(), "src/lib.rs declares modules only");
    let modules: BTreeSet<String> = top.mods.iter().map(|(_, m)| m.clone()).collect();
    assert!(
        modules.contains("inventory") && modules.contains("sources"),
        "no modules found in src/lib.rs: {modules:?}"
    );

    let mut graph = Graph::new();
    let mut items = Items::new();
    let mut seen: BTreeSet<PathBuf> = [lib, root.join("main.rs")].into();
    // (file, its module path, whether only tests compile it)
    let mut work: Vec<(PathBuf, Vec<String>, bool)> = top
        .mods
        .iter()
        .map(|(_, m)| (module_file(&root, m), vec![m.clone()], false))
        .collect();
    while let Some((file, path, test_only)) = work.pop() {
        assert!(seen.insert(file.clone()), "{} twice", file.display());
        let scan = scan(&read(&file), &path);
        let dir = children_dir(&file);
        let declared = scan
            .mods
            .iter()
            .map(|m| (m, test_only))
            .chain(scan.test_mods.iter().map(|m| (m, true)));
        for ((inline, name), test_only) in declared {
            let dir = inline.iter().fold(dir.clone(), |d, m| d.join(m));
            let mut child = path.clone();
            child.extend(inline.iter().cloned());
            child.push(name.clone());
            work.push((module_file(&dir, name), child, test_only));
        }
        if test_only {
            continue;
        }
        let own = &path[0];
        let other = |m: &String| m != own && modules.contains(m);
        let deps = graph.entry(own.clone()).or_default();
        deps.extend(scan.uses.into_iter().filter(other));
        let named = items.entry(own.clone()).or_default();
        named.extend(scan.items.into_iter().filter(|i| {
            let first = i.split("::").next().unwrap_or_default().to_owned();
            other(&first)
        }));
    }
    // Every source file was read: a file the walk missed would hide its edges.
    let mut missed = Vec::new();
    all_rs(&root, &mut missed);
    missed.retain(|f| !seen.contains(f));
    assert!(missed.is_empty(), "not reached from src/lib.rs: {missed:?}");
    (graph, items)
}

fn read(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// `dir/name.rs`, or `dir/name/mod.rs`.
fn module_file(dir: &Path, name: &str) -> PathBuf {
    let flat = dir.join(format!("{name}.rs"));
    if flat.exists() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    }
}

/// Where the files of the modules that `file` declares are.
fn children_dir(file: &Path) -> PathBuf {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib" | "main") => dir,
        Some(stem) => dir.join(stem),
        None => dir,
    }
}

fn all_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            all_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What one file says about modules, outside `#[cfg(test)]` items.
#[derive(Debug, Default)]
struct Scan {
    /// Top-level modules named by `crate::` paths (and `super::` paths reaching the root).
    uses: BTreeSet<String>,
    /// `mod name;` declarations, with the inline modules they are in.
    mods: Vec<(Vec<String>, String)>,
    /// `#[cfg(test)] mod name;`: files only tests compile.
    test_mods: Vec<(Vec<String>, String)>,
    /// The same paths, two segments deep (`sources::SourceStatus`).
    items: BTreeSet<String>,
}

impl Scan {
    fn add(&mut self, paths: Vec<Vec<String>>) {
        for path in paths.into_iter().filter(|p| !p.is_empty()) {
            self.uses.insert(path[0].clone());
            self.items.insert(path[..path.len().min(2)].join("::"));
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// `module`: the module path of the file (empty for the crate root).
fn scan(text: &str, module: &[String]) -> Scan {
    let tokens = tokenize(&strip(text));
    let mut out = Scan::default();
    // Inline modules (`mod name { ... }`) open here, with the brace depth outside each.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let ident = |i: usize| match tokens.get(i) {
        Some(Token::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let punct = |i: usize, c: char| tokens.get(i) == Some(&Token::Punct(c));
    while i < tokens.len() {
        // `#[cfg(test)]`: the item after it is for tests only.
        if punct(i, '#') && punct(i + 1, '[') {
            let end = matching(&tokens, i + 1);
            let is_test = tokens[i + 2..end]
                == [
                    Token::Ident("cfg".into()),
                    Token::Punct('('),
                    Token::Ident("test".into()),
                    Token::Punct(')'),
                ];
            i = end + 1;
            if is_test {
                let item = i;
                i = item_end(&tokens, item);
                if let Some(m) = test_mod(&tokens, item) {
                    let within = inline.iter().map(|(m, _)| m.clone()).collect();
                    out.test_mods.push((within, m));
                }
            }
            continue;
        }
        match &tokens[i] {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Token::Ident(kw) if kw == "mod" => {
                if let Some(name) = ident(i + 1) {
                    if punct(i + 2, ';') {
                        let within = inline.iter().map(|(m, _)| m.clone()).collect();
                        out.mods.push((within, name.to_owned()));
                    } else if punct(i + 2, '{') {
                        inline.push((name.to_owned(), depth));
                    }
                }
            }
            Token::Ident(kw) if kw == "crate" && tokens.get(i + 1) == Some(&Token::PathSep) => {
                out.add(use_tree(&tokens, i + 2));
            }
            Token::Ident(kw)
                if kw == "super"
                    && !matches!(tokens.get(i.wrapping_sub(1)), Some(Token::PathSep)) =>
            {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(m, _)| m.clone()));
                let mut j = i;
                while ident(j) == Some("super") && tokens.get(j + 1) == Some(&Token::PathSep) {
                    here.pop();
                    j += 2;
                }
                if here.is_empty() {
                    out.add(use_tree(&tokens, j));
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// `mod name;` starting at `i` (attributes and visibility before it skipped).
fn test_mod(tokens: &[Token], mut i: usize) -> Option<String> {
    while tokens.get(i) == Some(&Token::Punct('#')) {
        i = matching(tokens, i + 1) + 1;
    }
    if tokens.get(i) == Some(&Token::Ident("pub".into())) {
        i += 1;
        if tokens.get(i) == Some(&Token::Punct('(')) {
            i = matching(tokens, i) + 1;
        }
    }
    match (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2)) {
        (Some(Token::Ident(m)), Some(Token::Ident(name)), Some(Token::Punct(';')))
            if m == "mod" =>
        {
            Some(name.clone())
        }
        _ => None,
    }
}

/// The index after the item starting at `i`: after its `;`, or after its closing brace.
fn item_end(tokens: &[Token], mut i: usize) -> usize {
    while i < tokens.len() {
        match tokens[i] {
            Token::Punct(';') => return i + 1,
            Token::Punct('(' | '[') => i = matching(tokens, i),
            Token::Punct('{') => return matching(tokens, i) + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// The index of the bracket closing the one at `open`.
fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match t {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// The paths of a use tree (or of an expression's path) starting at `i`, after `crate::`:
/// `a::b`, `a::{b, c::d}`, `{a, b}`; `*` and what is not a name end a path.
fn use_tree(tokens: &[Token], i: usize) -> Vec<Vec<String>> {
    match tokens.get(i) {
        Some(Token::Ident(name)) if tokens.get(i + 1) == Some(&Token::PathSep) => {
            let mut paths = use_tree(tokens, i + 2);
            if paths.is_empty() {
                paths.push(Vec::new());
            }
            for path in &mut paths {
                path.insert(0, name.clone());
            }
            paths
        }
        Some(Token::Ident(name)) => vec![vec![name.clone()]],
        Some(Token::Punct('{')) => {
            let end = matching(tokens, i);
            let mut paths = Vec::new();
            let mut j = i + 1;
            while j < end {
                paths.extend(use_tree(tokens, j));
                j = next_in_group(tokens, j, end);
            }
            paths
        }
        _ => Vec::new(),
    }
}

/// The start of the next path in a `{...}` group (after the `,` at the group's own level).
fn next_in_group(tokens: &[Token], mut j: usize, end: usize) -> usize {
    while j < end {
        match tokens[j] {
            Token::Punct(',') => return j + 1,
            Token::Punct('(' | '[' | '{') => j = matching(tokens, j),
            _ => {}
        }
        j += 1;
    }
    end
}

fn tokenize(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token::PathSep);
            i += 2;
            continue;
        }
        if !c.is_whitespace() {
            tokens.push(Token::Punct(c));
        }
        i += 1;
    }
    tokens
}

/// The code with comments, string and character literals blanked out (lifetimes stay).
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let ident_before = |i: usize| i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
            continue;
        }
        // Raw strings: r"..", r#".."#, br#".."#.
        if (c == 'r' || (c == 'b' && next == Some('r'))) && !ident_before(i) {
            let mut j = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) == Some(&'"') {
                j += 1;
                loop {
                    match chars.get(j) {
                        None => break,
                        Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                            j += 1 + hashes;
                            break;
                        }
                        Some(_) => j += 1,
                    }
                }
                out.push_str("\"\"");
                i = j;
                continue;
            }
        }
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += 1;
            continue;
        }
        // A character literal ('x', '\n', '\u{..}'), not a lifetime ('a).
        if c == '\'' {
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
                continue;
            }
            if chars.get(i + 2) == Some(&'\'') {
                out.push_str("' '");
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}
