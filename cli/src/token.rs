//! `agentwire token`: mint a session token with the local secret.

use std::path::PathBuf;

use agentwire_auth::{Claims, InvalidTenant, Role, Signer, validate_tenant};
use clap::Args;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Session name, or a prefix ending in `*` (`*` alone: every session of the tenant).
    /// For a grader: the annotation queue (or a prefix ending in `*`) it may grade.
    #[arg(long, visible_alias = "sessions", default_value = "*")]
    session: String,

    /// reader, controller, writer, admin, ingest (may only send OpenTelemetry traces) or
    /// grader (may only grade the queues --session names; needs --user).
    #[arg(long, default_value = "reader")]
    role: Role,

    /// Tenant the sessions belong to: 1 to 64 characters of A-Z a-z 0-9 . _ -
    #[arg(long, env = "AGENTWIRE_TENANT", default_value = "local", value_parser = tenant)]
    tenant: String,

    /// Who holds the token (shown in presence); for a grader, the grader name the queue
    /// lists, which its grades are credited to.
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
    if args.role == Role::Grader && args.user.as_deref().is_none_or(|u| u.trim().is_empty()) {
        anyhow::bail!(
            "a grader token needs --user <grader>: the name the queue lists, which its grades are credited to"
        );
    }
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
        )?
    );
    Ok(())
}

/// Parses a `--tenant` value: refused (a usage error naming the character) unless it is a
/// valid tenant name, so no token or insecure server ever carries one that is not.
pub fn tenant(value: &str) -> Result<String, InvalidTenant> {
    validate_tenant(value)?;
    Ok(value.to_owned())
}

/// A token for `sessions` of `tenant`, valid for `ttl_seconds` from now; refused for an
/// invalid tenant name.
pub fn mint(
    secret: &[u8],
    tenant: &str,
    sessions: &str,
    role: Role,
    user: Option<String>,
    ttl_seconds: i64,
) -> Result<String, InvalidTenant> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    Signer::new(secret).try_mint(&Claims {
        tenant: tenant.to_owned(),
        sessions: sessions.to_owned(),
        role,
        user,
        exp: now.saturating_add(ttl_seconds),
    })
}
