//! Files in and out of a sandbox through the engine's archive (tar) API, streamed both ways:
//! path rules, the one-entry tar built around a raw upload, the re-emission that checks every
//! entry of an uploaded tar (no absolute paths, no `..`, no link out of the destination, no
//! devices), extracting one file from the engine's tar, and listing a directory from its headers.
//! Checking and listing use the sync `tar` crate in `spawn_blocking` over a `SyncIoBridge`; a
//! file download reads the tar headers itself and hands the file's bytes on without copying.

use std::io::{self, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use berth_api::{DirListing, FileStat};
use berth_runtime::{ByteStream, EngineByteStream, PathStat, Runtime, RuntimeError};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tar::{Archive, EntryType, Header};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use berth_control::body::{BodyFault, FaultSlot, fault, guard_body};
use berth_control::service::{NotFoundKind, RunningSandbox, SandboxService, ServiceError};

/// Tar block size.
const BLOCK: u64 = 512;
/// The two zero blocks that end a tar stream.
const TAR_END: [u8; 1024] = [0; 1024];
/// Bytes gathered before a blocking writer hands a chunk to the async side.
const CHUNK: usize = 256 * 1024;
/// Default permission bits of an uploaded file.
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// Permission bits of directories an upload creates.
const DIR_MODE: u32 = 0o755;
/// Symbolic links followed when resolving a path.
const MAX_LINKS: usize = 8;

// Go `os.FileMode` bits, as the engine reports a path's mode.
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_DEVICE: u32 = 1 << 26;
const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
const GO_MODE_SOCKET: u32 = 1 << 24;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;
const GO_MODE_IRREGULAR: u32 = 1 << 19;
const GO_MODE_TYPE: u32 = GO_MODE_DIR
    | GO_MODE_SYMLINK
    | GO_MODE_NAMED_PIPE
    | GO_MODE_SOCKET
    | GO_MODE_DEVICE
    | GO_MODE_CHAR_DEVICE
    | GO_MODE_IRREGULAR;

/// `path` must be absolute, without a `..` component or NUL; answers it normalised
/// (`//a/./b/` → `/a/b`).
pub fn validate_path(raw: &str) -> Result<String, ServiceError> {
    if raw.contains('\0') {
        return Err(ServiceError::invalid("path", "must not contain NUL bytes".into()));
    }
    if !raw.starts_with('/') {
        return Err(ServiceError::invalid(
            "path",
            format!("`{raw}` must be an absolute path such as /work/file.txt"),
        ));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(ServiceError::invalid(
                    "path",
                    format!("`{raw}` must not contain a `..` component"),
                ));
            }
            part => parts.push(part),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Octal permission bits: `644`, `0644`, `0o755`, up to `7777`.
pub fn parse_mode(text: &str) -> Result<u32, ServiceError> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| !digits.is_empty() && *mode <= 0o7777)
        .ok_or_else(|| ServiceError::invalid("mode", format!("`{text}` is not an octal mode such as 0644")))
}

/// The parent directory and the name of a normalised absolute path (not `/`).
fn split_path(path: &str) -> Option<(&str, &str)> {
    let (parent, name) = path.rsplit_once('/')?;
    if name.is_empty() {
        return None;
    }
    Some((if parent.is_empty() { "/" } else { parent }, name))
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A path's facts as the API reports them.
pub fn file_stat(path: &str, stat: &PathStat) -> FileStat {
    let mode = stat.mode;
    let kind = if stat.is_dir || mode & GO_MODE_DIR != 0 {
        "dir"
    } else if stat.link_target.is_some() || mode & GO_MODE_SYMLINK != 0 {
        "symlink"
    } else if mode & GO_MODE_TYPE == 0 {
        "file"
    } else {
        "other"
    };
    let mut bits = mode & 0o777;
    if mode & GO_MODE_SETUID != 0 {
        bits |= 0o4000;
    }
    if mode & GO_MODE_SETGID != 0 {
        bits |= 0o2000;
    }
    if mode & GO_MODE_STICKY != 0 {
        bits |= 0o1000;
    }
    let name = if stat.name.is_empty() {
        split_path(path).map(|(_, name)| name).unwrap_or("/").to_owned()
    } else {
        stat.name.clone()
    };
    FileStat {
        path: path.to_owned(),
        name,
        size: stat.size,
        mode: format!("{bits:04o}"),
        kind: kind.to_owned(),
        modified_at: stat.modified_at,
        link_target: stat.link_target.clone(),
    }
}

/// Why an archive was refused (a 400), or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn header(kind: EntryType, mode: u32, size: u64, mtime: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(size);
    header
}

