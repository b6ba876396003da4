//! API key scope names: which a new key may carry (spec/coder-api.md §1, §1.1).
//!
//! The external scopes are data, `external-scopes.txt` beside this file (one name a line,
//! Coder's newest list). A name is accepted when, after its alias is resolved (`all` →
//! `coder:all`, `application_connect` → `coder:application_connect`), it is exactly one of
//! them. What a scope grants is the RBAC evaluator's business, not this module's.

/// The external scope names, one a line.
const EXTERNAL: &str = include_str!("external-scopes.txt");

/// The scope every key gets when none is asked for.
pub const ALL: &str = "coder:all";

/// Every external scope name, in the order of the data file (sorted).
pub fn external() -> impl Iterator<Item = &'static str> {
    EXTERNAL.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// The canonical name of `name` when it is an external scope (aliases resolved), else `None`:
/// `*:*`, internal scopes and unknown names are refused (§1.1).
pub fn canonical(name: &str) -> Option<&'static str> {
    let name = match name {
        "all" => ALL,
        "application_connect" => "coder:application_connect",
        other => other,
    };
    external().find(|s| *s == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_names_and_aliases_are_accepted_and_nothing_else() {
        assert_eq!(external().count(), 60);
        for (name, want) in [
            ("coder:all", Some("coder:all")),
            ("all", Some("coder:all")),
            ("application_connect", Some("coder:application_connect")),
            ("workspace:read", Some("workspace:read")),
            ("user:*", Some("user:*")),
            ("*:*", None),
            ("no_user_data", None),
            ("workspace:fly", None),
            ("Workspace:read", None),
            ("", None),
        ] {
            assert_eq!(canonical(name), want, "{name}");
        }
    }
}
