//! Session tokens: who may do what to which sessions of which tenant.
//!
//! A token is `aw1.<claims>.<mac>`: base64url JSON claims and an HMAC-SHA256 over
//! `aw1.<claims>` with the deployment's secret. Claims name a tenant, a session (or a prefix
//! ending in `*`), a role and an expiry. Every request is checked against them, and sessions
//! are stored under their tenant, so one tenant can never name another's session.
//!
//! Tenancy rests on one rule: a stored name is `<tenant>/<session>` ([`stored_name`]), and
//! a tenant name never contains `/` ([`validate_tenant`]), so the first `/` of a stored
//! name is always the boundary ([`split_stored_name`]). Every way a tenant enters (minting
//! with [`Signer::try_mint`], [`Signer::verify`], [`Auth::insecure`] and
//! [`Auth::authenticate`]) refuses a tenant that breaks it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const PREFIX: &str = "aw1";

/// The longest tenant name, in bytes (they are ASCII).
pub const MAX_TENANT_LEN: usize = 64;

/// Why a tenant name is refused. Tenant names are 1 to [`MAX_TENANT_LEN`] characters of
/// `A-Z a-z 0-9 . _ -`, and neither `.` nor `..`: no `/` (the stored-name boundary), and
/// nothing that a path, a key or a log line would treat specially.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTenant {
    #[error("tenant name is empty: expected 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    Empty,
    #[error("tenant name is {0} bytes long: at most 64 are allowed")]
    TooLong(usize),
    #[error("tenant name {0:?} is reserved: use letters or digits too")]
    Reserved(&'static str),
    #[error(
        "tenant name contains {character:?} at character {position}: only A-Z a-z 0-9 . _ - are allowed"
    )]
    Character { character: char, position: usize },
}

/// Checks that `tenant` is a valid tenant name (see [`InvalidTenant`]); the error names
/// the first offending character.
pub fn validate_tenant(tenant: &str) -> Result<(), InvalidTenant> {
    if tenant.is_empty() {
        return Err(InvalidTenant::Empty);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some((position, character)) = tenant.chars().enumerate().find(|&(_, c)| !allowed(c)) {
        return Err(InvalidTenant::Character {
            character,
            position: position + 1,
        });
    }
    if tenant.len() > MAX_TENANT_LEN {
        return Err(InvalidTenant::TooLong(tenant.len()));
    }
    match tenant {
        "." => Err(InvalidTenant::Reserved(".")),
        ".." => Err(InvalidTenant::Reserved("..")),
        _ => Ok(()),
    }
}

/// The name `session` of `tenant` is stored under: `<tenant>/<session>`. `tenant` must be
/// valid ([`validate_tenant`]) for [`split_stored_name`] to find it again.
pub fn stored_name(tenant: &str, session: &str) -> String {
    format!("{tenant}/{session}")
}

/// Splits a stored name into its tenant and the session name its clients use, at the
/// first `/` (tenant names have none; session names may). `None` for a name without one,
/// which no tenant stores. The one place stored names are taken apart.
pub fn split_stored_name(stored: &str) -> Option<(&str, &str)> {
    stored.split_once('/')
}

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read and follow sessions, see presence.
    Reader,
    /// A person at a client: read, send messages, and cancel, steer, pause or resume.
    Controller,
    /// An agent: read, create and append, and acknowledge control.
    Writer,
    /// Everything, including deleting sessions.
    Admin,
    /// A telemetry exporter: send OpenTelemetry traces (`POST /v1/traces`) and nothing
    /// else; it can neither read nor append to any session, over HTTP or WebSocket.
    Ingest,
    /// A domain expert grading annotation queues ([`Action::Grade`]) and nothing else: the
    /// claims' `s` names the queue (or a prefix ending in `*`), and `u` is the grader,
    /// required ([`Signer::verify`] refuses a grader token without one). It reads the
    /// traces of the items it claims through the grading API only, never a session.
    Grader,
}

