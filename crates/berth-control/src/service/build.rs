//! Template builds: a template's image built by the engine from a Dockerfile and a tar build
//! context, its output handed on line by line as it comes. Once the build succeeds the template
//! runs the built image (its error cleared) and its pool refills from it.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::{BuildDone, BuildLine};
use berth_core::Template;
use berth_runtime::{BuildEvent, BuildRequest, ByteStream, DEFAULT_DOCKERFILE, RuntimeError};
use chrono::Utc;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{NotFoundKind, SandboxService, ServiceError};
use crate::body::{BodyFault, FaultSlot, fault, guard_body};

/// Repository of the images built for templates whose image is not a plain local reference.
pub const BUILT_IMAGE_REPOSITORY: &str = "berth-template";
/// Label naming the template (`name:tag`) on every image built for it.
pub const TEMPLATE_LABEL: &str = "berth.template";
/// Build lines held for a slow client; past this the build's output waits for it.
const LINE_BUFFER: usize = 16;
/// Longest Dockerfile path accepted.
const MAX_DOCKERFILE_PATH: usize = 4096;

/// How a template build is asked for, besides its context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Path of the Dockerfile inside the context; `Dockerfile` when `None`.
    pub dockerfile: Option<String>,
    /// `ARG` values.
    pub build_args: BTreeMap<String, String>,
}

/// The reference a template's build is tagged with: the template's own image when that is a
/// plain local reference (no registry host, no digest), so that the template, and every other
/// user of that name, gets the built image under the name it already has; otherwise
/// `berth-template/<name>:<tag>`, which the template is then switched to.
pub fn build_tag(template: &Template) -> String {
    if is_plain_local(&template.spec.image) {
        template.spec.image.clone()
    } else {
        format!("{BUILT_IMAGE_REPOSITORY}/{}:{}", template.name, template.tag)
    }
}

/// No digest, and no registry host as first component (Docker's rule: one with a `.` or a `:`,
/// or `localhost`): a name a build can tag.
fn is_plain_local(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    match image.split_once('/') {
        Some((first, _)) => !(first.contains(['.', ':']) || first == "localhost"),
        None => true,
    }
}

/// The Dockerfile's path in the context: relative, without `..` (the engine reads it from the
/// context, never from outside).
fn validate_dockerfile(path: Option<&str>) -> Result<String, ServiceError> {
    let Some(path) = path else {
        return Ok(DEFAULT_DOCKERFILE.to_owned());
    };
    let invalid = |message: &str| ServiceError::invalid("dockerfile", format!("`{path}` {message}"));
    if path.is_empty() || path.len() > MAX_DOCKERFILE_PATH || path.contains('\0') {
        return Err(invalid(
            "must be a path inside the build context, e.g. Dockerfile or build/Dockerfile",
        ));
    }
    if path.starts_with('/') || path.split('/').any(|part| part == "..") {
        return Err(invalid("must be relative to the build context's root, without `..`"));
    }
    Ok(path.to_owned())
}

fn validate_build_args(build_args: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    match build_args
        .keys()
        .find(|key| key.is_empty() || key.contains(['=', '\0']))
    {
        Some(key) => Err(ServiceError::invalid(
            "buildarg",
            format!("`{key}` is not an argument name; expected KEY=VALUE"),
        )),
        None => Ok(()),
    }
}

/// The build's own message for a failed build: what the engine said went wrong.
fn failure_message(error: RuntimeError, slot: &FaultSlot) -> String {
    if let Some(fault) = fault(slot) {
        return fault.into_service().to_string();
    }
    match error {
        RuntimeError::Invalid(message) => message,
        other => other.to_string(),
    }
}

