//! Snapshots and forks: a running sandbox's filesystem committed by the engine as an image that
//! carries the snapshot's record in its labels (owner, source, mode, retention, the source's
//! spec), listed and deleted per owner, collected by the leader once their retention ends; a
//! create from a snapshot; a fork into N children from one snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_core::sandbox::label_keys;
use berth_core::{Egress, Sandbox, SandboxId, SandboxRequest, SandboxSpec, Status, Template, TemplateRequest};
use berth_runtime::{ImageState, RuntimeError};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::{CreateExtras, SandboxService, ServiceError, pools};

const SNAPSHOT: &str = "berth.snapshot";
const OWNER: &str = "berth.snapshot.owner";
const SOURCE: &str = "berth.snapshot.source";
const MODE: &str = "berth.snapshot.mode";
const EXPIRES: &str = "berth.snapshot.expires";
const USER_LABELS: &str = "berth.snapshot.labels";
const SPEC: &str = "berth.snapshot.spec";

/// How long a snapshot is kept when its request names no `ttl`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The longest a snapshot may be kept.
pub const MAX_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long the snapshot a fork makes is kept (its children keep running without it).
pub const FORK_RETENTION: Duration = Duration::from_secs(3600);
/// Most children one fork makes.
pub const MAX_FORK: u32 = 64;

/// A snapshot as berth reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    pub id: String,
    pub sandbox_id: String,
    pub owner: String,
    pub mode: String,
    pub labels: BTreeMap<String, String>,
    pub size_bytes: u64,
    pub created_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The engine's image of it, which a create from it runs.
    pub image: String,
    pub spec: SandboxSpec,
}

/// What a fork made: the snapshot, the children that run, and why the others failed.
#[derive(Debug)]
pub struct Forked {
    pub snapshot: SnapshotInfo,
    pub sandboxes: Vec<Sandbox>,
    pub errors: Vec<ServiceError>,
}

fn snapshot_not_found(id: &str) -> ServiceError {
    ServiceError::not_found(
        super::NotFoundKind::Snapshot,
        format!("no snapshot `{id}`: see GET /v1/snapshots"),
    )
}

/// `request`'s fields laid over the spec of the sandbox `snapshot` was taken of (as over a
/// template's), running the snapshot's image.
fn request_over_snapshot(snapshot: &SnapshotInfo, request: &SandboxRequest) -> SandboxRequest {
    let mut base = snapshot.spec.clone();
    base.image = snapshot.image.clone();
    let now = Utc::now();
    let template = Template {
        name: "snapshot".into(),
        tag: snapshot.id.clone(),
        spec: base,
        pool: None,
        error: None,
        env_document: None,
        snapshot: Some(snapshot.id.clone()),
        created_at: now,
        updated_at: now,
    };
    let mut merged = pools::merged_request(&template, request);
    merged.image = Some(snapshot.image.clone());
    merged
}

impl SandboxService {
    /// The repository of this deployment's snapshot images.
    fn snapshot_repository(&self) -> String {
        let digest = Sha256::digest(self.config.cluster.as_bytes());
        let tag: String = digest[..3].iter().map(|byte| format!("{byte:02x}")).collect();
        format!("berth-snapshot-{tag}")
    }

    fn snapshot_info(&self, image: &ImageState) -> Option<SnapshotInfo> {
        let labels = &image.labels;
        if labels.get(label_keys::CLUSTER) != Some(&self.config.cluster) {
            return None;
        }
        let id = labels.get(SNAPSHOT)?.clone();
        Some(SnapshotInfo {
            image: format!("{}:{id}", self.snapshot_repository()),
            sandbox_id: labels.get(SOURCE)?.clone(),
            owner: labels.get(OWNER)?.clone(),
            mode: labels.get(MODE).cloned().unwrap_or_else(|| "filesystem".into()),
            labels: labels
                .get(USER_LABELS)
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default(),
            size_bytes: image.size_bytes,
            created_at: image.created_at,
            expires_at: labels
                .get(EXPIRES)
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                .map(|at| at.with_timezone(&Utc)),
            spec: serde_json::from_str(labels.get(SPEC)?).ok()?,
            id,
        })
    }

