//! `berth cp`: copies files and directories between this machine and a sandbox, streamed both
//! ways (nothing is held in memory whole), with a progress bar on stderr.
//!
//! Exactly one side is `ID:/absolute/path`. The rules are `docker cp`'s:
//! - a file goes to the destination path, or into it when it is an existing directory (or ends
//!   with `/`);
//! - a directory `SRC` goes to `DST/<name of SRC>` when `DST` is an existing directory, and
//!   becomes `DST` (with `SRC`'s contents) when `DST` does not exist; `SRC/.` copies only the
//!   contents into `DST`;
//! - `-` as the local destination writes the file (or a directory's tar stream) to stdout.
//!
//! Directories travel as tar. Uploads are built on the fly by the `tar` crate on a blocking
//! thread; downloads are unpacked into a fresh staging directory next to the destination
//! (entries that are absolute or climb out with `..` are refused, and the tar crate refuses to
//! write through symlinks that lead outside it), then moved into place.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use berth_client::{BerthClient, ByteStream, DownloadKind};
use bytes::Bytes;
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::UsageError;
use crate::progress;

/// Size of the pieces files and tar streams are sent in.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    berth cp ./model.bin ID:/data/          upload a file into a directory\n  \
    berth cp ./src ID:/work                 upload a directory (to /work/src if /work exists)\n  \
    berth cp ID:/work/out ./results         download a directory\n  \
    berth cp ID:/etc/os-release -           print a file")]
pub struct CpArgs {
    /// What to copy: a local path or ID:/path
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Where to: a local path (or - for stdout) or ID:/path
    #[arg(value_name = "DST")]
    pub dst: String,
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(String),
    Sandbox { id: String, path: String },
}

/// `ID:/path` is a sandbox path; anything else is local. As with `docker cp`, an absolute path,
/// or one starting with `.`, is always local (write `./a:b` for a local file named `a:b`).
pub fn parse_location(arg: &str) -> Location {
    if arg.starts_with('/') || arg.starts_with('.') {
        return Location::Local(arg.to_owned());
    }
    match arg.split_once(':') {
        Some((id, path)) if !id.is_empty() && !id.contains('/') => Location::Sandbox {
            id: id.to_owned(),
            path: path.to_owned(),
        },
        _ => Location::Local(arg.to_owned()),
    }
}

/// What to do, once the two sides are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Upload { local: String, id: String, path: String },
    Download { id: String, path: String, local: String },
}

pub fn plan(args: &CpArgs) -> Result<Plan, UsageError> {
    let check_path = |id: &str, path: &str| {
        if path.starts_with('/') {
            Ok(())
        } else {
            Err(UsageError(format!(
                "the sandbox path in `{id}:{path}` must be absolute, e.g. {id}:/tmp"
            )))
        }
    };
    match (parse_location(&args.src), parse_location(&args.dst)) {
        (Location::Local(local), Location::Sandbox { id, path }) => {
            check_path(&id, &path)?;
            if local == "-" {
                return Err(UsageError(
                    "copying from stdin (`-`) is not supported; copy a file or a directory".to_owned(),
                ));
            }
            Ok(Plan::Upload { local, id, path })
        }
        (Location::Sandbox { id, path }, Location::Local(local)) => {
            check_path(&id, &path)?;
            Ok(Plan::Download { id, path, local })
        }
        (Location::Local(_), Location::Local(_)) => Err(UsageError(
            "one of SRC and DST must be a sandbox path, ID:/path (to copy local files, use cp)".to_owned(),
        )),
        (Location::Sandbox { .. }, Location::Sandbox { .. }) => Err(UsageError(
            "copying between sandboxes is not supported; one of SRC and DST must be local".to_owned(),
        )),
    }
}

pub async fn run(client: &BerthClient, args: &CpArgs) -> anyhow::Result<()> {
    match plan(args)? {
        Plan::Upload { local, id, path } => upload(client, &local, &id, &path).await,
        Plan::Download { id, path, local } => download(client, &id, &path, &local).await,
    }
}

/// The last component of a sandbox path (`/a/b/` → `b`); `None` for `/`.
fn remote_name(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty())
}

/// The parent of a sandbox path (`/a/b` → `/a`, `/a` → `/`).
fn remote_parent(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", _)) | None => "/".to_owned(),
        Some((parent, _)) => parent.to_owned(),
    }
}

