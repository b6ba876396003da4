//! Where the sign-in page may send a browser afterwards: the `rd` parameter, judged before it
//! becomes a `Location`. An open redirect lets a phishing link borrow this site's name
//! (OWASP "Unvalidated Redirects and Forwards" cheat sheet), so `rd` is accepted only as
//!
//! - a local path (`/`, then anything but a second `/` or a `\`), with its query and fragment;
//! - or `http://` / `https://` and a host in `session.allowed_redirect_hosts`, then a local
//!   path or nothing.
//!
//! Browsers read more than RFC 3986 allows: `\` as `/` in `http` URLs, a scheme without `//`
//! (`https:evil`), tabs and newlines dropped from anywhere (WHATWG URL, "basic URL parser").
//! Applications behind Portcullis may decode the path once more and redirect again. So the
//! path is also judged percent-decoded (repeatedly: `%252f` is `%2f` is `/`): it must not then
//! hold `//`, a `\`, a control character, or a `.` / `..` segment (`/.//evil` resolves to
//! `//evil`). Anything but visible ASCII in the raw text is refused; a browser encodes what
//! it sends. Everything refused becomes `/`: a sign-in still lands somewhere harmless.

/// The longest `rd` followed (longer than any address a browser keeps in its history).
pub const MAX_BYTES: usize = 2048;

/// How often the path is decoded before a form that still changes is refused.
const MAX_DECODINGS: usize = 4;

/// `rd` when it is safe to send a browser to (see the module doc), else `None`.
/// `allowed_hosts` holds lower-case host names, and `*.` names every subdomain of a domain.
pub fn safe<'a>(rd: &'a str, allowed_hosts: &[String]) -> Option<&'a str> {
    if rd.is_empty() || rd.len() > MAX_BYTES || !rd.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    if rd.starts_with('/') {
        return is_local(rd).then_some(rd);
    }
    let lower = rd.get(..8)?.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &rd[8..]
    } else if lower.starts_with("http://") {
        &rd[7..]
    } else {
        return None;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return None,
        None => authority,
    };
    // `@` would make the allowed name the user info of another host; `%` an encoded host.
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !plain || !host_allowed(host, allowed_hosts) {
        return None;
    }
    // After the host: nothing, a query or fragment only, or a local path.
    let local = match path.as_bytes().first() {
        None | Some(b'?' | b'#') => true,
        Some(_) => is_local(path),
    };
    local.then_some(rd)
}

/// Whether `host` is one of `allowed` (exactly, without case), or a subdomain of an entry
/// starting with `*.`.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    allowed.iter().any(|entry| match entry.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => host == *entry,
    })
}

/// Whether `target` (visible ASCII, starting with `/`) is a path on this site however it is
/// decoded: see the module doc.
fn is_local(target: &str) -> bool {
    let path = &target[..target.find(['?', '#']).unwrap_or(target.len())];
    let mut decoded = path.as_bytes().to_vec();
    for _ in 0..=MAX_DECODINGS {
        if !path_is_plain(&decoded) {
            return false;
        }
        let next = percent_decode(&decoded);
        if next == decoded {
            return true;
        }
        decoded = next;
    }
    false
}

/// Whether `path` starts with one `/` and has no `//`, `\`, control character, or dot segment.
fn path_is_plain(path: &[u8]) -> bool {
    path.first() == Some(&b'/')
        && !path.windows(2).any(|w| w == b"//")
        && !path.iter().any(|&b| b == b'\\' || b.is_ascii_control())
        && !path
            .split(|&b| b == b'/')
            .any(|segment| segment == b"." || segment == b"..")
}

/// `%XX` sequences replaced by their byte; anything else (a `%` not followed by two hex
/// digits included) kept as it is.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