/// The start of a one-file tar: directory entries for `dirs` (relative, parents first), then the
/// header of `file` (relative) with `size` bytes. The file's bytes, [`tar_padding`] and
/// [`TAR_END`] follow.
pub fn upload_prefix(dirs: &[String], file: &str, size: u64, mode: u32, mtime: u64) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in dirs {
        builder.append_data(&mut header(EntryType::Directory, DIR_MODE, 0, mtime), dir, io::empty())?;
    }
    // An empty reader: only the header (and any long-name entry) is written; the data streams after.
    builder.append_data(&mut header(EntryType::Regular, mode, size, mtime), file, io::empty())?;
    Ok(std::mem::take(builder.get_mut()))
}

/// A complete tar of directory entries only.
pub fn dirs_archive(dirs: &[String], mtime: u64) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in dirs {
        builder.append_data(&mut header(EntryType::Directory, DIR_MODE, 0, mtime), dir, io::empty())?;
    }
    builder.into_inner()
}

/// Zero bytes after `size` bytes of data to reach the next block.
pub fn tar_padding(size: u64) -> usize {
    ((BLOCK - size % BLOCK) % BLOCK) as usize
}

/// `path` as normal relative components; refuses absolute paths and `..`.
fn relative(path: &Path, what: &str) -> Result<PathBuf, ArchiveError> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(ArchiveError::Refused(format!(
                    "{what} `{}` contains `..`: entries must stay inside the destination",
                    path.display()
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ArchiveError::Refused(format!(
                    "{what} `{}` is absolute: entries must be relative to the destination",
                    path.display()
                )));
            }
        }
    }
    Ok(clean)
}

/// A symlink at `entry` (relative) pointing to `target` must stay inside the destination.
fn check_symlink(entry: &Path, target: &Path) -> Result<(), ArchiveError> {
    let refuse = || {
        ArchiveError::Refused(format!(
            "symlink `{}` → `{}` points outside the destination: link targets must be relative and stay inside it",
            entry.display(),
            target.display()
        ))
    };
    let mut depth: Vec<&std::ffi::OsStr> = entry
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .filter_map(|component| match component {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect();
    for component in target.components() {
        match component {
            Component::Normal(part) => depth.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                depth.pop().ok_or_else(refuse)?;
            }
            Component::RootDir | Component::Prefix(_) => return Err(refuse()),
        }
    }
    Ok(())
}

/// Re-emits the tar `input` into `output` entry by entry, refusing any entry whose path is
/// absolute or has `..`, any link whose target is absolute or leaves the destination, and
/// devices, fifos and sparse files. Answers the number of entries written.
pub fn sanitize_tar<R: Read, W: Write>(input: R, output: W) -> Result<u64, ArchiveError> {
    let mut archive = Archive::new(input);
    let mut builder = tar::Builder::new(output);
    let mut written = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
        ) {
            continue;
        }
        let raw_path = entry.path()?.into_owned();
        let path = relative(&raw_path, "entry")?;
        let mode = entry.header().mode()? & 0o7777;
        // Ownership and time are not security-relevant: a blank field reads as 0.
        let uid = entry.header().uid().unwrap_or(0);
        let gid = entry.header().gid().unwrap_or(0);
        let mtime = entry.header().mtime().unwrap_or(0);
        let mut out = header(kind, mode, 0, mtime);
        out.set_uid(uid);
        out.set_gid(gid);
        if path.as_os_str().is_empty() {
            if kind == EntryType::Directory {
                continue; // the destination itself (`./`)
            }
            return Err(ArchiveError::Refused(format!(
                "entry `{}` has no name",
                raw_path.display()
            )));
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                out.set_entry_type(EntryType::Regular);
                out.set_size(entry.size());
                builder.append_data(&mut out, &path, &mut entry)?;
            }
            EntryType::Directory => builder.append_data(&mut out, &path, io::empty())?,
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name()?
                    .map(|target| target.into_owned())
                    .ok_or_else(|| ArchiveError::Refused(format!("link `{}` has no target", path.display())))?;
                let target = if kind == EntryType::Symlink {
                    check_symlink(&path, &target)?;
                    target
                } else {
                    // A hard link names another entry of the archive.
                    relative(&target, "hard link target")?
                };
                builder.append_link(&mut out, &path, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                return Err(ArchiveError::Refused(format!(
                    "entry `{}` is a device or fifo: only files, directories and links are accepted",
                    path.display()
                )));
            }
            other => {
                return Err(ArchiveError::Refused(format!(
                    "entry `{}` has an unsupported type ({other:?}): only files, directories and links are accepted",
                    path.display()
                )));
            }
        }
        written += 1;
    }
    builder.finish()?;
    Ok(written)
}