fn remote_join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// What is at a sandbox path: `Some(true)` a directory, `Some(false)` something else, `None`
/// nothing.
async fn remote_kind(client: &BerthClient, id: &str, path: &str) -> anyhow::Result<Option<bool>> {
    match client.stat(id, path).await {
        Ok(stat) => Ok(Some(stat.kind == "dir")),
        Err(error) if error.is_not_found() => {
            // The path, or the sandbox itself? An unknown sandbox is an error.
            client.get(id).await?;
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// The name a local source is known by: its last component, resolving `.` and `..`.
fn local_name(path: &Path) -> anyhow::Result<String> {
    let resolved = std::fs::canonicalize(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    resolved
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .ok_or_else(|| {
            anyhow!(
                "cannot copy {} as a whole; name a directory or use DIR/.",
                path.display()
            )
        })
}

/// `SRC/.`: the contents of the directory, not the directory.
fn means_contents(path: &str) -> bool {
    path.ends_with("/.") || path == "."
}

async fn upload(client: &BerthClient, local: &str, id: &str, path: &str) -> anyhow::Result<()> {
    let source = PathBuf::from(local);
    let metadata = tokio::fs::metadata(&source)
        .await
        .map_err(|error| anyhow!("cannot read {local}: {error}"))?;
    if metadata.is_dir() {
        upload_dir(client, local, &source, id, path).await
    } else if metadata.is_file() {
        upload_file(client, &source, metadata, id, path).await
    } else {
        bail!("{local} is neither a file nor a directory")
    }
}

async fn upload_file(
    client: &BerthClient,
    source: &Path,
    metadata: std::fs::Metadata,
    id: &str,
    path: &str,
) -> anyhow::Result<()> {
    let name = local_name(source)?;
    let target = match remote_kind(client, id, path).await? {
        Some(true) => remote_join(path, &name),
        None if path.ends_with('/') => remote_join(path, &name),
        _ => path.to_owned(),
    };
    let length = metadata.len();
    #[cfg(unix)]
    let mode = Some(std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o7777);
    #[cfg(not(unix))]
    let mode = None;

    let file = tokio::fs::File::open(source)
        .await
        .map_err(|error| anyhow!("cannot open {}: {error}", source.display()))?;
    let bar = progress::transfer(Some(length), &format!("{} → {id}:{target}", source.display()));
    let counted = bar.clone();
    let body = tokio_util::io::ReaderStream::with_capacity(file, CHUNK)
        .inspect_ok(move |chunk| counted.inc(chunk.len() as u64));
    let sent = client
        .upload_file(id, &target, mode, Some(length), reqwest::Body::wrap_stream(body))
        .await;
    finish(&bar, sent.is_ok());
    sent.map_err(|error| anyhow!("cannot copy {} to {id}:{target}: {error}", source.display()))
}

async fn upload_dir(client: &BerthClient, local: &str, source: &Path, id: &str, path: &str) -> anyhow::Result<()> {
    // Where the archive is extracted, and the name its entries go under there.
    let (extract_dir, prefix) = match (remote_kind(client, id, path).await?, means_contents(local)) {
        (Some(false), _) => bail!("cannot copy the directory {local} onto the file {id}:{path}"),
        (Some(true), true) => (path.to_owned(), String::new()),
        (Some(true), false) => (path.to_owned(), local_name(source)?),
        (None, _) => match remote_name(path) {
            Some(name) => (remote_parent(path), name.to_owned()),
            None => bail!("cannot copy to {id}:{path}"),
        },
    };
    let shown = if prefix.is_empty() {
        extract_dir.clone()
    } else {
        remote_join(&extract_dir, &prefix)
    };
    let bar = progress::transfer(None, &format!("{local} → {id}:{shown}"));

    let (chunks, receiver) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let root = source.to_path_buf();
    let builder = tokio::task::spawn_blocking(move || write_tar(&root, &prefix, chunks));
    let counted = bar.clone();
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
    .inspect_ok(move |chunk| counted.inc(chunk.len() as u64));
    let sent = client
        .upload_tar(id, &extract_dir, reqwest::Body::wrap_stream(body))
        .await;
    let built = builder.await.context("the archive builder stopped")?;
    finish(&bar, sent.is_ok() && built.is_ok());
    // A failure to read local files explains a failed upload better than the upload's error.
    built.map_err(|error| anyhow!("cannot archive {local}: {error}"))?;
    sent.map_err(|error| anyhow!("cannot copy {local} to {id}:{shown}: {error}"))
}

/// Writes a tar of the directory `root` (entries under `prefix`, or bare when empty) into
/// `chunks`. On failure the stream gets an error, so the upload fails instead of sending a
/// truncated archive.
pub(crate) fn write_tar(
    root: &Path,
    prefix: &str,
    chunks: mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    let writer = ChannelWriter {
        chunks: chunks.clone(),
        buffer: Vec::with_capacity(CHUNK),
    };
    let mut builder = tar::Builder::new(writer);
    builder.follow_symlinks(false);
    let result = builder
        .append_dir_all(prefix, root)
        .and_then(|()| builder.into_inner())
        .and_then(|mut writer| writer.flush());
    if let Err(error) = &result {
        let _ = chunks.blocking_send(Err(std::io::Error::new(error.kind(), error.to_string())));
    }
    result
}

/// A `Write` that hands full chunks to an async body stream.
struct ChannelWriter {
    chunks: mpsc::Sender<std::io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK)));
        self.chunks
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

async fn download(client: &BerthClient, id: &str, path: &str, local: &str) -> anyhow::Result<()> {
    let stat = client.stat(id, path).await?;
    let download = client.download(id, path).await?;
    let source = format!("{id}:{path}");
    if local == "-" {
        let bar = progress::transfer(download.content_length, &format!("{source} → stdout"));
        let copied = copy_to_stdout(download.body, &bar).await;
        finish(&bar, copied.is_ok());
        return copied;
    }
    let local_path = PathBuf::from(local);
    let local_is_dir = tokio::fs::metadata(&local_path).await.is_ok_and(|m| m.is_dir());
    match download.kind {
        DownloadKind::File => {
            let name = remote_name(path).unwrap_or("file");
            let target = if local_is_dir || local.ends_with('/') {
                local_path.join(name)
            } else {
                local_path
            };
            let total = download.content_length.or(Some(stat.size));
            let bar = progress::transfer(total, &format!("{source} → {}", target.display()));
            let written = write_file(download.body, &target, &bar).await;
            finish(&bar, written.is_ok());
            written?;
            #[cfg(unix)]
            if let Ok(mode) = u32::from_str_radix(stat.mode.trim_start_matches("0o"), 8) {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o777));
            }
            Ok(())
        }
        DownloadKind::Tar => {
            let name = remote_name(path).map(str::to_owned);
            let target = if local_is_dir {
                local_path.join(name.as_deref().unwrap_or("root"))
            } else {
                local_path
            };
            if tokio::fs::symlink_metadata(&target).await.is_ok_and(|m| !m.is_dir()) {
                bail!("cannot copy the directory {source} onto the file {}", target.display());
            }
            let bar = progress::transfer(None, &format!("{source} → {}", target.display()));
            let counted = bar.clone();
            let body = download
                .body
                .inspect_ok(move |chunk| counted.inc(chunk.len() as u64))
                .boxed();
            let unpacked = unpack_download(body, name, target.clone()).await;
            finish(&bar, unpacked.is_ok());
            unpacked.map_err(|error| anyhow!("cannot copy {source} to {}: {error:#}", target.display()))
        }
    }
}

