//! The text form of an [`Explanation`], for a human at a terminal.

use std::fmt;

use super::Explanation;

// === impl Explanation ===

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "request    {} {}", self.method, self.path)?;
        match &self.canonical {
            Some(c) => writeln!(f, "canonical  {c}")?,
            None => writeln!(f, "canonical  (none: the request is refused first)")?,
        }
        match self.handled_by {
            "api" => writeln!(
                f,
                "handled by Portcullis's own API (no route policy; the endpoint checks RBAC itself)"
            )?,
            "portcullis" => writeln!(f, "handled by Portcullis itself (forward-auth, JWKS)")?,
            _ => {}
        }
        for rule in &self.rules {
            let at = rule
                .line
                .map(|l| format!(" (line {l})"))
                .unwrap_or_default();
            let what = match (&rule.path, &rule.methods) {
                (Some(p), Some(m)) => format!(" path {p:?} methods {}", m.join(",")),
                (Some(p), None) => format!(" path {p:?}"),
                _ => String::new(),
            };
            let case = if rule.exact_case {
                " [exact-case rule, also applied]"
            } else {
                ""
            };
            writeln!(
                f,
                "rule       {}{at}{what} → {}{case}",
                rule.source, rule.needs
            )?;
            for (k, v) in &rule.captures {
                writeln!(f, "             {{{k}}} = {v}")?;
            }
        }
        if let Some(s) = &self.subject {
            writeln!(
                f,
                "subject    {} ({}, {}) via {}",
                s.username, s.user_id, s.email, s.source
            )?;
            writeln!(f, "  roles    {}", s.roles.join(", "))?;
            if !s.org_roles.is_empty() {
                writeln!(f, "  org      {}", s.org_roles.join(", "))?;
            }
            writeln!(f, "  scopes   {}", s.scopes.join(", "))?;
            writeln!(f, "  allow    {}", s.allow_list.join(", "))?;
        }
        for c in &self.checks {
            let object: Vec<String> = c.object.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let verdict = if c.allowed { "allowed" } else { "denied" };
            writeln!(
                f,
                "rbac       {} on {{{}}}: {verdict}",
                c.permission,
                object.join(" ")
            )?;
            for step in &c.steps {
                writeln!(f, "             - {step}")?;
            }
        }
        let d = &self.decision;
        if d.allowed {
            let to = match self.handled_by {
                "proxy" => "forwarded upstream",
                _ => "answered by Portcullis",
            };
            writeln!(f, "decision   allowed: {to}")?;
        } else {
            write!(f, "decision   refused: {}", d.status.unwrap_or_default())?;
            if let Some(m) = &d.message {
                write!(f, " {m}")?;
            }
            if let Some(detail) = &d.detail {
                write!(f, " ({detail})")?;
            }
            writeln!(f)?;
        }
        if let Some(up) = &self.upstream {
            writeln!(f, "upstream   {} {}", up.method, up.target)?;
            for (n, v) in &up.headers {
                writeln!(f, "  {n}: {v}")?;
            }
            for r in &up.removed {
                writeln!(f, "removed    {}: {}", r.name, r.reason)?;
            }
            if let Some(claims) = &up.assertion_claims {
                writeln!(f, "assertion  {claims}")?;
            }
        }
        Ok(())
    }
}