/// The first regular file of a tar stream as the engine makes it (optionally after PAX or GNU
/// long-name headers): its size and its bytes, handed on as they arrive, without copying them
/// through a blocking reader.
pub async fn first_file(mut tar: EngineByteStream) -> Result<(u64, ByteStream), ArchiveError> {
    let mut pending = BytesMut::new();
    let mut pax_size: Option<u64> = None;
    loop {
        fill(&mut tar, &mut pending, BLOCK as usize).await?;
        let block = pending.split_to(BLOCK as usize);
        if block.iter().all(|byte| *byte == 0) {
            return Err(ArchiveError::Refused("the engine's archive holds no file".into()));
        }
        let header = Header::from_byte_slice(&block);
        let size = header.entry_size()?;
        match header.entry_type() {
            EntryType::Regular | EntryType::Continuous => {
                let size = pax_size.unwrap_or(size);
                return Ok((size, file_body(tar, pending, size)));
            }
            kind
            @ (EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink) => {
                let padded = usize::try_from(size.div_ceil(BLOCK) * BLOCK)
                    .map_err(|_| ArchiveError::Refused("an oversized archive header".into()))?;
                fill(&mut tar, &mut pending, padded).await?;
                let data = pending.split_to(padded);
                if kind == EntryType::XHeader {
                    pax_size = pax_size_record(&data[..size as usize]).or(pax_size);
                }
            }
            other => {
                return Err(ArchiveError::Refused(format!(
                    "the path is not a regular file ({other:?})"
                )));
            }
        }
    }
}

/// Pulls from `tar` until `pending` holds at least `wanted` bytes.
async fn fill(tar: &mut EngineByteStream, pending: &mut BytesMut, wanted: usize) -> Result<(), ArchiveError> {
    while pending.len() < wanted {
        match tar.next().await {
            Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
            Some(Err(error)) => return Err(ArchiveError::Io(io::Error::other(error.to_string()))),
            None => {
                return Err(ArchiveError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the archive ended early",
                )));
            }
        }
    }
    Ok(())
}

/// The `size` record of a PAX extended header, which overrides the header's own size field.
fn pax_size_record(data: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(data).ok()?;
    text.lines()
        .filter_map(|record| record.split_once(' ').map(|(_, rest)| rest))
        .find_map(|record| record.strip_prefix("size=")?.parse().ok())
}

/// `size` bytes: first what is already buffered, then the engine's chunks as they come (sliced,
/// not copied). A stream that ends early yields an error, so a client never takes a short file
/// for a whole one.
fn file_body(tar: EngineByteStream, pending: BytesMut, size: u64) -> ByteStream {
    let state = (tar, Some(pending.freeze()), size);
    futures::stream::unfold(state, |(mut tar, buffered, remaining)| async move {
        if remaining == 0 {
            return None;
        }
        let chunk = match buffered.filter(|bytes| !bytes.is_empty()) {
            Some(bytes) => bytes,
            None => match tar.next().await {
                Some(Ok(bytes)) => bytes,
                Some(Err(error)) => return Some((Err(io::Error::other(error.to_string())), (tar, None, 0))),
                None => {
                    let error = io::Error::new(io::ErrorKind::UnexpectedEof, "the engine's archive ended early");
                    return Some((Err(error), (tar, None, 0)));
                }
            },
        };
        let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(chunk.len());
        let piece = chunk.slice(..take);
        Some((Ok(piece), (tar, None, remaining - take as u64)))
    })
    .boxed()
}

/// The direct children of the directory whose tar (as the engine makes it: the directory's own
/// entry first) is `input`, from the headers alone. `dir` is the path reported to the client.
pub fn list_children<R: Read>(input: R, dir: &str) -> Result<Vec<FileStat>, ArchiveError> {
    let mut archive = Archive::new(input);
    let mut base: Option<usize> = None;
    let mut children = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let kind = entry.header().entry_type();
        let path = entry.path()?.into_owned();
        let parts: Vec<String> = path
            .components()
            .filter_map(|component| match component {
                Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let Some(depth) = base else {
            if kind != EntryType::Directory {
                return Err(ArchiveError::Refused("the path is not a directory".into()));
            }
            base = Some(parts.len());
            continue;
        };
        if parts.len() != depth + 1 {
            continue;
        }
        let Some(name) = parts.last().cloned() else { continue };
        let header = entry.header();
        let mode = header.mode().unwrap_or(0) & 0o7777;
        let kind_name = match kind {
            EntryType::Directory => "dir",
            EntryType::Symlink => "symlink",
            EntryType::Regular | EntryType::Continuous | EntryType::Link => "file",
            _ => "other",
        };
        let link_target = if kind == EntryType::Symlink {
            entry
                .link_name()
                .ok()
                .flatten()
                .map(|target| target.to_string_lossy().into_owned())
        } else {
            None
        };
        children.push(FileStat {
            path: join(dir, &name),
            name,
            size: entry.size(),
            mode: format!("{mode:04o}"),
            kind: kind_name.to_owned(),
            modified_at: header
                .mtime()
                .ok()
                .and_then(|mtime| i64::try_from(mtime).ok())
                .and_then(|mtime| DateTime::<Utc>::from_timestamp(mtime, 0)),
            link_target,
        });
    }
    children.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(children)
}

fn engine(sandbox: &RunningSandbox) -> impl Fn(RuntimeError) -> ServiceError + '_ {
    move |error| ServiceError::Engine {
        error,
        sandbox_id: Some(sandbox.id.clone()),
    }
}

