//! The module graph of one crate: which of its modules (one per file under `src/`) name which
//! others, read from `use` declarations and `crate::`, `super::`, `self::` and child-module
//! paths in its sources, and the check that no modules import each other in a circle.
//!
//! What counts as an edge, and why:
//! - A module is a file: `lib.rs` / `main.rs` is the root (`crate`), `a.rs` and `a/mod.rs` are
//!   `a`, `a/b.rs` is `a::b`. An inline `mod x { .. }` belongs to its file.
//! - A path reaching into a module is an edge to the deepest file module it names:
//!   `crate::sandbox::label_keys::MANAGED` is an edge to `sandbox`.
//! - `pub use` in the crate root is the crate's public face, not a dependency of the root; a
//!   `crate::Name` path is an edge to the module the root re-exports `Name` from, or to the
//!   root itself when the root defines it.
//! - A module's uses of its own submodules are not edges: a module and the submodules it
//!   declares are one unit (an `impl` spread over `service.rs`, `service/pools.rs` and
//!   `service/build.rs`, which extend the parent's type through `super::`). Circles are counted
//!   between modules neither of which contains the other. The root is the exception: it
//!   contains every module, so its uses count like any other's.
//! - Paths inside string literals (`#[serde(with = "crate::x")]`) and comments are not seen.

use std::collections::{BTreeMap, BTreeSet};

use crate::graph::{self, Graph};
use crate::{SourceFile, Token, tokenize};

/// The name the root module goes by in messages.
pub const ROOT: &str = "crate";

/// The module a file under `src/` is (its path relative to `src/`, `/`-separated), as path
/// segments: the root is empty. `None` for a file that is not Rust.
pub fn module_of(src_relative: &str) -> Option<Vec<String>> {
    let stem = src_relative.strip_suffix(".rs")?;
    let mut segments: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if segments.last().is_some_and(|last| last == "mod") {
        segments.pop();
    }
    if segments.len() == 1 && matches!(segments[0].as_str(), "lib" | "main") {
        segments.clear();
    }
    Some(segments)
}

/// `a::b`, or [`ROOT`] for the root.
pub fn module_display(module: &[String]) -> String {
    if module.is_empty() {
        ROOT.to_owned()
    } else {
        module.join("::")
    }
}

/// The module graph of a crate whose files under `src/` are `files` (paths relative to `src/`):
/// every module a node, an edge for every module it names. A module's references to itself
/// and to its own submodules are not edges.
pub fn module_graph(files: &[SourceFile]) -> Graph {
    let parsed: Vec<(Vec<String>, Vec<Token>)> = files
        .iter()
        .filter_map(|file| Some((module_of(&file.path)?, tokenize(&file.text))))
        .collect();
    let known: BTreeSet<Vec<String>> = parsed.iter().map(|(module, _)| module.clone()).collect();
    let exports = parsed
        .iter()
        .find(|(module, _)| module.is_empty())
        .map(|(_, tokens)| root_exports(tokens, &known))
        .unwrap_or_default();
    let mut graph = Graph::new();
    for (module, tokens) in &parsed {
        let targets = graph.entry(module_display(module)).or_default();
        let scan = Scan {
            file_module: module,
            known: &known,
            exports: &exports,
        };
        for target in scan.references(tokens) {
            let own_submodule = !module.is_empty() && target.starts_with(module);
            if &target != module && !own_submodule {
                targets.insert(module_display(&target));
            }
        }
    }
    graph
}

/// Every circle among the modules of `crate_name`, one message each:
/// `berth-core: labels -> sandbox -> labels`.
pub fn check_module_circles(crate_name: &str, graph: &Graph) -> Vec<String> {
    graph::circles(graph)
        .iter()
        .map(|circle| {
            format!(
                "{crate_name}: {}; modules must not import each other in a circle: move what both need into a module of its own that neither of them imports from",
                circle.describe()
            )
        })
        .collect()
}