    /// Commits sandbox `id`'s filesystem as a snapshot kept for `retention` (paused for the
    /// instant of the commit). `mode` `memory` is refused: the engine cannot checkpoint.
    pub async fn snapshot(
        &self,
        id: &str,
        mode: Option<&str>,
        labels: BTreeMap<String, String>,
        retention: Option<Duration>,
    ) -> Result<SnapshotInfo, ServiceError> {
        match mode {
            None | Some("filesystem") => {}
            Some("memory") => {
                return Err(ServiceError::invalid(
                    "mode",
                    "memory snapshots need the engine's checkpoint support (an experimental Docker daemon with \
                     CRIU), which this engine does not offer: use mode filesystem"
                        .into(),
                ));
            }
            Some(other) => {
                return Err(ServiceError::invalid(
                    "mode",
                    format!("`{other}` is not a mode: use filesystem or memory"),
                ));
            }
        }
        for (key, value) in &labels {
            berth_core::labels::validate_label(key, value)
                .map_err(|message| ServiceError::invalid(&format!("labels.{key}"), message))?;
        }
        let retention = retention.unwrap_or(DEFAULT_RETENTION);
        if retention.is_zero() || retention > MAX_RETENTION {
            return Err(ServiceError::invalid(
                "ttl",
                format!(
                    "a snapshot is kept more than 0s and at most {}s",
                    MAX_RETENTION.as_secs()
                ),
            ));
        }
        let sandbox = self.get_latest(id).await?;
        if sandbox.spec.stack.is_some() {
            return Err(ServiceError::Unsupported(format!(
                "sandbox {id} is a compose stack: only single-container sandboxes can be snapshotted"
            )));
        }
        let container_id = match (&sandbox.status, &sandbox.container_id) {
            (Status::Running | Status::Paused, Some(container_id)) => container_id.clone(),
            (status, _) => {
                return Err(ServiceError::InvalidState(format!(
                    "sandbox {id} is {status}: only a Running or Paused sandbox can be snapshotted"
                )));
            }
        };
        let snapshot_id = SandboxId::generate().to_string();
        let expires_at = Utc::now() + chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let spec_json = serde_json::to_string(&sandbox.spec)
            .map_err(|error| ServiceError::InvalidState(format!("cannot record the spec: {error}")))?;
        let user_labels = serde_json::to_string(&labels)
            .map_err(|error| ServiceError::InvalidState(format!("cannot record the labels: {error}")))?;
        let image_labels = BTreeMap::from([
            (label_keys::CLUSTER.to_owned(), self.config.cluster.clone()),
            (SNAPSHOT.to_owned(), snapshot_id.clone()),
            (OWNER.to_owned(), sandbox.owner.clone()),
            (SOURCE.to_owned(), sandbox.id.to_string()),
            (MODE.to_owned(), "filesystem".to_owned()),
            (EXPIRES.to_owned(), expires_at.to_rfc3339()),
            (USER_LABELS.to_owned(), user_labels),
            (SPEC.to_owned(), spec_json),
        ]);
        let reference = format!("{}:{snapshot_id}", self.snapshot_repository());
        let started = std::time::Instant::now();
        let image = {
            // A delete or an expiry waits: the container stays until the commit is done.
            let _guard = self.locks.lock(&sandbox.id).await;
            let image = self
                .runtime
                .commit(&container_id, &reference, &image_labels)
                .await
                .map_err(ServiceError::engine_for(&sandbox.id))?;
            self.note_snapshot(&sandbox.id, &snapshot_id).await;
            image
        };
        info!(sandbox = %sandbox.id, snapshot = %snapshot_id, took = ?started.elapsed(), "snapshot taken");
        self.snapshot_info(&image)
            .ok_or_else(|| ServiceError::InvalidState(format!("snapshot {snapshot_id} was made without its labels")))
    }

    /// Records on sandbox `id` that `snapshot_id` was taken of it, which its event stream
    /// reports. The snapshot stands without it: a failure to record is logged, not answered.
    async fn note_snapshot(&self, id: &SandboxId, snapshot_id: &str) {
        let Ok(mut sandbox) = self.live_record(id) else {
            return;
        };
        sandbox.last_snapshot = Some(snapshot_id.to_owned());
        if let Err(error) = self.persist(&mut sandbox).await {
            warn!(sandbox = %id, snapshot = %snapshot_id, %error, "cannot record the snapshot on its sandbox");
        }
    }

