//! Operators' sessions: a random id in an `HttpOnly`, `SameSite=Strict`
//! cookie; what it stands for is kept in the cache under the id's digest
//! (a copy of the cache holds no usable id), renewed by every page seen and
//! gone after the idle timeout or at sign-out. The operator's console role
//! is read again from the auth service on every request, so taking it away
//! takes effect at once.

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use offers_kit::cache;
use offers_proto::auth::v1 as auth_pb;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::page::{self, Done, Flash, Refusal, Refused};
use super::{Console, State};

pub const COOKIE: &str = "offers_console";
/// The sign-in form's own token, before there is a session to hold one.
pub const SIGN_IN_COOKIE: &str = "offers_console_sign_in";

/// What an operator may do: see, or also act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Viewer,
    Operator,
}

impl Access {
    pub fn of(role: i32) -> Option<Access> {
        match auth_pb::ConsoleRole::try_from(role) {
            Ok(auth_pb::ConsoleRole::Viewer) => Some(Access::Viewer),
            Ok(auth_pb::ConsoleRole::Operator) => Some(Access::Operator),
            _ => None,
        }
    }
}

/// What the cache keeps for a session.
#[derive(Serialize, Deserialize)]
struct Stored {
    user_id: String,
    username: String,
    csrf: String,
    flash: Option<Flash>,
}

/// A signed-in operator, as a handler sees them.
pub struct Signed {
    id: String,
    pub user_id: String,
    pub username: String,
    pub access: Access,
    pub csrf: String,
    /// What the previous action left to say (shown once).
    pub flash: Option<Flash>,
}

/// 32 random bytes, URL-safe.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn key(id: &str) -> String {
    cache::key(&["console", "session", &hex::encode(Sha256::digest(id.as_bytes()))])
}

/// A `Set-Cookie` value on the console's path; `max_age` 0 removes it.
pub fn cookie(console: &Console, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let mut text = format!("{name}={value}; Path={}/; HttpOnly; SameSite=Strict", super::PATH);
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    if console.settings.secure_cookie {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

/// The value of cookie `name`, if the request carries it.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// Equal strings, compared in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Signed {
    /// Starts a session for a user who just signed in; returns its cookie.
    pub async fn start(console: &Console, user: &auth_pb::User) -> Result<HeaderValue, Response> {
        let id = random_token();
        let stored =
            Stored { user_id: user.id.clone(), username: user.username.clone(), csrf: random_token(), flash: None };
        save(console, &id, &stored).await?;
        Ok(cookie(console, COOKIE, &id, None))
    }

    /// Ends the session: gone from the cache, so the cookie opens nothing.
    pub async fn end(self, console: &Console) -> Result<(), Response> {
        console.cache.delete(&[&key(&self.id)]).await.map_err(|e| page::unavailable(&e.to_string()))
    }

    /// Leaves `flash` for the next page this operator sees.
    pub async fn leave(&self, console: &Console, flash: Flash) -> Result<(), Response> {
        let stored = Stored {
            user_id: self.user_id.clone(),
            username: self.username.clone(),
            csrf: self.csrf.clone(),
            flash: Some(flash),
        };
        save(console, &self.id, &stored).await
    }

    /// Ends an act: done, its sentence is left for the next page and the
    /// browser goes there (303); refused, `again` draws the form's page
    /// with the reason, answering the refusal's status.
    pub async fn conclude(
        &self,
        console: &Console,
        outcome: Result<Done, Refusal>,
        again: impl AsyncFnOnce(Flash, StatusCode) -> Response,
    ) -> Response {
        match outcome {
            Ok(Done { said, then }) => match self.leave(console, Flash::Done(said)).await {
                Ok(()) => Redirect::to(&then).into_response(),
                Err(refused) => refused,
            },
            Err(refusal) => {
                let (status, flash) = refusal.shown();
                again(flash, status).await
            }
        }
    }

    /// Refuses a form without the token this session issued.
    pub fn check(&self, csrf: &str) -> Result<(), Refused> {
        if same_secret(csrf, &self.csrf) {
            return Ok(());
        }
        Err(Refused(
            StatusCode::FORBIDDEN,
            "The form's security token is missing or stale: reload the page and try again.",
        ))
    }

    /// Refuses a viewer.
    pub fn may_act(&self) -> Result<(), Refused> {
        match self.access {
            Access::Operator => Ok(()),
            Access::Viewer => Err(Refused(StatusCode::FORBIDDEN, "Your console role is viewer: you can see, not act.")),
        }
    }
}

async fn save(console: &Console, id: &str, stored: &Stored) -> Result<(), Response> {
    let json = serde_json::to_string(stored).map_err(|e| page::unavailable(&e.to_string()))?;
    console
        .cache
        .set(&key(id), &json, console.settings.idle_timeout)
        .await
        .map_err(|e| page::unavailable(&format!("sessions cannot be kept now: {e}")))
}

fn to_sign_in() -> Response {
    Redirect::to("/console/sign-in").into_response()
}

impl FromRequestParts<State> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &State) -> Result<Self, Response> {
        let id = read_cookie(&parts.headers, COOKIE).ok_or_else(to_sign_in)?;
        let found = console.cache.get(&key(&id)).await.map_err(|e| page::unavailable(&e.to_string()))?;
        let Some(stored) = found.and_then(|json| serde_json::from_str::<Stored>(&json).ok()) else {
            return Err(to_sign_in());
        };
        let user = console.admin().user(&stored.user_id).await.map_err(page::failure)?;
        let Some(access) = Access::of(user.console_role).filter(|_| user.is_active) else {
            console.cache.delete(&[&key(&id)]).await.ok();
            return Err(to_sign_in());
        };
        // Seen now: the idle timeout starts again, and a flash is shown once.
        let flash = stored.flash;
        let kept = Stored { flash: None, ..stored };
        save(console, &id, &kept).await?;
        Ok(Signed { id, user_id: kept.user_id, username: kept.username, access, csrf: kept.csrf, flash })
    }
}

