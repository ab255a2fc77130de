//! How much production code each crate holds, and the rule of thumb that no crate holds more
//! than a fifth of the workspace's.
//!
//! What counts: the non-blank lines of the `.rs` files under each crate's `src/`, except test
//! code: items under a `#[cfg(..)]` that names `test` (the `#[cfg(test)] mod tests` blocks, and
//! test-support items such as `#[cfg(any(test, feature = "test-util"))]`; a module declared so
//! is test code file and all). A crate's `tests/` and `benches/` directories are not under
//! `src/`, and members living under the workspace's `tests/` and `benches/` directories are
//! test and benchmark crates, so the tidy test leaves them out. Comments and docs count: they
//! are part of what a reader of the crate has to take in.

use std::collections::BTreeSet;

use crate::modules::module_of;
use crate::{SourceFile, Token, tokenize};

/// The largest share of the workspace's production lines one crate may hold: a fifth.
pub const MAX_CRATE_SHARE: (usize, usize) = (1, 5);

/// Production lines of one crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateSize {
    pub name: String,
    pub lines: usize,
}

/// The production lines of a crate whose files under `src/` are `files` (paths relative to
/// `src/`): every file's [`production_lines`], leaving out files of modules declared as test
/// code and their descendants.
pub fn crate_production_lines(files: &[SourceFile]) -> usize {
    let mut test_modules: BTreeSet<Vec<String>> = BTreeSet::new();
    for file in files {
        let Some(module) = module_of(&file.path) else {
            continue;
        };
        for child in test_code(&tokenize(&file.text)).modules {
            let mut path = module.clone();
            path.push(child);
            test_modules.insert(path);
        }
    }
    files
        .iter()
        .filter(|file| {
            module_of(&file.path)
                .is_some_and(|module| !(1..=module.len()).any(|len| test_modules.contains(&module[..len])))
        })
        .map(|file| production_lines(&file.text))
        .sum()
}

/// Non-blank lines of `text` outside items under a `#[cfg(..)]` naming `test`.
pub fn production_lines(text: &str) -> usize {
    let spans = test_code(&tokenize(text)).spans;
    text.lines()
        .enumerate()
        .filter(|(index, line)| {
            let number = index + 1;
            !line.trim().is_empty() && !spans.iter().any(|(first, last)| (*first..=*last).contains(&number))
        })
        .count()
}

/// Crates holding more than [`MAX_CRATE_SHARE`] of the total of `sizes`, unless listed in
/// `pending`; and crates in `pending` that no longer need to be. Each message carries the
/// current figures.
pub fn check_crate_sizes(sizes: &[CrateSize], pending: &[&str]) -> Vec<String> {
    let total: usize = sizes.iter().map(|size| size.lines).sum();
    let (numerator, denominator) = MAX_CRATE_SHARE;
    let limit = total * numerator / denominator;
    let figures = figures(sizes, total);
    let mut offenders = Vec::new();
    for size in sizes {
        let too_big = size.lines > limit;
        let listed = pending.contains(&size.name.as_str());
        if too_big && !listed {
            offenders.push(format!(
                "{} holds {} of the workspace's {total} production lines ({}%), more than the {numerator}/{denominator} ({limit} lines) one crate may hold: split it along a seam that already shows (a layer, a surface, a subsystem) into crates of their own. Current figures: {figures}",
                size.name,
                size.lines,
                percent(size.lines, total)
            ));
        } else if !too_big && listed {
            offenders.push(format!(
                "{} holds {} of the workspace's {total} production lines ({}%), within the {numerator}/{denominator} ({limit} lines): remove it from the pending list. Current figures: {figures}",
                size.name,
                size.lines,
                percent(size.lines, total)
            ));
        }
    }
    for name in pending {
        if !sizes.iter().any(|size| size.name == *name) {
            offenders.push(format!(
                "{name} is on the pending list of the crate-size rule but is not a measured workspace crate: remove it from the list"
            ));
        }
    }
    offenders
}