impl SandboxService {
    /// Builds the template's image from the tar `context` (`length` bytes when the client said
    /// so) and answers its output as it comes, ending with `done` or `error`. Refusals before the
    /// engine starts — no such template, bad options, a context over `max_file_size`, an engine
    /// that is away or refuses the context — are errors instead. A client that hangs up cancels
    /// the build; a build that succeeded always updates the template.
    pub async fn build_template(
        self: &Arc<Self>,
        reference: &str,
        options: BuildOptions,
        context: ByteStream,
        length: Option<u64>,
    ) -> Result<BoxStream<'static, BuildLine>, ServiceError> {
        let template = self.get_template(reference).await?;
        let dockerfile = validate_dockerfile(options.dockerfile.as_deref())?;
        validate_build_args(&options.build_args)?;
        let limit = self.config.max_file_size;
        if length.is_some_and(|length| length > limit) {
            return Err(BodyFault::TooLarge(limit).into_service());
        }
        let slot = FaultSlot::default();
        let context = guard_body(context, limit, length, Arc::clone(&slot));
        let key = template.reference().to_string();
        let request = BuildRequest {
            tag: build_tag(&template),
            dockerfile,
            build_args: options.build_args,
            labels: BTreeMap::from([(TEMPLATE_LABEL.to_owned(), key.clone())]),
        };
        info!(template = %key, image = %request.tag, dockerfile = %request.dockerfile, "building the template's image");
        let build = match self.runtime.build_image(&request, context).await {
            Ok(build) => build,
            Err(error) => {
                return Err(match fault(&slot) {
                    Some(fault) => fault.into_service(),
                    None => ServiceError::Engine {
                        error,
                        sandbox_id: None,
                    },
                });
            }
        };
        let (sender, receiver) = mpsc::channel(LINE_BUFFER);
        let service = Arc::clone(self);
        tokio::spawn(async move { service.drive_build(template, request.tag, build, slot, sender).await });
        Ok(futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|line| (line, receiver))
        })
        .boxed())
    }

    /// Hands the build's output on; on success, switches the template to the image before
    /// saying `done`, so that a client that saw `done` finds the template updated.
    async fn drive_build(
        self: Arc<Self>,
        template: Template,
        image: String,
        mut build: BoxStream<'static, Result<BuildEvent, RuntimeError>>,
        slot: FaultSlot,
        lines: mpsc::Sender<BuildLine>,
    ) {
        let key = template.reference().to_string();
        let last = loop {
            match build.next().await {
                Some(Ok(BuildEvent::Log(line))) => {
                    if lines.send(BuildLine::Log(line)).await.is_err() {
                        // Dropping the build stream closes the engine connection: the engine
                        // cancels the build, as `docker build` interrupted would.
                        info!(template = %key, "the client left: build cancelled");
                        return;
                    }
                }
                Some(Ok(BuildEvent::Done { image_id })) => {
                    break match self.adopt_built_image(&template, &image).await {
                        Ok(()) => {
                            info!(template = %key, %image, %image_id, "template image built");
                            BuildLine::Done(BuildDone { image, image_id })
                        }
                        Err(error) => {
                            warn!(template = %key, %image, %error, "built, but the template was not updated");
                            BuildLine::Error(format!(
                                "the image {image} ({image_id}) was built, but the template was not updated: {error}"
                            ))
                        }
                    };
                }
                Some(Err(error)) => {
                    let message = failure_message(error, &slot);
                    info!(template = %key, %message, "template build failed");
                    break BuildLine::Error(message);
                }
                None => break BuildLine::Error("the engine ended the build without a result".to_owned()),
            }
        };
        // A client gone by now misses only the last line; the template is already updated.
        let _ = lines.send(last).await;
    }

    /// Makes the template run `image` (and clears its error), unless it was pointed at another
    /// image while the build ran; then its pool refills from the new image.
    async fn adopt_built_image(self: &Arc<Self>, built_for: &Template, image: &str) -> Result<(), ServiceError> {
        let key = built_for.reference();
        let mut current = self.store.get_template(&key.name, &key.tag).await?.ok_or_else(|| {
            ServiceError::not_found(
                NotFoundKind::Template,
                format!("template `{key}` was deleted while it was built"),
            )
        })?;
        if current.spec.image != built_for.spec.image && current.spec.image != image {
            return Err(ServiceError::InvalidState(format!(
                "template `{key}` was switched to image `{}` while it was built; it was left as it is",
                current.spec.image
            )));
        }
        current.spec.image = image.to_owned();
        current.error = None;
        current.updated_at = Utc::now();
        super::retry_store(|| self.store.update_template(&current)).await?;
        self.refresh_pool_after_build(&current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> Template {
        berth_core::TemplateRequest {
            name: Some("py".into()),
            tag: Some("3.12".into()),
            image: Some(image.into()),
            ..berth_core::TemplateRequest::default()
        }
        .validate(&berth_core::SpecPolicy::default(), None, Utc::now())
        .unwrap()
    }

    #[test]
    fn a_plain_local_image_is_built_under_its_own_name() {
        for image in ["berth-test/built-1:latest", "python:3.12", "busybox", "a/b/c:v1"] {
            assert_eq!(build_tag(&template(image)), image);
        }
        for image in [
            "registry.example.com/python:3.12",
            "localhost/python:3.12",
            "localhost:5000/python",
            "python@sha256:0123456789012345678901234567890123456789012345678901234567890123",
        ] {
            assert_eq!(build_tag(&template(image)), "berth-template/py:3.12", "{image}");
        }
    }

    #[test]
    fn the_dockerfile_stays_inside_the_context() {
        assert_eq!(validate_dockerfile(None).unwrap(), "Dockerfile");
        assert_eq!(
            validate_dockerfile(Some("build/Dockerfile.dev")).unwrap(),
            "build/Dockerfile.dev"
        );
        for bad in ["", "/etc/passwd", "../Dockerfile", "a/../../b"] {
            assert!(validate_dockerfile(Some(bad)).is_err(), "{bad}");
        }
        assert!(validate_build_args(&BTreeMap::from([("A".into(), "1=2".into())])).is_ok());
        assert!(validate_build_args(&BTreeMap::from([(String::new(), "1".into())])).is_err());
    }
}