/// A form posted by a signed-in operator who may act, with the CSRF token
/// their session issued.
pub struct Posted<T> {
    pub by: Signed,
    pub form: T,
}

#[derive(Deserialize)]
struct WithToken<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

impl<T: DeserializeOwned + Send> FromRequest<State> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, console: &State) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let by = Signed::from_request_parts(&mut parts, console).await?;
        let request = Request::from_parts(parts, body);
        let Form(WithToken { csrf, form }) =
            Form::<WithToken<T>>::from_request(request, console).await.map_err(|e| {
                page::refusal(StatusCode::BAD_REQUEST, &format!("The form is not valid: {e}")).into_response()
            })?;
        by.check(&csrf).map_err(IntoResponse::into_response)?;
        by.may_act().map_err(IntoResponse::into_response)?;
        Ok(Posted { by, form })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use proptest::prelude::*;

    use super::{read_cookie, same_secret};

    fn cookies(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("cookie", line.parse().expect("a header value"));
        }
        headers
    }

    #[test]
    fn the_session_cookie_is_found_by_its_exact_name() {
        let headers = cookies(&["a=1; offers_console_sign_in=nonce", "offers_console=sid; b=2"]);
        assert_eq!(read_cookie(&headers, "offers_console").as_deref(), Some("sid"));
        assert_eq!(read_cookie(&headers, "offers_console_sign_in").as_deref(), Some("nonce"));
        assert_eq!(read_cookie(&cookies(&["xoffers_console=forged"]), "offers_console"), None);
        assert_eq!(read_cookie(&cookies(&["offers_console"]), "offers_console"), None, "no value, no cookie");
    }

    proptest! {
        /// Whatever a browser (or anyone) sends as cookies, reading one
        /// never fails, and a value found is one the header held.
        #[test]
        fn any_cookie_header_is_read_without_failing(line in "[ -~]{0,200}", name in "[a-z_]{1,20}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = line.parse() {
                headers.append("cookie", value);
            }
            if let Some(found) = read_cookie(&headers, &name) {
                let pair = format!("{name}={found}");
                prop_assert!(line.contains(&pair), "{} not in {}", pair, line);
            }
        }

        #[test]
        fn secrets_match_only_when_equal(a in "[A-Za-z0-9_-]{0,50}", b in "[A-Za-z0-9_-]{0,50}") {
            prop_assert_eq!(same_secret(&a, &b), a == b);
            prop_assert!(same_secret(&a, &a));
        }
    }
}