/// `stat_path`, with a missing path as a 404 that names it.
async fn stat_of(runtime: &Arc<dyn Runtime>, sandbox: &RunningSandbox, path: &str) -> Result<PathStat, ServiceError> {
    match runtime.stat_path(&sandbox.container_id, path).await {
        Ok(stat) => Ok(stat),
        Err(RuntimeError::NotFound(_)) => Err(ServiceError::not_found(
            NotFoundKind::File,
            format!("`{path}` does not exist in sandbox {}", sandbox.id),
        )),
        Err(error) => Err(engine(sandbox)(error)),
    }
}

/// The path a symlink leads to (the engine reports the resolved target), and its facts.
async fn resolve(
    runtime: &Arc<dyn Runtime>,
    sandbox: &RunningSandbox,
    path: &str,
) -> Result<(String, PathStat), ServiceError> {
    let mut path = path.to_owned();
    let mut stat = stat_of(runtime, sandbox, &path).await?;
    for _ in 0..MAX_LINKS {
        let Some(target) = stat.link_target.clone().filter(|_| !stat.is_dir) else {
            break;
        };
        let target = if target.starts_with('/') {
            target
        } else {
            join(split_path(&path).map(|(parent, _)| parent).unwrap_or("/"), &target)
        };
        path = validate_path(&target).unwrap_or(target);
        stat = stat_of(runtime, sandbox, &path).await?;
    }
    Ok((path, stat))
}

/// The deepest existing directory on the way to `dir` (resolved), and the missing directories
/// below it, as relative paths parents first (`["a", "a/b"]`).
async fn existing_ancestor(
    runtime: &Arc<dyn Runtime>,
    sandbox: &RunningSandbox,
    dir: &str,
) -> Result<(String, Vec<String>), ServiceError> {
    let mut candidate = dir.to_owned();
    let mut missing: Vec<String> = Vec::new();
    loop {
        match resolve(runtime, sandbox, &candidate).await {
            Ok((resolved, stat)) => {
                if !stat.is_dir {
                    return Err(ServiceError::invalid(
                        "path",
                        format!("`{candidate}` exists and is not a directory"),
                    ));
                }
                missing.reverse();
                let relative = missing
                    .iter()
                    .scan(String::new(), |prefix, name| {
                        *prefix = if prefix.is_empty() {
                            name.clone()
                        } else {
                            format!("{prefix}/{name}")
                        };
                        Some(prefix.clone())
                    })
                    .collect();
                return Ok((resolved, relative));
            }
            Err(ServiceError::NotFound {
                kind: NotFoundKind::File,
                ..
            }) if candidate != "/" => {
                let Some((parent, name)) = split_path(&candidate) else {
                    return Err(ServiceError::not_found(
                        NotFoundKind::File,
                        format!("`{candidate}` does not exist"),
                    ));
                };
                missing.push(name.to_owned());
                candidate = parent.to_owned();
            }
            Err(error) => return Err(error),
        }
    }
}

fn now_secs() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// Facts about `path` (a symlink is reported as one, not followed).
pub async fn stat(service: &SandboxService, id: &str, path: &str) -> Result<FileStat, ServiceError> {
    let path = validate_path(path)?;
    let sandbox = service.running_container(id).await?;
    let stat = stat_of(&sandbox.engine, &sandbox, &path).await?;
    Ok(file_stat(&path, &stat))
}

/// Writes `body` to the file `path` (replacing it), creating missing parent directories.
/// `length` is the body's size when the client announced it; otherwise the body is spooled to
/// a temporary file first (the engine needs the size in the tar header before the bytes).
pub async fn upload_file(
    service: &SandboxService,
    id: &str,
    path: &str,
    mode: u32,
    body: ByteStream,
    length: Option<u64>,
) -> Result<(), ServiceError> {
    let path = validate_path(path)?;
    let Some((parent, name)) = split_path(&path) else {
        return Err(ServiceError::invalid("path", "`/` is a directory: name a file".into()));
    };
    let limit = service.config().max_file_size;
    if let Some(length) = length
        && length > limit
    {
        return Err(BodyFault::TooLarge(limit).into_service());
    }
    let sandbox = service.running_container(id).await?;
    refuse_read_only_root(service, id)?;
    let runtime = &sandbox.engine;
    let (base, mut dirs) = existing_ancestor(runtime, &sandbox, parent).await?;
    if dirs.is_empty() {
        // The engine would replace a directory with the file, contents and all: refuse instead.
        match stat_of(runtime, &sandbox, &join(&base, name)).await {
            Ok(existing) if existing.is_dir => {
                return Err(ServiceError::invalid(
                    "path",
                    format!("`{path}` is a directory: name a file (or upload a tar into it)"),
                ));
            }
            Ok(_)
            | Err(ServiceError::NotFound {
                kind: NotFoundKind::File,
                ..
            }) => {}
            Err(error) => return Err(error),
        }
    }
    let file = match dirs.last() {
        Some(dir) => format!("{dir}/{name}"),
        None => name.to_owned(),
    };

    let slot = FaultSlot::default();
    let (body, size) = match length {
        Some(length) => (guard_body(body, limit, Some(length), Arc::clone(&slot)), length),
        None => spool(guard_body(body, limit, None, Arc::clone(&slot)), &slot).await?,
    };
    let prefix = upload_prefix(&std::mem::take(&mut dirs), &file, size, mode, now_secs())
        .map_err(|error| ServiceError::invalid("path", format!("cannot be written to a tar header: {error}")))?;
    let mut suffix = vec![0u8; tar_padding(size)];
    suffix.extend_from_slice(&TAR_END);
    let tar = futures::stream::once(async move { Ok(Bytes::from(prefix)) })
        .chain(body)
        .chain(futures::stream::once(async move { Ok(Bytes::from(suffix)) }))
        .boxed();
    let outcome = runtime.upload_tar(&sandbox.container_id, &base, tar).await;
    match (outcome, fault(&slot)) {
        (_, Some(fault)) => Err(fault.into_service()),
        (Err(error), None) => Err(engine(&sandbox)(error)),
        (Ok(()), None) => Ok(()),
    }
}

