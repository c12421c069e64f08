//! Resolving checkpoint and file locations to an [`ObjectStore`].
//!
//! A location is either a URL understood by `object_store` (`file:///abs/dir`, `memory:///`,
//! `s3://bucket/prefix` with credentials from the `AWS_*` environment variables) or a plain
//! local path, relative paths being taken from the current directory.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

use crate::error::{Result, SluiceError};

/// An object store and the prefix inside it where a checkpoint or a file directory lives.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The directory inside the store.
    pub prefix: Path,
    /// The location as the user gave it, for messages.
    pub display: String,
}

impl Location {
    /// Resolves a URL or local path. Local directories are created when missing.
    pub fn parse(location: &str) -> Result<Self> {
        let display = location.to_string();
        let is_url = location.contains("://");
        if !is_url {
            let path = std::path::Path::new(location);
            std::fs::create_dir_all(path).map_err(|source| SluiceError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let absolute = std::fs::canonicalize(path).map_err(|source| SluiceError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let prefix = Path::from_absolute_path(&absolute).map_err(|e| {
                SluiceError::Config(format!("invalid local path '{location}': {e}"))
            })?;
            return Ok(Self {
                store: Arc::new(LocalFileSystem::new()),
                prefix,
                display,
            });
        }
        let url = Url::parse(location)
            .map_err(|e| SluiceError::Config(format!("invalid location URL '{location}': {e}")))?;
        if url.scheme() == "file" {
            let local = url
                .to_file_path()
                .map_err(|()| SluiceError::Config(format!("invalid file URL '{location}'")))?;
            let mut resolved = Self::parse(&local.to_string_lossy())?;
            resolved.display = display;
            return Ok(resolved);
        }
        // Credentials and endpoints come from the environment, as for the AWS tools:
        // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT, ...
        let options = std::env::vars()
            .filter(|(key, _)| key.starts_with("AWS_"))
            .map(|(key, value)| (key.to_ascii_lowercase(), value));
        let (store, prefix) = object_store::parse_url_opts(&url, options)
            .map_err(|e| SluiceError::Config(format!("unsupported location '{location}': {e}")))?;
        Ok(Self {
            store: Arc::from(store),
            prefix,
            display,
        })
    }

    /// The path of `name` (which may contain `/`) under this location.
    pub fn child(&self, name: &str) -> Path {
        name.split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }
}