impl Role {
    /// Whether this role permits `action`.
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Reader => matches!(action, Read),
            Role::Controller => matches!(action, Read | Control),
            // An agent that writes its sessions may also export its other traces.
            Role::Writer => matches!(action, Read | Append | Control | Ingest),
            Role::Admin => true,
            Role::Ingest => matches!(action, Ingest),
            Role::Grader => matches!(action, Grade),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Reader => "reader",
            Role::Controller => "controller",
            Role::Writer => "writer",
            Role::Admin => "admin",
            Role::Ingest => "ingest",
            Role::Grader => "grader",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "reader" => Ok(Role::Reader),
            "controller" => Ok(Role::Controller),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            "ingest" => Ok(Role::Ingest),
            "grader" => Ok(Role::Grader),
            other => Err(format!(
                "unknown role {other:?}: expected reader, controller, writer, admin, ingest or grader"
            )),
        }
    }
}

/// An operation on a session, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read, follow, HEAD, presence.
    Read,
    /// Create, append, close (HTTP).
    Append,
    /// Control events and user messages (WebSocket).
    Control,
    /// Delete a session.
    Delete,
    /// Send OpenTelemetry traces into the trace archive (OTLP/HTTP `POST /v1/traces`); the
    /// session is the one the traces name.
    Ingest,
    /// Claim, read and grade the items of an annotation queue; the "session" a grader
    /// token's scope is checked against is the queue's name.
    Grade,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Read => "read",
            Action::Append => "append to",
            Action::Control => "control",
            Action::Delete => "delete",
            Action::Ingest => "ingest traces of",
            Action::Grade => "grade",
        })
    }
}

/// What a token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant: the namespace every session name lives in.
    #[serde(rename = "t")]
    pub tenant: String,
    /// A session name, or a prefix ending in `*` (`*` alone: every session of the tenant).
    #[serde(rename = "s")]
    pub sessions: String,
    #[serde(rename = "r")]
    pub role: Role,
    /// The person or agent, for presence; not an authority.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

impl Claims {
    /// Checks what a token must satisfy beyond its signature: a valid tenant name.
    pub fn validate(&self) -> Result<(), InvalidTenant> {
        validate_tenant(&self.tenant)
    }

    /// Whether the claims cover `session`.
    pub fn covers(&self, session: &str) -> bool {
        match self.sessions.strip_suffix('*') {
            Some(prefix) => session.starts_with(prefix),
            None => self.sessions == session,
        }
    }
}

/// Why a request was refused. `Unauthenticated` kinds are 401, the others 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token: send Authorization: Bearer <token> (or ?token=<token>)")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// A genuine token (or the insecure mode's tenant) naming an invalid tenant: refused,
    /// since its stored names would reach into another tenant's.
    #[error("invalid tenant: {0}")]
    InvalidTenant(InvalidTenant),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token expired at {0} (Unix seconds)")]
    Expired(i64),
    #[error("token does not cover session {0:?}")]
    OutOfScope(String),
    #[error("role {role} may not {action} sessions")]
    RoleForbids { role: Role, action: Action },
    /// A grader token that names no grader (`u`): grades must say who gave them.
    #[error("a grader token must name its grader (u): mint it with --user")]
    GraderWithoutUser,
}

impl AuthError {
    /// True when the caller is not authenticated at all (HTTP 401), false when an
    /// authenticated caller is not allowed (403).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            AuthError::Missing
                | AuthError::Malformed(_)
                | AuthError::InvalidTenant(_)
                | AuthError::BadSignature
                | AuthError::Expired(_)
                | AuthError::GraderWithoutUser
        )
    }
}

/// Mints and verifies tokens with one secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer { key: <redacted> }")
    }
}

impl Signer {
    /// A signer over `secret` (at least 32 bytes recommended).
    pub fn new(secret: impl Into<Vec<u8>>) -> Signer {
        Signer { key: secret.into() }
    }

    fn mac(&self, signed: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(signed.as_bytes());
        mac
    }

    /// A token carrying `claims`, or why the claims are refused (an invalid tenant). What
    /// mints tokens for people (`agentwire token`, `agentwire dev`) calls this.
    pub fn try_mint(&self, claims: &Claims) -> Result<String, InvalidTenant> {
        claims.validate()?;
        Ok(self.mint(claims))
    }

