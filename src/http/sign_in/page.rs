//! The HTML of the sign-in and sign-out pages: one self-contained document each, its style
//! inline, no script, no external asset (so the `Content-Security-Policy` can forbid them
//! all), readable from a phone's width up, and with a label on every field (WCAG 2.2, 1.3.1
//! and 3.3.2). Every value from a request or the config is escaped ([`escape`]).

use std::fmt::Write as _;

/// What the sign-in page shows.
#[derive(Debug)]
pub struct SignIn<'a> {
    /// The email to fill in again after a failed attempt.
    pub email: &'a str,
    /// Where to go afterwards, already judged safe (the hidden `rd`).
    pub rd: &'a str,
    /// The form's CSRF token (the hidden `csrf_token`).
    pub csrf: &'a str,
    /// Why the last attempt failed: Coder's message.
    pub error: Option<&'a str>,
    /// A neutral notice (signed out).
    pub notice: Option<&'a str>,
    /// Whether the password form is shown (`passwords.disable_password_auth` is off).
    pub password: bool,
    /// The OIDC button: its text and where it leads.
    pub oidc: Option<(&'a str, &'a str)>,
}

/// The sign-in page.
pub fn sign_in(page: &SignIn<'_>) -> String {
    let mut body = String::new();
    body.push_str("<h1 id=\"title\">Sign in</h1>\n");
    body.push_str("<p class=\"lead\">Sign in to continue to this site.</p>\n");
    if let Some(notice) = page.notice {
        let _ = writeln!(
            body,
            "<p class=\"notice\" role=\"status\">{}</p>",
            escape(notice)
        );
    }
    if let Some(error) = page.error {
        let _ = writeln!(
            body,
            "<p class=\"error\" role=\"alert\" id=\"error\">{}</p>",
            escape(error)
        );
    }
    if let Some((text, href)) = page.oidc {
        let _ = writeln!(
            body,
            "<a class=\"button secondary\" id=\"oidc\" href=\"{}\">{}</a>",
            escape(href),
            escape(text)
        );
        if page.password {
            body.push_str("<div class=\"or\" aria-hidden=\"true\"><span>or</span></div>\n");
        }
    }
    if page.password {
        let invalid = if page.error.is_some() {
            " aria-invalid=\"true\" aria-describedby=\"error\""
        } else {
            ""
        };
        let autofocus_email = if page.email.is_empty() {
            " autofocus"
        } else {
            ""
        };
        let autofocus_password = if page.email.is_empty() {
            ""
        } else {
            " autofocus"
        };
        let _ = write!(
            body,
            r#"<form method="post" action="/.portcullis/sign-in" aria-labelledby="title">
<input type="hidden" name="rd" value="{rd}">
<input type="hidden" name="csrf_token" value="{csrf}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" inputmode="email" autocapitalize="off" spellcheck="false" required value="{email}"{invalid}{autofocus_email}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required{invalid}{autofocus_password}>
<button type="submit" class="button primary">Sign in</button>
</form>
"#,
            rd = escape(page.rd),
            csrf = escape(page.csrf),
            email = escape(page.email),
        );
    }
    document("Sign in", &body)
}

/// The sign-out page: a confirm button (a GET must change nothing, and a link or an image on
/// another site must not sign anyone out).
pub fn sign_out(csrf: &str, error: Option<&str>) -> String {
    let error = error.map_or_else(String::new, |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(e))
    });
    let body = format!(
        r#"<h1 id="title">Sign out</h1>
<p class="lead">Do you want to sign out? You will need to sign in again to continue.</p>
{error}<form method="post" action="/.portcullis/sign-out" aria-labelledby="title">
<input type="hidden" name="csrf_token" value="{}">
<button type="submit" class="button primary">Sign out</button>
</form>
"#,
        escape(csrf)
    );
    document("Sign out", &body)
}

/// A whole document around `body`.
fn document(title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<div class="card">
<div class="mark" aria-hidden="true">{MARK}</div>
{body}</div>
<p class="foot">Protected by Portcullis</p>
</main>
</body>
</html>
"#
    )
}

/// A portcullis (a gate's grille), drawn inline so the page needs no asset.
const MARK: &str = r#"<svg viewBox="0 0 32 32" width="36" height="36"><rect x="2" y="2" width="28" height="28" rx="7" fill="currentColor"/><path d="M9 9h14M9 14h14M9 19h14M11 9v15M16 9v15M21 9v15" stroke="white" stroke-width="2" stroke-linecap="round"/><path d="M9.5 24l1.5 2 1.5-2M14.5 24l1.5 2 1.5-2M19.5 24l1.5 2 1.5-2" stroke="white" stroke-width="1.6" fill="none" stroke-linejoin="round"/></svg>"#;