fn finish(bar: &ProgressBar, ok: bool) {
    if ok {
        bar.finish();
    } else {
        bar.abandon();
    }
}

async fn copy_to_stdout(mut body: ByteStream, bar: &ProgressBar) -> anyhow::Result<()> {
    let mut stdout = tokio::io::stdout();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        match stdout.write_all(&chunk).await {
            Ok(()) => bar.inc(chunk.len() as u64),
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(error) => bail!("cannot write to stdout: {error}"),
        }
    }
    stdout.flush().await.or_else(|error| {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(anyhow!("cannot write to stdout: {error}"))
        }
    })
}

/// Streams `body` into the file `target`; a partial file is removed on failure.
async fn write_file(mut body: ByteStream, target: &Path, bar: &ProgressBar) -> anyhow::Result<()> {
    let mut file = tokio::fs::File::create(target)
        .await
        .map_err(|error| anyhow!("cannot create {}: {error}", target.display()))?;
    let written: anyhow::Result<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            file.write_all(&chunk)
                .await
                .map_err(|error| anyhow!("cannot write {}: {error}", target.display()))?;
            bar.inc(chunk.len() as u64);
        }
        file.flush()
            .await
            .map_err(|error| anyhow!("cannot write {}: {error}", target.display()))
    }
    .await;
    if written.is_err() {
        drop(file);
        let _ = tokio::fs::remove_file(target).await;
    }
    written
}

