//! The engine calls for work inside a container: exec sessions, archive (tar) transfers, path
//! stats, logs, stats and pause. Each call runs under the per-call deadline until the engine has
//! answered; the streams it returns are not cut by it afterwards.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use berth_runtime::{
    ByteStream, EngineByteStream, ExecSession, ExecSpec, ExecState, LogOptions, OutputChunk, PathStat, ResourceStats,
    RuntimeError,
};
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder, LogsOptionsBuilder, ResizeExecOptions,
    StatsOptionsBuilder, StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use super::{DockerRuntime, is_container_ref};
use crate::error::{OwnedEngine, Subject};
use crate::work;

/// How long the engine may take to sample before it answers a stats call (it takes two samples
/// about a second apart), on top of the per-call deadline.
const STATS_SAMPLING: Duration = Duration::from_secs(3);

impl DockerRuntime {
    pub(super) fn owned_engine(&self) -> OwnedEngine {
        OwnedEngine {
            name: self.config.name.clone(),
            endpoint: self.info.endpoint.clone(),
        }
    }

    pub(super) fn timed_out(&self, what: &str, deadline: Duration) -> RuntimeError {
        RuntimeError::Timeout(format!(
            "{what} on engine `{}` took longer than {}s",
            self.config.name,
            deadline.as_secs_f32()
        ))
    }

    /// Waits (under the per-call deadline) for the first item of an engine stream, so that a
    /// refusal surfaces from the call itself; the rest streams with no deadline.
    async fn first_then_rest<T, S>(
        &self,
        what: &str,
        stream: S,
        classify: impl Fn(&BollardError) -> RuntimeError + Send + 'static,
    ) -> Result<BoxStream<'static, Result<T, RuntimeError>>, RuntimeError>
    where
        T: Send + 'static,
        S: Stream<Item = Result<T, BollardError>> + Send + Unpin + 'static,
    {
        self.first_then_rest_within(self.config.call_timeout, what, stream, classify)
            .await
    }

    async fn first_then_rest_within<T, S>(
        &self,
        deadline: Duration,
        what: &str,
        mut stream: S,
        classify: impl Fn(&BollardError) -> RuntimeError + Send + 'static,
    ) -> Result<BoxStream<'static, Result<T, RuntimeError>>, RuntimeError>
    where
        T: Send + 'static,
        S: Stream<Item = Result<T, BollardError>> + Send + Unpin + 'static,
    {
        let first = match tokio::time::timeout(deadline, stream.next()).await {
            Err(_) => return Err(self.timed_out(what, deadline)),
            Ok(None) => return Ok(stream::empty().boxed()),
            Ok(Some(Err(err))) => return Err(classify(&err)),
            Ok(Some(Ok(first))) => first,
        };
        let rest = stream.map(move |item| item.map_err(|err| classify(&err)));
        Ok(stream::once(async move { Ok(first) }).chain(rest).boxed())
    }

    pub(super) async fn exec_impl(&self, container_id: &str, spec: &ExecSpec) -> Result<ExecSession, RuntimeError> {
        if !is_container_ref(container_id) {
            return Err(RuntimeError::NotFound(container_id.to_owned()));
        }
        if spec.cmd.is_empty() {
            return Err(RuntimeError::Invalid("an exec needs a command".into()));
        }
        let config = ExecConfig {
            attach_stdin: Some(spec.attach_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            env: (!spec.env.is_empty()).then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            cmd: Some(spec.cmd.clone()),
            user: spec.user.clone(),
            working_dir: spec.workdir.clone(),
            ..Default::default()
        };
        // 409 when the container is paused or not running.
        let created = self
            .call(
                "exec create",
                Subject::Container(container_id),
                self.docker.create_exec(container_id, config),
            )
            .await
            .map_err(|err| match err {
                RuntimeError::Conflict(message) => RuntimeError::Conflict(format!("cannot exec: {message}")),
                other => other,
            })?;
        let exec_id = created.id;
        let options = StartExecOptions {
            detach: false,
            tty: spec.tty,
            output_capacity: None,
        };
        // Returns once the connection is upgraded; a program that cannot start still "starts"
        // (its error is in the output, its 126/127 in `exec_state`).
        let started = self
            .call(
                "exec start",
                Subject::Exec(&exec_id),
                self.docker.start_exec(&exec_id, Some(options)),
            )
            .await?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(RuntimeError::Other("the engine started the exec detached".into()));
        };
        let engine = self.owned_engine();
        let output_exec_id = exec_id.clone();
        let output = output
            .filter_map(move |frame| {
                let item = match frame {
                    Ok(frame) => work::output_chunk(frame).map(Ok),
                    Err(err) => Some(Err(engine.classify(&err, Subject::Exec(&output_exec_id)))),
                };
                futures::future::ready(item)
            })
            .boxed();
        Ok(ExecSession {
            exec_id,
            output,
            // Without stdin attached the engine gives the process none; the writer is dropped.
            stdin: spec
                .attach_stdin
                .then(|| Box::pin(StdinWriter { inner: Some(input) }) as Pin<Box<dyn AsyncWrite + Send>>),
        })
    }