    /// A token carrying exactly `claims`, unchecked: for claims known to be valid (tests,
    /// benchmarks). A token naming an invalid tenant is refused by [`Signer::verify`], so
    /// it is useless, never a way in; prefer [`Signer::try_mint`].
    pub fn mint(&self, claims: &Claims) -> String {
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signed = format!("{PREFIX}.{body}");
        let tag = B64.encode(self.mac(&signed).finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// The claims of a genuine, unexpired token naming a valid tenant.
    pub fn verify(&self, token: &str, now_unix_s: i64) -> Result<Claims, AuthError> {
        let mut parts = token.split('.');
        let (Some(PREFIX), Some(body), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("expected aw1.<claims>.<signature>"));
        };
        let tag = B64
            .decode(tag)
            .map_err(|_| AuthError::Malformed("signature is not base64url"))?;
        self.mac(&format!("{PREFIX}.{body}"))
            .verify_slice(&tag)
            .map_err(|_| AuthError::BadSignature)?;
        let json = B64
            .decode(body)
            .map_err(|_| AuthError::Malformed("claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&json)
            .map_err(|_| AuthError::Malformed("claims are not valid"))?;
        // Signed before tenants were validated, or by hand: honouring it would let its
        // stored names reach into another tenant's (`acme/prod` + `x` = `acme` + `prod/x`).
        claims.validate().map_err(AuthError::InvalidTenant)?;
        if claims.exp <= now_unix_s {
            return Err(AuthError::Expired(claims.exp));
        }
        // A grade is credited to `u`: without one it would be anonymous.
        if claims.role == Role::Grader && claims.user.as_deref().is_none_or(|u| u.trim().is_empty())
        {
            return Err(AuthError::GraderWithoutUser);
        }
        Ok(claims)
    }
}

/// Who is asking, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub claims: Claims,
}

impl Principal {
    /// Checks that the principal may do `action` on `session`.
    pub fn authorize(&self, session: &str, action: Action) -> Result<(), AuthError> {
        if !self.claims.covers(session) {
            return Err(AuthError::OutOfScope(session.to_owned()));
        }
        if !self.claims.role.allows(action) {
            return Err(AuthError::RoleForbids {
                role: self.claims.role,
                action,
            });
        }
        Ok(())
    }

    /// The name `session` is stored under: inside the principal's tenant ([`stored_name`]).
    pub fn stored_name(&self, session: &str) -> String {
        stored_name(&self.claims.tenant, session)
    }

    /// The user, for presence.
    pub fn user(&self) -> &str {
        self.claims.user.as_deref().unwrap_or("anonymous")
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Tokens signed with this signer are required.
    Tokens(Signer),
    /// No tokens: every request is an admin of `tenant`. For local development only.
    /// Build it with [`Auth::insecure`], which checks the tenant; [`Auth::authenticate`]
    /// refuses every request of an invalid one.
    Insecure { tenant: String },
}

impl Auth {
    /// [`Auth::Insecure`] for `tenant`, or why the tenant name is refused.
    pub fn insecure(tenant: impl Into<String>) -> Result<Auth, InvalidTenant> {
        let tenant = tenant.into();
        validate_tenant(&tenant)?;
        Ok(Auth::Insecure { tenant })
    }

    /// Authenticates a request carrying `token` (if any) at `now_unix_s`.
    pub fn authenticate(
        &self,
        token: Option<&str>,
        now_unix_s: i64,
    ) -> Result<Principal, AuthError> {
        match self {
            Auth::Insecure { tenant } => {
                validate_tenant(tenant).map_err(AuthError::InvalidTenant)?;
                Ok(Principal {
                    claims: Claims {
                        tenant: tenant.clone(),
                        sessions: "*".into(),
                        role: Role::Admin,
                        user: None,
                        exp: i64::MAX,
                    },
                })
            }
            Auth::Tokens(signer) => {
                let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
                signer
                    .verify(token, now_unix_s)
                    .map(|claims| Principal { claims })
            }
        }
    }
}

/// The token in an `Authorization: Bearer` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sessions: &str, role: Role, exp: i64) -> Claims {
        Claims {
            tenant: "acme".into(),
            sessions: sessions.into(),
            role,
            user: Some("ana".into()),
            exp,
        }
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let token = signer.mint(&claims("chat-1", Role::Writer, 1_000));
        assert_eq!(
            signer.verify(&token, 999),
            Ok(claims("chat-1", Role::Writer, 1_000))
        );
        assert_eq!(signer.verify(&token, 1_000), Err(AuthError::Expired(1_000)));
    }

    #[test]
    fn tampering_and_other_keys_are_refused() {
        let signer = Signer::new(b"secret-one".to_vec());
        let token = signer.mint(&claims("chat-1", Role::Reader, 1_000));
        let forged_claims =
            B64.encode(serde_json::to_vec(&claims("*", Role::Admin, 1_000)).unwrap());
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_claims;
        assert_eq!(
            signer.verify(&parts.join("."), 0),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            Signer::new(b"secret-two".to_vec()).verify(&token, 0),
            Err(AuthError::BadSignature)
        );
        for junk in ["", "aw1", "aw1.a", "aw2.a.b", "aw1.a.b.c", "aw1.@@.@@"] {
            assert!(
                matches!(signer.verify(junk, 0), Err(AuthError::Malformed(_))),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn scope_and_role_are_both_checked() {
        let writer = Principal {
            claims: claims("chat-*", Role::Writer, 1),
        };
        assert_eq!(writer.authorize("chat-9", Action::Append), Ok(()));
        assert_eq!(
            writer.authorize("mail-1", Action::Read),
            Err(AuthError::OutOfScope("mail-1".into()))
        );
        assert!(matches!(
            writer.authorize("chat-9", Action::Delete),
            Err(AuthError::RoleForbids { .. })
        ));
        let reader = Principal {
            claims: claims("chat-1", Role::Reader, 1),
        };
        assert!(reader.authorize("chat-1", Action::Read).is_ok());
        assert!(reader.authorize("chat-1", Action::Append).is_err());
        assert!(reader.authorize("chat-1", Action::Control).is_err());
        assert!(
            reader.authorize("chat-10", Action::Read).is_err(),
            "an exact scope is not a prefix"
        );
        assert_eq!(reader.stored_name("chat-1"), "acme/chat-1");
    }

    #[test]
    fn roles_form_the_documented_table() {
        use Action::*;
        let table = [
            (Role::Reader, [true, false, false, false, false, false]),
            (Role::Controller, [true, false, true, false, false, false]),
            (Role::Writer, [true, true, true, false, true, false]),
            (Role::Admin, [true, true, true, true, true, true]),
            (Role::Ingest, [false, false, false, false, true, false]),
            (Role::Grader, [false, false, false, false, false, true]),
        ];
        for (role, allowed) in table {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role), "{role} parses");
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""), "{role} serializes by its name");
            for (action, want) in [Read, Append, Control, Delete, Ingest, Grade]
                .into_iter()
                .zip(allowed)
            {
                assert_eq!(role.allows(action), want, "{role} {action}");
            }
        }
    }

