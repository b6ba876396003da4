//! Configuration loading (`Config::from_toml`): TOML text and environment overrides into a
//! validated `Config`, or an error.
//!
//! Input: TOML text; after a line `# env` (a comment to TOML), each line `NAME=value` is an
//! environment variable. Relative paths are resolved against the repository's `config/`, as for
//! the example files there (`../tests/certs/a.pem` and the like exist).
//!
//! Properties, beyond no panic: a refusal is an error whose reason is one line (as
//! `ConfigError` promises) and which names a key when it is about one; an accepted config can
//! be printed (`Debug`, with secrets redacted) and its policy warnings read.
//!
//! The loader reads the files a config names (certificates, keys, secrets). An input naming an
//! existing file outside `config/` and `tests/` is skipped, so that a fuzzer that stumbles on `/dev/zero` or a
//! FIFO neither hangs nor reads the machine's files; it changes which inputs run, never what
//! the loader does.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis::config::{Config, ConfigError};

/// The folder relative paths are resolved against: the repository's `config/`, as for the
/// example files there.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| repo().join("config"))
}

fn repo() -> &'static Path {
    static REPO: OnceLock<PathBuf> = OnceLock::new();
    REPO.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .canonicalize()
            .expect("the repository")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (text, env) = match input.split_once("\n# env\n") {
        Some((text, env)) => (text, env),
        None => (input, ""),
    };
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if names_outside_files(text, &env) {
        return;
    }
    match Config::from_toml(text, env, base()) {
        Ok(config) => {
            let _ = format!("{config:?}");
            let _ = config.policy.routes.warnings();
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty());
            match &e {
                ConfigError::Syntax { reason, .. } | ConfigError::Invalid { reason, .. } => {
                    assert!(!reason.contains(['\n', '\r']), "not one line: {message:?}");
                }
                ConfigError::Env { .. } | ConfigError::Read { .. } => {}
            }
            if let ConfigError::Invalid { key, .. } = &e {
                assert!(!key.is_empty(), "{message}");
            }
        }
    }
});

/// Whether any string in the document or the overrides names an existing file outside the
/// repository's `config/` and `tests/` (certificates, keys).
fn names_outside_files(text: &str, env: &[(String, String)]) -> bool {
    let mut strings = Vec::new();
    if let Ok(doc) = text.parse::<toml::Table>() {
        collect(&toml::Value::Table(doc), &mut strings);
    }
    for (_, value) in env {
        strings.push(value.clone());
        if let Ok(doc) = format!("v = {value}").parse::<toml::Table>() {
            collect(&toml::Value::Table(doc), &mut strings);
        }
    }
    strings.iter().any(|s| {
        let path = base().join(s);
        path.symlink_metadata().is_ok() && !path.canonicalize().is_ok_and(|p| p.starts_with(base()))
    })
}

fn collect(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
        toml::Value::Table(t) => t.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}
