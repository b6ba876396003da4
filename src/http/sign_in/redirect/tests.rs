use super::*;

fn allowed() -> Vec<String> {
    vec!["app.example.com".into(), "*.corp.example".into()]
}

#[test]
fn local_paths_with_their_query_and_fragment_are_followed() {
    for ok in [
        "/",
        "/dashboard",
        "/a/b/c?x=1&y=2",
        "/search?q=a%2Fb&next=//evil.example",
        "/page#section",
        "/files/report%20final.pdf",
        "/~user/index.html",
        "/a.b/c..d/.e",
        "/%7Euser",
    ] {
        assert_eq!(safe(ok, &allowed()), Some(ok), "{ok}");
    }
}

#[test]
fn allowed_hosts_are_followed_and_no_others() {
    for ok in [
        "https://app.example.com",
        "https://app.example.com/",
        "https://APP.Example.com/x?y=1",
        "http://app.example.com:8080/x",
        "HTTPS://app.example.com/x",
        "https://wiki.corp.example/page",
        "https://a.b.corp.example/",
        "https://app.example.com?x=1",
    ] {
        assert_eq!(safe(ok, &allowed()), Some(ok), "{ok}");
    }
    for bad in [
        "https://evil.example/",
        "https://app.example.com.evil.example/",
        "https://evilapp.example.com/",
        "https://corp.example/",
        "https://xcorp.example/",
        "https://app.example.com@evil.example/",
        "https://evil.example@app.example.com/",
        "https://evil.example\\@app.example.com/",
        "https://evil.example%2fapp.example.com/",
        "https://app.example.com:/x",
        "https://app.example.com:80x/",
        "https://app.example.com:8080:1/",
        "https://[::1]/",
        "https://app.example.com//evil.example",
        "https://app.example.com/\\evil.example",
        "https://app.example.com/%2f%2fevil.example",
        "ftp://app.example.com/",
        "https:/app.example.com/",
        "https:app.example.com",
    ] {
        assert_eq!(safe(bad, &allowed()), None, "{bad:?}");
    }
    // Without the setting, no host at all.
    assert_eq!(safe("https://app.example.com/", &[]), None);
}

#[test]
fn every_known_bypass_spelling_is_refused() {
    for bad in [
        "",
        "//evil.example",
        "//evil.example/path",
        "///evil.example",
        "////evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "\\/evil.example",
        "\\evil.example",
        "/\\/evil.example",
        "https:evil.example",
        "https:/evil.example",
        "http:evil.example",
        "http://evil.example",
        "https://evil.example",
        "HTTPS://EVIL.EXAMPLE",
        "//evil.example@app.example.com",
        "evil.example",
        "evil.example/path",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "/%2f%2fevil.example",
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "%2f%2fevil.example",
        "/%2fevil.example",
        "/%5cevil.example",
        "/%5Cevil.example",
        "%5c%5cevil.example",
        "/%252f%252fevil.example",
        "/%25252f%25252fevil.example",
        "/%2525252f%2525252fevil.example",
        "/%255cevil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "/\r\nLocation: https://evil.example",
        "/%0d%0aSet-Cookie:x=1",
        "/%09/evil.example",
        "/%00/evil.example",
        "\t//evil.example",
        " //evil.example",
        "/ /evil.example",
        "/\x0b/evil.example",
        "/\x7f/evil.example",
        "/.//evil.example",
        "/./\\evil.example",
        "/../evil.example/..//x",
        "/%2e//evil.example",
        "/%2E%2E//evil.example",
        "/x/../..//evil.example",
        "/a//b",
        "/\u{3000}/evil.example",
        "/\u{ff0f}evil.example",
        "/\u{2215}evil.example",
    ] {
        assert_eq!(safe(bad, &allowed()), None, "{bad:?}");
    }
}

#[test]
fn an_overlong_rd_is_refused() {
    let long = format!("/{}", "a".repeat(MAX_BYTES));
    assert_eq!(safe(&long, &[]), None);
    let fits = format!("/{}", "a".repeat(MAX_BYTES - 1));
    assert_eq!(safe(&fits, &[]), Some(fits.as_str()));
}

#[test]
fn a_stray_percent_is_kept_as_it_is() {
    assert_eq!(percent_decode(b"/a%2"), b"/a%2");
    assert_eq!(percent_decode(b"/a%zz%41"), b"/a%zzA");
    assert_eq!(safe("/100%", &[]), Some("/100%"));
}
