//! Environment overrides: `PORTCULLIS_<SECTION>__<KEY>` variables written into the parsed TOML
//! document before it is read into sections, so that an override is checked exactly as the
//! file's own value would be.

use std::collections::BTreeMap;

use super::{ConfigError, CONFIG_ENV, ENV_PREFIX};

/// Applies `PORTCULLIS_<SECTION>__<KEY>` overrides to the parsed document.
pub(super) fn apply(
    doc: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    // Sorted so that the outcome never depends on the order the OS lists variables in.
    // Only `PORTCULLIS_<SECTION>__<KEY>` is an override. Other `PORTCULLIS_*` variables are
    // not ours to judge: Kubernetes, for one, injects `PORTCULLIS_SERVICE_HOST` and friends
    // for a Service named portcullis.
    let vars: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != CONFIG_ENV && k.contains("__"))
        .collect();
    for (var, raw) in vars {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                reason: "expected PORTCULLIS_<SECTION>__<KEY>".into(),
            });
        }
        let value = env_value(&raw);
        let (last, sections) = path.split_last().expect("path has at least two parts");
        let mut table = &mut *doc;
        for section in sections {
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        reason: format!("{section} is not a section"),
                    })
                }
            };
        }
        table.insert(last.clone(), value);
    }
    Ok(())
}

fn env_value(raw: &str) -> toml::Value {
    let literal = matches!(raw, "true" | "false")
        || raw.starts_with('[')
        || raw.starts_with('"')
        || (!raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()));
    if literal {
        if let Ok(t) = format!("v = {raw}").parse::<toml::Table>() {
            if let Some(v) = t.get("v") {
                return v.clone();
            }
        }
    }
    toml::Value::String(raw.to_owned())
}
