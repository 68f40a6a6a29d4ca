//! Application variables and the `{{ name }}` templates components use to read them.
//!
//! As in Spin, a variable's value comes from the `SPIN_VARIABLE_<NAME>`
//! environment variable when set, otherwise from its manifest default.

use std::collections::{BTreeMap, HashMap};

use crate::manifest::{Manifest, VariableDecl};

/// Errors resolving variables or expanding templates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariableError {
    #[error("required variable `{0}` has no value: set SPIN_VARIABLE_{upper}", upper = .0.to_uppercase())]
    Missing(String),
    #[error("template `{template}` refers to `{name}`, which is not declared in [variables]")]
    Undeclared { template: String, name: String },
    #[error("template `{0}` is malformed: expected `{{{{ name }}}}`")]
    Malformed(String),
}

/// Where a resolved value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Environment,
    Default,
}

/// Resolved application variables. A required variable without a value is
/// not an error until something reads it, as in Spin.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: HashMap<String, (Option<String>, Source)>,
}

impl Variables {
    /// Resolves every declared variable against `env` (a lookup of environment variables).
    pub fn resolve(
        declared: &BTreeMap<String, VariableDecl>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let mut values = HashMap::new();
        for (name, decl) in declared {
            let value = match env(&format!("SPIN_VARIABLE_{}", name.to_uppercase())) {
                Some(v) => (Some(v), Source::Environment),
                None => (decl.default.clone(), Source::Default),
            };
            values.insert(name.clone(), value);
        }
        Variables { values }
    }

    /// Resolves the manifest's variables from the process environment.
    pub fn from_process_env(manifest: &Manifest) -> Self {
        Self::resolve(&manifest.variables, |k| std::env::var(k).ok())
    }

    /// The value of a declared variable; `None` if it is not declared.
    pub fn get(&self, name: &str) -> Option<Result<&str, VariableError>> {
        self.values.get(name).map(|(v, _)| {
            v.as_deref()
                .ok_or_else(|| VariableError::Missing(name.to_string()))
        })
    }

    /// Sets a value that wins over the environment, like `spin up --variable`.
    pub fn set(&mut self, name: &str, value: &str) {
        self.values
            .insert(name.to_string(), (Some(value.to_string()), Source::Environment));
    }

    /// Values that were set through the environment rather than defaulted.
    pub fn from_environment(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .filter(|(_, (_, source))| *source == Source::Environment)
            .filter_map(|(k, (v, _))| Some((k.as_str(), v.as_deref()?)))
    }

    /// Expands every `{{ name }}` in `template`.
    pub fn expand(&self, template: &str) -> Result<String, VariableError> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| VariableError::Malformed(template.to_string()))?;
            let name = after[..end].trim();
            if !crate::manifest::is_valid_variable_name(name) {
                return Err(VariableError::Malformed(template.to_string()));
            }
            let value = self.get(name).ok_or_else(|| VariableError::Undeclared {
                template: template.to_string(),
                name: name.to_string(),
            })??;
            out.push_str(value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decls() -> BTreeMap<String, VariableDecl> {
        let d = |default: Option<&str>| VariableDecl {
            default: default.map(str::to_string),
            required: default.is_none(),
            secret: false,
            description: None,
        };
        BTreeMap::from([
            ("limit".to_string(), d(Some("5"))),
            ("token".to_string(), d(None)),
        ])
    }

    #[test]
    fn environment_overrides_defaults() {
        let vars = Variables::resolve(&decls(), |k| match k {
            "SPIN_VARIABLE_LIMIT" => Some("100".into()),
            "SPIN_VARIABLE_TOKEN" => Some("t".into()),
            _ => None,
        });
        assert_eq!(vars.get("limit"), Some(Ok("100")));
        assert_eq!(vars.from_environment().count(), 2);
    }

    #[test]
    fn a_missing_required_variable_fails_only_when_read() {
        let vars = Variables::resolve(&decls(), |_| None);
        assert_eq!(vars.get("limit"), Some(Ok("5")));
        let err = vars.get("token").unwrap().unwrap_err();
        assert!(err.to_string().contains("SPIN_VARIABLE_TOKEN"), "{err}");
        assert!(vars.expand("x{{ token }}").is_err());
    }

    #[test]
    fn templates_expand_and_refuse_undeclared_names() {
        let vars = Variables::resolve(&decls(), |k| (k == "SPIN_VARIABLE_TOKEN").then(|| "t".into()));
        assert_eq!(vars.expand("n={{ limit }}/{{token}}").unwrap(), "n=5/t");
        assert_eq!(vars.expand("plain").unwrap(), "plain");
        assert!(matches!(vars.expand("{{ nope }}"), Err(VariableError::Undeclared { .. })));
        assert!(matches!(vars.expand("{{ limit"), Err(VariableError::Malformed(_))));
    }
}
