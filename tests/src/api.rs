//! A small typed REST client for the edge.

use std::net::SocketAddr;

use http::HeaderMap;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// 0 when nothing answered (the connection failed); `body` then says why.
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn str(&self, field: &str) -> &str {
        self.body[field].as_str().unwrap_or_else(|| panic!("{field} missing from {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "expected {status} {code}, got {}: {}", self.status, self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["status"], status, "{}", self.body);
        for field in ["type", "title", "detail"] {
            assert!(self.body[field].as_str().is_some_and(|s| !s.is_empty()), "problem lacks {field}: {}", self.body);
        }
        assert!(self.header("x-request-id").is_some(), "no request id on an error");
    }
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Self { base: format!("http://{addr}"), http: reqwest::Client::new() }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let failed =
            |e: reqwest::Error| Reply { status: 0, headers: HeaderMap::new(), body: Value::String(e.to_string()) };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return failed(e),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return failed(e),
        };
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply { status, headers, body }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    /// A GET with extra headers, its body as it came (compressed, or
    /// empty for a 304).
    pub async fn get_raw(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, HeaderMap, Vec<u8>) {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("an answer");
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, headers, response.bytes().await.expect("a body").to_vec())
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.post_with(path, token, body, &[]).await
    }

    pub async fn post_with(&self, path: &str, token: Option<&str>, body: &Value, headers: &[(&str, &str)]) -> Reply {
        self.send_with(reqwest::Method::POST, path, token, body, headers).await
    }

    /// A PATCH with a JSON body.
    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send_with(reqwest::Method::PATCH, path, token, body, &[]).await
    }

    async fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// A POST with a raw body, for malformed-input tests.
    pub async fn post_raw(&self, path: &str, token: Option<&str>, body: &str) -> Reply {
        let mut request =
            self.http.post(self.url(path)).header("content-type", "application/json").body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.post("/api/v1/auth/login/", None, &json!({"username": username, "password": password})).await
    }
}
