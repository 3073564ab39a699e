//! Where opsbot keeps things on disk.
//!
//! `directories` gives the platform's places; `OPSBOT_CONFIG_DIR` and
//! `OPSBOT_DATA_DIR` override them so tests and side-by-side installs never
//! touch the user's real files.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot find a home directory for opsbot's files; set OPSBOT_DATA_DIR and OPSBOT_CONFIG_DIR"
)]
pub struct NoHome;

impl Paths {
    pub fn discover() -> Result<Self, NoHome> {
        let dirs = directories::ProjectDirs::from("dev", "opsbot", "opsbot");
        let config_dir = match std::env::var_os("OPSBOT_CONFIG_DIR") {
            Some(p) => PathBuf::from(p),
            None => dirs.as_ref().ok_or(NoHome)?.config_dir().to_path_buf(),
        };
        let data_dir = match std::env::var_os("OPSBOT_DATA_DIR") {
            Some(p) => PathBuf::from(p),
            None => dirs.as_ref().ok_or(NoHome)?.data_dir().to_path_buf(),
        };
        let log_dir = match (std::env::var_os("OPSBOT_DATA_DIR"), dirs.as_ref()) {
            (Some(p), _) => PathBuf::from(p).join("logs"),
            (None, Some(d)) => d
                .state_dir()
                .map(|s| s.join("logs"))
                .unwrap_or_else(|| d.data_dir().join("logs")),
            (None, None) => return Err(NoHome),
        };
        Ok(Self {
            config_dir,
            data_dir,
            log_dir,
        })
    }

    /// Rooted at one directory: used by tests and `--data-dir`.
    pub fn rooted(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            config_dir: root.join("config"),
            data_dir: root.join("data"),
            log_dir: root.join("logs"),
        }
    }

    pub fn user_config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    pub fn database(&self) -> PathBuf {
        self.data_dir.join("opsbot.db")
    }

    pub fn sandbox_state(&self) -> PathBuf {
        self.data_dir.join("sandbox")
    }
}
