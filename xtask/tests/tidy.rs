//! The tidy checks on the real tree, run by `cargo test`: module docs, who may name bollard
//! and sqlx, a pure berth-core, the dependency directions of ARCHITECTURE.md without circles,
//! no circle among a crate's modules, surfaces that reach neither the engine nor the store, and no
//! crate over a fifth of the workspace.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::path::Path;

use xtask::modules::{check_module_circles, module_graph};
use xtask::size::{CrateSize, check_crate_sizes, crate_production_lines, figures};
use xtask::{
    Manifest, SOURCE_DIRS, SourceFile, check_core_is_pure, check_crate_circles, check_dependency_directions,
    check_exclusive_dependency, check_module_docs, engine_or_store_handles, member_manifests, rust_files,
    workspace_root,
};

/// The allowed internal dependency edges: each workspace crate and the workspace crates it
/// may depend on (in any table; `[dev-dependencies]` may additionally enable the test-only
/// features `test-util` and `contract`).
///
/// This table IS the architecture's dependency graph. Changing it is an architecture change:
/// update ARCHITECTURE.md in the same commit, and say so in the commit message.
const ALLOWED_EDGES: &[(&str, &[&str])] = &[
    ("berth-core", &[]),
    ("berth-runtime", &["berth-core"]),
    ("berth-store", &["berth-core"]),
    ("berth-docker", &["berth-core", "berth-runtime"]),
    ("berth-api", &["berth-core"]),
    ("berth-compose", &["berth-core"]),
    // The control plane: the domain rules over the engine and store seams. No HTTP.
    (
        "berth-control",
        &["berth-core", "berth-runtime", "berth-store", "berth-api"],
    ),
    // The data path into a sandbox, reached through the control plane's rules.
    (
        "berth-work",
        &["berth-core", "berth-runtime", "berth-api", "berth-control"],
    ),
    // Forwarding knows sandboxes only through its own lookup trait, never the control plane.
    ("berth-gateway", &["berth-core"]),
    (
        "berth-http",
        &[
            "berth-core",
            "berth-runtime",
            "berth-store",
            "berth-api",
            "berth-control",
            "berth-work",
            "berth-gateway",
        ],
    ),
    (
        "berth-aenv",
        &[
            "berth-core",
            "berth-store",
            "berth-api",
            "berth-compose",
            "berth-control",
            "berth-gateway",
            "berth-http",
        ],
    ),
    // Wiring only.
    (
        "berth-server",
        &[
            "berth-core",
            "berth-runtime",
            "berth-store",
            "berth-api",
            "berth-control",
            "berth-work",
            "berth-gateway",
            "berth-http",
            "berth-aenv",
        ],
    ),
    // The wire types, and the domain's error-chain walker (no IO there, and berth-api already
    // brings berth-core in).
    ("berth-client", &["berth-core", "berth-api"]),
    (
        "berth",
        &[
            "berth-core",
            "berth-runtime",
            "berth-docker",
            "berth-store",
            "berth-api",
            "berth-server",
            "berth-client",
        ],
    ),
    ("berth-e2e", &["berth-api", "berth-client"]),
    // The benchmark talks HTTP to berth and to the raw engine: it knows no berth crate.
    ("berth-bench", &[]),
    ("xtask", &[]),
];

/// Crates whose modules still import each other in a circle, exempt from
/// [`no_module_imports_another_in_a_circle`] until the circles are broken. Only ever shrinks:
/// the test fails when a listed crate has no circle left, so take it off then.
const MODULE_CIRCLES_PENDING: &[&str] = &[];

/// Crates over the size rule of thumb (a fifth of the workspace's production lines), exempt
/// from [`no_crate_holds_more_than_a_fifth_of_the_workspace`] until they are split. Only ever
/// shrinks, like [`MODULE_CIRCLES_PENDING`].
const CRATE_SIZE_PENDING: &[&str] = &[];

/// Workspace directories whose members are test or benchmark crates, left out of the size rule.
const NOT_PRODUCTION: [&str; 2] = ["tests/", "benches/"];

fn root() -> std::path::PathBuf {
    workspace_root()
}

fn manifests() -> Vec<Manifest> {
    let manifests = member_manifests(&root()).expect("reading the workspace manifests");
    for expected in ["berth-core", "berth-docker", "berth-store", "xtask"] {
        assert!(
            manifests.iter().any(|m| m.name == expected),
            "tidy found no {expected} among the workspace members; is the workspace root right? ({})",
            root().display()
        );
    }
    manifests
}

fn assert_clean(what: &str, offenders: Vec<String>) {
    assert!(
        offenders.is_empty(),
        "{what}: {} offender(s):\n  {}\n",
        offenders.len(),
        offenders.join("\n  ")
    );
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let files = rust_files(&root(), &SOURCE_DIRS).expect("listing the Rust files");
    for expected in ["crates/berth-core/src/lib.rs", "xtask/tests/tidy.rs"] {
        assert!(files.iter().any(|f| f.path == expected), "tidy did not find {expected}");
    }
    assert_clean("every .rs file must start with a `//!` line", check_module_docs(&files));
}

#[test]
fn only_berth_docker_depends_on_bollard() {
    assert_clean(
        "bollard is berth-docker's alone",
        check_exclusive_dependency(
            &manifests(),
            "bollard",
            "berth-docker",
            "remove it and go through berth-runtime's Runtime trait, or move the engine code into berth-docker",
        ),
    );
}

