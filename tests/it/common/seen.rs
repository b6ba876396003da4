//! what the echo upstream saw

use super::*;

/// The identity headers of both families and the assertion, in canonical spelling: what an
/// application may only ever get from Portcullis.
pub const IDENTITY: [&str; 10] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-user-id",
    "x-forwarded-roles",
    "x-forwarded-scopes",
    "remote-user",
    "remote-email",
    "remote-name",
    "remote-groups",
    "x-portcullis-assertion",
];

/// Every value of header `name` (any case) in an echo report, in order.
pub fn seen_header(seen: &Value, name: &str) -> Vec<String> {
    seen["headers"]
        .as_array()
        .expect("echo report has headers")
        .iter()
        .filter(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}

/// Every header name in an echo report, lowercase.
pub fn seen_header_names(seen: &Value) -> Vec<String> {
    seen["headers"]
        .as_array()
        .expect("echo report has headers")
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_ascii_lowercase())
        .collect()
}