    /// The snapshots of `owner`, or of every owner; newest first.
    pub async fn list_snapshots(&self, owner: Option<&str>) -> Result<Vec<SnapshotInfo>, ServiceError> {
        let mut wanted = BTreeMap::from([(label_keys::CLUSTER.to_owned(), self.config.cluster.clone())]);
        if let Some(owner) = owner {
            wanted.insert(OWNER.to_owned(), owner.to_owned());
        }
        let images = self.runtime.list_images(&wanted).await.map_err(ServiceError::engine)?;
        let mut snapshots: Vec<SnapshotInfo> = images.iter().filter_map(|image| self.snapshot_info(image)).collect();
        snapshots.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(snapshots)
    }

    /// Snapshot `id`, when `owner` (any owner: `None`) may see it; another owner's is a 404.
    pub async fn get_snapshot(&self, id: &str, owner: Option<&str>) -> Result<SnapshotInfo, ServiceError> {
        if SandboxId::parse(id).is_none() {
            return Err(snapshot_not_found(id));
        }
        let mut wanted = BTreeMap::from([
            (label_keys::CLUSTER.to_owned(), self.config.cluster.clone()),
            (SNAPSHOT.to_owned(), id.to_owned()),
        ]);
        if let Some(owner) = owner {
            wanted.insert(OWNER.to_owned(), owner.to_owned());
        }
        let images = self.runtime.list_images(&wanted).await.map_err(ServiceError::engine)?;
        images
            .iter()
            .find_map(|image| self.snapshot_info(image).filter(|snapshot| snapshot.id == id))
            .ok_or_else(|| snapshot_not_found(id))
    }

