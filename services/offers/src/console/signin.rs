//! Signing in and out. The password is checked by the auth service
//! (`SignInOperator`, rate-limited per user and per client like the API's
//! login); only a user with a console role gets a session.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use offers_kit::credentials::forwarded_client;
use offers_proto::auth::v1 as auth_pb;
use serde::Deserialize;

use super::page::{self, Flash};
use super::session::{self, COOKIE, SIGN_IN_COOKIE, Signed};
use super::{Console, State as Shared};

fn sign_in_page(token: &str, username: &str, refused: Option<&Flash>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (page::head("Sign in"))
            body { main.narrow {
                h1 { "Offers console" }
                (page::flash_line(refused))
                form method="post" action="/console/sign-in" {
                    input type="hidden" name="token" value=(token);
                    label { "Username" input name="username" value=(username) autocomplete="username" required; }
                    label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                    button type="submit" { "Sign in" }
                }
            } }
        }
    }
}

/// The form, with a fresh token in it and in a cookie (there is no session
/// yet to hold one).
fn fresh_form(console: &Console, status: StatusCode, username: &str, refused: Option<&Flash>) -> Response {
    let token = session::random_token();
    let cookie = session::cookie(console, SIGN_IN_COOKIE, &token, Some(600));
    let mut response = page::answer(status, sign_in_page(&token, username, refused));
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

pub async fn form(State(console): State<Shared>) -> Response {
    fresh_form(&console, StatusCode::OK, "", None)
}

#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn submit(
    State(console): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(sign_in): Form<SignIn>,
) -> Response {
    let issued = session::read_cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if issued.is_empty() || !session::same_secret(&issued, &sign_in.token) {
        let stale = Flash::Refused("The sign-in form expired; please sign in again.".into());
        return fresh_form(&console, StatusCode::FORBIDDEN, &sign_in.username, Some(&stale));
    }
    let client = forwarded_client(&headers, console.trusted_proxy_hops).unwrap_or(peer.ip());
    let request = auth_pb::SignInOperatorRequest {
        username: sign_in.username.trim().into(),
        password: sign_in.password,
        client_address: client.to_string(),
    };
    let answer = console.clients.users.clone().sign_in_operator(request).await;
    let user = match answer.map(|r| r.into_inner().user) {
        Ok(Some(user)) => user,
        Ok(None) => return page::unavailable("no user in the sign-in answer"),
        Err(status) => {
            let (status, refused) = page::Refusal::from(status).shown();
            return fresh_form(&console, status, &sign_in.username, Some(&refused));
        }
    };
    let cookie = match Signed::start(&console, &user).await {
        Ok(cookie) => cookie,
        Err(refused) => return refused,
    };
    tracing::info!(operator = %user.username, "signed in to the console");
    let mut response = Redirect::to("/console/").into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response.headers_mut().append(header::SET_COOKIE, session::cookie(&console, SIGN_IN_COOKIE, "", Some(0)));
    response
}

#[derive(Deserialize)]
pub struct Token {
    #[serde(default)]
    csrf: String,
}

/// Ends the session on the server, not only in the browser.
pub async fn sign_out(State(console): State<Shared>, by: Signed, Form(token): Form<Token>) -> Response {
    if let Err(refused) = by.check(&token.csrf) {
        return refused.into_response();
    }
    if let Err(refused) = by.end(&console).await {
        return refused;
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response.headers_mut().append(header::SET_COOKIE, session::cookie(&console, COOKIE, "", Some(0)));
    response
}