const STYLE: &str = r#"
:root{--bg:#f3f4f6;--card:#fff;--text:#111827;--muted:#6b7280;--line:#d1d5db;--accent:#1d4ed8;--accent-hover:#1e40af;--focus:#93c5fd;--error-bg:#fef2f2;--error-line:#fecaca;--error-text:#991b1b;--notice-bg:#eff6ff;--notice-line:#bfdbfe;--notice-text:#1e3a8a;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0b1120;--card:#111827;--text:#f3f4f6;--muted:#9ca3af;--line:#374151;--accent:#3b82f6;--accent-hover:#2563eb;--focus:#1d4ed8;--error-bg:#2a1215;--error-line:#7f1d1d;--error-text:#fecaca;--notice-bg:#0f1d3a;--notice-line:#1e3a8a;--notice-text:#bfdbfe}}
*{box-sizing:border-box}
html,body{margin:0;min-height:100%}
body{background:var(--bg);color:var(--text);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;-webkit-font-smoothing:antialiased}
main{min-height:100vh;display:flex;flex-direction:column;align-items:center;justify-content:center;padding:24px 16px}
.card{width:100%;max-width:400px;background:var(--card);border:1px solid var(--line);border-radius:12px;padding:36px 32px 32px;box-shadow:0 1px 2px rgba(0,0,0,.04),0 8px 24px rgba(0,0,0,.06)}
.mark{color:var(--accent);margin-bottom:20px;line-height:0}
h1{font-size:24px;line-height:1.25;font-weight:650;margin:0 0 6px;letter-spacing:-.01em}
.lead{color:var(--muted);margin:0 0 24px;font-size:15px}
label{display:block;font-size:14px;font-weight:600;margin:16px 0 6px}
form label:first-of-type{margin-top:0}
input[type=email],input[type=password]{display:block;width:100%;font:inherit;color:var(--text);background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px;min-height:44px}
input:focus{outline:none;border-color:var(--accent);box-shadow:0 0 0 3px var(--focus)}
.button{display:flex;align-items:center;justify-content:center;width:100%;min-height:44px;padding:10px 16px;border-radius:8px;font:inherit;font-weight:600;text-decoration:none;cursor:pointer;border:1px solid transparent}
.button:focus-visible{outline:none;box-shadow:0 0 0 3px var(--focus)}
.primary{background:var(--accent);color:#fff;margin-top:24px}
.primary:hover{background:var(--accent-hover)}
.secondary{background:var(--card);color:var(--text);border-color:var(--line)}
.secondary:hover{background:var(--bg)}
.or{display:flex;align-items:center;gap:12px;color:var(--muted);font-size:13px;margin:20px 0}
.or::before,.or::after{content:"";flex:1;border-top:1px solid var(--line)}
.error,.notice{border-radius:8px;padding:10px 12px;margin:0 0 20px;font-size:14px;border:1px solid}
.error{background:var(--error-bg);border-color:var(--error-line);color:var(--error-text)}
.notice{background:var(--notice-bg);border-color:var(--notice-line);color:var(--notice-text)}
.foot{color:var(--muted);font-size:12px;margin:20px 0 0}
@media (max-width:480px){main{justify-content:flex-start;padding:16px 12px}.card{padding:28px 20px 24px;border-radius:10px}}
"#;

/// `text` safe in HTML text and in a double- or single-quoted attribute (OWASP XSS
/// prevention, rules 1 and 2).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page<'a>() -> SignIn<'a> {
        SignIn {
            email: "",
            rd: "/",
            csrf: "t0k3n",
            error: None,
            notice: None,
            password: true,
            oidc: None,
        }
    }

    #[test]
    fn the_form_has_the_names_tools_drive_it_by() {
        let html = sign_in(&page());
        for part in [
            r#"<form method="post" action="/.portcullis/sign-in""#,
            r#"name="email""#,
            r#"name="password" type="password""#,
            r#"<input type="hidden" name="rd" value="/">"#,
            r#"<input type="hidden" name="csrf_token" value="t0k3n">"#,
            r#"<button type="submit""#,
            r#"<label for="email">"#,
            r#"<label for="password">"#,
        ] {
            assert!(html.contains(part), "{part} missing from\n{html}");
        }
        assert!(!html.contains("<script"), "no script");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external asset"
        );
    }

    #[test]
    fn request_values_are_escaped() {
        let html = sign_in(&SignIn {
            email: "\"><script>alert(1)</script>",
            rd: "/x?a=1&b=\"'",
            error: Some("<b>bad</b>"),
            ..page()
        });
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(
            html.contains("value=\"/x?a=1&amp;b=&quot;&#39;\""),
            "{html}"
        );
    }

    #[test]
    fn without_passwords_only_the_provider_button_is_shown() {
        let html = sign_in(&SignIn {
            password: false,
            oidc: Some((
                "Sign in with Okta",
                "/api/v2/users/oidc/callback?redirect=%2F",
            )),
            ..page()
        });
        assert!(html.contains("Sign in with Okta"), "{html}");
        assert!(!html.contains("name=\"password\""), "{html}");
        assert!(!html.contains("<form"), "{html}");
        let both = sign_in(&SignIn {
            oidc: Some(("Sign in with Okta", "/x")),
            ..page()
        });
        assert!(both.contains("name=\"password\"") && both.contains("Sign in with Okta"));
    }
}
