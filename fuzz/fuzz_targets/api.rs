//! The Coder-compatible API's JSON bodies: decoding and the validation that follows, through
//! the real handler (`http::api::handle`) on the memory store, as the owner.
//!
//! Input: the first line names the endpoint (see [`ENDPOINTS`]; any other first line picks one
//! by its first byte), the rest is the request body.
//!
//! One Portcullis with an owner and a member serves [`RENEW_EVERY`] inputs, then starts again
//! from an empty store (also as soon as the owner's token stops working): a fresh one per input
//! runs at about a hundred inputs a second, too slow for a campaign. Inputs may therefore see
//! users and tokens earlier inputs made; a crash is reproduced by running its input alone.
//!
//! Properties, beyond no panic: the handler answers every such path; nothing is a 5xx (with the
//! memory store nothing can be unavailable, and a 500 is a bug); a body, when there is one, is
//! JSON.

#![no_main]

use std::cell::RefCell;

use http::Method;
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{lines, Sidecar, OWNER_TOKEN};

/// The endpoints that read a JSON body: name, method, path under the API prefix.
const ENDPOINTS: [(&str, Method, &str); 14] = [
    ("first", Method::POST, "/users/first"),
    ("login", Method::POST, "/users/login"),
    (
        "validate-password",
        Method::POST,
        "/users/validate-password",
    ),
    ("otp-request", Method::POST, "/users/otp/request"),
    ("otp-change", Method::POST, "/users/otp/change-password"),
    ("create-user", Method::POST, "/users"),
    ("password-me", Method::PUT, "/users/me/password"),
    ("password-member", Method::PUT, "/users/member/password"),
    ("token", Method::POST, "/users/me/keys/tokens"),
    ("token-member", Method::POST, "/users/member/keys/tokens"),
    ("roles", Method::PUT, "/users/member/roles"),
    (
        "member-roles",
        Method::PUT,
        "/organizations/default/members/member/roles",
    ),
    ("authcheck", Method::POST, "/authcheck"),
    ("convert", Method::POST, "/users/me/convert-login"),
];

/// How many inputs one store serves, which bounds what they accumulate.
const RENEW_EVERY: u32 = 1000;

thread_local! {
    static SIDECAR: RefCell<Option<(Sidecar, u32)>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let (name, _) = lines(data);
    let (endpoint, body) = match ENDPOINTS.iter().position(|(n, ..)| n.as_bytes() == name) {
        Some(i) => (
            &ENDPOINTS[i],
            data.get(name.len() + 1..).unwrap_or_default(),
        ),
        None => {
            let first = data.first().copied().unwrap_or_default();
            (&ENDPOINTS[usize::from(first) % ENDPOINTS.len()], data)
        }
    };
    let (_, method, path) = endpoint;
    let (status, answer) = SIDECAR.with_borrow_mut(|slot| {
        let (sidecar, served) = slot.get_or_insert_with(|| (Sidecar::new(), 0));
        if *served == RENEW_EVERY || !sidecar.owner_signed_in() {
            sidecar.renew();
            *served = 0;
        }
        *served += 1;
        let call = sidecar.send(method.clone(), path, Some(OWNER_TOKEN), body);
        sidecar.runtime.block_on(call)
    });
    assert!(
        !status.is_server_error(),
        "{method} {path}: {status} {}",
        String::from_utf8_lossy(&answer)
    );
    if !answer.is_empty() {
        assert!(
            serde_json::from_slice::<serde_json::Value>(&answer).is_ok(),
            "{method} {path}: {status} with a body that is not JSON: {}",
            String::from_utf8_lossy(&answer)
        );
    }
});