    pub(super) async fn exec_state_impl(&self, exec_id: &str) -> Result<ExecState, RuntimeError> {
        if !is_container_ref(exec_id) {
            return Err(RuntimeError::NotFound(format!("exec {exec_id}")));
        }
        let inspect = self
            .call(
                "exec inspect",
                Subject::Exec(exec_id),
                self.docker.inspect_exec(exec_id),
            )
            .await?;
        Ok(ExecState {
            running: inspect.running.unwrap_or(false),
            exit_code: inspect.exit_code,
        })
    }

    pub(super) async fn exec_resize_impl(&self, exec_id: &str, cols: u16, rows: u16) -> Result<(), RuntimeError> {
        if !is_container_ref(exec_id) {
            return Err(RuntimeError::NotFound(format!("exec {exec_id}")));
        }
        let options = ResizeExecOptions {
            h: i32::from(rows),
            w: i32::from(cols),
        };
        let result = self
            .call(
                "exec resize",
                Subject::Exec(exec_id),
                self.docker.resize_exec(exec_id, options),
            )
            .await;
        match result {
            // API 1.41 answers 404 for an exec that has ended, too.
            Err(RuntimeError::NotFound(what)) => match self.exec_state_impl(exec_id).await {
                Ok(state) if !state.running => Err(RuntimeError::Conflict(format!("exec {exec_id} has ended"))),
                _ => Err(RuntimeError::NotFound(what)),
            },
            // ... or a 500 while the engine is still closing it.
            Err(RuntimeError::Other(message)) if message.contains("cannot resize a stopped") => {
                Err(RuntimeError::Conflict(format!("exec {exec_id} has ended")))
            }
            other => other,
        }
    }

