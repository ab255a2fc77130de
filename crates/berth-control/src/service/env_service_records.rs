//! The stored AEnvironment env-services: the one path through which the API and the leader's
//! controller read and write them. Changes made for a client wake the controller at once; the
//! controller's own status writes do not wake it again.

use berth_core::{EnvService, EnvServiceId};

use super::{SandboxService, ServiceError};

impl SandboxService {
    /// Records a new env-service and wakes the controller to start its replicas.
    pub async fn insert_env_service(&self, record: &EnvService) -> Result<(), ServiceError> {
        self.store.insert_service(record).await?;
        self.env_services_changed.notify_waiters();
        Ok(())
    }

    pub async fn get_env_service(&self, id: &EnvServiceId) -> Result<Option<EnvService>, ServiceError> {
        Ok(self.store.get_service(id).await?)
    }

    pub async fn list_env_services(&self) -> Result<Vec<EnvService>, ServiceError> {
        Ok(self.store.list_services().await?)
    }

    /// Replaces the record if it is still at the revision it was read at (`false` otherwise, and
    /// nothing is written), so a client's change is never undone by the controller's status
    /// write. `wake` wakes the controller (for a client's change).
    pub async fn update_env_service(&self, record: &EnvService, wake: bool) -> Result<bool, ServiceError> {
        let written = self.store.update_service(record).await?;
        if written && wake {
            self.env_services_changed.notify_waiters();
        }
        Ok(written)
    }

    /// Forgets the record; `false` when there was none.
    pub async fn delete_env_service(&self, id: &EnvServiceId) -> Result<bool, ServiceError> {
        let deleted = self.store.delete_service(id).await?;
        self.env_services_changed.notify_waiters();
        Ok(deleted)
    }
}
