//! The canonical form of a request path: the one reading of a path that Portcullis judges, and
//! the path it forwards. Inline proxying, the API router and forward-auth all call
//! [`canonicalize`], so no spelling of a path can be judged as one route and served as another.
//!
//! Mainstream servers disagree on how they read a path (Tomcat and Spring drop `;` parameters,
//! IIS and some Windows file handlers drop trailing dots and spaces, Express and ASP.NET route
//! without regard to case, several decode `%2F` or decode twice, Go's `net/http` and nginx
//! merge slashes and resolve dot segments). Each difference is either normalised here, and the
//! normalised path is what the upstream receives, or refused with `400`:
//!
//! | in the path | what Portcullis does |
//! |---|---|
//! | `%41`, `%7e`: an escaped unreserved character (RFC 3986 §2.3) | decoded (RFC 3986 §6.2.2.2) |
//! | `%c3%a9`: any other escape | kept, hex in upper case (RFC 3986 §6.2.2.1) |
//! | `//`: empty segments | merged (as nginx `merge_slashes` and Go's `net/http` do) |
//! | `.` and `..` segments, raw or escaped | refused: resolving them is where servers differ |
//! | a segment ending in `.` or in a space (`admin.`, `admin%20`) | refused: IIS and Windows drop them |
//! | `;` raw or `%3B` (`/admin;x=1/`, `/static/..;/admin`) | refused: Tomcat and Spring drop path parameters |
//! | `%2F`, `%5C`, a raw `\` | refused: some servers decode them into separators |
//! | `%25` followed by two hex digits, also once escapes are decoded (`%25%32%65`) | refused: a server that decodes twice reads another path |
//! | a control character, raw or escaped (`%00`, `%0A`, `%7F`), or a raw space | refused |
//! | escapes that do not decode to UTF-8 (`%c0%ae`) | refused: old decoders read overlong forms as `.` |
//! | a bad escape (`%zz`, `%4`) | refused |
//!
//! Case is left as it is: rules match literals without regard to ASCII case unless told
//! otherwise (`policy.case_sensitive`), see [`super::Policy`].

use std::borrow::Cow;

use super::AmbiguousPath;

/// The canonical form of `path` (a request target's path, starting with `/`, or `*`), or why
/// it is refused. Borrows exactly when `path` is already canonical; for the common path, with
/// no escape, the check is one pass over the bytes.
pub fn canonicalize(path: &str) -> Result<Cow<'_, str>, AmbiguousPath> {
    if path == "*" {
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err(AmbiguousPath("The path does not start with '/'."));
    }
    if is_canonical(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let rebuilt = rebuild(path)?;
    Ok(if rebuilt == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(rebuilt)
    })
}

/// Whether `path` needs no work: no escapes, no `;` or `\`, no control character or raw space,
/// no empty segment, and no segment ending in a dot (which covers `.` and `..`).
fn is_canonical(path: &[u8]) -> bool {
    let mut prev = b'/';
    for (i, &b) in path.iter().enumerate().skip(1) {
        match b {
            b'%' | b';' | b'\\' => return false,
            b'/' if prev == b'/' || prev == b'.' => return false,
            _ if b <= 0x20 || b == 0x7f => return false,
            _ => {}
        }
        prev = b;
        if i == path.len() - 1 && b == b'.' {
            return false;
        }
    }
    true
}

/// The slow path: decodes, re-encodes and checks segment by segment.
fn rebuild(path: &str) -> Result<String, AmbiguousPath> {
    let mut out = String::with_capacity(path.len());
    let mut segment = String::new();
    for raw in path.split('/').skip(1) {
        if raw.is_empty() {
            continue;
        }
        segment.clear();
        let escaped = normalize_segment(raw, &mut segment)?;
        check_segment(&segment, escaped)?;
        out.push('/');
        out.push_str(&segment);
    }
    if out.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    Ok(out)
}

/// Writes `raw`'s normal form to `out`: unreserved escapes decoded, other escapes in upper
/// case. Returns whether an escape is left in `out`.
fn normalize_segment(raw: &str, out: &mut String) -> Result<bool, AmbiguousPath> {
    let bytes = raw.as_bytes();
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let v = hex_pair(bytes.get(i + 1..i + 3))
                    .ok_or(AmbiguousPath("The path has a malformed percent-escape."))?;
                i += 3;
                match v {
                    _ if is_unreserved(v) => out.push(char::from(v)),
                    b'/' | b'\\' => {
                        return Err(AmbiguousPath("The path has an encoded '/' or '\\'."));
                    }
                    b';' => return Err(AmbiguousPath("The path has a ';' parameter.")),
                    _ if v < 0x20 || v == 0x7f => {
                        return Err(AmbiguousPath("The path has an encoded control character."));
                    }
                    _ => {
                        escaped = true;
                        out.push('%');
                        out.push(char::from(HEX[usize::from(v >> 4)]));
                        out.push(char::from(HEX[usize::from(v & 0xf)]));
                    }
                }
            }
            b';' => return Err(AmbiguousPath("The path has a ';' parameter.")),
            b'\\' => return Err(AmbiguousPath("The path has a '\\'.")),
            // A raw space never comes in a request line; forward-auth headers can carry one,
            // and `admin ` is `admin%20`, which IIS reads as `admin`.
            _ if b <= 0x20 || b == 0x7f => {
                return Err(AmbiguousPath(
                    "The path has a control character or a raw space.",
                ));
            }
            _ => {
                // `raw` is a str and we only ever split it at ASCII bytes, so copying a byte
                // at a time would break a multi-byte character: copy the whole character.
                let ch = raw[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                i += ch.len_utf8();
                continue;
            }
        }
    }
    Ok(escaped)
}