    pub(super) async fn upload_tar_impl(
        &self,
        container_id: &str,
        dir: &str,
        tar: ByteStream,
    ) -> Result<(), RuntimeError> {
        // Checked first: an engine that refuses while the body is still being sent may only
        // show a closed connection.
        let stat = self.stat_path_impl(container_id, dir).await?;
        if !stat.is_dir {
            return Err(RuntimeError::Invalid(format!(
                "{dir} in container {container_id} is not a directory"
            )));
        }
        let body_error = Arc::new(OnceLock::new());
        let (done_tx, done_rx) = oneshot::channel();
        let body = watched_body(tar, self.config.call_timeout, done_tx, Arc::clone(&body_error));
        // As `docker cp` does: an entry never replaces a directory with a file (or the reverse),
        // which would silently delete the directory's contents.
        let options = UploadToContainerOptionsBuilder::new()
            .path(dir)
            .no_overwrite_dir_non_dir("true")
            .build();
        let upload = self
            .docker
            .upload_to_container(container_id, Some(options), bollard::body_try_stream(body));
        tokio::pin!(upload);
        // The deadline starts when the body has been sent: the body's pace is the client's.
        let deadline = self.config.call_timeout;
        let result = tokio::select! {
            result = &mut upload => Ok(result),
            _ = done_rx => tokio::time::timeout(deadline, &mut upload).await,
        };
        match result {
            Err(_) => Err(self.timed_out("archive upload", deadline)),
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                if let Some(reason) = body_error.get() {
                    return Err(RuntimeError::Invalid(format!("the tar stream failed: {reason}")));
                }
                Err(
                    match self.owned_engine().classify(
                        &err,
                        Subject::Path {
                            container: container_id,
                            path: dir,
                        },
                    ) {
                        // API 1.41 answers both with a 500.
                        RuntimeError::Other(message) if message.contains("read-only") => {
                            RuntimeError::Conflict(message)
                        }
                        RuntimeError::Other(message) if is_bad_tar(&message) => RuntimeError::Invalid(message),
                        other => other,
                    },
                )
            }
        }
    }

    pub(super) async fn download_tar_impl(
        &self,
        container_id: &str,
        path: &str,
    ) -> Result<EngineByteStream, RuntimeError> {
        if !is_container_ref(container_id) {
            return Err(RuntimeError::NotFound(container_id.to_owned()));
        }
        let options = DownloadFromContainerOptionsBuilder::new().path(path).build();
        let body = self.docker.download_from_container(container_id, Some(options)).boxed();
        let engine = self.owned_engine();
        let (container, path) = (container_id.to_owned(), path.to_owned());
        self.first_then_rest("archive download", body, move |err| {
            engine.classify(
                err,
                Subject::Path {
                    container: &container,
                    path: &path,
                },
            )
        })
        .await
    }

    pub(super) async fn stat_path_impl(&self, container_id: &str, path: &str) -> Result<PathStat, RuntimeError> {
        if !is_container_ref(container_id) {
            return Err(RuntimeError::NotFound(container_id.to_owned()));
        }
        let options = ContainerArchiveInfoOptionsBuilder::new().path(path).build();
        let result = self
            .call(
                "archive stat",
                Subject::Path {
                    container: container_id,
                    path,
                },
                self.docker.get_container_archive_info(container_id, Some(options)),
            )
            .await;
        match result {
            Ok(stat) => Ok(work::path_stat(stat)),
            // A HEAD answer has no body to say which is missing: the container or the path.
            Err(RuntimeError::NotFound(what)) => match self.inspect_raw(container_id).await {
                Err(RuntimeError::NotFound(_)) => Err(RuntimeError::NotFound(container_id.to_owned())),
                _ => Err(RuntimeError::NotFound(what)),
            },
            Err(err) => Err(err),
        }
    }

    pub(super) async fn logs_impl(
        &self,
        container_id: &str,
        options: &LogOptions,
    ) -> Result<BoxStream<'static, Result<OutputChunk, RuntimeError>>, RuntimeError> {
        if !is_container_ref(container_id) {
            return Err(RuntimeError::NotFound(container_id.to_owned()));
        }
        // Following with no history means "what comes from now on". Asked as `tail=0`, the engine
        // would drop the lines written between this call and the moment it subscribes; asked as
        // "since now", it reads those from its log file first.
        let from_now;
        let options = if options.follow && options.tail == Some(0) && options.since.is_none() {
            from_now = LogOptions {
                tail: None,
                since: Some(chrono::Utc::now()),
                ..options.clone()
            };
            &from_now
        } else {
            options
        };
        let tail = options.tail.map_or_else(|| "all".to_owned(), |n| n.to_string());
        // The engine takes `since` in whole seconds (as bollard sends it): ask from the second it
        // falls in and drop, by their timestamps, the lines before it.
        let precise_since = options.since.filter(|since| since.timestamp_subsec_nanos() != 0);
        let mut query = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(options.follow)
            .timestamps(options.timestamps || precise_since.is_some())
            .tail(&tail);
        if let Some(since) = options.since {
            let seconds = since.timestamp().clamp(1, i64::from(i32::MAX));
            query = query.since(i32::try_from(seconds).unwrap_or(i32::MAX));
        }
        let engine = self.owned_engine();
        let id = container_id.to_owned();
        let classify = move |err: &BollardError| engine.classify(err, Subject::Container(&id));
        let frames = self.docker.logs(container_id, Some(query.build())).boxed();
        let stream = if options.follow {
            // A followed log may stay silent for as long as the program is: ask about the
            // container first, then stream without waiting for a first line.
            self.inspect_raw(container_id).await?;
            frames.map(move |item| item.map_err(|err| classify(&err))).boxed()
        } else {
            self.first_then_rest("container logs", frames, classify).await?
        };
        let keep_timestamps = options.timestamps;
        Ok(stream
            .filter_map(move |item| {
                let item = match item {
                    Ok(frame) => work::output_chunk(frame)
                        .and_then(|chunk| match precise_since {
                            Some(since) => work::log_line_since(chunk, since, keep_timestamps),
                            None => Some(chunk),
                        })
                        .map(Ok),
                    Err(err) => Some(Err(err)),
                };
                futures::future::ready(item)
            })
            .boxed())
    }

    pub(super) async fn stats_impl(
        &self,
        container_id: &str,
        stream: bool,
    ) -> Result<BoxStream<'static, Result<ResourceStats, RuntimeError>>, RuntimeError> {
        if !is_container_ref(container_id) {
            return Err(RuntimeError::NotFound(container_id.to_owned()));
        }
        // Not one-shot: the engine then takes two samples, so that `precpu_stats` is filled and
        // the CPU share can be computed from a single answer.
        let options = StatsOptionsBuilder::new().stream(stream).one_shot(false).build();
        let engine = self.owned_engine();
        let id = container_id.to_owned();
        let samples = self.docker.stats(container_id, Some(options)).boxed();
        let samples = self
            .first_then_rest_within(
                self.config.call_timeout + STATS_SAMPLING,
                "container stats",
                samples,
                move |err| engine.classify(err, Subject::Container(&id)),
            )
            .await?;
        let samples = samples.map(|item| item.map(|s| work::resource_stats(&s)));
        Ok(if stream {
            samples.boxed()
        } else {
            samples.take(1).boxed()
        })
    }

    pub(super) async fn pause_impl(&self, container_id: &str) -> Result<(), RuntimeError> {
        if !is_container_ref(container_id) {
            return Err(RuntimeError::NotFound(container_id.to_owned()));
        }
        self.call(
            "container pause",
            Subject::Container(container_id),
            self.docker.pause_container(container_id),
        )
        .await
    }

    pub(super) async fn stop_impl(&self, container_id: &str, grace: std::time::Duration) -> Result<(), RuntimeError> {
        if !is_container_ref(container_id) {
            return Err(RuntimeError::NotFound(container_id.to_owned()));
        }
        let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(seconds).build();
        match self
            .call(
                "container stop",
                Subject::Container(container_id),
                self.docker.stop_container(container_id, Some(options)),
            )
            .await
        {
            // The engine answers 304 for a container that had stopped already.
            Err(RuntimeError::Other(message)) if message.contains("304") => Ok(()),
            other => other,
        }
    }

    pub(super) async fn unpause_impl(&self, container_id: &str) -> Result<(), RuntimeError> {
        if !is_container_ref(container_id) {
            return Err(RuntimeError::NotFound(container_id.to_owned()));
        }
        self.call(
            "container unpause",
            Subject::Container(container_id),
            self.docker.unpause_container(container_id),
        )
        .await
        .map_err(|err| match err {
            // API 1.41 answers a container that is not paused with a 500.
            RuntimeError::Other(message) if message.contains("is not paused") => RuntimeError::Conflict(message),
            other => other,
        })
    }
}