    #[test]
    fn tenant_names_are_checked_and_errors_name_the_character() {
        for good in [
            "acme",
            "a",
            "acme-prod",
            "acme.prod",
            "acme_prod",
            "A9",
            "...",
            "-",
        ] {
            assert_eq!(validate_tenant(good), Ok(()), "{good:?}");
        }
        assert_eq!(validate_tenant(&"a".repeat(64)), Ok(()));
        assert_eq!(validate_tenant(""), Err(InvalidTenant::Empty));
        assert_eq!(
            validate_tenant(&"a".repeat(65)),
            Err(InvalidTenant::TooLong(65))
        );
        assert_eq!(validate_tenant("."), Err(InvalidTenant::Reserved(".")));
        assert_eq!(validate_tenant(".."), Err(InvalidTenant::Reserved("..")));
        let slash = validate_tenant("acme/prod").unwrap_err();
        assert_eq!(
            slash,
            InvalidTenant::Character {
                character: '/',
                position: 5
            }
        );
        assert!(slash.to_string().contains("'/'"), "{slash}");
        for (bad, character) in [
            ("acme prod", ' '),
            ("caf\u{e9}", '\u{e9}'),
            ("a%2Fb", '%'),
            ("a\nb", '\n'),
            ("a=b", '='),
            ("a\\b", '\\'),
        ] {
            assert!(
                matches!(validate_tenant(bad), Err(InvalidTenant::Character { character: c, .. }) if c == character),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn stored_names_split_at_the_tenant_boundary() {
        assert_eq!(stored_name("acme", "prod/chat-1"), "acme/prod/chat-1");
        assert_eq!(
            split_stored_name("acme/prod/chat-1"),
            Some(("acme", "prod/chat-1"))
        );
        assert_eq!(split_stored_name("no-tenant"), None);
        let principal = Principal {
            claims: claims("a/b", Role::Reader, 1),
        };
        let stored = principal.stored_name("a/b");
        assert_eq!(split_stored_name(&stored), Some(("acme", "a/b")));
    }

    #[test]
    fn tokens_of_invalid_tenants_are_neither_minted_nor_honoured() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let mut bad = claims("*", Role::Admin, 1_000);
        bad.tenant = "acme/prod".into();
        assert!(matches!(
            signer.try_mint(&bad),
            Err(InvalidTenant::Character { character: '/', .. })
        ));
        // A token signed without the check (or before it existed) is refused as a 401.
        let legacy = signer.mint(&bad);
        let refused = signer.verify(&legacy, 0).unwrap_err();
        assert!(
            matches!(refused, AuthError::InvalidTenant(_)),
            "{refused:?}"
        );
        assert!(refused.is_unauthenticated());
        assert!(refused.to_string().contains("'/'"), "{refused}");
        let good = signer.try_mint(&claims("*", Role::Admin, 1_000)).unwrap();
        assert!(signer.verify(&good, 0).is_ok());
    }

    #[test]
    fn the_insecure_tenant_is_checked_too() {
        assert!(matches!(
            Auth::insecure("acme/prod"),
            Err(InvalidTenant::Character { character: '/', .. })
        ));
        let principal = Auth::insecure("acme")
            .unwrap()
            .authenticate(None, 0)
            .unwrap();
        assert_eq!(principal.stored_name("x"), "acme/x");
        let built_by_hand = Auth::Insecure {
            tenant: "acme/prod".into(),
        };
        assert!(matches!(
            built_by_hand.authenticate(None, 0),
            Err(AuthError::InvalidTenant(_))
        ));
    }

    #[test]
    fn grader_tokens_must_name_their_grader() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let grader = claims("review-*", Role::Grader, 1_000);
        assert_eq!(signer.verify(&signer.mint(&grader), 0), Ok(grader.clone()));
        for user in [None, Some(String::new()), Some("  ".to_string())] {
            let anonymous = Claims {
                user,
                ..grader.clone()
            };
            let refused = signer.verify(&signer.mint(&anonymous), 0).unwrap_err();
            assert_eq!(refused, AuthError::GraderWithoutUser);
            assert!(refused.is_unauthenticated(), "a 401");
        }
        // Other roles need no user.
        let reader = Claims {
            user: None,
            ..claims("*", Role::Reader, 1_000)
        };
        assert!(signer.verify(&signer.mint(&reader), 0).is_ok());
        // A grader can grade the queues its scope names, and do nothing to sessions.
        let principal = Principal { claims: grader };
        assert_eq!(principal.authorize("review-1", Action::Grade), Ok(()));
        assert!(matches!(
            principal.authorize("other", Action::Grade),
            Err(AuthError::OutOfScope(_))
        ));
        for action in [
            Action::Read,
            Action::Append,
            Action::Control,
            Action::Delete,
            Action::Ingest,
        ] {
            assert!(matches!(
                principal.authorize("review-1", action),
                Err(AuthError::RoleForbids { .. })
            ));
        }
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(None), None);
    }
}
