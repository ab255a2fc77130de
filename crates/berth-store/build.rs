//! Build script: re-runs the build when a migration is added or changed, so `sqlx::migrate!`
//! embeds the current set of files.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
