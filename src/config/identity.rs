//! `[identity]`: what authenticated requests carry upstream. `headers` names the style of the
//! identity headers; `assertion_key` (one PEM path, or a list of them) and `issuer` configure
//! the signed assertion. The key files are read and parsed here, at load time, so that a bad
//! key stops `serve` and `check-config` with the key path and the file named.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::IntoDeserializer;
use serde::{Deserialize, Deserializer};

use super::ConfigError;
use crate::assertion::{Signer, SigningKey};
use crate::headers::IdentityStyle;

/// `[identity]`: what authenticated requests carry upstream.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// `headers`: `forwarded` (default), `remote` or `none`.
    pub headers: IdentityStyle,
    /// The signer of `X-Portcullis-Assertion` (`assertion_key`: PEM file(s), the first signs;
    /// `issuer`, default `portcullis`); `None` when no key is configured.
    pub assertion: Option<Arc<Signer>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileIdentity {
    #[serde(default, deserialize_with = "headers")]
    headers: Option<IdentityStyle>,
    assertion_key: Option<KeyPaths>,
    issuer: Option<String>,
}

/// `identity.headers` as written: the names of [`IdentityStyle`]'s variants.
#[derive(Deserialize)]
#[serde(remote = "IdentityStyle", rename_all = "snake_case")]
enum Style {
    Forwarded,
    Remote,
    None,
}

/// `identity.assertion_key` as written: one path or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum KeyPaths {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

/// `identity.headers`, read through [`Style`] in the two steps of `super::name_of`.
fn headers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IdentityStyle>, D::Error> {
    Style::deserialize(String::deserialize(d)?.into_deserializer()).map(Some)
}

/// Validates `[identity]` and loads its assertion keys; relative paths resolve against `base`.
pub(super) fn parse(file: FileIdentity, base: &Path) -> Result<IdentityConfig, ConfigError> {
    Ok(IdentityConfig {
        headers: file.headers.unwrap_or(IdentityStyle::Forwarded),
        assertion: assertion(file.assertion_key, file.issuer, base)?,
    })
}

/// The assertion signer of `[identity]`, or `None` when `assertion_key` is absent. Relative
/// paths are resolved against `base`. `issuer` defaults to `"portcullis"`.
fn assertion(
    paths: Option<KeyPaths>,
    issuer: Option<String>,
    base: &Path,
) -> Result<Option<Arc<Signer>>, ConfigError> {
    const KEY: &str = "identity.assertion_key";
    let issuer = issuer.unwrap_or_else(|| "portcullis".to_owned());
    if issuer.is_empty() {
        return Err(ConfigError::invalid("identity.issuer", "must not be empty"));
    }
    let paths = match paths {
        None => return Ok(None),
        Some(KeyPaths::One(p)) => vec![p],
        Some(KeyPaths::Many(ps)) if ps.is_empty() => {
            return Err(ConfigError::invalid(
                KEY,
                "is an empty list: name at least one key file, or leave the key out",
            ))
        }
        Some(KeyPaths::Many(ps)) => ps,
    };
    let mut keys: Vec<SigningKey> = Vec::with_capacity(paths.len());
    for path in paths {
        let path = base.join(path);
        let pem = std::fs::read(&path)
            .map_err(|e| ConfigError::invalid(KEY, format!("{}: {e}", path.display())))?;
        let key = SigningKey::from_pem(&path, &pem)
            .map_err(|e| ConfigError::invalid(KEY, format!("{}: {e}", path.display())))?;
        if let Some(same) = keys.iter().find(|k| k.kid() == key.kid()) {
            return Err(ConfigError::invalid(
                KEY,
                format!(
                    "{} holds the same key as {}",
                    path.display(),
                    same.path().display()
                ),
            ));
        }
        keys.push(key);
    }
    Ok(Some(Arc::new(Signer::new(&issuer, keys))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
    }

    fn load(paths: KeyPaths, issuer: Option<&str>) -> Result<Option<Arc<Signer>>, String> {
        assertion(Some(paths), issuer.map(str::to_owned), &keys_dir()).map_err(|e| e.to_string())
    }

    #[test]
    fn one_path_or_a_list_loads_every_key_in_order() {
        let one = load(KeyPaths::One("assertion-a.pem".into()), None)
            .unwrap()
            .unwrap();
        assert_eq!(one.keys().len(), 1);
        let two = load(
            KeyPaths::Many(vec!["assertion-b.pem".into(), "assertion-a.pem".into()]),
            Some("https://auth.example"),
        )
        .unwrap()
        .unwrap();
        let kids: Vec<&str> = two.keys().iter().map(|k| k.kid()).collect();
        assert_eq!(kids.len(), 2);
        assert_ne!(kids[0], kids[1]);
        assert_eq!(kids[1], one.keys()[0].kid(), "the list's order is kept");
        assert_eq!(
            assertion(None, None, &keys_dir()).unwrap().map(|_| ()),
            None
        );
    }

    #[test]
    fn bad_keys_are_refused_naming_the_key_and_the_file() {
        let cases: [(KeyPaths, Option<&str>, &str); 6] = [
            (
                KeyPaths::One("missing.pem".into()),
                None,
                "missing.pem: No such file",
            ),
            (
                KeyPaths::One("ec-sec1.pem".into()),
                None,
                "ec-sec1.pem: no PKCS#8 \"PRIVATE KEY\" PEM block",
            ),
            (
                KeyPaths::One("p384.pem".into()),
                None,
                "p384.pem: not an ECDSA P-256 (prime256v1) private key",
            ),
            (KeyPaths::Many(vec![]), None, "is an empty list"),
            (
                KeyPaths::Many(vec!["assertion-a.pem".into(), "assertion-a.pem".into()]),
                None,
                "holds the same key as",
            ),
            (
                KeyPaths::One("assertion-a.pem".into()),
                Some(""),
                "must not be empty",
            ),
        ];
        for (paths, issuer, want) in cases {
            let err = load(paths, issuer).expect_err(want);
            let key = if issuer == Some("") {
                "identity.issuer: "
            } else {
                "identity.assertion_key: "
            };
            assert!(err.starts_with(key), "{err}");
            assert!(err.contains(want), "{err} does not contain {want}");
        }
    }
}