#[test]
fn only_berth_store_depends_on_sqlx() {
    assert_clean(
        "sqlx is berth-store's alone",
        check_exclusive_dependency(
            &manifests(),
            "sqlx",
            "berth-store",
            "remove it and go through berth-store's Store trait, or move the SQL into berth-store",
        ),
    );
}

#[test]
fn berth_core_does_no_io() {
    let manifests = manifests();
    let core = manifests
        .iter()
        .find(|m| m.name == "berth-core")
        .expect("berth-core is a member");
    let core_dir = Path::new(&core.path)
        .parent()
        .expect("a manifest path has a parent")
        .to_string_lossy()
        .into_owned();
    let sources: Vec<SourceFile> =
        rust_files(&root(), &[&format!("{core_dir}/src")]).expect("listing berth-core's sources");
    assert!(
        sources.iter().any(|f| f.path.ends_with("/src/lib.rs")),
        "tidy did not find berth-core's lib.rs under {core_dir}/src"
    );
    assert_clean(
        "berth-core is pure: no IO, no async runtime",
        check_core_is_pure(core, &sources),
    );
}

#[test]
fn internal_dependencies_follow_the_architecture() {
    assert_clean(
        "workspace dependency directions",
        check_dependency_directions(&manifests(), ALLOWED_EDGES, "xtask/tests/tidy.rs (ALLOWED_EDGES)"),
    );
}

#[test]
fn crates_depend_on_each_other_without_a_circle() {
    assert_clean(
        "no circle among the workspace's crates",
        check_crate_circles(&manifests(), ALLOWED_EDGES, "xtask/tests/tidy.rs (ALLOWED_EDGES)"),
    );
}

/// The files under a member's `src/`, with paths relative to that `src/`.
fn crate_sources(manifest: &Manifest) -> Vec<SourceFile> {
    let crate_dir = Path::new(&manifest.path)
        .parent()
        .expect("a manifest path has a parent")
        .to_string_lossy()
        .into_owned();
    let src = format!("{crate_dir}/src");
    let files = rust_files(&root(), &[&src]).expect("listing a crate's sources");
    assert!(
        !files.is_empty(),
        "tidy found no sources of {} under {src}",
        manifest.name
    );
    files
        .into_iter()
        .map(|file| {
            let relative = file
                .path
                .strip_prefix(&format!("{src}/"))
                .expect("listed under src/")
                .to_owned();
            SourceFile::new(relative, file.text)
        })
        .collect()
}

/// The HTTP surfaces and forwarding: they call the control plane's and the data path's
/// operations, never the engine or the store behind them.
const SURFACES: [&str; 3] = ["berth-http", "berth-aenv", "berth-gateway"];

#[test]
fn surfaces_reach_neither_the_engine_nor_the_store() {
    let manifests = manifests();
    let mut offenders = Vec::new();
    for name in SURFACES {
        let manifest = manifests
            .iter()
            .find(|manifest| manifest.name == name)
            .unwrap_or_else(|| panic!("{name} is no workspace crate: update SURFACES in xtask/tests/tidy.rs"));
        for file in crate_sources(manifest) {
            for (line, what) in engine_or_store_handles(&file.text) {
                offenders.push(format!(
                    "{name} src/{}:{line}: takes hold of `{what}`; a surface calls an operation of berth-control or berth-work instead (add one there)",
                    file.path
                ));
            }
        }
    }
    assert_clean("surfaces reach neither the engine nor the store", offenders);
}

#[test]
fn no_module_imports_another_in_a_circle() {
    let manifests = manifests();
    let mut offenders = Vec::new();
    for manifest in &manifests {
        let circles = check_module_circles(&manifest.name, &module_graph(&crate_sources(manifest)));
        let pending = MODULE_CIRCLES_PENDING.contains(&manifest.name.as_str());
        if !pending {
            offenders.extend(circles);
        } else if circles.is_empty() {
            offenders.push(format!(
                "{} has no module circle left: remove it from MODULE_CIRCLES_PENDING in xtask/tests/tidy.rs",
                manifest.name
            ));
        }
    }
    for name in MODULE_CIRCLES_PENDING {
        if !manifests.iter().any(|m| m.name == *name) {
            offenders.push(format!(
                "{name} is in MODULE_CIRCLES_PENDING but is no workspace crate: remove it"
            ));
        }
    }
    assert_clean("no circle among a crate's modules", offenders);
}

#[test]
fn no_crate_holds_more_than_a_fifth_of_the_workspace() {
    let sizes: Vec<CrateSize> = manifests()
        .iter()
        .filter(|manifest| !NOT_PRODUCTION.iter().any(|dir| manifest.path.starts_with(dir)))
        .map(|manifest| CrateSize {
            name: manifest.name.clone(),
            lines: crate_production_lines(&crate_sources(manifest)),
        })
        .collect();
    assert!(
        sizes.iter().any(|size| size.name == "berth-core"),
        "tidy measured no berth-core"
    );
    let total = sizes.iter().map(|size| size.lines).sum();
    println!("production lines: {total}: {}", figures(&sizes, total));
    assert_clean(
        "no crate holds more than a fifth of the workspace's production lines (xtask/src/size.rs says what counts)",
        check_crate_sizes(&sizes, CRATE_SIZE_PENDING),
    );
}