/// What the root re-exports by name: `pub use spec::FieldError` maps `FieldError` to `spec`,
/// `pub use berth_core::stack::StackPlan` maps `StackPlan` to `None` (another crate's).
fn root_exports(tokens: &[Token], known: &BTreeSet<Vec<String>>) -> Exports {
    let root = Vec::new();
    let none = BTreeMap::new();
    let scan = Scan {
        file_module: &root,
        known,
        exports: &none,
    };
    let mut exports = BTreeMap::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].text == "use" && is_public(tokens, i) {
            let (paths, end) = use_tree_paths(tokens, i + 1);
            for UsePath { segments, name } in paths {
                if let Some(name) = name {
                    exports.insert(name, scan.resolve(&root, &segments));
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    exports
}

/// Whether the `use` at `at` is a re-export: `pub use`, `pub(crate) use`, `pub(super) use`.
fn is_public(tokens: &[Token], at: usize) -> bool {
    let text = |back: usize| at.checked_sub(back).map_or("", |i| tokens[i].text.as_str());
    text(1) == "pub" || (text(1) == ")" && text(3) == "(" && text(4) == "pub")
}

/// The root's re-exports: each name and the module it comes from, `None` for another crate's.
type Exports = BTreeMap<String, Option<Vec<String>>>;

/// The references of one file, resolved against the crate's modules.
struct Scan<'a> {
    file_module: &'a Vec<String>,
    known: &'a BTreeSet<Vec<String>>,
    exports: &'a Exports,
}

impl Scan<'_> {
    /// Every module the file's paths reach, itself included.
    fn references(&self, tokens: &[Token]) -> BTreeSet<Vec<String>> {
        let is_root = self.file_module.is_empty();
        let mut found = BTreeSet::new();
        // Inline modules open around the current token, with the brace depth they opened at.
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0;
        let text = |i: usize| tokens.get(i).map_or("", |t| t.text.as_str());
        let mut i = 0;
        while i < tokens.len() {
            let current: Vec<String> = self
                .file_module
                .iter()
                .cloned()
                .chain(inline.iter().map(|(name, _)| name.clone()))
                .collect();
            match text(i) {
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if inline.last().is_some_and(|(_, opened)| *opened == depth) {
                        inline.pop();
                    }
                }
                "mod" if is_ident(text(i + 1)) && text(i + 2) == "{" => {
                    inline.push((text(i + 1).to_owned(), depth));
                    i += 2;
                    continue;
                }
                // `use<'a>` is precise capturing in an `impl Trait`, not a declaration.
                "use" if text(i + 1) != "<" => {
                    let (paths, end) = use_tree_paths(tokens, i + 1);
                    if !(is_root && is_public(tokens, i)) {
                        found.extend(paths.iter().filter_map(|path| self.resolve(&current, &path.segments)));
                    }
                    i = end;
                    continue;
                }
                word if text(i + 1) == "::" && text(i.wrapping_sub(1)) != "::" && is_ident(word) => {
                    let relative = matches!(word, "crate" | "super" | "self") || {
                        let mut child = current.clone();
                        child.push(word.to_owned());
                        self.known.contains(&child)
                    };
                    if relative {
                        let mut segments = vec![word.to_owned()];
                        let mut j = i + 1;
                        while text(j) == "::" && is_ident(text(j + 1)) {
                            segments.push(text(j + 1).to_owned());
                            j += 2;
                        }
                        found.extend(self.resolve(&current, &segments));
                        i = j;
                        continue;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        found
    }

    /// The file module a path written in module `current` reaches: the deepest known module
    /// its absolute form starts with; through the root's re-exports for a root-level name.
    /// `None` for a path into another crate, directly or through a re-export.
    fn resolve(&self, current: &[String], segments: &[String]) -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        let mut absolute: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "self" => current.to_vec(),
            "super" => current.get(..current.len().checked_sub(1)?)?.to_vec(),
            _ => {
                let mut child = current.to_vec();
                child.push(first.clone());
                if !self.known.contains(&child) {
                    return None;
                }
                child
            }
        };
        let mut rest = rest;
        while first == "super" && rest.first().is_some_and(|s| s == "super") {
            absolute.pop()?;
            rest = &rest[1..];
        }
        absolute.extend(rest.iter().cloned());
        let deepest = (0..=absolute.len())
            .rev()
            .map(|len| &absolute[..len])
            .find(|prefix| self.known.contains(*prefix))?
            .to_vec();
        if deepest.is_empty()
            && let Some(target) = absolute.first().and_then(|name| self.exports.get(name))
        {
            return target.clone();
        }
        Some(deepest)
    }
}

fn is_ident(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// One path of an expanded use tree, and the name it brings into scope (`None` for a glob).
#[derive(Debug, Clone, PartialEq, Eq)]
struct UsePath {
    segments: Vec<String>,
    name: Option<String>,
}

/// The paths of the use tree starting at `start` (just after `use`), expanded
/// (`a::{b, c::{self, d}}` → `a::b`, `a::c`, `a::c::d`; a glob names its module), and the index
/// after its `;`.
fn use_tree_paths(tokens: &[Token], start: usize) -> (Vec<UsePath>, usize) {
    let mut paths = Vec::new();
    let mut i = start;
    // A leading `::` names an extern crate.
    if tokens.get(i).is_some_and(|t| t.text == "::") {
        i += 1;
    }
    parse_tree(tokens, &mut i, &mut Vec::new(), &mut paths);
    while i < tokens.len() && tokens[i].text != ";" {
        i += 1;
    }
    (paths, i + 1)
}

fn parse_tree(tokens: &[Token], i: &mut usize, prefix: &mut Vec<String>, out: &mut Vec<UsePath>) {
    let text = |i: usize| tokens.get(i).map_or("", |t| t.text.as_str());
    let depth = prefix.len();
    loop {
        match text(*i) {
            "{" => {
                *i += 1;
                loop {
                    parse_tree(tokens, i, prefix, out);
                    match text(*i) {
                        "," => *i += 1,
                        "}" => {
                            *i += 1;
                            break;
                        }
                        _ => break,
                    }
                    if text(*i) == "}" {
                        *i += 1;
                        break;
                    }
                }
                break;
            }
            "*" => {
                *i += 1;
                out.push(UsePath {
                    segments: prefix.clone(),
                    name: None,
                });
                break;
            }
            "self" if depth > 0 && text(*i + 1) != "::" => {
                *i += 1;
                let name = name_after(tokens, i, prefix.last().cloned());
                out.push(UsePath {
                    segments: prefix.clone(),
                    name,
                });
                break;
            }
            word if is_ident(word) => {
                prefix.push(word.to_owned());
                *i += 1;
                if text(*i) == "::" {
                    *i += 1;
                    continue;
                }
                let name = name_after(tokens, i, Some(word.to_owned()));
                out.push(UsePath {
                    segments: prefix.clone(),
                    name,
                });
                break;
            }
            _ => break,
        }
    }
    prefix.truncate(depth);
}

/// The name a use path brings into scope: `default`, or the `as name` at `i` (consumed);
/// `as _` brings none.
fn name_after(tokens: &[Token], i: &mut usize, default: Option<String>) -> Option<String> {
    if tokens.get(*i).is_none_or(|t| t.text != "as") {
        return default;
    }
    let name = tokens.get(*i + 1).map(|t| t.text.clone());
    *i += 2;
    name.filter(|name| name != "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sources: &[(&str, &str)]) -> Vec<SourceFile> {
        sources
            .iter()
            .map(|(path, text)| SourceFile::new(*path, *text))
            .collect()
    }

    fn edges(graph: &Graph) -> Vec<String> {
        graph
            .iter()
            .flat_map(|(from, to)| to.iter().map(move |to| format!("{from} -> {to}")))
            .collect()
    }

    #[test]
    fn files_are_modules() {
        let module = |path| module_of(path).map(|m| module_display(&m));
        assert_eq!(module("lib.rs").as_deref(), Some("crate"));
        assert_eq!(module("main.rs").as_deref(), Some("crate"));
        assert_eq!(module("spec.rs").as_deref(), Some("spec"));
        assert_eq!(module("api/mod.rs").as_deref(), Some("api"));
        assert_eq!(module("api/error.rs").as_deref(), Some("api::error"));
        assert_eq!(module("service/pools.rs").as_deref(), Some("service::pools"));
        assert_eq!(module("notes.md"), None);
    }

    #[test]
    fn use_trees_expand_into_paths() {
        let tokens = tokenize("crate::{a, b::{self, c as d, e::*}, f as _};");
        let (paths, end) = use_tree_paths(&tokens, 0);
        assert_eq!(end, tokens.len());
        let shown: Vec<(String, Option<String>)> = paths.into_iter().map(|p| (p.segments.join("::"), p.name)).collect();
        let expected = [
            ("crate::a", Some("a")),
            ("crate::b", Some("b")),
            ("crate::b::c", Some("d")),
            ("crate::b::e", None),
            ("crate::f", None),
        ];
        assert_eq!(
            shown,
            expected.map(|(path, name)| (path.to_owned(), name.map(str::to_owned)))
        );
    }

    #[test]
    fn edges_come_from_uses_and_paths_to_the_deepest_file_module() {
        let graph = module_graph(&files(&[
            (
                "lib.rs",
                "//! r\npub mod a;\npub mod b;\nmod c;\npub use a::Thing;\npub use other_crate::Plan;\n",
            ),
            (
                "a.rs",
                "//! a\nuse crate::b::{self, inner::X};\nfn f() { crate::c::g(); super::b::h(); }\n",
            ),
            (
                "b.rs",
                "//! b\npub mod inner { pub struct X; fn f() { super::super::c::g(); } }\n// crate::a::x\nconst S: &str = \"crate::a\";\n",
            ),
            (
                "c.rs",
                "//! c\nfn g() { let _ = crate::Thing; self::g(); let _ = crate::Plan; }\n",
            ),
        ]));
        assert_eq!(edges(&graph), ["a -> b", "a -> c", "b -> c", "c -> a"]);
    }

    #[test]
    fn a_modules_own_submodules_are_part_of_it_and_other_crates_are_not_edges() {
        let graph = module_graph(&files(&[
            ("lib.rs", "//! r\nmod api;\nmod store;\n"),
            (
                "api/mod.rs",
                "//! api\nmod error;\nuse error::Problem;\nfn f() { error::g(); serde::x(); std::fs::read(); crate::store::h(); }\n",
            ),
            ("api/error.rs", "//! e\nuse super::State;\nuse serde::Serialize;\n"),
            ("store.rs", "//! s\nuse crate::api::error::Problem;\n"),
        ]));
        assert_eq!(
            edges(&graph),
            ["api -> store", "api::error -> api", "store -> api::error"]
        );
        assert_eq!(
            check_module_circles("berth-server", &graph),
            [
                "berth-server: api -> store -> api::error -> api; modules must not import each other in a circle: move what both need into a module of its own that neither of them imports from"
            ]
        );
    }

    #[test]
    fn root_items_and_private_root_uses_are_edges_of_the_root() {
        let graph = module_graph(&files(&[
            ("main.rs", "//! m\nmod config;\nuse config::Config;\npub struct Args;\n"),
            ("config.rs", "//! c\nuse crate::Args;\n"),
        ]));
        assert_eq!(edges(&graph), ["config -> crate", "crate -> config"]);
        let circles = check_module_circles("berth", &graph);
        assert_eq!(circles.len(), 1);
        assert!(
            circles[0].starts_with("berth: config -> crate -> config;"),
            "{circles:?}"
        );
    }

    #[test]
    fn the_split_of_berth_core_has_no_circle() {
        let before = module_graph(&files(&[
            ("lib.rs", "//! l\npub mod labels;\npub mod sandbox;\npub mod spec;\n"),
            ("labels.rs", "//! l\nuse crate::sandbox::label_keys::RESERVED_PREFIX;\n"),
            (
                "sandbox.rs",
                "//! s\nuse crate::spec::SandboxSpec;\npub mod label_keys {}\n",
            ),
            ("spec.rs", "//! s\nuse crate::{labels, units};\n"),
        ]));
        let circles = check_module_circles("berth-core", &before);
        assert_eq!(circles.len(), 1, "{circles:?}");
        assert!(circles[0].starts_with("berth-core: labels -> sandbox -> spec -> labels;"));

        let after = module_graph(&files(&[
            (
                "lib.rs",
                "//! l\npub mod field;\npub mod labels;\npub mod sandbox;\npub mod spec;\n",
            ),
            ("field.rs", "//! f\n"),
            ("labels.rs", "//! l\npub const RESERVED_PREFIX: &str = \"berth.\";\n"),
            (
                "sandbox.rs",
                "//! s\nuse crate::spec::SandboxSpec;\npub mod label_keys { pub use crate::labels::RESERVED_PREFIX; }\n",
            ),
            (
                "spec.rs",
                "//! s\npub use crate::field::FieldError;\nuse crate::labels;\n",
            ),
        ]));
        assert!(
            check_module_circles("berth-core", &after).is_empty(),
            "{:?}",
            edges(&after)
        );
    }
}
