//! The operator console as a browser meets it: cookies kept, redirects
//! not followed (each answer is asserted on), forms posted with the origin
//! a browser sends, and the CSRF token read from the last page.

use std::collections::BTreeMap;

use http::HeaderMap;

use crate::TestSuite;

#[derive(Clone)]
pub struct Console {
    base: String,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    /// The CSRF token of the last page that carried one.
    pub csrf: String,
}

/// One answer of the console.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub html: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of the first hidden field `name` on the page.
    pub fn field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.html.find(&marker)? + marker.len();
        let end = self.html[start..].find('"')?;
        Some(self.html[start..start + end].to_string())
    }

    /// The flash line's text, if the page has one.
    pub fn flash(&self) -> Option<&str> {
        let start = self.html.find("class=\"flash ")?;
        let text = &self.html[start..];
        let open = text.find('>')? + 1;
        let close = text[open..].find('<')?;
        Some(&text[open..open + close])
    }
}

impl Console {
    pub fn new(suite: &TestSuite) -> Console {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Console { base: suite.console_base(), http, cookies: BTreeMap::new(), csrf: String::new() }
    }

    /// Signed in as `username`, or the page that refused.
    pub async fn sign_in(suite: &TestSuite, username: &str, password: &str) -> Result<Console, Page> {
        let mut console = Console::new(suite);
        let form = console.get("/console/sign-in").await;
        let token = form.field("token").expect("the sign-in form's token");
        let answer = console
            .post("/console/sign-in", &[("token", &token), ("username", username), ("password", password)])
            .await;
        if answer.status != 303 {
            return Err(answer);
        }
        let home = console.get("/console/").await;
        assert_eq!(home.status, 200, "{}", home.html);
        Ok(console)
    }

    pub fn origin(&self) -> &str {
        &self.base
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = if self.cookies.is_empty() { request } else { request.header("cookie", self.cookie_header()) };
        let response = request.send().await.expect("the console answers");
        for set in response.headers().get_all("set-cookie") {
            let text = set.to_str().expect("ascii cookie");
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || text.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let html = response.text().await.expect("a body");
        let page = Page { status, headers, html };
        if let Some(csrf) = page.field("csrf") {
            self.csrf = csrf;
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// Posts exactly `form`, from the console's own origin.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = self.base.clone();
        self.post_from(path, form, &[("origin", &origin), ("sec-fetch-site", "same-origin")]).await
    }

    /// Posts `form` with these headers (a browser's `Origin`, `Sec-Fetch-Site`).
    pub async fn post_from(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut request = self.http.post(format!("{}{path}", self.base)).form(form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// Posts `form` with the session's CSRF token, as the page's form does.
    pub async fn act(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone();
        let mut fields = vec![("csrf", csrf.as_str())];
        fields.extend_from_slice(form);
        self.post(path, &fields).await
    }
}
