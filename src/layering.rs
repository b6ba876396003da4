//! The layering rule of the module map in `lib.rs`, checked on the source: a module may import
//! its own layer and the layers below it, never one above. The test reads every file under
//! `src/`, so a `use` that points up a layer fails `cargo test` with the file and line.

use std::path::{Path, PathBuf};

/// The layer of each top-level module (see the module map in `lib.rs`).
const LAYERS: &[(&str, u8)] = &[
    ("model", 0),
    ("rbac", 0),
    ("policy", 0),
    ("headers", 0),
    ("coder", 0),
    ("assertion", 0),
    ("metrics", 0),
    ("report", 0),
    ("config", 1),
    ("store", 2),
    ("tls", 2),
    ("upstream", 2),
    ("auth", 3),
    ("limits", 3),
    ("users", 3),
    ("otp", 3),
    ("oidc", 3),
    ("http", 4),
    ("server", 5),
    ("signal", 5),
    ("logging", 5),
    ("doctor", 5),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/http/api/users.rs` → `http`); `None` for the
/// crate root and the binary's own files.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "cli" | "health" | "layering")).then(|| name.to_owned())
}

/// The top-level modules a line names through `crate::`: `crate::a::b`, `crate::{a, b::c}`.
fn named_modules(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        // `$crate::` and `other_crate::` are not this crate.
        let before = rest[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            rest = after;
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let ident: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !ident.is_empty() {
                    out.push(ident);
                }
            }
        } else {
            let ident: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(ident);
        }
        rest = after;
    }
    out
}

#[test]
fn imports_only_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut checked = 0;
    let mut upward = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let own = layer(&module).unwrap_or_else(|| {
            panic!("src/{module} has no layer: add it to LAYERS and to the module map in lib.rs")
        });
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            // Comments (doc links included) are not imports.
            if code.starts_with("//") {
                continue;
            }
            for named in named_modules(code) {
                let Some(theirs) = layer(&named) else {
                    continue;
                };
                checked += 1;
                if theirs > own {
                    upward.push(format!(
                        "{}:{}: {module} (L{own}) uses {named} (L{theirs})",
                        file.strip_prefix(&src).unwrap_or(file).display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(checked > 100, "the scan found only {checked} crate paths");
    assert!(
        upward.is_empty(),
        "imports that point up a layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_scanner_reads_grouped_and_nested_crate_paths() {
    assert_eq!(named_modules("use crate::store::Store;"), ["store"]);
    assert_eq!(
        named_modules("use crate::{http::api, rbac::Action};"),
        ["http", "rbac"]
    );
    assert_eq!(
        named_modules("let x = crate::users::f(crate::auth::g());"),
        ["users", "auth"]
    );
    assert!(named_modules("use other_crate::http::X;").is_empty());
    assert!(named_modules("$crate::http::x").is_empty());
}
