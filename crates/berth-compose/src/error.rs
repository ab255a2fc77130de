//! [`ComposeError`]: why a compose file cannot be planned, one variant per kind of refusal.

/// Why a compose file cannot be planned; every message is one line naming the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("compose file is not valid YAML: {0}")]
    Yaml(String),
    #[error("compose file does not match the compose format at `{path}`: {message}")]
    Format { path: String, message: String },
    #[error("compose file defines no services: add a `services:` section with at least one service")]
    NoServices,
    #[error("{location}: `${{` is not closed by `}}`; close it, or write `$${{` for a literal `${{`")]
    UnterminatedVariable { location: String },
    #[error("{location}: variable `{variable}` is required: {message}; set it in the instance's environment variables")]
    RequiredVariable {
        location: String,
        variable: String,
        message: String,
    },
    #[error("{location}: {reason}")]
    BadSubstitution { location: String, reason: String },
    #[error(
        "compose file uses keys berth does not support: {}; remove them (build images first, use named volumes, drop host access)",
        paths.join(", ")
    )]
    Unsupported { paths: Vec<String> },
    #[error(
        "service `{service}` has no `image`; berth does not build images: build and push it, then name it in `image`"
    )]
    MissingImage { service: String },
    #[error(
        "service `{service}` depends on `{dependency}`, which the compose file does not define; define it or remove the dependency"
    )]
    UnknownDependency { service: String, dependency: String },
    #[error("services depend on each other in a cycle: {}; break the cycle in `depends_on`", cycle.join(" → "))]
    DependencyCycle {
        /// The services of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    #[error("more than one service is labelled aenv.main=true ({}); label exactly one", services.join(", "))]
    SeveralMainServices { services: Vec<String> },
    #[error("`{path}`: {message}")]
    Invalid { path: String, message: String },
}