    /// Deletes snapshot `id`; a 409 while a sandbox made from it still has its container.
    pub async fn delete_snapshot(&self, id: &str, owner: Option<&str>) -> Result<(), ServiceError> {
        let snapshot = self.get_snapshot(id, owner).await?;
        let templates = self.templates_from_snapshot(id).await?;
        if !templates.is_empty() {
            return Err(ServiceError::InvalidState(format!(
                "snapshot {id} is what template {} starts from: delete the template or point it elsewhere first",
                templates.join(", ")
            )));
        }
        match self.runtime.remove_image(&snapshot.image).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {
                info!(snapshot = %id, "snapshot deleted");
                Ok(())
            }
            Err(RuntimeError::Conflict(detail)) => Err(ServiceError::InvalidState(format!(
                "snapshot {id} is in use by a sandbox made from it: delete that sandbox first ({detail})"
            ))),
            Err(error) => Err(ServiceError::engine(error)),
        }
    }

    /// The leader's collection of snapshots past their retention (one still in use waits for
    /// its sandboxes to go).
    pub async fn collect_expired_snapshots(&self) {
        let snapshots = match self.list_snapshots(None).await {
            Ok(snapshots) => snapshots,
            Err(error) => {
                debug!(%error, "cannot list snapshots to collect");
                return;
            }
        };
        let referenced: Vec<String> = match self.store.list_templates().await {
            Ok(templates) => templates.into_iter().filter_map(|template| template.snapshot).collect(),
            Err(error) => {
                debug!(%error, "cannot list the templates before collecting snapshots");
                return;
            }
        };
        let now = Utc::now();
        // A template's snapshot is kept while the template points at it, retention or not.
        for snapshot in snapshots
            .iter()
            .filter(|snapshot| snapshot.expires_at.is_some_and(|at| at <= now) && !referenced.contains(&snapshot.id))
        {
            match self.runtime.remove_image(&snapshot.image).await {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {
                    info!(snapshot = %snapshot.id, "snapshot collected at the end of its retention");
                }
                Err(RuntimeError::Conflict(_)) => debug!(snapshot = %snapshot.id, "expired snapshot still in use"),
                Err(error) => warn!(snapshot = %snapshot.id, %error, "cannot collect an expired snapshot"),
            }
        }
    }

    /// The spec of a create from snapshot `id` of `owner`: the snapshot's sandbox's spec with
    /// the request's fields laid over it (as over a template's), running the snapshot's image.
    pub(super) async fn spec_from_snapshot(
        &self,
        id: &str,
        owner: &str,
        request: &SandboxRequest,
    ) -> Result<SandboxSpec, ServiceError> {
        if request.template.is_some() {
            return Err(ServiceError::field(
                "snapshot",
                "a create starts from a template or a snapshot, not both".into(),
            ));
        }
        if request.image.is_some() {
            return Err(ServiceError::field(
                "image",
                "a create from a snapshot runs the snapshot's image: leave image out".into(),
            ));
        }
        let snapshot = self.get_snapshot(id, Some(owner)).await.map_err(|error| match error {
            ServiceError::NotFound { .. } => ServiceError::field(
                "snapshot",
                format!("owner `{owner}` has no snapshot `{id}`: see GET /v1/snapshots"),
            ),
            other => other,
        })?;
        let spec = request_over_snapshot(&snapshot, request)
            .validate(&self.config.policy)
            .map_err(ServiceError::Validation)?;
        Self::keeps_the_seal(&snapshot.spec, &spec)?;
        Ok(spec)
    }

    /// The sandbox request a template request's spec is validated from, and the snapshot's
    /// spec when it names one: its fields laid over that snapshot's (templates are written by
    /// admins, who may name any owner's snapshot).
    async fn template_spec_request(
        &self,
        request: &TemplateRequest,
    ) -> Result<(SandboxRequest, Option<SandboxSpec>), ServiceError> {
        let Some(id) = &request.snapshot else {
            return Ok((request.sandbox_request(), None));
        };
        if request.image.is_some() {
            return Err(ServiceError::field(
                "image",
                "a template from a snapshot runs the snapshot's image: leave image out".into(),
            ));
        }
        let snapshot = self.get_snapshot(id, None).await.map_err(|error| match error {
            ServiceError::NotFound { .. } => {
                ServiceError::field("snapshot", format!("no snapshot `{id}`: see GET /v1/snapshots"))
            }
            other => other,
        })?;
        Ok((
            request_over_snapshot(&snapshot, &request.sandbox_request()),
            Some(snapshot.spec),
        ))
    }

    /// A snapshot's image keeps a sealed source's stack label, so what runs from it stays sealed:
    /// a spec asking to open it is refused rather than half-honoured.
    pub(super) fn keeps_the_seal(source: &SandboxSpec, spec: &SandboxSpec) -> Result<(), ServiceError> {
        if source.network.egress == Egress::Deny && spec.network.egress != Egress::Deny {
            return Err(ServiceError::field(
                "network",
                "a snapshot of a sandbox with egress deny makes sandboxes with egress deny; open one later with PUT \
                 /v1/sandboxes/{id}/network"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The template `request` stands for, its spec laid over its snapshot's when it names one.
    pub(super) async fn validated_template(
        &self,
        request: &TemplateRequest,
        name_in_path: Option<&str>,
    ) -> Result<Template, ServiceError> {
        let (spec_request, snapshot_spec) = self.template_spec_request(request).await?;
        let template = request
            .validate_with_spec(spec_request, &self.config.policy, name_in_path, Utc::now())
            .map_err(ServiceError::Validation)?;
        if let Some(source) = &snapshot_spec {
            Self::keeps_the_seal(source, &template.spec)?;
        }
        Ok(template)
    }

    /// The templates whose sandboxes start from snapshot `id`, as `name:tag`.
    async fn templates_from_snapshot(&self, id: &str) -> Result<Vec<String>, ServiceError> {
        Ok(self
            .store
            .list_templates()
            .await?
            .iter()
            .filter(|template| template.snapshot.as_deref() == Some(id))
            .map(|template| template.reference().to_string())
            .collect())
    }

    /// `count` new sandboxes of `owner` from one snapshot of sandbox `id`, made at once, each
    /// succeeding or failing on its own; the parent keeps running.
    pub async fn fork(self: &Arc<Self>, id: &str, count: u32, owner: &str) -> Result<Forked, ServiceError> {
        if count == 0 || count > MAX_FORK {
            return Err(ServiceError::invalid(
                "count",
                format!("{count} is not a number of children: fork 1-{MAX_FORK}"),
            ));
        }
        let snapshot = self.snapshot(id, None, BTreeMap::new(), Some(FORK_RETENTION)).await?;
        let creates = (0..count).map(|_| {
            let request = SandboxRequest {
                snapshot: Some(snapshot.id.clone()),
                owner: Some(owner.to_owned()),
                ..SandboxRequest::default()
            };
            self.create_with(request, CreateExtras::default(), None, true)
        });
        let mut sandboxes = Vec::new();
        let mut errors = Vec::new();
        for outcome in futures::future::join_all(creates).await {
            match outcome {
                Ok(created) => sandboxes.push(created.sandbox),
                Err(error) => errors.push(error),
            }
        }
        info!(sandbox = %id, snapshot = %snapshot.id, made = sandboxes.len(), failed = errors.len(), "fork done");
        Ok(Forked {
            snapshot,
            sandboxes,
            errors,
        })
    }
}
