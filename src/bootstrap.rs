//! The system administrator's bootstrap token (API.md "Identity, tenants and access"):
//! `CONFLUX_ADMIN_TOKEN` when set (at least 32 characters), else the token kept in
//! `<data dir>/admin-token`, which the first start that finds no API key generates
//! (256 random bits, file mode 0600). The token itself is never logged, only the path.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};

/// The file the generated token is kept in.
pub const TOKEN_FILE: &str = "admin-token";

/// Decides the bootstrap token. `any_key`: whether the store already has API keys (a
/// token is generated only before the first key exists).
pub fn admin_token(
    configured: Option<&str>,
    data_dir: &Path,
    any_key: bool,
) -> anyhow::Result<Option<String>> {
    if let Some(token) = configured {
        if token.chars().count() < 32 {
            bail!("CONFLUX_ADMIN_TOKEN must be at least 32 characters");
        }
        return Ok(Some(token.to_owned()));
    }
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim().to_owned();
            if token.chars().count() < 32 {
                bail!(
                    "{} holds no valid token (at least 32 characters)",
                    path.display()
                );
            }
            return Ok(Some(token));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if any_key {
        return Ok(None);
    }
    let token = conflux_engine::access::token::random_hex(32)?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    if let Err(e) = write_private(&path, &token) {
        // Another process on this data directory wrote it first: use theirs.
        if path.exists() {
            return admin_token(None, data_dir, true);
        }
        return Err(e);
    }
    tracing::warn!(
        path = %path.display(),
        "generated the system administrator's token; read it from this file (export CONFLUX_TOKEN=$(cat <path>))"
    );
    Ok(Some(token))
}

/// Writes `token` to a new file only its owner can read.
fn write_private(path: &Path, token: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_token_must_be_long_enough() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(admin_token(Some("short"), dir.path(), false).is_err());
        let long = "x".repeat(32);
        assert_eq!(
            admin_token(Some(&long), dir.path(), false).expect("ok"),
            Some(long)
        );
        assert!(!dir.path().join(TOKEN_FILE).exists(), "nothing generated");
    }

    #[test]
    fn a_token_is_generated_once_private_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let first = admin_token(None, dir.path(), false)
            .expect("ok")
            .expect("token");
        assert_eq!(first.len(), 64);
        let again = admin_token(None, dir.path(), true).expect("ok");
        assert_eq!(again.as_deref(), Some(first.as_str()), "the file is reused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let empty = tempfile::tempdir().expect("dir");
        assert_eq!(
            admin_token(None, empty.path(), true).expect("ok"),
            None,
            "keys exist: no bootstrap"
        );
    }
}
