//! Persistent volumes: the names an owner gives them, the mounts a sandbox spec asks for, and
//! the engine name each (cluster, owner, name) maps to, so that one owner's `data` is never
//! another's.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::field::FieldError;

/// Most volumes one sandbox may mount.
pub const MAX_MOUNTS: usize = 16;

/// The prefix of every engine volume that holds a berth volume.
pub const ENGINE_NAME_PREFIX: &str = "berth-vol-";

/// A mount as a client asks for it, in a sandbox request (`volumes: [{name, path, read_only}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// The volume, one of the caller's own (`POST /v1/volumes`).
    #[cfg_attr(
        feature = "openapi",
        schema(example = "datasets", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    )]
    pub name: String,
    /// Where it appears inside the sandbox: an absolute path other than `/`.
    #[cfg_attr(feature = "openapi", schema(example = "/data"))]
    pub path: String,
    /// Mounted read-only: the sandbox can read the volume but not change it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// Checks a volume's name: 1-63 letters, digits, `_`, `.` and `-`, starting with a letter or
/// digit (the names an engine and AEnvironment's mount ids both accept).
pub fn validate_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a volume name: use 1-63 letters, digits, _ . and -, starting with a letter or digit"
        ))
    }
}

/// Checks the mounts of one spec, each error naming `volumes[i].<field>`.
pub fn check_mounts(mounts: &[VolumeMount], errors: &mut Vec<FieldError>) {
    if mounts.len() > MAX_MOUNTS {
        errors.push(FieldError::new(
            "volumes",
            format!(
                "mounts {} volumes; a sandbox may mount at most {MAX_MOUNTS}",
                mounts.len()
            ),
        ));
    }
    let mut seen_paths = std::collections::BTreeSet::new();
    let mut seen_names = std::collections::BTreeSet::new();
    for (index, mount) in mounts.iter().enumerate() {
        if let Err(message) = validate_name(&mount.name) {
            errors.push(FieldError::new(&format!("volumes[{index}].name"), message));
        } else if !seen_names.insert(mount.name.as_str()) {
            errors.push(FieldError::new(
                &format!("volumes[{index}].name"),
                format!("`{}` is mounted twice: mount a volume once", mount.name),
            ));
        }
        if let Err(message) = validate_mount_path(&mount.path) {
            errors.push(FieldError::new(&format!("volumes[{index}].path"), message));
        } else if !seen_paths.insert(mount.path.trim_end_matches('/')) {
            errors.push(FieldError::new(
                &format!("volumes[{index}].path"),
                format!("`{}` is the path of another mount: give each its own", mount.path),
            ));
        }
    }
}

fn validate_mount_path(path: &str) -> Result<(), String> {
    let normal = path.starts_with('/')
        && !path.contains('\0')
        && !path.contains(':')
        && path.split('/').all(|part| part != ".." && part != ".");
    if !normal {
        return Err(format!(
            "`{path}` must be an absolute path such as /data, without `.`, `..` or `:` parts"
        ));
    }
    if path.trim_end_matches('/').is_empty() {
        return Err("`/` cannot be a mount point: name a directory such as /data".into());
    }
    Ok(())
}

/// The engine's name of `owner`'s volume `name` in deployment `cluster`: the same for every
/// process of the deployment, different for every owner, and free of the owner's spelling.
pub fn engine_name(cluster: &str, owner: &str, name: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [cluster, owner, name] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let hex: String = digest[..10].iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{ENGINE_NAME_PREFIX}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(name: &str, path: &str) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            path: path.into(),
            read_only: false,
        }
    }

    fn errors_of(mounts: &[VolumeMount]) -> Vec<String> {
        let mut errors = Vec::new();
        check_mounts(mounts, &mut errors);
        errors
            .into_iter()
            .map(|error| format!("{}: {}", error.field, error.message))
            .collect()
    }

    #[test]
    fn names_follow_the_engines_rules() {
        for good in ["data", "OSS_abc", "a", "v1.2-x", &"x".repeat(63)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        for bad in ["", "-data", "_x", "a/b", "a b", "ü", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_mount_error_names_its_field() {
        assert!(errors_of(&[mount("data", "/data"), mount("cache", "/cache/")]).is_empty());
        let errors = errors_of(&[
            mount("data", "data"),
            mount("bad name", "/x"),
            mount("data", "/y"),
            mount("other", "/x/"),
            mount("root", "/"),
            mount("up", "/a/../etc"),
        ]);
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors[0].starts_with("volumes[0].path: `data` must be an absolute path"));
        assert!(errors[1].starts_with("volumes[1].name: `bad name` is not a volume name"));
        assert!(errors[2].starts_with("volumes[2].name: `data` is mounted twice"));
        assert!(errors[3].starts_with("volumes[3].path: `/x/` is the path of another mount"));
        assert!(errors[4].starts_with("volumes[4].path: `/` cannot be a mount point"));
        assert!(errors[5].starts_with("volumes[5].path: `/a/../etc`"));
    }

    #[test]
    fn too_many_mounts_are_refused() {
        let mounts: Vec<VolumeMount> = (0..=MAX_MOUNTS)
            .map(|i| mount(&format!("v{i}"), &format!("/v{i}")))
            .collect();
        assert_eq!(
            errors_of(&mounts),
            vec![format!("volumes: mounts 17 volumes; a sandbox may mount at most 16")]
        );
    }

    #[test]
    fn engine_names_differ_by_owner_and_cluster_but_are_stable() {
        let name = engine_name("c1", "team-a", "data");
        assert!(name.starts_with(ENGINE_NAME_PREFIX) && name.len() == ENGINE_NAME_PREFIX.len() + 20);
        assert_eq!(name, engine_name("c1", "team-a", "data"));
        assert_ne!(name, engine_name("c1", "team-b", "data"));
        assert_ne!(name, engine_name("c2", "team-a", "data"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(engine_name("c", "ab", "c"), engine_name("c", "a", "bc"));
    }
}
