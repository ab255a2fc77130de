//! `berth template build`: builds a template's image from a local directory, as `docker build`
//! does. The directory goes to the server as a tar stream made on the fly (nothing is skipped;
//! a symbolic link leading out of it is refused), and the build's output comes back line by line:
//! on a terminal as one line showing the current step, otherwise as plain lines, on stderr. On
//! success the image is printed on stdout; a failed build exits 1 with its message on one line.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use berth_api::BuildLine;
use berth_client::BerthClient;
use berth_client::templates::BuildStream;
use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use indicatif::ProgressBar;
use tokio::sync::mpsc;

use crate::commands::{cp, one_line, parse_key_value};
use crate::output::emit_line;
use crate::progress;

/// Output lines of the current step kept on a terminal, shown when the build fails.
const RECENT_LINES: usize = 20;

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    berth template build python-3 ./images/python         build from ./images/python/Dockerfile\n  \
    berth template build py:dev -f Dockerfile.dev .        another Dockerfile in the context\n  \
    berth template build py --build-arg VERSION=3.12 .     set an ARG of the Dockerfile")]
pub struct BuildArgs {
    /// Template: NAME (tag latest) or NAME:TAG
    #[arg(value_name = "NAME[:TAG]")]
    pub reference: String,
    /// The Dockerfile, inside DIR [default: DIR/Dockerfile]
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Set an ARG of the Dockerfile (repeatable)
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub build_args: Vec<(String, String)>,
    /// The build context: this directory, sent whole
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub async fn run(client: &BerthClient, args: &BuildArgs) -> anyhow::Result<()> {
    let root =
        std::fs::canonicalize(&args.dir).map_err(|error| anyhow!("cannot read {}: {error}", args.dir.display()))?;
    if !root.is_dir() {
        bail!(
            "{} is not a directory: the build context is a directory",
            args.dir.display()
        );
    }
    let dockerfile = match &args.file {
        Some(file) => Some(dockerfile_in_context(&root, file)?),
        None => None,
    };
    let checked_root = root.clone();
    tokio::task::spawn_blocking(move || refuse_escaping_links(&checked_root))
        .await
        .context("the context check stopped")??;

    let mut display = BuildDisplay::new(&args.reference);
    let (chunks, receiver) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let archived_root = root.clone();
    let archiver = tokio::task::spawn_blocking(move || cp::write_tar(&archived_root, "", chunks));
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let started = client
        .build_template(
            &args.reference,
            dockerfile.as_deref(),
            &args.build_args,
            reqwest::Body::wrap_stream(body),
        )
        .await;
    // The server answers once it has the whole context (or has refused it): the archive is done.
    let archived = archiver.await.context("the archive builder stopped")?;
    let lines = match (started, archived) {
        (Ok(lines), _) => lines,
        // A local file that could not be read explains a failed request better than its error;
        // a broken pipe only means the server stopped reading.
        (Err(_), Err(error)) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            display.fail();
            bail!("cannot archive {}: {error}", args.dir.display());
        }
        (Err(error), _) => {
            display.fail();
            // 422: the engine refused the context itself (no Dockerfile there, say).
            if error.status() == Some(422) {
                bail!("build failed: {error}");
            }
            return Err(error.into());
        }
    };
    follow(lines, &mut display).await
}

/// Shows the build's lines until its outcome: prints the image on success.
async fn follow(mut lines: BuildStream, display: &mut BuildDisplay) -> anyhow::Result<()> {
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                display.fail();
                return Err(anyhow!("the build's output stopped: {error}"));
            }
        };
        match line {
            BuildLine::Log(text) => display.log(&text),
            BuildLine::Done(done) => {
                display.finish();
                emit_line(&done.image)?;
                return Ok(());
            }
            BuildLine::Error(message) => {
                display.fail();
                bail!("build failed: {}", one_line(&message));
            }
        }
    }
    display.fail();
    bail!("build failed: the server ended the build's output without a result")
}

/// The build's lines on stderr: plain when no bar is drawn; on a terminal, one line with the
/// current step, and the output of that step kept to be shown if the build fails.
struct BuildDisplay {
    bar: Option<ProgressBar>,
    /// The step being run, and the last lines of its output.
    step: Option<String>,
    recent: VecDeque<String>,
}

impl BuildDisplay {
    fn new(reference: &str) -> Self {
        BuildDisplay {
            bar: progress::drawn().then(|| progress::steps(&format!("sending the build context of {reference}"))),
            step: None,
            recent: VecDeque::new(),
        }
    }