/// An exec's attached stdin. Shutting it down half-closes the connection, which the engine
/// passes on as EOF; dropping it without a shutdown does the same, so that a process reading
/// stdin is never left waiting on a writer that is gone.
struct StdinWriter {
    inner: Option<Pin<Box<dyn AsyncWrite + Send>>>,
}

impl StdinWriter {
    fn inner(&mut self) -> io::Result<Pin<&mut (dyn AsyncWrite + Send + 'static)>> {
        self.inner
            .as_mut()
            .map(|inner| inner.as_mut())
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "stdin was shut down"))
    }
}

impl AsyncWrite for StdinWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.inner() {
            Ok(inner) => inner.poll_write(cx, buf),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner() {
            Ok(inner) => inner.poll_flush(cx),
            Err(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = std::task::ready!(inner.as_mut().poll_shutdown(cx));
        self.inner = None;
        Poll::Ready(result)
    }
}

impl Drop for StdinWriter {
    fn drop(&mut self) {
        if let (Some(mut inner), Ok(handle)) = (self.inner.take(), tokio::runtime::Handle::try_current()) {
            handle.spawn(async move {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut inner).await;
            });
        }
    }
}

/// The engine's refusal of a body that is not a tar archive.
fn is_bad_tar(message: &str) -> bool {
    message.contains("Error processing tar file") || message.contains("archive/tar")
}

/// The upload body as sent: each chunk must come within `idle` (a stalled client must not hold
/// the engine connection for ever); `done` fires when the body has ended, and a failure of the
/// caller's stream is kept in `error` so that it is not mistaken for the engine's.
pub(super) fn watched_body(
    tar: ByteStream,
    idle: Duration,
    done: oneshot::Sender<()>,
    error: Arc<OnceLock<String>>,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    stream::unfold((tar, Some(done)), move |(mut tar, mut done)| {
        let error = Arc::clone(&error);
        async move {
            let signal = done.take()?;
            match tokio::time::timeout(idle, tar.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), (tar, Some(signal)))),
                Ok(None) => {
                    let _ = signal.send(());
                    None
                }
                Ok(Some(Err(err))) => {
                    let _ = error.set(err.to_string());
                    Some((Err(err), (tar, None)))
                }
                Err(_) => {
                    let message = format!("no data for {}s", idle.as_secs_f32());
                    let _ = error.set(message.clone());
                    Some((Err(io::Error::new(io::ErrorKind::TimedOut, message)), (tar, None)))
                }
            }
        }
    })
}
