//! The data path obeys the control plane's one rule for work inside a sandbox: it must be
//! `Running` (on the fake engine and a real SQLite store).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failed test with its message"
)]

use std::sync::Arc;

use berth_control::service::ServiceError;
use berth_core::SandboxRequest;
use berth_runtime::fake::FakeRuntime;
use berth_server::{ServerConfig, start};
use berth_store::SqliteStore;

#[tokio::test]
async fn exec_and_files_need_a_running_sandbox_and_bad_paths_are_refused_whatever_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("berth.db")).await.unwrap());
    let (service, _background) = start(ServerConfig::default(), Arc::new(FakeRuntime::default()), store)
        .await
        .unwrap();
    let request = SandboxRequest {
        image: Some("busybox".into()),
        ..SandboxRequest::default()
    };
    let sandbox = service.create(request, None, true).await.unwrap().sandbox;
    let id = sandbox.id.as_str();
    service.pause(id).await.unwrap();
    let exec = berth_api::ExecRequest {
        cmd: vec!["true".into()],
        ..Default::default()
    };
    assert!(matches!(
        berth_work::exec::run(&service, id, &exec).await,
        Err(ServiceError::InvalidState(message)) if message.contains("resume it first")
    ));
    assert!(matches!(
        berth_work::files::stat(&service, id, "/tmp").await,
        Err(ServiceError::InvalidState(_))
    ));
    assert!(matches!(
        berth_work::files::stat(&service, id, "../../etc/passwd").await,
        Err(ServiceError::InvalidRequest(errors)) if errors.0[0].field == "path"
    ));
}