/// Refuses dot segments, trailing dots and spaces, double encoding, and escapes that do not
/// decode to UTF-8. It judges the normal form, not the raw segment: decoding `%32` and `%65`
/// after a `%25` spells `%252e` only there.
fn check_segment(segment: &str, escaped: bool) -> Result<(), AmbiguousPath> {
    if segment == "." || segment == ".." {
        return Err(AmbiguousPath("The path has a '.' or '..' segment."));
    }
    if segment.ends_with('.') || segment.ends_with("%20") {
        return Err(AmbiguousPath("A path segment ends in '.' or a space."));
    }
    if escaped {
        let bytes = segment.as_bytes();
        let twice = segment
            .match_indices("%25")
            .any(|(i, _)| hex_pair(bytes.get(i + 3..i + 5)).is_some());
        if twice {
            return Err(AmbiguousPath("The path is percent-encoded twice."));
        }
        decode(segment)?;
    }
    Ok(())
}

/// Percent-decodes a segment of a canonical path (the escapes left are of reserved or
/// non-ASCII bytes) for matching against a rule's literal.
pub fn decode(segment: &str) -> Result<Cow<'_, str>, AmbiguousPath> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let v = hex_pair(bytes.get(i + 1..i + 3))
                .ok_or(AmbiguousPath("The path has a malformed percent-escape."))?;
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| AmbiguousPath("The path's escapes do not decode to UTF-8."))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let [hi, lo] = pair? else { return None };
    Some(hex_digit(*hi)? << 4 | hex_digit(*lo)?)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_are_borrowed_unchanged() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/a.b/c",
            "/x-y_z~1",
            "/caf\u{e9}",
            "/caf%C3%A9",
            "*",
            "/a/.b",
        ] {
            let c = canonicalize(p).expect(p);
            assert!(matches!(c, Cow::Borrowed(_)), "{p}");
            assert_eq!(c, p);
        }
    }

    #[test]
    fn spellings_normalise_to_one_form() {
        for (raw, want) in [
            ("//admin", "/admin"),
            ("/admin//users", "/admin/users"),
            ("/admin/users//", "/admin/users/"),
            ("//", "/"),
            ("/%61dmin", "/admin"),
            ("/%41DMIN/%7Eme", "/ADMIN/~me"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/a%25b", "/a%25b"),
            ("/a%25zz", "/a%25zz"),
            ("/%2e%2ea", "/..a"),
        ] {
            assert_eq!(canonicalize(raw).expect(raw), want, "{raw}");
            // Idempotent: the canonical form is its own canonical form.
            assert_eq!(canonicalize(want).expect(want), want, "{want}");
        }
    }

    #[test]
    fn ambiguous_spellings_are_refused() {
        for raw in [
            "/static/../admin",
            "/static/./x",
            "/static/..",
            "/static/%2e%2e/admin",
            "/static/%2E/admin",
            "/static/.%2e/admin",
            "/static/..;/admin",
            "/admin;x=1/users",
            "/admin%3Bx/users",
            "/admin%3bx/users",
            "/admin./users",
            "/admin%2e/users",
            "/admin%2E",
            "/admin...",
            "/admin%20/users",
            "/static%2F..%2Fadmin",
            "/static%2fadmin",
            "/static/a%5cb",
            "/static/a\\b",
            "/static/%zz",
            "/static/%4",
            "/static/%",
            "/static/%c3",
            "/static/%c0%ae%c0%ae/admin",
            "/a%00b",
            "/a%0d%0ab",
            "/a%7f",
            // Raw control characters (the request line refuses them; forward-auth headers
            // and the API's own paths reach this too), on the fast path and, after an escape,
            // on the slow one.
            "/a\x7fb",
            "/\x7f",
            "/\x01",
            "/admin /x",
            "/a b",
            "/%61 ",
            "/a\x01b",
            "/a\tb",
            "/%61\x7f",
            "/%61\x01",
            "/a%252e%252e/admin",
            "/a%252F",
            // Twice encoded only once the unreserved escapes after `%25` are decoded.
            "/static/%25%32%65%25%32%65/admin",
            "/a%25%35%46",
            "/%25%3519",
            "admin",
            "",
        ] {
            assert!(canonicalize(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn decoding_reads_the_escapes_left_in_a_canonical_segment() {
        assert_eq!(decode("caf%C3%A9").unwrap(), "caf\u{e9}");
        assert_eq!(decode("a%3Fb").unwrap(), "a?b");
        assert_eq!(decode("plain").unwrap(), "plain");
        assert!(decode("%C3").is_err());
    }
}