/// Unpacks a directory's tar stream so that `target` ends up holding the directory's contents.
/// `name` is the directory's name in the sandbox: the engine's archives put every entry under
/// it, and then that level is dropped.
async fn unpack_download(body: ByteStream, name: Option<String>, target: PathBuf) -> anyhow::Result<()> {
    let parent = match target.parent() {
        Some(parent) if parent.as_os_str().is_empty() => PathBuf::from("."),
        Some(parent) => parent.to_path_buf(),
        None => bail!("cannot copy into {}", target.display()),
    };
    let reader = tokio_util::io::StreamReader::new(body.map_err(std::io::Error::other));
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    tokio::task::spawn_blocking(move || {
        let staging = tempfile::Builder::new()
            .prefix(".berth-cp-")
            .tempdir_in(&parent)
            .map_err(|error| anyhow!("cannot create a staging directory in {}: {error}", parent.display()))?;
        let tops = unpack_safely(bridge, staging.path())?;
        let root = match (&name, tops.as_slice()) {
            (Some(name), [top]) if top == name && staging.path().join(top).is_dir() => staging.path().join(top),
            _ => staging.path().to_path_buf(),
        };
        move_into_place(&root, &target)
            .map_err(|error| anyhow!("cannot move the files into {}: {error}", target.display()))
    })
    .await
    .context("the unpacking thread stopped")?
}

/// Unpacks every entry inside `dir`, refusing entries that are absolute or contain `..` (the tar
/// crate refuses to write through a symlink that leads out). Returns the distinct first
/// components of the entries.
fn unpack_safely(reader: impl std::io::Read, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut archive = tar::Archive::new(reader);
    archive.set_overwrite(true);
    let mut tops: Vec<String> = Vec::new();
    for entry in archive.entries().context("cannot read the archive")? {
        let mut entry = entry.context("cannot read the archive")?;
        let path = entry
            .path()
            .context("an archive entry has an unreadable path")?
            .into_owned();
        check_entry_path(&path)?;
        if let Some(Component::Normal(top)) = path.components().find(|c| !matches!(c, Component::CurDir)) {
            let top = top.to_string_lossy().into_owned();
            if !tops.contains(&top) {
                tops.push(top);
            }
        }
        let unpacked = entry
            .unpack_in(dir)
            .with_context(|| format!("cannot unpack {}", path.display()))?;
        if !unpacked {
            bail!(
                "refused the archive entry {}: it leads outside the destination",
                path.display()
            );
        }
    }
    Ok(tops)
}

/// An entry path that stays inside the destination: relative, without `..`.
fn check_entry_path(path: &Path) -> anyhow::Result<()> {
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                bail!(
                    "refused the archive entry {}: it leads outside the destination",
                    path.display()
                )
            }
        }
    }
    Ok(())
}

