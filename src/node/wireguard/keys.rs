//! The node's WireGuard identity: a private key generated on first start, kept with mode
//! 0600 in the state directory, never logged (the [`PrivateKey`] type has no `Debug` that
//! shows it) and never sent anywhere; only the public key leaves the node.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wireguard_control::Key;

/// File name of the private key inside the state directory.
pub const KEY_FILE: &str = "wireguard.key";

/// The node's private key. `Debug` prints only the public half.
pub struct PrivateKey(Key);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(public {})", self.public_base64())
    }
}

impl PrivateKey {
    pub fn key(&self) -> &Key {
        &self.0
    }

    /// Base64 public key, as published in the `net.unbounded-cloud.io/wg-pubkey` annotation.
    pub fn public_base64(&self) -> String {
        self.0.get_public().to_base64()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot use state directory {dir}: {source}")]
    StateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} does not hold a base64 WireGuard private key; move it away to generate a new one"
    )]
    Malformed { path: PathBuf },
}

/// Loads the key from `state_dir`, generating and storing one on first start. A key file
/// readable by others has its mode tightened to 0600.
pub fn load_or_create(state_dir: &Path) -> Result<(PrivateKey, bool), KeyError> {
    fs::create_dir_all(state_dir).map_err(|source| KeyError::StateDir {
        dir: state_dir.to_path_buf(),
        source,
    })?;
    let path = state_dir.join(KEY_FILE);
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mode = fs::metadata(&path).map_err(io)?.permissions().mode() & 0o777;
            if mode != 0o600 {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io)?;
            }
            let key = Key::from_base64(text.trim())
                .map_err(|_| KeyError::Malformed { path: path.clone() })?;
            Ok((PrivateKey(key), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Key::generate_private();
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            f.write_all(key.to_base64().as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok((PrivateKey(key), true))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_with_mode_0600_and_survives_restart() {
        let dir = std::env::temp_dir().join(format!("unet-key-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (first, created) = load_or_create(&dir).unwrap();
        assert!(created);
        let mode = fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = load_or_create(&dir).unwrap();
        assert!(!created);
        assert_eq!(first.public_base64(), again.public_base64());
        assert!(unbounded_key_shape(&first.public_base64()));
        // Debug never shows the private key.
        let private = first.key().to_base64();
        assert!(!format!("{first:?}").contains(&private));
        fs::write(dir.join(KEY_FILE), "garbage").unwrap();
        let err = load_or_create(&dir).unwrap_err();
        assert!(err.to_string().contains("move it away"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    fn unbounded_key_shape(s: &str) -> bool {
        crate::core::snapshot::is_wireguard_key(s)
    }
}
