//! The bearer token every test sends, and the one place that puts it on a request:
//! servers started by the tests accept [`ADMIN_TOKEN`] as the system administrator's
//! token (`CONFLUX_ADMIN_TOKEN`), and every HTTP request and WebSocket upgrade the
//! tests make carries `Authorization: Bearer <ADMIN_TOKEN>`.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;

/// The system administrator's token of every server a test starts (≥ 32 characters).
pub const ADMIN_TOKEN: &str = "conflux-test-admin-token-0123456789abcdef";

/// `Bearer <ADMIN_TOKEN>`, marked sensitive.
pub fn bearer() -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("Bearer {ADMIN_TOKEN}")).expect("header");
    value.set_sensitive(true);
    value
}

/// A client builder whose requests all carry the token (add options, then build).
pub fn client_builder() -> reqwest::ClientBuilder {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, bearer());
    reqwest::Client::builder().default_headers(headers)
}

/// An HTTP client whose requests all carry the token.
pub fn client() -> reqwest::Client {
    client_builder().build().expect("HTTP client")
}

/// A WebSocket upgrade request for `url` (`ws://…`) carrying the token; pass it to
/// `tokio_tungstenite::connect_async`.
pub fn ws_request(url: &str) -> Request {
    let mut request = url.into_client_request().expect("a WebSocket URL");
    request.headers_mut().insert(AUTHORIZATION, bearer());
    request
}
