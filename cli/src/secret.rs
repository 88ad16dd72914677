//! The local token secret: `AGENTWIRE_SECRET`, or a random one kept in the data directory.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

const FILE: &str = "secret";

/// The secret from `AGENTWIRE_SECRET`, else `<data_dir>/secret`, created on first use.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = std::env::var_os("AGENTWIRE_SECRET") {
        let secret = secret.into_encoded_bytes();
        anyhow::ensure!(
            secret.len() >= 32,
            "AGENTWIRE_SECRET must be at least 32 bytes"
        );
        return Ok(secret);
    }
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(hex) => return Ok(hex.trim().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let mut file =
        create_private(&path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(hex.as_bytes())?;
    file.sync_all()?;
    Ok(hex.into_bytes())
}

/// Only the owner may read the secret.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
