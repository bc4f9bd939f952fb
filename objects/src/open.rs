//! Opening the configured object store.

use std::path::Path;
use std::sync::Arc;

use gofer_core::objects::ObjectStore;

use crate::settings::{ObjectStoreSettings, OpenStoreError};
use crate::{LocalStore, S3Store};

impl ObjectStoreSettings {
    /// The configured store; an S3 bucket is created when missing.
    pub async fn open(&self, state_dir: &Path) -> Result<Arc<dyn ObjectStore>, OpenStoreError> {
        self.validate()?;
        Ok(match self {
            Self::Local {} => Arc::new(LocalStore::new(state_dir.join("objects"))),
            Self::S3(s3) => {
                let store = S3Store::connect(s3).await;
                store.ensure_bucket().await.map_err(OpenStoreError::Unreachable)?;
                Arc::new(store)
            }
        })
    }
}
