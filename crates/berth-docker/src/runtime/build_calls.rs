//! The engine call for image builds: the build context streams to the classic builder (Engine
//! 20.10 here: no BuildKit session), at the client's pace; the call answers once the engine has
//! taken the context and said its first word, and the build's output then streams with no
//! deadline until the build ends or the stream is dropped (which cancels the build).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use berth_runtime::{BuildEvent, BuildRequest, ByteStream, RuntimeError};
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::BuildInfo;
use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::DockerRuntime;
use super::work_calls::watched_body;
use crate::build::BuildOutput;
use crate::error::{OwnedEngine, Subject};

/// Engine messages held between the engine connection and the caller.
const MESSAGE_BUFFER: usize = 16;

/// What is left of a build once it answered: its messages, and what turns them into events.
struct Running {
    messages: BoxStream<'static, Result<BuildInfo, BollardError>>,
    output: BuildOutput,
    finished: bool,
    docker: Docker,
    engine: OwnedEngine,
    tag: String,
    call_timeout: std::time::Duration,
}

impl DockerRuntime {
    pub(super) async fn build_image_impl(
        &self,
        request: &BuildRequest,
        context: ByteStream,
    ) -> Result<BoxStream<'static, Result<BuildEvent, RuntimeError>>, RuntimeError> {
        let build_args: HashMap<&str, &str> = request
            .build_args
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let labels: HashMap<&str, &str> = request
            .labels
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        // `pull` stays unset (false): a FROM of a local image must build with no registry, and
        // the engine still pulls a FROM image that is missing.
        let options = BuildImageOptionsBuilder::new()
            .t(&request.tag)
            .dockerfile(&request.dockerfile)
            .rm(true)
            .forcerm(true)
            .buildargs(&build_args)
            .labels(&labels)
            .version(BuilderVersion::BuilderV1)
            .build();

        let body_error = Arc::new(OnceLock::new());
        let (done_tx, done_rx) = oneshot::channel();
        let body = watched_body(context, self.config.call_timeout, done_tx, Arc::clone(&body_error));
        // bollard's build stream borrows its client: a task owning a clone drives it, so the
        // stream handed on owns everything. Dropping the receiver ends the task, which closes the
        // connection, which makes the engine cancel the build.
        let docker = self.docker.clone();
        let (sender, receiver) = mpsc::channel(MESSAGE_BUFFER);
        tokio::spawn(async move {
            let mut messages = docker.build_image(options, None, Some(bollard::body_try_stream(body)));
            while let Some(message) = messages.next().await {
                let failed = message.is_err();
                if sender.send(message).await.is_err() || failed {
                    return;
                }
            }
        });
        let mut messages = stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|message| (message, receiver))
        })
        .boxed();

        // The deadline starts when the context has been sent: the body's pace is the client's.
        let deadline = self.config.call_timeout;
        let first = {
            let next = messages.next();
            tokio::pin!(next);
            tokio::select! {
                first = &mut next => Ok(first),
                _ = done_rx => tokio::time::timeout(deadline, &mut next).await,
            }
        };
        let first = match first {
            Err(_) => return Err(self.timed_out("image build", deadline)),
            Ok(None) => {
                return Err(match body_error.get() {
                    Some(reason) => context_failed(reason),
                    None => RuntimeError::Other("the engine ended the build without answering".into()),
                });
            }
            Ok(Some(Err(err))) => return Err(self.build_refused(&err, &body_error)),
            Ok(Some(Ok(first))) => first,
        };
        let running = Running {
            messages: stream::once(async move { Ok(first) }).chain(messages).boxed(),
            output: BuildOutput::default(),
            finished: false,
            docker: self.docker.clone(),
            engine: self.owned_engine(),
            tag: request.tag.clone(),
            call_timeout: self.config.call_timeout,
        };
        Ok(stream::unfold(running, next_event).boxed())
    }

    /// The engine's refusal of a build before its output started: a context it cannot read, no
    /// Dockerfile where the request says, an invalid option.
    fn build_refused(&self, err: &BollardError, body_error: &OnceLock<String>) -> RuntimeError {
        if let Some(reason) = body_error.get() {
            return context_failed(reason);
        }
        match err {
            BollardError::DockerStreamError { error } => RuntimeError::Invalid(error.trim().to_owned()),
            // API 1.41 answers what is wrong with the context or the Dockerfile with a 500.
            BollardError::DockerResponseServerError {
                status_code: 500,
                message,
            } if !message.trim().is_empty() => RuntimeError::Invalid(message.trim().to_owned()),
            other => self.owned_engine().classify(other, Subject::Engine),
        }
    }
}

fn context_failed(reason: &str) -> RuntimeError {
    RuntimeError::Invalid(format!("the build context stream failed: {reason}"))
}

/// The next event of a running build; after an error, or `Done`, nothing more.
async fn next_event(mut running: Running) -> Option<(Result<BuildEvent, RuntimeError>, Running)> {
    loop {
        if let Some(event) = running.output.ready.pop_front() {
            return Some((event, running));
        }
        if running.finished {
            return None;
        }
        match running.messages.next().await {
            Some(Ok(info)) => running.finished = running.output.take(info),
            Some(Err(err)) => {
                running.output.flush();
                let error = match err {
                    // bollard hands the build's own error (`errorDetail`) on as a stream error.
                    BollardError::DockerStreamError { error } => RuntimeError::Invalid(error.trim().to_owned()),
                    other => running.engine.classify(&other, Subject::Engine),
                };
                running.output.ready.push_back(Err(error));
                running.finished = true;
            }
            None => {
                running.output.flush();
                let done = match running.output.image_id.take() {
                    Some(image_id) => Ok(BuildEvent::Done { image_id }),
                    None => built_image_id(&running.docker, &running.engine, &running.tag, running.call_timeout)
                        .await
                        .map(|image_id| BuildEvent::Done { image_id }),
                };
                running.output.ready.push_back(done);
                running.finished = true;
            }
        }
    }
}

/// The id of the image the build tagged, when the engine did not say it in the stream.
async fn built_image_id(
    docker: &Docker,
    engine: &OwnedEngine,
    tag: &str,
    deadline: std::time::Duration,
) -> Result<String, RuntimeError> {
    let inspect = tokio::time::timeout(deadline, docker.inspect_image(tag))
        .await
        .map_err(|_| RuntimeError::Timeout(format!("inspecting the built image {tag} took too long")))?
        .map_err(|err| engine.classify(&err, Subject::Image(tag)))?;
    inspect
        .id
        .ok_or_else(|| RuntimeError::Other(format!("the engine reports no id for the built image {tag}")))
}
