//! Tidy checks for the berth workspace: module docs, who may name bollard and sqlx, a pure
//! berth-core, the allowed dependency directions and no circle among crates, no circle among a
//! crate's modules ([`modules`], over [`graph`]), and the crate-size rule of thumb ([`size`]).
//! `tests/tidy.rs` runs them on the real tree; the unit tests beside each checker prove it
//! catches what it is meant to catch.
//!
//! Every checker is a pure function from in-memory inputs (file texts, parsed manifests) to a
//! list of offenders, each naming the file or crate and the fix. An empty list means clean.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub mod graph;
pub mod modules;
pub mod size;

/// The workspace root: xtask's parent directory.
pub fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Cargo gives an absolute path, which always has a parent; were it ever to lack one, the
    // tidy tests' own checks that they found the workspace's crates would fail.
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// `path` relative to `root`, with `/` separators, for messages.
pub fn display_path(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

// ---------------------------------------------------------------------------------------------
// Source files and module docs
// ---------------------------------------------------------------------------------------------

/// The directories (relative to the root) whose `.rs` files must start with a module doc.
pub const SOURCE_DIRS: [&str; 4] = ["crates", "benches", "tests", "xtask"];

/// One source file: its path relative to the workspace root and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            path: path.into(),
            text: text.into(),
        }
    }
}