    fn log(&mut self, line: &str) {
        let Some(bar) = &self.bar else {
            // Ignored: stderr gone is no reason to stop the build.
            let _ = writeln!(std::io::stderr(), "{line}");
            return;
        };
        if is_step(line) {
            bar.set_message(line.to_owned());
            self.step = Some(line.to_owned());
            self.recent.clear();
        } else {
            if self.recent.len() == RECENT_LINES {
                self.recent.pop_front();
            }
            self.recent.push_back(line.to_owned());
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Replaces the bar with the failed step and its last lines of output, as plain lines.
    fn fail(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            let mut stderr = std::io::stderr().lock();
            for line in self.step.take().into_iter().chain(self.recent.drain(..)) {
                let _ = writeln!(stderr, "{line}");
            }
        }
    }
}

/// The classic builder's step header, `Step 2/5 : RUN make`.
fn is_step(line: &str) -> bool {
    line.strip_prefix("Step ")
        .and_then(|rest| rest.split_once(" : "))
        .is_some_and(|(counter, _)| counter.split_once('/').is_some())
}

/// The path the server reads the Dockerfile at: `file` (relative to the working directory, as
/// with `docker build -f`, or else to `root`) must lie inside the context `root`.
fn dockerfile_in_context(root: &Path, file: &Path) -> anyhow::Result<String> {
    let found = std::fs::canonicalize(file)
        .or_else(|_| std::fs::canonicalize(root.join(file)))
        .map_err(|error| anyhow!("cannot read the Dockerfile {}: {error}", file.display()))?;
    let inside = found.strip_prefix(root).map_err(|_| {
        anyhow!(
            "the Dockerfile {} is outside the build context {}: move it into it",
            file.display(),
            root.display()
        )
    })?;
    let parts: Vec<String> = inside
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.is_empty() {
        bail!("{} is the build context, not a Dockerfile", file.display());
    }
    Ok(parts.join("/"))
}

/// Refuses a context with a symbolic link leading out of it (absolute, or climbing above the
/// root with `..`): the engine would resolve it inside the context, not where it points here.
fn refuse_escaping_links(root: &Path) -> anyhow::Result<()> {
    let mut pending = vec![PathBuf::new()];
    while let Some(relative_dir) = pending.pop() {
        let dir = root.join(&relative_dir);
        let entries = std::fs::read_dir(&dir).map_err(|error| anyhow!("cannot read {}: {error}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|error| anyhow!("cannot read {}: {error}", dir.display()))?;
            let relative = relative_dir.join(entry.file_name());
            let kind = entry
                .file_type()
                .map_err(|error| anyhow!("cannot read {}: {error}", entry.path().display()))?;
            if kind.is_dir() {
                pending.push(relative);
            } else if kind.is_symlink() {
                let target = std::fs::read_link(entry.path())
                    .map_err(|error| anyhow!("cannot read the link {}: {error}", entry.path().display()))?;
                if !stays_inside(&relative_dir, &target) {
                    bail!(
                        "the symbolic link {} points outside the build context (to {}); copy what it points to instead",
                        root.join(&relative).display(),
                        target.display()
                    );
                }
            }
        }
    }
    Ok(())
}

/// Whether a link in `link_dir` (relative to the context root) to `target` stays inside it.
fn stays_inside(link_dir: &Path, target: &Path) -> bool {
    let mut depth = link_dir.components().count();
    for part in target.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_may_move_around_inside_the_context_only() {
        assert!(stays_inside(Path::new(""), Path::new("a/b")));
        assert!(stays_inside(Path::new("a"), Path::new("../b")));
        assert!(stays_inside(Path::new("a/b"), Path::new("../../c/./d")));
        assert!(stays_inside(Path::new("a"), Path::new("b/../../c")));
        assert!(!stays_inside(Path::new(""), Path::new("../x")));
        assert!(!stays_inside(Path::new("a"), Path::new("../../x")));
        assert!(!stays_inside(Path::new("a"), Path::new("/etc/passwd")));
    }

    #[test]
    fn the_context_check_finds_escaping_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink("../Dockerfile", dir.path().join("sub/inside")).unwrap();
        assert!(refuse_escaping_links(dir.path()).is_ok());
        std::os::unix::fs::symlink("../../etc", dir.path().join("sub/outside")).unwrap();
        let error = refuse_escaping_links(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("sub/outside") && error.contains("outside the build context"),
            "{error}"
        );
    }

    #[test]
    fn the_dockerfile_must_be_inside_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("build")).unwrap();
        std::fs::write(root.join("build/Dockerfile.dev"), "FROM scratch\n").unwrap();
        assert_eq!(
            dockerfile_in_context(&root, &root.join("build/Dockerfile.dev")).unwrap(),
            "build/Dockerfile.dev"
        );
        // Not found from the working directory: read relative to the context.
        assert_eq!(
            dockerfile_in_context(&root, Path::new("build/Dockerfile.dev")).unwrap(),
            "build/Dockerfile.dev"
        );
        let outside = tempfile::NamedTempFile::new().unwrap();
        let error = dockerfile_in_context(&root.join("build"), outside.path()).unwrap_err();
        assert!(error.to_string().contains("outside the build context"), "{error}");
        assert!(dockerfile_in_context(&root, Path::new("nope")).is_err());
    }

    #[test]
    fn the_command_line_is_like_docker_builds() {
        use clap::Parser;

        #[derive(Debug, Parser)]
        struct TestCli {
            #[command(flatten)]
            build: BuildArgs,
        }
        let parse = |args: &[&str]| TestCli::try_parse_from(std::iter::once("build").chain(args.iter().copied()));
        let cli = parse(&[
            "py:3",
            "-f",
            "Dockerfile.dev",
            "--build-arg",
            "A=1",
            "--build-arg",
            "B=",
            "ctx",
        ])
        .unwrap();
        assert_eq!(cli.build.reference, "py:3");
        assert_eq!(cli.build.file.as_deref(), Some(Path::new("Dockerfile.dev")));
        assert_eq!(
            cli.build.build_args,
            [("A".to_owned(), "1".to_owned()), ("B".to_owned(), String::new())]
        );
        assert_eq!(cli.build.dir, Path::new("ctx"));
        for bad in [&["py"][..], &[], &["py", "--build-arg", "A", "."]] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn step_headers_are_recognised() {
        assert!(is_step("Step 2/5 : RUN make"));
        assert!(!is_step(" ---> Running in 1f"));
        assert!(!is_step("Step by step : nothing"));
    }
}
