//! The generic part of config loading: sources, typed getters that record errors
//! instead of failing fast, and `.env` file parsing.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where variables come from.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// The process environment over a `.env` file: env wins.
pub(crate) struct Layered {
    pub env: HashMap<String, String>,
    pub file: HashMap<String, String>,
}

impl Source for Layered {
    fn get(&self, name: &str) -> Option<String> {
        self.env.get(name).or_else(|| self.file.get(name)).cloned()
    }
}

/// One invalid variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}: {}", self.var, self.value, self.reason)
    }
}

/// Every invalid variable, in the order they were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.0.len())?;
        if self.0.len() != 1 {
            write!(f, "s")?;
        }
        write!(f, "):")?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Typed getters over a [`Source`]. A getter that meets a bad value records the
/// error and returns the default, so loading goes on and reports everything.
pub struct Loader<'a> {
    src: &'a dyn Source,
    errors: Vec<ConfigError>,
}

impl<'a> Loader<'a> {
    pub fn new(src: &'a dyn Source) -> Self {
        Loader {
            src,
            errors: Vec::new(),
        }
    }

    /// The first of `names` that is set (aliases in precedence order), with its name.
    pub fn raw_any(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names
            .iter()
            .find_map(|n| self.src.get(n).map(|v| (*n, v.trim().to_owned())))
    }

    pub fn raw(&self, name: &'static str) -> Option<String> {
        self.raw_any(&[name]).map(|(_, v)| v)
    }

    /// Records an error against `var`.
    pub fn error(&mut self, var: &str, value: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            var: var.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        });
    }

    /// Parses with `parse`, which returns a human reason on failure.
    pub fn with<T>(
        &mut self,
        name: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match self.raw(name) {
            None => default,
            Some(v) => match parse(&v) {
                Ok(t) => t,
                Err(reason) => {
                    self.error(name, &v, reason);
                    default
                }
            },
        }
    }

    pub fn parse<T: FromStr>(&mut self, name: &'static str, default: T, expected: &str) -> T {
        self.with(name, default, |v| {
            v.parse::<T>().map_err(|_| format!("expected {expected}"))
        })
    }

    pub fn string(&mut self, name: &'static str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }

    pub fn opt_string(&mut self, name: &'static str) -> Option<String> {
        self.raw(name).filter(|v| !v.is_empty())
    }

    pub fn bool(&mut self, name: &'static str, default: bool) -> bool {
        self.with(name, default, |v| match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })
    }

    /// Seconds, fractions allowed; must be > 0.
    pub fn secs(&mut self, name: &'static str, default: f64) -> Duration {
        let secs = self.with(name, default, |v| match v.parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(s),
            _ => Err("expected a positive number of seconds".to_owned()),
        });
        Duration::from_secs_f64(secs)
    }

    /// One of `choices`, case-insensitive; returns the choice as spelled in `choices`.
    pub fn choice(
        &mut self,
        name: &'static str,
        choices: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        self.with(name, default, |v| {
            choices
                .iter()
                .find(|c| c.eq_ignore_ascii_case(v))
                .copied()
                .ok_or_else(|| format!("expected one of {}", choices.join(", ")))
        })
    }

    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// `.env` files: `KEY=VALUE` lines, `#` comments, optional `export `, optional quotes.
pub mod env_file {
    use super::ConfigError;
    use std::collections::HashMap;
    use std::path::Path;

    /// Reads `path`. A missing file is empty unless `required`.
    pub fn read(path: &Path, required: bool) -> Result<HashMap<String, String>, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => parse(&text).map_err(|(line, reason)| ConfigError {
                var: "ENV_FILE".into(),
                value: path.display().to_string(),
                reason: format!("line {line}: {reason}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(HashMap::new()),
            Err(e) => Err(ConfigError {
                var: "ENV_FILE".into(),
                value: path.display().to_string(),
                reason: format!("cannot read: {e}"),
            }),
        }
    }

    pub fn parse(text: &str) -> Result<HashMap<String, String>, (usize, String)> {
        let mut out = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((k, v)) = line.split_once('=') else {
                return Err((i + 1, "expected KEY=VALUE".into()));
            };
            let k = k.trim();
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err((i + 1, format!("invalid variable name {k:?}")));
            }
            let v = v.trim();
            let v = strip_quotes(v);
            out.insert(k.to_owned(), v.to_owned());
        }
        Ok(out)
    }

    fn strip_quotes(v: &str) -> &str {
        for q in ['"', '\''] {
            if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
                return &v[1..v.len() - 1];
            }
        }
        v
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn parses_comments_quotes_and_export() {
            let m = super::parse("# c\nexport A=1\nB=\"two words\"\n\nC='x=y'\n").unwrap();
            assert_eq!(m["A"], "1");
            assert_eq!(m["B"], "two words");
            assert_eq!(m["C"], "x=y");
            assert_eq!(super::parse("A=1\nnope\n").unwrap_err().0, 2);
        }
    }
}
