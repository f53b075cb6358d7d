//! Configuration: env > `.env` file > default, every section loaded by one small
//! function, every invalid variable reported at once and by name.
//!
//! Names follow ContextForge where it has one (`HOST`, `PORT`, `GUNICORN_WORKERS`, …),
//! so an operator's existing environment keeps working.
//!
//! The loader reads from a [`Source`] (a map), never from the process environment
//! directly, so tests pass a map instead of mutating `std::env`.

mod affinity;
mod auth;
mod gateway;
mod loader;
mod server;

pub use affinity::{AffinityConfig, ForwardMode};
pub use auth::{AuthConfig, BusinessHours, Cidr, JwtAlgorithm, UtcOffset, DEFAULT_SECRET};
pub use gateway::GatewayConfig;
pub use loader::{env_file, ConfigError, ConfigErrors, Loader, Source};
pub use server::{LogConfig, LogFormat, ServerConfig};

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Everything a fleetgate process is configured with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub gateway: GatewayConfig,
    pub auth: AuthConfig,
    pub affinity: AffinityConfig,
}

impl Config {
    /// Loads every section from `src`, collecting all errors.
    pub fn load(src: &dyn Source) -> Result<Config, ConfigErrors> {
        let mut l = Loader::new(src);
        let server = ServerConfig::load(&mut l);
        let log = LogConfig::load(&mut l);
        let gateway = GatewayConfig::load(&mut l);
        let auth = AuthConfig::load(&mut l);
        let affinity = AffinityConfig::load(&mut l);
        l.finish()?;
        Ok(Config {
            server,
            log,
            gateway,
            auth,
            affinity,
        })
    }

    /// The process environment layered over the `.env` file (`ENV_FILE`, default
    /// `./.env`; a missing file is not an error, an unreadable one is).
    pub fn from_process_env() -> Result<Config, ConfigErrors> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file_path = env.get("ENV_FILE").cloned();
        let path = file_path.as_deref().unwrap_or(".env");
        let file = env_file::read(Path::new(path), file_path.is_some())
            .map_err(|e| ConfigErrors(vec![e]))?;
        Config::load(&loader::Layered { env, file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_match_contextforge() {
        let c = Config::load(&map(&[])).unwrap();
        assert_eq!(c.server.host, "127.0.0.1");
        assert_eq!(c.server.port, 4444);
        assert!(c.server.workers >= 1);
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let err = Config::load(&map(&[
            ("PORT", "99999"),
            ("WORKERS", "many"),
            ("WORKER_TIMEOUT", "-1"),
            ("REUSE_PORT", "perhaps"),
            ("LOG_FORMAT", "xml"),
            ("LOG_LEVEL", "loud"),
        ]))
        .unwrap_err();
        let names: Vec<&str> = err.0.iter().map(|e| e.var.as_str()).collect();
        assert_eq!(
            names,
            [
                "PORT",
                "WORKERS",
                "WORKER_TIMEOUT",
                "REUSE_PORT",
                "LOG_LEVEL",
                "LOG_FORMAT"
            ]
        );
        let text = err.to_string();
        assert!(text.contains("PORT=99999"), "{text}");
    }

    #[test]
    fn worker_aliases_in_precedence_order() {
        let c = Config::load(&map(&[("GUNICORN_WORKERS", "3"), ("WEB_CONCURRENCY", "5")])).unwrap();
        assert_eq!(c.server.workers, 3);
        let c = Config::load(&map(&[("WORKERS", "2"), ("GUNICORN_WORKERS", "3")])).unwrap();
        assert_eq!(c.server.workers, 2);
        let c = Config::load(&map(&[("WEB_CONCURRENCY", "4")])).unwrap();
        assert_eq!(c.server.workers, 4);
        let auto = Config::load(&map(&[("WORKERS", "auto")])).unwrap();
        assert!(auto.server.workers >= 1);
        assert!(Config::load(&map(&[("WORKERS", "0")])).is_err());
    }

    #[test]
    fn config_survives_the_trip_to_a_worker() {
        let c = Config::load(&map(&[("PORT", "0"), ("WORKER_TIMEOUT", "2.5")])).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), c);
    }
}