/// The engine's archive API writes into no container whose root is read-only, not even into its
/// writable `/tmp`: say so, and the way that works, before any byte is read.
fn refuse_read_only_root(service: &SandboxService, id: &str) -> Result<(), ServiceError> {
    if service.get(id)?.spec.hardening.read_only_rootfs {
        return Err(ServiceError::InvalidState(format!(
            "sandbox {id} has a read-only root filesystem (hardening.read_only_rootfs), and the engine writes no \
             files into such a container: write them from inside, into /tmp, with exec (for example \
             `berth exec -i {id} -- sh -c 'cat > /tmp/FILE' < FILE`)"
        )));
    }
    Ok(())
}

/// Spools a body of unknown length to an anonymous temporary file; answers a stream of it and its size.
async fn spool(body: ByteStream, slot: &FaultSlot) -> Result<(ByteStream, u64), ServiceError> {
    let io_error = |error: io::Error| ServiceError::Engine {
        error: RuntimeError::Other(format!("cannot spool the upload to a temporary file: {error}")),
        sandbox_id: None,
    };
    let file = tokio::task::spawn_blocking(tempfile::tempfile)
        .await
        .map_err(|error| io_error(io::Error::other(error)))?
        .map_err(io_error)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut body = body;
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| {
            fault(slot)
                .map(BodyFault::into_service)
                .unwrap_or_else(|| io_error(error))
        })?;
        size += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    file.flush().await.map_err(io_error)?;
    file.seek(io::SeekFrom::Start(0)).await.map_err(io_error)?;
    Ok((ReaderStream::with_capacity(file, CHUNK).boxed(), size))
}

/// Extracts the tar `body` into the directory `dir` (created when missing). Every entry is
/// checked and re-emitted into a temporary file first, so a refused archive writes nothing.
pub async fn upload_archive(
    service: &SandboxService,
    id: &str,
    dir: &str,
    body: ByteStream,
) -> Result<u64, ServiceError> {
    let dir = validate_path(dir)?;
    let sandbox = service.running_container(id).await?;
    refuse_read_only_root(service, id)?;
    let runtime = &sandbox.engine;
    let slot = FaultSlot::default();
    let body = guard_body(body, service.config().max_file_size, None, Arc::clone(&slot));
    let reader = SyncIoBridge::new(StreamReader::new(body));
    let checked = tokio::task::spawn_blocking(move || -> Result<(std::fs::File, u64), ArchiveError> {
        let spool = tempfile::tempfile()?;
        let mut writer = io::BufWriter::with_capacity(CHUNK, spool);
        let entries = sanitize_tar(reader, &mut writer)?;
        let mut spool = writer.into_inner().map_err(io::IntoInnerError::into_error)?;
        spool.rewind()?;
        Ok((spool, entries))
    })
    .await
    .map_err(|error| ServiceError::BadBody(format!("the archive could not be read: {error}")))?;
    let (spool, entries) = match checked {
        Ok(checked) => checked,
        Err(_) if fault(&slot).is_some() => {
            return Err(fault(&slot)
                .map(BodyFault::into_service)
                .unwrap_or_else(|| ServiceError::BadBody(String::new())));
        }
        Err(ArchiveError::Refused(reason)) => return Err(ServiceError::BadBody(format!("archive refused: {reason}"))),
        Err(ArchiveError::Io(error)) => {
            return Err(ServiceError::BadBody(format!(
                "the body is not a valid tar stream: {error}"
            )));
        }
    };

    let (base, missing) = existing_ancestor(runtime, &sandbox, &dir).await?;
    let target = match missing.last() {
        Some(last) => {
            let dirs = dirs_archive(&missing, now_secs()).map_err(|error| {
                ServiceError::invalid("path", format!("cannot be written to a tar header: {error}"))
            })?;
            let tar = futures::stream::once(async move { Ok(Bytes::from(dirs)) }).boxed();
            runtime
                .upload_tar(&sandbox.container_id, &base, tar)
                .await
                .map_err(engine(&sandbox))?;
            join(&base, last)
        }
        None => base,
    };
    let tar = ReaderStream::with_capacity(tokio::fs::File::from_std(spool), CHUNK).boxed();
    runtime
        .upload_tar(&sandbox.container_id, &target, tar)
        .await
        .map_err(engine(&sandbox))?;
    Ok(entries)
}

