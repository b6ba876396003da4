//! `GET /.portcullis/jwks.json`: the public keys of the identity assertion
//! ([`crate::assertion`]), for applications that verify it.

use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Response, StatusCode};

use crate::assertion::Signer;
use crate::http::body::Body;
use crate::http::error;

/// The answer to `GET /.portcullis/jwks.json`: every key of `signer` (public, cacheable for
/// five minutes: rotate by publishing the new key second for longer than that before it
/// signs); `404` when no key is configured; `405` for methods other than `GET` and `HEAD`.
pub fn jwks_response(signer: Option<&Signer>, method: &Method) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut resp =
            error::message_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.", "");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let Some(signer) = signer else {
        return error::message_response(
            StatusCode::NOT_FOUND,
            "Not found.",
            "No identity assertion key is configured (identity.assertion_key).",
        );
    };
    let mut resp = Response::new(Body::full(signer.jwks()));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, error::JSON);
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
