//! berth's [`Runtime`](berth_runtime::Runtime) on the Docker Engine API (bollard), API 1.41 and
//! newer. The only crate that names bollard.
//!
//! ```no_run
//! # async fn example() -> Result<(), berth_runtime::RuntimeError> {
//! use berth_docker::{DockerConfig, DockerRuntime};
//! let runtime = DockerRuntime::connect(DockerConfig::default()).await?;
//! println!("{:?}", runtime.engine_info());
//! # Ok(()) }
//! ```

mod build;
mod connect;
mod error;
mod guard;
mod runtime;
mod spec;
mod stack;
mod state;
mod work;

pub use connect::{DEFAULT_ENDPOINT, DockerConfig, TlsPaths};
pub use guard::{GuardMode, HostGuardConfig, default_private_ranges};
pub use runtime::DockerRuntime;