/// Moves `from` to `to`: a rename when `to` does not exist, else directories are merged
/// entry by entry and files replaced (as `docker cp` does).
fn move_into_place(from: &Path, to: &Path) -> std::io::Result<()> {
    let existing = match std::fs::symlink_metadata(to) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return std::fs::rename(from, to),
        Err(error) => return Err(error),
    };
    let incoming = std::fs::symlink_metadata(from)?;
    match (incoming.is_dir(), existing.is_dir()) {
        (true, true) => {
            for entry in std::fs::read_dir(from)? {
                let entry = entry?;
                move_into_place(&entry.path(), &to.join(entry.file_name()))?;
            }
            Ok(())
        }
        (false, true) => Err(std::io::Error::other(format!(
            "{} is a directory; it is not replaced by a file",
            to.display()
        ))),
        (true, false) => {
            std::fs::remove_file(to)?;
            std::fs::rename(from, to)
        }
        (false, false) => std::fs::rename(from, to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(src: &str, dst: &str) -> CpArgs {
        CpArgs {
            src: src.into(),
            dst: dst.into(),
        }
    }

    #[test]
    fn locations_follow_docker_cp() {
        assert_eq!(
            parse_location("abc:/tmp/x"),
            Location::Sandbox {
                id: "abc".into(),
                path: "/tmp/x".into()
            }
        );
        for local in ["./a:b", "/abs:x", "plain", "dir/a:b", ":x", "-"] {
            assert_eq!(parse_location(local), Location::Local(local.into()), "{local}");
        }
    }

    #[test]
    fn exactly_one_side_is_a_sandbox_with_an_absolute_path() {
        assert_eq!(
            plan(&args("f", "abc:/tmp/")).unwrap(),
            Plan::Upload {
                local: "f".into(),
                id: "abc".into(),
                path: "/tmp/".into()
            }
        );
        assert_eq!(
            plan(&args("abc:/etc/hosts", "-")).unwrap(),
            Plan::Download {
                id: "abc".into(),
                path: "/etc/hosts".into(),
                local: "-".into()
            }
        );
        for (src, dst, needle) in [
            ("a", "b", "must be a sandbox path"),
            ("x:/a", "y:/b", "between sandboxes"),
            ("f", "abc:tmp", "must be absolute"),
            ("abc:", "f", "must be absolute"),
            ("-", "abc:/f", "stdin"),
        ] {
            let error = plan(&args(src, dst)).unwrap_err();
            assert!(error.0.contains(needle), "{src} {dst}: {error}");
        }
    }

    #[test]
    fn sandbox_path_pieces() {
        assert_eq!(remote_name("/a/b"), Some("b"));
        assert_eq!(remote_name("/a/b/"), Some("b"));
        assert_eq!(remote_name("/"), None);
        assert_eq!(remote_parent("/a/b"), "/a");
        assert_eq!(remote_parent("/a"), "/");
        assert_eq!(remote_parent("/a/b/"), "/a");
        assert_eq!(remote_join("/a/", "b"), "/a/b");
        assert!(means_contents("dir/.") && means_contents(".") && !means_contents("dir"));
    }

    /// A tar holding `entries` (path, contents), written without the builder's own checks.
    fn raw_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, contents) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // Set the name bytes directly: `set_path` itself refuses `..`.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *contents).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn escaping_entries_are_refused() {
        for bad in ["../evil", "a/../../evil", "/etc/evil"] {
            let dir = tempfile::tempdir().unwrap();
            let tar = raw_tar(&[("ok", b"fine"), (bad, b"evil")]);
            let error = unpack_safely(&tar[..], dir.path()).unwrap_err();
            assert!(error.to_string().contains("leads outside"), "{bad}: {error}");
        }
    }

    #[test]
    fn writing_through_a_symlink_out_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder.append_link(&mut link, "link", outside.path()).unwrap();
        let mut file = tar::Header::new_gnu();
        file.set_size(4);
        file.set_mode(0o644);
        builder.append_data(&mut file, "link/evil", &b"evil"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        assert!(unpack_safely(&tar[..], dir.path()).is_err());
        assert!(!outside.path().join("evil").exists());
    }

    #[test]
    fn a_directory_round_trips_through_tar_and_the_top_level_name_is_reported() {
        let source = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(source.path().join("d/sub")).unwrap();
        std::fs::write(source.path().join("d/a.txt"), "a").unwrap();
        std::fs::write(source.path().join("d/sub/b.txt"), "b").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("a.txt", source.path().join("d/link")).unwrap();

        let (sender, mut receiver) = mpsc::channel(64);
        let root = source.path().join("d");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let writer = std::thread::spawn(move || write_tar(&root, "d", sender));
        let mut tar = Vec::new();
        while let Some(chunk) = runtime.block_on(receiver.recv()) {
            tar.extend_from_slice(&chunk.unwrap());
        }
        writer.join().unwrap().unwrap();

        let out = tempfile::tempdir().unwrap();
        let tops = unpack_safely(&tar[..], out.path()).unwrap();
        assert_eq!(tops, ["d"]);
        assert_eq!(std::fs::read_to_string(out.path().join("d/sub/b.txt")).unwrap(), "b");
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(out.path().join("d/link")).unwrap(),
            Path::new("a.txt"),
            "symlinks stay symlinks"
        );
    }

    #[test]
    fn moving_into_place_renames_or_merges() {
        let root = tempfile::tempdir().unwrap();
        let from = root.path().join("from");
        std::fs::create_dir_all(from.join("sub")).unwrap();
        std::fs::write(from.join("sub/new.txt"), "new").unwrap();
        std::fs::write(from.join("same.txt"), "incoming").unwrap();

        let fresh = root.path().join("fresh");
        let copy = root.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        // `fresh` does not exist: a rename.
        copy_tree(&from, &copy);
        move_into_place(&from, &fresh).unwrap();
        assert_eq!(std::fs::read_to_string(fresh.join("sub/new.txt")).unwrap(), "new");

        // `existing` exists: merged, files replaced, others kept.
        let existing = root.path().join("existing");
        std::fs::create_dir_all(existing.join("sub")).unwrap();
        std::fs::write(existing.join("same.txt"), "old").unwrap();
        std::fs::write(existing.join("sub/kept.txt"), "kept").unwrap();
        move_into_place(&copy, &existing).unwrap();
        assert_eq!(std::fs::read_to_string(existing.join("same.txt")).unwrap(), "incoming");
        assert_eq!(std::fs::read_to_string(existing.join("sub/kept.txt")).unwrap(), "kept");
        assert_eq!(std::fs::read_to_string(existing.join("sub/new.txt")).unwrap(), "new");
    }

    fn copy_tree(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
}