/// `berth-server 12000 (40%), berth 5000 (17%), ...`, largest first.
pub fn figures(sizes: &[CrateSize], total: usize) -> String {
    let mut sorted: Vec<&CrateSize> = sizes.iter().collect();
    sorted.sort_by(|a, b| b.lines.cmp(&a.lines).then_with(|| a.name.cmp(&b.name)));
    sorted
        .iter()
        .map(|size| format!("{} {} ({}%)", size.name, size.lines, percent(size.lines, total)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn percent(part: usize, total: usize) -> usize {
    (part * 100).checked_div(total).unwrap_or(0)
}

/// Test code in one file: the line spans of test items, and the names of modules declared
/// `mod name;` as test code.
struct TestCode {
    spans: Vec<(usize, usize)>,
    modules: Vec<String>,
}

fn test_code(tokens: &[Token]) -> TestCode {
    let text = |i: usize| tokens.get(i).map_or("", |t| t.text.as_str());
    let mut found = TestCode {
        spans: Vec::new(),
        modules: Vec::new(),
    };
    let mut i = 0;
    while i < tokens.len() {
        if !(text(i) == "#" && text(i + 1) == "[" && text(i + 2) == "cfg") {
            i += 1;
            continue;
        }
        let first_line = tokens[i].line;
        let attribute_end = matching(tokens, i + 1);
        let names_test = tokens[i + 2..attribute_end].iter().any(|t| t.text == "test");
        if !names_test {
            i = attribute_end + 1;
            continue;
        }
        // Further attributes and the visibility, then the item itself.
        let mut j = attribute_end + 1;
        while text(j) == "#" && text(j + 1) == "[" {
            j = matching(tokens, j + 1) + 1;
        }
        if text(j) == "pub" {
            j += 1;
            if text(j) == "(" {
                j = matching(tokens, j) + 1;
            }
        }
        if text(j) == "mod" && text(j + 2) == ";" {
            found.modules.push(text(j + 1).to_owned());
        }
        let ends_at_semicolon = matches!(text(j), "use" | "const" | "static" | "type");
        let mut k = j;
        while k < tokens.len() && text(k) != ";" && (ends_at_semicolon || text(k) != "{") {
            k += 1;
        }
        let end = if text(k) == "{" { matching(tokens, k) } else { k };
        let last_line = tokens.get(end).map_or(usize::MAX, |t| t.line);
        found.spans.push((first_line, last_line));
        i = end + 1;
    }
    found
}

/// The index of the bracket closing the one opened at `open` (`[`, `(` or `{`), or the last
/// token when it is never closed.
fn matching(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate().skip(open) {
        match token.text.as_str() {
            "[" | "(" | "{" => depth += 1,
            "]" | ")" | "}" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return index;
                }
            }
            _ => {}
        }
    }
    tokens.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_items_and_blank_lines_do_not_count() {
        let text = "//! Doc.\n\nfn a() {}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn t() { let _ = \"}\"; }\n}\n";
        assert_eq!(production_lines(text), 2);
        let support = "//! s\n#[cfg(any(test, feature = \"test-util\"))]\n#[derive(Debug)]\npub(crate) struct Fake {\n    x: u8,\n}\n#[cfg(feature = \"openapi\")]\nfn schema() {}\n#[cfg(test)]\nuse std::fmt;\nfn b() {}\n";
        assert_eq!(production_lines(support), 4, "the openapi item and b count");
    }

    #[test]
    fn modules_declared_as_test_code_are_left_out_whole() {
        let files = [
            SourceFile::new(
                "lib.rs",
                "//! l\n#[cfg(any(test, feature = \"contract\"))]\npub mod contract;\npub mod sql;\n",
            ),
            SourceFile::new("contract/mod.rs", "//! c\npub mod fixtures;\nfn x() {}\n"),
            SourceFile::new("contract/fixtures.rs", "//! f\nfn y() {}\n"),
            SourceFile::new("sql.rs", "//! s\nfn z() {}\n"),
        ];
        assert_eq!(crate_production_lines(&files), 2 + 2);
    }

    fn size(name: &str, lines: usize) -> CrateSize {
        CrateSize {
            name: name.to_owned(),
            lines,
        }
    }

    #[test]
    fn a_crate_over_a_fifth_fails_with_the_figures_unless_pending() {
        let sizes = [size("big", 50), size("a", 20), size("b", 20), size("c", 10)];
        let offenders = check_crate_sizes(&sizes, &[]);
        assert_eq!(offenders.len(), 1, "{offenders:#?}");
        assert!(
            offenders[0].starts_with(
                "big holds 50 of the workspace's 100 production lines (50%), more than the 1/5 (20 lines)"
            ),
            "{}",
            offenders[0]
        );
        assert!(
            offenders[0].ends_with("Current figures: big 50 (50%), a 20 (20%), b 20 (20%), c 10 (10%)"),
            "{}",
            offenders[0]
        );
        assert!(check_crate_sizes(&sizes, &["big"]).is_empty());
    }

    #[test]
    fn a_pending_crate_that_fits_or_does_not_exist_must_leave_the_list() {
        let sizes = [
            size("a", 20),
            size("b", 20),
            size("c", 20),
            size("d", 20),
            size("e", 20),
        ];
        let offenders = check_crate_sizes(&sizes, &["a", "gone"]);
        assert_eq!(offenders.len(), 2, "{offenders:#?}");
        assert!(offenders[0].contains("a holds 20") && offenders[0].contains("remove it from the pending list"));
        assert!(offenders[1].starts_with("gone is on the pending list"));
    }
}
