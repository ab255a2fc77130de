//! The data path into a sandbox: commands in every form (one-shot, streamed, interactive,
//! background with signals) and files streamed in and out, today through the engine's exec and
//! archive APIs.
//!
//! It reaches a sandbox only through the control plane's `running_container` (one rule: the
//! sandbox must be `Running`), its runtime and its process registry, and must know nothing of
//! HTTP: the routes that call it live in the HTTP surfaces.

pub mod exec;
pub mod files;
