//! `agentwire token`: mint a session token with the local secret.

use std::path::PathBuf;

use agentwire_auth::{Claims, Role, Signer};
use clap::Args;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Session name, or a prefix ending in `*` (`*` alone: every session of the tenant).
    #[arg(long, default_value = "*")]
    session: String,

    /// reader, controller, writer or admin.
    #[arg(long, default_value = "reader")]
    role: Role,

    /// Tenant the sessions belong to.
    #[arg(long, env = "AGENTWIRE_TENANT", default_value = "local")]
    tenant: String,

    /// Who holds the token (shown in presence).
    #[arg(long)]
    user: Option<String>,

    /// Lifetime in seconds.
    #[arg(long, default_value_t = 24 * 3600, allow_negative_numbers = true)]
    ttl: i64,

    /// Directory holding the secret (as for `agentwire dev`).
    #[arg(long, env = "AGENTWIRE_DATA_DIR", default_value = ".agentwire")]
    data_dir: PathBuf,
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let secret = crate::secret::load_or_create(&args.data_dir)?;
    println!(
        "{}",
        mint(
            &secret,
            &args.tenant,
            &args.session,
            args.role,
            args.user,
            args.ttl
        )
    );
    Ok(())
}

/// A token for `sessions` of `tenant`, valid for `ttl_seconds` from now.
pub fn mint(
    secret: &[u8],
    tenant: &str,
    sessions: &str,
    role: Role,
    user: Option<String>,
    ttl_seconds: i64,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    Signer::new(secret).mint(&Claims {
        tenant: tenant.to_owned(),
        sessions: sessions.to_owned(),
        role,
        user,
        exp: now + ttl_seconds,
    })
}
