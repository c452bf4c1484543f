//! Bearer tokens with scopes for the REST API.
//!
//! With no `api_tokens` configured the API is open (the embedded default listens on
//! loopback). With tokens, every route but `/health`, `/openapi.json` and `/docs` needs
//! `Authorization: Bearer <token>` (`/ready` and `/metrics` too unless `probes_public`):
//! no or an unknown token is `401`, a token without the route's scope `403`, both with a
//! JSON error. Scopes: `read` (GET routes, and `POST /sql` with statements that only read),
//! `ingest` (`POST /ingest/…`), `admin` (everything). Tokens are compared in constant time
//! over their bytes; they may be `${env:NAME}` or `${file:/path}` references, resolved at
//! start, so the configuration file need not hold the secret.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

/// One configured token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The secret, or a `${env:NAME}` / `${file:/path}` reference to it.
    pub token: String,
    /// `read`, `ingest`, `admin`.
    pub scopes: Vec<String>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Ingest,
    Admin,
}

impl Scope {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "ingest" => Some(Scope::Ingest),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Ingest => "ingest",
            Scope::Admin => "admin",
        }
    }
}

/// The scopes granted to the request's token, for handlers that look further (`/sql`).
#[derive(Debug, Clone)]
pub struct Granted(pub BTreeSet<Scope>);

impl Granted {
    /// Whether the token may do what `scope` allows (`admin` may do everything).
    pub fn allows(&self, scope: Scope) -> bool {
        self.0.contains(&Scope::Admin) || self.0.contains(&scope)
    }
}

/// The configured tokens.
#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<(Vec<u8>, BTreeSet<Scope>)>,
    probes_public: bool,
}

/// Shortest token accepted: guessing must not be practical.
const MIN_TOKEN_BYTES: usize = 16;

impl Tokens {
    /// Tokens from the configuration (references resolved); `None` when there are none.
    pub fn from_config(
        configs: &[TokenConfig],
        probes_public: bool,
    ) -> Result<Option<Arc<Self>>, String> {
        if configs.is_empty() {
            return Ok(None);
        }
        let mut entries = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let token = weir_connectors::options::resolve_secret("token", &c.token)
                .map_err(|e| format!("api_tokens[{i}]: {e}"))?;
            if token.len() < MIN_TOKEN_BYTES {
                return Err(format!(
                    "api_tokens[{i}]: a token must be at least {MIN_TOKEN_BYTES} bytes (e.g. `openssl rand -hex 32`)"
                ));
            }
            let mut scopes = BTreeSet::new();
            for s in &c.scopes {
                scopes.insert(Scope::parse(s).ok_or_else(|| {
                    format!("api_tokens[{i}]: unknown scope '{s}'; use read, ingest or admin")
                })?);
            }
            if scopes.is_empty() {
                return Err(format!("api_tokens[{i}]: give at least one scope"));
            }
            entries.push((token.into_bytes(), scopes));
        }
        Ok(Some(Arc::new(Self {
            entries,
            probes_public,
        })))
    }

    /// The scopes of `presented`, comparing it with every token in constant time.
    fn scopes_of(&self, presented: &[u8]) -> Option<BTreeSet<Scope>> {
        let mut found = None;
        for (token, scopes) in &self.entries {
            if constant_time_eq(token, presented) {
                found = Some(scopes.clone());
            }
        }
        found
    }
}

/// Equal bytes, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The scope a route needs; `None` for open routes.
fn needed(method: &Method, path: &str, probes_public: bool) -> Option<Scope> {
    match path {
        "/health" | "/openapi.json" | "/docs" => None,
        "/ready" | "/metrics" if probes_public => None,
        p if p.starts_with("/ingest/") => Some(Scope::Ingest),
        // `/sql` with a read token runs only statements that read (checked by the handler).
        _ if *method == Method::GET || *method == Method::HEAD || path == "/sql" => {
            Some(Scope::Read)
        }
        _ => Some(Scope::Admin),
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    let mut response = (status, Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("header"));
    }
    response
}

/// Checks the request's bearer token against the route's scope.
pub async fn require(
    State(tokens): State<Option<Arc<Tokens>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(tokens) = tokens else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_string();
    let Some(scope) = needed(request.method(), &path, tokens.probes_public) else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().as_bytes().to_vec());
    let Some(scopes) = presented.and_then(|t| tokens.scopes_of(&t)) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            format!(
                "{path} needs a token: send Authorization: Bearer <token> (scope {} or admin)",
                scope.as_str()
            ),
        );
    };
    let granted = Granted(scopes);
    if !granted.allows(scope) {
        let have: Vec<&str> = granted.0.iter().map(|s| s.as_str()).collect();
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "this token's scopes ({}) do not allow {} {path}; it needs {}",
                have.join(", "),
                request.method(),
                scope.as_str()
            ),
        );
    }
    request.extensions_mut().insert(granted);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_their_scopes() {
        assert_eq!(needed(&Method::GET, "/health", false), None);
        assert_eq!(needed(&Method::GET, "/metrics", true), None);
        assert_eq!(needed(&Method::GET, "/metrics", false), Some(Scope::Read));
        assert_eq!(needed(&Method::GET, "/kpi", true), Some(Scope::Read));
        assert_eq!(needed(&Method::POST, "/sql", true), Some(Scope::Read));
        assert_eq!(
            needed(&Method::POST, "/ingest/x", true),
            Some(Scope::Ingest)
        );
        let g = Granted(BTreeSet::from([Scope::Admin]));
        assert!(g.allows(Scope::Read) && g.allows(Scope::Ingest));
        let r = Granted(BTreeSet::from([Scope::Read]));
        assert!(!r.allows(Scope::Ingest) && !r.allows(Scope::Admin));
    }

    #[test]
    fn tokens_are_checked_when_configured() {
        let bad = |c: Vec<TokenConfig>| Tokens::from_config(&c, true).unwrap_err();
        let t = |token: &str, scopes: &[&str]| TokenConfig {
            token: token.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        assert!(bad(vec![t("short", &["read"])]).contains("at least 16 bytes"));
        assert!(bad(vec![t("0123456789abcdef", &["write"])]).contains("unknown scope 'write'"));
        assert!(bad(vec![t("0123456789abcdef", &[])]).contains("at least one scope"));
        assert!(Tokens::from_config(&[], true).unwrap().is_none());
        let tokens = Tokens::from_config(&[t("0123456789abcdef", &["read"])], true)
            .unwrap()
            .unwrap();
        assert_eq!(
            tokens.scopes_of(b"0123456789abcdef"),
            Some(BTreeSet::from([Scope::Read]))
        );
        assert_eq!(tokens.scopes_of(b"0123456789abcdeX"), None);
        assert_eq!(tokens.scopes_of(b""), None);
    }
}
