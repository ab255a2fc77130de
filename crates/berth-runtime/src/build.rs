//! Image builds through the engine: what a build is asked for ([`BuildRequest`]) and what it
//! reports while it runs ([`BuildEvent`]).

use std::collections::BTreeMap;

/// The Dockerfile a build reads when none is named, relative to the context's root.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";

/// One image build from a tar build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// The reference the built image is tagged with, e.g. `berth-template/python:latest`.
    pub tag: String,
    /// Path of the Dockerfile inside the context, [`DEFAULT_DOCKERFILE`] by default.
    pub dockerfile: String,
    /// `ARG` values, as `docker build --build-arg` sets them.
    pub build_args: BTreeMap<String, String>,
    /// Labels put on the built image.
    pub labels: BTreeMap<String, String>,
}

impl BuildRequest {
    /// A build of the context's default Dockerfile, tagged `tag`, with no arguments or labels.
    pub fn new(tag: impl Into<String>) -> Self {
        BuildRequest {
            tag: tag.into(),
            dockerfile: DEFAULT_DOCKERFILE.to_owned(),
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// What a running build reports. A failed build ends its stream with an
/// `Err(RuntimeError::Invalid(<the build's message>))` item instead of [`BuildEvent::Done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// One line of build output (without its line break), e.g. `Step 2/5 : RUN make`.
    Log(String),
    /// The build succeeded: the image is tagged and has this id (`sha256:…`).
    Done { image_id: String },
}
