//! The parts of a Spin manifest (`spin.toml`, version 2) that this host runs.
//!
//! Unknown keys are refused rather than ignored: a manifest that asks for
//! something this host cannot do should fail loudly, not run differently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading or checking a manifest; each names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// A loaded manifest together with the directory its relative paths start from.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub root: PathBuf,
    pub application: Application,
    pub variables: BTreeMap<String, VariableDecl>,
    pub http_triggers: Vec<HttpTrigger>,
    pub components: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: u32,
    application: Application,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<HttpTrigger>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// `[application]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub trigger: Option<ApplicationTriggers>,
}

/// `[application.trigger]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApplicationTriggers {
    #[serde(default)]
    pub http: Option<HttpTriggerSettings>,
}

/// `[application.trigger.http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTriggerSettings {
    #[serde(default)]
    pub base: Option<String>,
}

/// An entry of `[variables]`: exactly one of `default` or `required = true`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: Option<String>,
}

/// A `[[trigger.http]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTrigger {
    #[serde(default)]
    pub id: Option<String>,
    pub route: RouteDecl,
    pub component: String,
    #[serde(default)]
    pub executor: Option<toml::Value>,
}

/// A route is either a path pattern or `{ private = true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RouteDecl {
    Path(String),
    Private { private: bool },
}

/// `[component.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentDecl {
    pub source: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub build: Option<BuildDecl>,
}

/// `[component.NAME.build]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildDecl {
    pub command: String,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub watch: Vec<String>,
}

impl Manifest {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses manifest text; `path` is used for messages and relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let invalid = |key: String, message: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        if raw.spin_manifest_version != 2 {
            return Err(invalid(
                "spin_manifest_version".into(),
                format!(
                    "version {} is not supported; this host reads version 2",
                    raw.spin_manifest_version
                ),
            ));
        }
        if let Some(kind) = raw.trigger.other.keys().next() {
            return Err(invalid(
                format!("trigger.{kind}"),
                "only HTTP triggers are supported by this host".into(),
            ));
        }
        for (name, decl) in &raw.variables {
            if !is_valid_variable_name(name) {
                return Err(invalid(
                    format!("variables.{name}"),
                    "variable names are lower-case letters, digits and '_', starting with a letter"
                        .into(),
                ));
            }
            if decl.required == decl.default.is_some() {
                return Err(invalid(
                    format!("variables.{name}"),
                    "give exactly one of `default` or `required = true`".into(),
                ));
            }
        }
        for (index, trigger) in raw.trigger.http.iter().enumerate() {
            let key = format!("trigger.http[{index}]");
            if !raw.component.contains_key(&trigger.component) {
                return Err(invalid(
                    format!("{key}.component"),
                    format!("no component named `{}`", trigger.component),
                ));
            }
            if trigger.executor.is_some() {
                return Err(invalid(
                    format!("{key}.executor"),
                    "only the default (Spin) executor is supported by this host".into(),
                ));
            }
            match &trigger.route {
                RouteDecl::Path(route) if !route.starts_with('/') => {
                    return Err(invalid(
                        format!("{key}.route"),
                        format!("`{route}` must start with '/'"),
                    ));
                }
                RouteDecl::Private { private: false } => {
                    return Err(invalid(
                        format!("{key}.route"),
                        "a table route must be `{ private = true }`".into(),
                    ));
                }
                _ => {}
            }
        }
        for (name, component) in &raw.component {
            if !is_valid_component_id(name) {
                return Err(invalid(
                    format!("component.{name}"),
                    "component ids are lower-case letters, digits and '-'".into(),
                ));
            }
            for variable in component.variables.keys() {
                if !is_valid_variable_name(variable) {
                    return Err(invalid(
                        format!("component.{name}.variables.{variable}"),
                        "not a valid variable name".into(),
                    ));
                }
            }
        }
        let root = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Manifest {
            path: path.to_path_buf(),
            root,
            application: raw.application,
            variables: raw.variables,
            http_triggers: raw.trigger.http,
            components: raw.component,
        })
    }

    /// The HTTP base path, `/` unless `[application.trigger.http] base` says otherwise.
    pub fn http_base(&self) -> String {
        self.application
            .trigger
            .as_ref()
            .and_then(|t| t.http.as_ref())
            .and_then(|h| h.base.clone())
            .unwrap_or_else(|| "/".to_string())
    }

    /// A component's `.wasm` path, resolved against the manifest's directory.
    pub fn component_source(&self, id: &str) -> Option<PathBuf> {
        self.components.get(id).map(|c| self.root.join(&c.source))
    }
}

/// Spin's variable-name rule: lower-case ASCII letters, digits and `_`, starting with a letter.
pub fn is_valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_valid_component_id(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("app/spin.toml"), text)
    }

    const MINIMAL: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
greeting = { default = "hi" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/hello"
component = "hello"
[[trigger.http]]
route = { private = true }
component = "hello"
[component.hello]
source = "hello.wasm"
allowed_outbound_hosts = ["http://self"]
[component.hello.variables]
message = "{{ greeting }} there"
"#;

    #[test]
    fn reads_a_minimal_manifest() {
        let m = parse(MINIMAL).expect("valid manifest");
        assert_eq!(m.application.name, "demo");
        assert_eq!(m.http_triggers.len(), 2);
        assert!(matches!(m.http_triggers[1].route, RouteDecl::Private { private: true }));
        assert_eq!(m.component_source("hello"), Some(PathBuf::from("app/hello.wasm")));
        assert_eq!(m.http_base(), "/");
    }

    #[test]
    fn names_the_key_of_an_unknown_component() {
        let text = MINIMAL.replace("component = \"hello\"\n[[", "component = \"nope\"\n[[");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("trigger.http[0].component"), "{err}");
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn refuses_unknown_keys_and_triggers() {
        let err = parse(&MINIMAL.replace("source =", "sauce = 1\nsource ="))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sauce"), "{err}");
        let err = parse(&format!("{MINIMAL}\n[[trigger.redis]]\nchannel = \"x\"\ncomponent = \"hello\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("trigger.redis"), "{err}");
    }

    #[test]
    fn a_variable_needs_exactly_one_of_default_or_required() {
        let err = parse(&MINIMAL.replace("{ default = \"hi\" }", "{ }"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("variables.greeting"), "{err}");
    }
}