/// What a download sends.
pub enum Download {
    /// A file's bytes.
    File { size: u64, body: ByteStream },
    /// A directory as the engine's tar stream (entries named `<dir name>/…`).
    Directory { body: EngineByteStream },
}

/// A file's bytes (extracted from the engine's tar on the fly), or a directory's tar stream.
pub async fn download(service: &SandboxService, id: &str, path: &str) -> Result<Download, ServiceError> {
    let path = validate_path(path)?;
    let sandbox = service.running_container(id).await?;
    let runtime = &sandbox.engine;
    let (resolved, stat) = resolve(runtime, &sandbox, &path).await?;
    let tar = runtime
        .download_tar(&sandbox.container_id, &resolved)
        .await
        .map_err(engine(&sandbox))?;
    if stat.is_dir {
        return Ok(Download::Directory { body: tar });
    }
    match first_file(tar).await {
        Ok((size, body)) => Ok(Download::File { size, body }),
        Err(error) => Err(ServiceError::invalid(
            "path",
            format!("`{path}` cannot be downloaded: {error}"),
        )),
    }
}

/// The direct children of a directory, read from the headers of the engine's tar stream.
pub async fn list(service: &SandboxService, id: &str, path: &str) -> Result<DirListing, ServiceError> {
    let path = validate_path(path)?;
    let sandbox = service.running_container(id).await?;
    let runtime = &sandbox.engine;
    let (resolved, stat) = resolve(runtime, &sandbox, &path).await?;
    if !stat.is_dir {
        return Err(ServiceError::invalid("path", format!("`{path}` is not a directory")));
    }
    let tar = runtime
        .download_tar(&sandbox.container_id, &resolved)
        .await
        .map_err(engine(&sandbox))?;
    let reader = SyncIoBridge::new(StreamReader::new(tar.map(|item| item.map_err(io::Error::other))));
    let listed_path = path.clone();
    let entries = tokio::task::spawn_blocking(move || list_children(reader, &listed_path))
        .await
        .map_err(|error| ServiceError::BadBody(error.to_string()))?
        .map_err(|error| ServiceError::Engine {
            error: RuntimeError::Other(format!("cannot read the engine's archive of `{path}`: {error}")),
            sandbox_id: Some(sandbox.id.clone()),
        })?;
    Ok(DirListing { path, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        builder.into_inner().unwrap()
    }

    fn file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut header = Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o640);
        header.set_entry_type(EntryType::Regular);
        builder.append_data(&mut header, path, data).unwrap();
    }

    /// Writes a raw header, bypassing the `tar` builder's own path checks (as an attacker would).
    fn raw_entry(builder: &mut tar::Builder<Vec<u8>>, path: &str, kind: EntryType, link: Option<&str>) {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(0);
        header.set_mode(0o777);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        {
            let old = header.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        header.set_cksum();
        builder.append(&header, io::empty()).unwrap();
    }

    fn entries(tar: &[u8]) -> Vec<(String, EntryType, Option<String>, Vec<u8>)> {
        let mut archive = Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                (
                    entry.path().unwrap().to_string_lossy().into_owned(),
                    entry.header().entry_type(),
                    entry
                        .link_name()
                        .unwrap()
                        .map(|link| link.to_string_lossy().into_owned()),
                    data,
                )
            })
            .collect()
    }

    fn sanitize(tar: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        let mut out = Vec::new();
        sanitize_tar(tar, &mut out)?;
        Ok(out)
    }

    #[test]
    fn paths_must_be_absolute_without_dot_dot_or_nul() {
        assert_eq!(validate_path("/work/a.txt").unwrap(), "/work/a.txt");
        assert_eq!(validate_path("//work/./a/").unwrap(), "/work/a");
        assert_eq!(validate_path("/").unwrap(), "/");
        for bad in ["work/a", "", "../../etc/passwd", "/work/../etc/passwd", "/a\0b", "/.."] {
            let error = validate_path(bad).unwrap_err();
            let ServiceError::InvalidRequest(errors) = &error else {
                panic!("{bad}: {error}");
            };
            assert_eq!(errors.0[0].field, "path", "{bad}");
        }
    }

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert_eq!(parse_mode("0o4755").unwrap(), 0o4755);
        for bad in ["", "9", "rwx", "17777", "0o"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_upload_prefix_plus_data_padding_and_end_is_a_valid_tar() {
        let data = b"hello, sandbox";
        let long_name = format!("deep/{}/file.txt", "x".repeat(150));
        let mut tar = upload_prefix(&["deep".into()], &long_name, data.len() as u64, 0o600, 1_700_000_000).unwrap();
        assert_eq!(tar.len() % 512, 0);
        tar.extend_from_slice(data);
        tar.extend(std::iter::repeat_n(0, tar_padding(data.len() as u64)));
        tar.extend_from_slice(&TAR_END);
        let read = entries(&tar);
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].0, "deep");
        assert_eq!(read[0].1, EntryType::Directory);
        assert_eq!(read[1].0, long_name, "long names survive (GNU long-name entry)");
        assert_eq!(read[1].3, data);
        let mut archive = Archive::new(&tar[..]);
        let mode = archive
            .entries()
            .unwrap()
            .nth(1)
            .unwrap()
            .unwrap()
            .header()
            .mode()
            .unwrap();
        assert_eq!(mode, 0o600);
        assert_eq!(tar_padding(0), 0);
        assert_eq!(tar_padding(512), 0);
        assert_eq!(tar_padding(513), 511);
    }

    #[test]
    fn a_safe_archive_is_re_emitted_entry_by_entry() {
        let input = tar_of(|builder| {
            raw_entry(builder, "./", EntryType::Directory, None);
            raw_entry(builder, "dir/", EntryType::Directory, None);
            file(builder, "dir/a.txt", b"alpha");
            file(builder, "./b.txt", &vec![7u8; 3000]);
            raw_entry(builder, "dir/up", EntryType::Symlink, Some("../b.txt"));
            raw_entry(builder, "self", EntryType::Symlink, Some("dir/.."));
            raw_entry(builder, "hard", EntryType::Link, Some("dir/a.txt"));
        });
        let output = sanitize(&input).unwrap();
        let read = entries(&output);
        let names: Vec<_> = read.iter().map(|entry| entry.0.as_str()).collect();
        assert_eq!(names, ["dir", "dir/a.txt", "b.txt", "dir/up", "self", "hard"]);
        assert_eq!(read[1].3, b"alpha");
        assert_eq!(read[2].3.len(), 3000);
        assert_eq!(read[3].2.as_deref(), Some("../b.txt"));
        assert_eq!(read[5].1, EntryType::Link);
    }

    #[test]
    fn unsafe_entries_are_refused() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("..", tar_of(|b| raw_entry(b, "../evil", EntryType::Regular, None))),
            ("..", tar_of(|b| raw_entry(b, "a/../../evil", EntryType::Regular, None))),
            (
                "absolute",
                tar_of(|b| raw_entry(b, "/etc/passwd", EntryType::Regular, None)),
            ),
            (
                "outside",
                tar_of(|b| raw_entry(b, "l", EntryType::Symlink, Some("/etc"))),
            ),
            (
                "outside",
                tar_of(|b| raw_entry(b, "l", EntryType::Symlink, Some("../../etc"))),
            ),
            (
                "outside",
                tar_of(|b| raw_entry(b, "d/l", EntryType::Symlink, Some("x/../../.."))),
            ),
            ("..", tar_of(|b| raw_entry(b, "h", EntryType::Link, Some("../outside")))),
            (
                "absolute",
                tar_of(|b| raw_entry(b, "h", EntryType::Link, Some("/etc/shadow"))),
            ),
            ("device", tar_of(|b| raw_entry(b, "dev", EntryType::Char, None))),
            ("device", tar_of(|b| raw_entry(b, "blk", EntryType::Block, None))),
            ("fifo", tar_of(|b| raw_entry(b, "pipe", EntryType::Fifo, None))),
        ];
        for (expected, input) in cases {
            match sanitize(&input) {
                Err(ArchiveError::Refused(reason)) => assert!(reason.contains(expected), "{reason}"),
                other => panic!("expected a refusal mentioning {expected}, got {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn a_refusal_after_good_entries_still_fails_the_whole_archive() {
        let input = tar_of(|builder| {
            file(builder, "ok.txt", b"fine");
            raw_entry(builder, "../evil", EntryType::Regular, None);
        });
        assert!(matches!(sanitize(&input), Err(ArchiveError::Refused(_))));
    }

    #[test]
    fn garbage_is_not_a_tar() {
        let garbage = vec![0x41u8; 1000];
        assert!(matches!(sanitize(&garbage), Err(ArchiveError::Io(_))));
    }

    fn engine_stream(bytes: Vec<u8>, chunk: usize) -> EngineByteStream {
        let chunks: Vec<Result<Bytes, RuntimeError>> = bytes
            .chunks(chunk)
            .map(|piece| Ok(Bytes::copy_from_slice(piece)))
            .collect();
        futures::stream::iter(chunks).boxed()
    }

    async fn collect(body: ByteStream) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut body = body;
        while let Some(piece) = body.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn the_first_file_of_an_engine_archive_is_streamed_whatever_the_chunking() {
        let data: Vec<u8> = (0..5000u32).map(|n| (n % 251) as u8).collect();
        let input = tar_of(|builder| file(builder, "file.bin", &data));
        for chunk in [1, 7, 512, 513, 4096, input.len()] {
            let (size, body) = first_file(engine_stream(input.clone(), chunk)).await.unwrap();
            assert_eq!(size, 5000, "chunk {chunk}");
            assert_eq!(collect(body).await.unwrap(), data, "chunk {chunk}");
        }
        let dir = tar_of(|builder| raw_entry(builder, "d/", EntryType::Directory, None));
        assert!(first_file(engine_stream(dir, 512)).await.is_err());
        assert!(
            first_file(engine_stream(vec![0; 1024], 512)).await.is_err(),
            "an empty archive"
        );
    }

    #[tokio::test]
    async fn long_names_and_pax_headers_are_skipped_and_pax_size_wins() {
        let data = vec![9u8; 700];
        let long_name = format!("{}/file.bin", "d".repeat(150));
        let input = tar_of(|builder| {
            let mut header = Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(EntryType::Regular);
            builder.append_data(&mut header, &long_name, &data[..]).unwrap();
        });
        let (size, body) = first_file(engine_stream(input, 100)).await.unwrap();
        assert_eq!(size, 700);
        assert_eq!(collect(body).await.unwrap(), data);
        assert_eq!(pax_size_record(b"20 path=a/b/c.bin\n16 size=123456\n"), Some(123_456));
        assert_eq!(pax_size_record(b"20 path=a/b/c.bin\n"), None);
    }

    #[tokio::test]
    async fn a_file_cut_short_is_an_error_not_a_short_file() {
        let input = tar_of(|builder| file(builder, "file.bin", &[5u8; 3000]));
        let cut = input[..512 + 1000].to_vec();
        let (size, body) = first_file(engine_stream(cut, 256)).await.unwrap();
        assert_eq!(size, 3000);
        assert!(collect(body).await.is_err());
    }

    #[test]
    fn a_listing_has_the_direct_children_only() {
        let input = tar_of(|builder| {
            raw_entry(builder, "etc/", EntryType::Directory, None);
            file(builder, "etc/hosts", b"127.0.0.1 localhost\n");
            raw_entry(builder, "etc/ssl/", EntryType::Directory, None);
            file(builder, "etc/ssl/cert.pem", b"x");
            raw_entry(builder, "etc/mtab", EntryType::Symlink, Some("/proc/mounts"));
        });
        let listed = list_children(&input[..], "/etc").unwrap();
        let names: Vec<_> = listed
            .iter()
            .map(|entry| (entry.name.as_str(), entry.kind.as_str()))
            .collect();
        assert_eq!(names, [("hosts", "file"), ("mtab", "symlink"), ("ssl", "dir")]);
        assert_eq!(listed[0].path, "/etc/hosts");
        assert_eq!(listed[0].size, 20);
        assert_eq!(listed[0].mode, "0640");
        assert_eq!(listed[1].link_target.as_deref(), Some("/proc/mounts"));

        // The engine's archive of `/` names its entries `/`, `/bin/`, `/bin/sh`…
        let root = tar_of(|builder| {
            raw_entry(builder, "/", EntryType::Directory, None);
            raw_entry(builder, "/bin/", EntryType::Directory, None);
            raw_entry(builder, "/bin/sh", EntryType::Symlink, Some("/bin/busybox"));
            file(builder, ".dockerenv", b"");
        });
        let listed = list_children(&root[..], "/").unwrap();
        let paths: Vec<_> = listed.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(paths, ["/.dockerenv", "/bin"]);
    }

    #[test]
    fn engine_modes_become_permission_bits_and_a_kind() {
        let stat = |mode: u32, is_dir: bool, link: Option<&str>| PathStat {
            name: "x".into(),
            size: 1,
            mode,
            is_dir,
            modified_at: None,
            link_target: link.map(str::to_owned),
        };
        let file = file_stat("/x", &stat(0o644, false, None));
        assert_eq!((file.mode.as_str(), file.kind.as_str()), ("0644", "file"));
        let tmp = file_stat("/tmp", &stat(GO_MODE_DIR | GO_MODE_STICKY | 0o777, true, None));
        assert_eq!((tmp.mode.as_str(), tmp.kind.as_str()), ("1777", "dir"));
        let link = file_stat("/bin/sh", &stat(GO_MODE_SYMLINK | 0o777, false, Some("/bin/busybox")));
        assert_eq!(link.kind, "symlink");
        let fifo = file_stat("/p", &stat(GO_MODE_NAMED_PIPE | 0o600, false, None));
        assert_eq!(fifo.kind, "other");
        let setuid = file_stat("/s", &stat(GO_MODE_SETUID | 0o755, false, None));
        assert_eq!(setuid.mode, "4755");
    }
}