/// Every `.rs` file under `dirs` (relative to `root`), skipping `target` and hidden
/// directories, sorted by path.
pub fn rust_files(root: &Path, dirs: &[&str]) -> Result<Vec<SourceFile>> {
    let mut paths = Vec::new();
    for dir in dirs {
        let dir = root.join(dir);
        if dir.is_dir() {
            collect_rust_files(&dir, &mut paths)?;
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            Ok(SourceFile::new(display_path(root, &path), text))
        })
        .collect()
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_rust_files(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether the file's very first line is a `//!` module doc.
pub fn starts_with_module_doc(text: &str) -> bool {
    text.lines().next().is_some_and(|line| line.starts_with("//!"))
}

/// Files whose first line is not a `//!` comment.
pub fn check_module_docs(files: &[SourceFile]) -> Vec<String> {
    files
        .iter()
        .filter(|file| !starts_with_module_doc(&file.text))
        .map(|file| {
            format!(
                "{}: the first line is not a `//!` module doc; add one at the very top saying what the file owns",
                file.path
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------------------------

/// Which table a dependency is declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DepKind {
    Normal,
    Dev,
    Build,
}

impl DepKind {
    pub fn table(self) -> &'static str {
        match self {
            DepKind::Normal => "dependencies",
            DepKind::Dev => "dev-dependencies",
            DepKind::Build => "build-dependencies",
        }
    }
}

/// One declared dependency, resolved through renames and `workspace = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The package depended on (after `package = "..."` renames).
    pub package: String,
    pub kind: DepKind,
    /// The `cfg(...)` or triple of a `[target.'...'.*dependencies]` table.
    pub target: Option<String>,
    /// Features enabled here or in the workspace entry it inherits.
    pub features: Vec<String>,
}

impl Dependency {
    /// `[dependencies]` or `[target.'cfg(unix)'.dev-dependencies]`, for messages.
    pub fn section(&self) -> String {
        match &self.target {
            None => format!("[{}]", self.kind.table()),
            Some(target) => format!("[target.'{target}'.{}]", self.kind.table()),
        }
    }
}

/// One member's `Cargo.toml`: where it is, the package name and every dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub path: String,
    pub name: String,
    pub dependencies: Vec<Dependency>,
}

impl Manifest {
    /// Dependencies on `package`, in any table.
    pub fn dependencies_on<'a>(&'a self, package: &'a str) -> impl Iterator<Item = &'a Dependency> {
        self.dependencies.iter().filter(move |dep| dep.package == package)
    }
}

/// The root manifest's `[workspace.dependencies]`, which `workspace = true` entries inherit.
pub fn workspace_dependencies(root_manifest: &str) -> Result<toml::Table> {
    let root: toml::Table = toml::from_str(root_manifest).context("parsing the root Cargo.toml")?;
    Ok(root
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_default())
}

/// Parses a member manifest. `workspace_deps` resolves `workspace = true` entries.
pub fn parse_manifest(path: &str, text: &str, workspace_deps: &toml::Table) -> Result<Manifest> {
    let table: toml::Table = toml::from_str(text).with_context(|| format!("parsing {path}"))?;
    let Some(name) = table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
    else {
        bail!("{path}: no [package] name");
    };
    let mut dependencies = Vec::new();
    collect_dependencies(&table, None, workspace_deps, &mut dependencies)
        .with_context(|| format!("reading the dependencies of {path}"))?;
    if let Some(targets) = table.get("target").and_then(toml::Value::as_table) {
        for (target, tables) in targets {
            if let Some(tables) = tables.as_table() {
                collect_dependencies(tables, Some(target), workspace_deps, &mut dependencies)
                    .with_context(|| format!("reading the dependencies of {path}"))?;
            }
        }
    }
    Ok(Manifest {
        path: path.to_owned(),
        name: name.to_owned(),
        dependencies,
    })
}

fn collect_dependencies(
    table: &toml::Table,
    target: Option<&str>,
    workspace_deps: &toml::Table,
    out: &mut Vec<Dependency>,
) -> Result<()> {
    const SECTIONS: [(&str, DepKind); 5] = [
        ("dependencies", DepKind::Normal),
        ("dev-dependencies", DepKind::Dev),
        ("dev_dependencies", DepKind::Dev),
        ("build-dependencies", DepKind::Build),
        ("build_dependencies", DepKind::Build),
    ];
    for (section, kind) in SECTIONS {
        let Some(deps) = table.get(section).and_then(toml::Value::as_table) else {
            continue;
        };
        for (key, spec) in deps {
            let mut package = key.clone();
            let mut features = Vec::new();
            if let Some(spec) = spec.as_table() {
                if spec.get("workspace").and_then(toml::Value::as_bool) == Some(true) {
                    let Some(inherited) = workspace_deps.get(key) else {
                        bail!("`{key}` says `workspace = true` but [workspace.dependencies] has no `{key}`");
                    };
                    if let Some(renamed) = inherited.get("package").and_then(toml::Value::as_str) {
                        package = renamed.to_owned();
                    }
                    features.extend(string_list(inherited.get("features")));
                }
                if let Some(renamed) = spec.get("package").and_then(toml::Value::as_str) {
                    package = renamed.to_owned();
                }
                features.extend(string_list(spec.get("features")));
            }
            out.push(Dependency {
                package,
                kind,
                target: target.map(str::to_owned),
                features,
            });
        }
    }
    Ok(())
}

fn string_list(value: Option<&toml::Value>) -> Vec<String> {
    value
        .and_then(toml::Value::as_array)
        .map(|items| items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The member directories the root manifest lists (`dir/*` globs and plain paths, minus
/// `exclude`), relative to the root, sorted.
pub fn workspace_members(root: &Path, root_manifest: &str) -> Result<Vec<String>> {
    let table: toml::Table = toml::from_str(root_manifest).context("parsing the root Cargo.toml")?;
    let workspace = table
        .get("workspace")
        .context("the root Cargo.toml has no [workspace]")?;
    let excluded: BTreeSet<String> = string_list(workspace.get("exclude")).into_iter().collect();
    let mut members = BTreeSet::new();
    for pattern in string_list(workspace.get("members")) {
        if let Some(parent) = pattern.strip_suffix("/*") {
            for entry in fs::read_dir(root.join(parent)).with_context(|| format!("listing {parent}"))? {
                let entry = entry?;
                if entry.path().join("Cargo.toml").is_file() {
                    members.insert(format!("{parent}/{}", entry.file_name().to_string_lossy()));
                }
            }
        } else if pattern.contains(['*', '?', '[']) {
            bail!("workspace member pattern `{pattern}` is not supported by xtask: use `dir/*` or a plain path");
        } else {
            members.insert(pattern);
        }
    }
    Ok(members.into_iter().filter(|m| !excluded.contains(m)).collect())
}

/// Every workspace member's manifest, parsed.
pub fn member_manifests(root: &Path) -> Result<Vec<Manifest>> {
    let root_text = fs::read_to_string(root.join("Cargo.toml")).context("reading the root Cargo.toml")?;
    let workspace_deps = workspace_dependencies(&root_text)?;
    workspace_members(root, &root_text)?
        .into_iter()
        .map(|member| {
            let path = format!("{member}/Cargo.toml");
            let text = fs::read_to_string(root.join(&path)).with_context(|| format!("reading {path}"))?;
            parse_manifest(&path, &text, &workspace_deps)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Checks on manifests
// ---------------------------------------------------------------------------------------------

/// Crates other than `owner` that depend on `package`, in any table. `fix` says what to do
/// instead.
pub fn check_exclusive_dependency(manifests: &[Manifest], package: &str, owner: &str, fix: &str) -> Vec<String> {
    manifests
        .iter()
        .filter(|manifest| manifest.name != owner)
        .flat_map(|manifest| {
            manifest.dependencies_on(package).map(move |dep| {
                format!(
                    "{}: {} depends on `{package}` in {}; only {owner} may depend on {package}: {fix}",
                    manifest.path,
                    manifest.name,
                    dep.section()
                )
            })
        })
        .collect()
}

/// Crates that do IO or run async code; berth-core may depend on none of them, in any table.
pub const IO_CRATES: [&str; 14] = [
    "tokio",
    "async-std",
    "smol",
    "mio",
    "futures-executor",
    "reqwest",
    "hyper",
    "axum",
    "tower",
    "bollard",
    "sqlx",
    "kube",
    "ureq",
    "notify",
];

/// Whether `package` is an IO or async-runtime crate (including `tokio-*` and `hyper-*`).
pub fn is_io_crate(package: &str) -> bool {
    IO_CRATES.contains(&package) || package.starts_with("tokio-") || package.starts_with("hyper-")
}

/// berth-core's IO dependencies and the places in its sources that do IO.
pub fn check_core_is_pure(manifest: &Manifest, sources: &[SourceFile]) -> Vec<String> {
    let mut offenders: Vec<String> = manifest
        .dependencies
        .iter()
        .filter(|dep| is_io_crate(&dep.package))
        .map(|dep| {
            format!(
                "{}: {} depends on `{}` in {}; berth-core is pure (no IO, no async runtime): remove it and move the code that needs it to berth-runtime, berth-store or berth-server",
                manifest.path,
                manifest.name,
                dep.package,
                dep.section()
            )
        })
        .collect();
    for file in sources {
        for (line, what) in io_uses(&file.text) {
            offenders.push(format!(
                "{}:{line}: uses `{what}`; berth-core does no IO: take the data as an argument and do the IO in the crate that calls it",
                file.path
            ));
        }
    }
    offenders
}

/// Allowed internal edges: each crate and the workspace crates it may depend on.
pub type EdgeTable<'a> = &'a [(&'a str, &'a [&'a str])];

/// Features that expose test doubles and suites; only `[dev-dependencies]` may enable them.
pub const TEST_ONLY_FEATURES: [&str; 2] = ["test-util", "contract"];

/// Internal dependencies that `allowed` does not list, crates missing from `allowed`, and
/// test-only features enabled outside `[dev-dependencies]`. A crate may dev-depend on itself. `table_location` names where
/// the table lives, for the message.
pub fn check_dependency_directions(
    manifests: &[Manifest],
    allowed: EdgeTable<'_>,
    table_location: &str,
) -> Vec<String> {
    let internal: BTreeSet<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
    let allowed: BTreeMap<&str, &[&str]> = allowed.iter().copied().collect();
    let update = format!(
        "if the architecture really changes, update the table in {table_location} and ARCHITECTURE.md together (a new edge is an architecture change: say so in the commit)"
    );
    let mut offenders = Vec::new();
    for manifest in manifests {
        let Some(may_use) = allowed.get(manifest.name.as_str()) else {
            offenders.push(format!(
                "{}: crate {} is not in the allowed-edges table; add a row saying which workspace crates it may depend on: {update}",
                manifest.path, manifest.name
            ));
            continue;
        };
        for dep in &manifest.dependencies {
            if !internal.contains(dep.package.as_str()) {
                continue;
            }
            // A crate's dev-dependency on itself (to turn on its own features for its
            // integration tests) is not an edge between crates.
            let self_edge = dep.package == manifest.name && dep.kind == DepKind::Dev;
            if !self_edge && !may_use.contains(&dep.package.as_str()) {
                let may_use = if may_use.is_empty() {
                    "no workspace crate".to_owned()
                } else {
                    may_use.join(", ")
                };
                offenders.push(format!(
                    "{}: {} depends on {} in {}, an edge the architecture does not allow ({} may depend on: {may_use}); remove the dependency, or {update}",
                    manifest.path,
                    manifest.name,
                    dep.package,
                    dep.section(),
                    manifest.name
                ));
            }
            if dep.kind != DepKind::Dev {
                for feature in dep.features.iter().filter(|f| TEST_ONLY_FEATURES.contains(&f.as_str())) {
                    offenders.push(format!(
                        "{}: {} enables {}'s test-only feature `{feature}` in {}; test doubles must not reach production builds: enable it under [dev-dependencies] instead",
                        manifest.path,
                        manifest.name,
                        dep.package,
                        dep.section()
                    ));
                }
            }
        }
    }
    offenders
}

/// Circles among the workspace's crates: in the dependencies the manifests declare (any table;
/// a crate's dev-dependency on itself is no edge) and in the `allowed` table, which must stay a
/// graph without circles for the layering to mean anything.
pub fn check_crate_circles(manifests: &[Manifest], allowed: EdgeTable<'_>, table_location: &str) -> Vec<String> {
    let internal: BTreeSet<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
    let mut declared = graph::Graph::new();
    for manifest in manifests {
        let targets = declared.entry(manifest.name.clone()).or_default();
        for dep in &manifest.dependencies {
            if internal.contains(dep.package.as_str()) && dep.package != manifest.name {
                targets.insert(dep.package.clone());
            }
        }
    }
    let table: graph::Graph = allowed
        .iter()
        .map(|(name, may_use)| {
            let targets = may_use.iter().map(|target| (*target).to_owned()).collect();
            ((*name).to_owned(), targets)
        })
        .collect();
    let declared_circles = graph::circles(&declared).into_iter().map(|circle| {
        format!(
            "crates depend on each other in a circle: {}; cargo refuses a circle of normal dependencies and one through dev-dependencies ties the layers together: move what both need into the lower crate",
            circle.describe()
        )
    });
    let table_circles = graph::circles(&table).into_iter().map(|circle| {
        format!(
            "the allowed-edges table in {table_location} has a circle: {}; the layers must point one way: drop one of the edges",
            circle.describe()
        )
    });
    declared_circles.chain(table_circles).collect()
}

// ---------------------------------------------------------------------------------------------
// A small Rust lexer, enough to find paths outside comments and string literals
// ---------------------------------------------------------------------------------------------

/// One token: an identifier, `::`, a single punctuation character, or `""` standing for any
/// string, char or number literal. Comments produce nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub line: usize,
    pub text: String,
}

/// Splits Rust source into [`Token`]s, dropping comments (nested block comments included) and
/// the contents of literals (strings, raw strings, byte strings, chars). Lifetimes are idents.
pub fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let push = |tokens: &mut Vec<Token>, line: usize, text: &str| {
        tokens.push(Token {
            line,
            text: text.to_owned(),
        })
    };
    // Skips a quoted literal starting at the opening `"` at `i`; returns the index after it.
    let skip_string = |i: usize, line: &mut usize| -> usize {
        let mut j = i + 1;
        while j < chars.len() {
            match chars[j] {
                '\\' => j += 1,
                '"' => return j + 1,
                '\n' => *line += 1,
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
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
                        if chars[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
            '"' => {
                push(&mut tokens, line, "\"\"");
                i = skip_string(i, &mut line);
            }
            '\'' => {
                // A char literal ('x', '\n', '\u{1F600}', '"') or a lifetime ('a).
                if chars.get(i + 1) == Some(&'\\') {
                    // Skip the escaped character itself, which may be a quote.
                    let mut j = i + 3;
                    while j < chars.len() && chars[j] != '\'' {
                        j += 1;
                    }
                    push(&mut tokens, line, "\"\"");
                    i = j + 1;
                } else if chars.get(i + 2) == Some(&'\'') {
                    push(&mut tokens, line, "\"\"");
                    i += 3;
                } else {
                    i += 1;
                }
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars.get(i).copied();
                let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
                if raw_prefix && matches!(next, Some('"') | Some('#')) {
                    // A raw string: r"..." or r#"..."# with any number of hashes.
                    let mut hashes = 0;
                    while chars.get(i) == Some(&'#') {
                        hashes += 1;
                        i += 1;
                    }
                    if chars.get(i) == Some(&'"') {
                        push(&mut tokens, line, "\"\"");
                        i += 1;
                        loop {
                            match chars.get(i) {
                                None => break,
                                Some('"') if (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) => {
                                    i += 1 + hashes;
                                    break;
                                }
                                Some('\n') => line += 1,
                                Some(_) => {}
                            }
                            i += 1;
                        }
                    } else {
                        // `r#ident`: a raw identifier.
                        let start = i;
                        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                            i += 1;
                        }
                        let ident: String = chars[start..i].iter().collect();
                        push(&mut tokens, line, &ident);
                    }
                } else if matches!(word.as_str(), "b" | "c") && next == Some('"') {
                    push(&mut tokens, line, "\"\"");
                    i = skip_string(i, &mut line);
                } else if word.starts_with(|c: char| c.is_ascii_digit()) {
                    push(&mut tokens, line, "\"\"");
                } else {
                    push(&mut tokens, line, &word);
                }
            }
            ':' if chars.get(i + 1) == Some(&':') => {
                push(&mut tokens, line, "::");
                i += 2;
            }
            c => {
                push(&mut tokens, line, &c.to_string());
                i += 1;
            }
        }
    }
    tokens
}

/// The IO a Rust file does, as `(line, what)`: `std::fs`, `std::net`, `std::process`,
/// `std::env`, `std::io::{stdin,stdout,stderr}` (also inside `use std::{...}` groups), and
/// any `tokio*` or `async_std` path. Comments and string literals are ignored.
pub fn io_uses(text: &str) -> Vec<(usize, String)> {
    const STD_IO_MODULES: [&str; 4] = ["fs", "net", "process", "env"];
    const STD_IO_HANDLES: [&str; 3] = ["stdin", "stdout", "stderr"];
    let tokens = tokenize(text);
    let at = |i: usize| tokens.get(i).map_or("", |t| t.text.as_str());
    let mut found = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let word = token.text.as_str();
        if word.starts_with("tokio") || word == "async_std" {
            found.push((token.line, word.to_owned()));
            continue;
        }
        if word != "std" || at(i + 1) != "::" {
            continue;
        }
        let module = at(i + 2);
        if STD_IO_MODULES.contains(&module) {
            found.push((token.line, format!("std::{module}")));
        } else if module == "io" && at(i + 3) == "::" && STD_IO_HANDLES.contains(&at(i + 4)) {
            found.push((token.line, format!("std::io::{}", at(i + 4))));
        } else if module == "{" || (module == "io" && at(i + 3) == "::" && at(i + 4) == "{") {
            // A use group: look at every name inside the braces.
            let open = if module == "{" { i + 2 } else { i + 4 };
            for (inner, _) in group_tokens(&tokens, open) {
                let name = inner.text.as_str();
                if STD_IO_MODULES.contains(&name) || STD_IO_HANDLES.contains(&name) {
                    found.push((inner.line, format!("std::{{..{name}..}}")));
                }
            }
        }
    }
    found
}

/// The tokens inside the brace group that opens at `tokens[open]` (a `use` group), each with
/// its depth (1 directly inside the group), braces left out.
fn group_tokens(tokens: &[Token], open: usize) -> Vec<(&Token, usize)> {
    let mut depth = 0;
    let mut inside = Vec::new();
    for token in tokens.get(open..).unwrap_or_default() {
        match token.text.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => inside.push((token, depth)),
        }
    }
    inside
}

/// Where `text` takes hold of the engine or the store itself, as `(line, what)`: a
/// `dyn Runtime` or `dyn Store`, or the `Runtime` / `Store` trait named through its crate
/// (`berth_runtime::Runtime`, also inside a `use berth_runtime::{..}` group). Their data types
/// (`RuntimeError`, `SandboxFilter`, ...) are other identifiers and pass. Comments and string
/// literals are ignored.
pub fn engine_or_store_handles(text: &str) -> Vec<(usize, String)> {
    const HANDLES: [(&str, &str); 2] = [("berth_runtime", "Runtime"), ("berth_store", "Store")];
    let tokens = tokenize(text);
    let at = |i: usize| tokens.get(i).map_or("", |t| t.text.as_str());
    let mut found = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let word = token.text.as_str();
        if word == "dyn" && HANDLES.iter().any(|(_, name)| at(i + 1) == *name) {
            found.push((token.line, format!("dyn {}", at(i + 1))));
            continue;
        }
        let Some((krate, name)) = HANDLES.iter().find(|(krate, _)| *krate == word) else {
            continue;
        };
        if at(i + 1) != "::" {
            continue;
        }
        if at(i + 2) == *name {
            found.push((token.line, format!("{krate}::{name}")));
        } else if at(i + 2) == "{" {
            for (inner, depth) in group_tokens(&tokens, i + 2) {
                if depth == 1 && inner.text == *name {
                    found.push((inner.line, format!("{krate}::{{..{name}..}}")));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(path: &str, text: &str) -> Manifest {
        parse_manifest(path, text, &toml::Table::new()).unwrap()
    }

    #[test]
    fn module_doc_must_be_the_first_line() {
        assert!(starts_with_module_doc("//! What this owns.\nfn main() {}\n"));
        assert!(starts_with_module_doc("//!"));
        assert!(!starts_with_module_doc(""));
        assert!(!starts_with_module_doc("\n//! Late.\n"));
        assert!(!starts_with_module_doc("/// An item doc.\n"));
        assert!(!starts_with_module_doc("// A plain comment.\n"));
        assert!(!starts_with_module_doc("#![forbid(unsafe_code)]\n//! Doc.\n"));

        let files = [
            SourceFile::new("crates/a/src/lib.rs", "//! Fine.\n"),
            SourceFile::new("crates/a/src/bad.rs", "use std::fmt;\n"),
            SourceFile::new("xtask/tests/empty.rs", ""),
        ];
        let offenders = check_module_docs(&files);
        assert_eq!(offenders.len(), 2, "{offenders:#?}");
        assert!(offenders[0].starts_with("crates/a/src/bad.rs: "));
        assert!(offenders[0].contains("add one at the very top"));
        assert!(offenders[1].starts_with("xtask/tests/empty.rs: "));
    }

    #[test]
    fn rust_files_skip_target_and_hidden_directories() {
        let root = std::env::temp_dir().join(format!("xtask-rust-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for dir in ["crates/a/src", "crates/a/target/debug", "crates/.hidden", "other"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "crates/a/src/lib.rs",
            "crates/a/target/debug/gen.rs",
            "crates/.hidden/x.rs",
            "other/y.rs",
            "crates/a/src/notes.md",
        ] {
            fs::write(root.join(file), "//! x\n").unwrap();
        }
        let found = rust_files(&root, &["crates", "missing"]).unwrap();
        fs::remove_dir_all(&root).unwrap();
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["crates/a/src/lib.rs"]);
    }

    const API_WITH_BOLLARD: &str = r#"
        [package]
        name = "berth-api"

        [dependencies]
        berth-core = { path = "../berth-core" }
        serde = "1"

        [target.'cfg(unix)'.dev-dependencies]
        docker = { package = "bollard", version = "0.21" }
    "#;

    #[test]
    fn manifests_resolve_renames_targets_and_workspace_entries() {
        let workspace = workspace_dependencies(
            r#"
            [workspace.dependencies]
            engine = { package = "bollard", version = "0.21", features = ["ssl"] }
            berth-runtime = { path = "crates/berth-runtime" }
            "#,
        )
        .unwrap();
        let parsed = parse_manifest(
            "crates/x/Cargo.toml",
            r#"
            [package]
            name = "x"
            [dependencies]
            engine = { workspace = true, features = ["http"] }
            [build-dependencies]
            cc = "1"
            [dev-dependencies]
            berth-runtime = { workspace = true, features = ["test-util"] }
            "#,
            &workspace,
        )
        .unwrap();
        assert_eq!(parsed.name, "x");
        let engine = parsed.dependencies_on("bollard").next().unwrap();
        assert_eq!(engine.kind, DepKind::Normal);
        assert_eq!(engine.features, ["ssl", "http"]);
        assert_eq!(parsed.dependencies_on("cc").next().unwrap().kind, DepKind::Build);
        assert_eq!(
            parsed.dependencies_on("berth-runtime").next().unwrap().section(),
            "[dev-dependencies]"
        );

        let missing = parse_manifest(
            "crates/y/Cargo.toml",
            "[package]\nname = \"y\"\n[dependencies]\nnope.workspace = true\n",
            &workspace,
        );
        assert!(format!("{:#}", missing.unwrap_err()).contains("nope"));
        assert!(parse_manifest("Cargo.toml", "[workspace]\n", &workspace).is_err());
    }

    #[test]
    fn exclusive_dependency_names_every_other_crate_that_uses_it() {
        let manifests = [
            manifest("crates/berth-api/Cargo.toml", API_WITH_BOLLARD),
            manifest(
                "crates/berth-docker/Cargo.toml",
                "[package]\nname = \"berth-docker\"\n[dependencies]\nbollard = \"0.21\"\n",
            ),
        ];
        let offenders =
            check_exclusive_dependency(&manifests, "bollard", "berth-docker", "go through the Runtime trait");
        assert_eq!(offenders.len(), 1, "{offenders:#?}");
        assert!(offenders[0].starts_with("crates/berth-api/Cargo.toml: berth-api depends on `bollard`"));
        assert!(offenders[0].contains("[target.'cfg(unix)'.dev-dependencies]"));
        assert!(offenders[0].contains("only berth-docker may depend on bollard: go through the Runtime trait"));

        let sqlx = manifest(
            "crates/berth-server/Cargo.toml",
            "[package]\nname = \"berth-server\"\n[build-dependencies]\nsqlx = \"0.9\"\n",
        );
        let offenders = check_exclusive_dependency(&[sqlx], "sqlx", "berth-store", "use the Store trait");
        assert_eq!(offenders.len(), 1);
        assert!(offenders[0].contains("[build-dependencies]"));
        assert!(check_exclusive_dependency(&manifests, "sqlx", "berth-store", "").is_empty());
    }

    #[test]
    fn core_may_not_depend_on_io_crates() {
        let core = manifest(
            "crates/berth-core/Cargo.toml",
            r#"
            [package]
            name = "berth-core"
            [dependencies]
            serde = "1"
            tokio = "1"
            [dev-dependencies]
            tokio-test = "0.4"
            hyper = "1"
            "#,
        );
        let offenders = check_core_is_pure(&core, &[]);
        assert_eq!(offenders.len(), 3, "{offenders:#?}");
        let has = |text: &str| offenders.iter().any(|o| o.contains(text));
        assert!(has("berth-core depends on `tokio` in [dependencies]"), "{offenders:#?}");
        assert!(has("`tokio-test` in [dev-dependencies]"), "{offenders:#?}");
        assert!(has("`hyper` in [dev-dependencies]"), "{offenders:#?}");
        assert!(offenders.iter().all(|o| o.contains("berth-core is pure")));
        assert!(!is_io_crate("serde") && !is_io_crate("chrono") && is_io_crate("reqwest"));
    }

    #[test]
    fn core_sources_may_not_do_io() {
        let core = manifest("crates/berth-core/Cargo.toml", "[package]\nname = \"berth-core\"\n");
        let sources = [
            SourceFile::new(
                "crates/berth-core/src/a.rs",
                "//! a\nuse std::fs;\nfn f() { std::process::exit(1) }\n",
            ),
            SourceFile::new(
                "crates/berth-core/src/b.rs",
                "//! b\nuse std::{collections::BTreeMap, net::TcpStream};\n",
            ),
            SourceFile::new(
                "crates/berth-core/src/c.rs",
                "//! c\nfn f() { let _ = std::io::stdin(); }\n#[tokio::test]\nasync fn t() {}\n",
            ),
            SourceFile::new(
                "crates/berth-core/src/d.rs",
                "//! d\nuse std::io::{self, Write, stdout};\nfn g() -> String { std::env::var(\"X\").unwrap() }\n",
            ),
            SourceFile::new(
                "crates/berth-core/src/clean.rs",
                "//! no std::fs here, no tokio\n// use std::fs;\n/* std::net /* nested */ tokio */\nconst S: &str = \"std::fs tokio\";\nconst R: &str = r#\"std::process \"quoted\" \"#;\nconst C: char = '\"';\nfn f<'a>(x: &'a str) -> &'a str { x }\nuse std::io::Write;\nuse std::fmt;\n",
            ),
        ];
        let offenders = check_core_is_pure(&core, &sources);
        let expected = [
            "crates/berth-core/src/a.rs:2: uses `std::fs`",
            "crates/berth-core/src/a.rs:3: uses `std::process`",
            "crates/berth-core/src/b.rs:2: uses `std::{..net..}`",
            "crates/berth-core/src/c.rs:2: uses `std::io::stdin`",
            "crates/berth-core/src/c.rs:3: uses `tokio`",
            "crates/berth-core/src/d.rs:2: uses `std::{..stdout..}`",
            "crates/berth-core/src/d.rs:3: uses `std::env`",
        ];
        assert_eq!(offenders.len(), expected.len(), "{offenders:#?}");
        for (offender, expected) in offenders.iter().zip(expected) {
            assert!(offender.starts_with(expected), "{offender}");
            assert!(offender.contains("berth-core does no IO"), "{offender}");
        }
    }

    #[test]
    fn engine_and_store_handles_are_found_but_their_data_types_pass() {
        let text = r#"
use berth_runtime::{OutputChunk, Runtime};
use berth_store::{SandboxFilter, StoreError};
use berth_runtime::RuntimeError;
// a dyn Runtime in a comment
fn f(store: Arc<dyn Store>) -> &'static str { "dyn Runtime" }
use berth_store::Store;
"#;
        let found: Vec<String> = engine_or_store_handles(text)
            .into_iter()
            .map(|(line, what)| format!("{line}:{what}"))
            .collect();
        assert_eq!(
            found,
            ["2:berth_runtime::{..Runtime..}", "6:dyn Store", "7:berth_store::Store"]
        );
    }

    #[test]
    fn tokenizer_keeps_lines_and_drops_literals() {
        let tokens = tokenize("a::b /* x\ny */\n\"s\ntr\" 'c' b'x' br##\"r\"#\"## r#type 1.5 'life '\\'' '\\u{22}'\nz");
        let texts: Vec<(usize, &str)> = tokens.iter().map(|t| (t.line, t.text.as_str())).collect();
        assert_eq!(
            texts,
            [
                (1, "a"),
                (1, "::"),
                (1, "b"),
                (3, "\"\""),
                (4, "\"\""),
                (4, "b"),
                (4, "\"\""),
                (4, "\"\""),
                (4, "type"),
                (4, "\"\""),
                (4, "."),
                (4, "\"\""),
                (4, "life"),
                (4, "\"\""),
                (4, "\"\""),
                (5, "z"),
            ]
        );
    }

    const EDGES: &[(&str, &[&str])] = &[
        ("berth-core", &[]),
        ("berth-runtime", &["berth-core"]),
        ("berth-api", &["berth-core"]),
        ("berth-server", &["berth-core", "berth-runtime", "berth-api"]),
    ];

    fn crate_manifest(name: &str, deps: &str) -> Manifest {
        manifest(
            &format!("crates/{name}/Cargo.toml"),
            &format!("[package]\nname = \"{name}\"\n{deps}"),
        )
    }

    #[test]
    fn allowed_edges_pass() {
        let manifests = [
            crate_manifest(
                "berth-core",
                "[dependencies]\nserde = \"1\"\n[dev-dependencies]\nberth-core = { path = \".\", features = [\"contract\"] }\n",
            ),
            crate_manifest(
                "berth-runtime",
                "[dependencies]\nberth-core = { path = \"../berth-core\" }\n",
            ),
            crate_manifest(
                "berth-api",
                "[dependencies]\nberth-core = { path = \"../berth-core\", features = [\"openapi\"] }\n",
            ),
            crate_manifest(
                "berth-server",
                "[dependencies]\nberth-api = { path = \"../berth-api\" }\nberth-runtime = { path = \"../berth-runtime\" }\n[dev-dependencies]\nberth-runtime = { path = \"../berth-runtime\", features = [\"test-util\"] }\n",
            ),
        ];
        assert_eq!(
            check_dependency_directions(&manifests, EDGES, "the table"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn forbidden_edges_unknown_crates_and_leaked_test_features_fail() {
        let manifests = [
            crate_manifest(
                "berth-core",
                "[dev-dependencies]\nberth-runtime = { path = \"../berth-runtime\" }\n",
            ),
            crate_manifest(
                "berth-runtime",
                "[dependencies]\nberth-core = { path = \"../berth-core\" }\n",
            ),
            crate_manifest(
                "berth-api",
                "[target.'cfg(unix)'.dependencies]\nrt = { package = \"berth-runtime\", path = \"../berth-runtime\" }\n",
            ),
            crate_manifest(
                "berth-server",
                "[dependencies]\nberth-runtime = { path = \"../berth-runtime\", features = [\"test-util\"] }\n",
            ),
            crate_manifest(
                "berth-kube",
                "[dependencies]\nberth-core = { path = \"../berth-core\" }\n",
            ),
        ];
        let offenders = check_dependency_directions(&manifests, EDGES, "xtask/tests/tidy.rs");
        assert_eq!(offenders.len(), 4, "{offenders:#?}");
        assert!(
            offenders[0]
                .starts_with("crates/berth-core/Cargo.toml: berth-core depends on berth-runtime in [dev-dependencies]")
        );
        assert!(offenders[0].contains("berth-core may depend on: no workspace crate"));
        assert!(offenders[0].contains("update the table in xtask/tests/tidy.rs and ARCHITECTURE.md"));
        assert!(offenders[1].contains("berth-api depends on berth-runtime in [target.'cfg(unix)'.dependencies]"));
        assert!(offenders[1].contains("berth-api may depend on: berth-core"));
        assert!(offenders[2].contains("enables berth-runtime's test-only feature `test-util` in [dependencies]"));
        assert!(offenders[3].contains("crate berth-kube is not in the allowed-edges table"));
    }

    #[test]
    fn circles_between_crates_fail_in_the_manifests_and_in_the_table() {
        let layered = [
            crate_manifest("berth-core", "[dev-dependencies]\nberth-core = { path = \".\" }\n"),
            crate_manifest(
                "berth-api",
                "[dependencies]\nberth-core = { path = \"../berth-core\" }\n",
            ),
        ];
        assert!(check_crate_circles(&layered, EDGES, "the table").is_empty());

        let tangled = [
            crate_manifest(
                "berth-core",
                "[dev-dependencies]\nberth-api = { path = \"../berth-api\" }\n",
            ),
            crate_manifest(
                "berth-api",
                "[dependencies]\nberth-core = { path = \"../berth-core\" }\n",
            ),
        ];
        let table: EdgeTable<'_> = &[("berth-core", &["berth-runtime"]), ("berth-runtime", &["berth-core"])];
        let offenders = check_crate_circles(&tangled, table, "xtask/tests/tidy.rs");
        assert_eq!(offenders.len(), 2, "{offenders:#?}");
        assert!(
            offenders[0].contains("in a circle: berth-api -> berth-core -> berth-api;"),
            "{}",
            offenders[0]
        );
        assert!(
            offenders[1].contains("xtask/tests/tidy.rs has a circle: berth-core -> berth-runtime -> berth-core;"),
            "{}",
            offenders[1]
        );
    }

    #[test]
    fn workspace_members_expand_globs_and_exclusions() {
        let root = std::env::temp_dir().join(format!("xtask-members-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for dir in ["crates/a", "crates/b", "crates/not-a-crate", "tests/e2e"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in ["crates/a/Cargo.toml", "crates/b/Cargo.toml", "tests/e2e/Cargo.toml"] {
            fs::write(root.join(file), "").unwrap();
        }
        let members = workspace_members(
            &root,
            "[workspace]\nmembers = [\"crates/*\", \"tests/e2e\"]\nexclude = [\"crates/b\"]\n",
        );
        let bad_glob = workspace_members(&root, "[workspace]\nmembers = [\"crates/a*\"]\n");
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(members.unwrap(), ["crates/a", "tests/e2e"]);
        assert!(bad_glob.is_err());
    }
}
