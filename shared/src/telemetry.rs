//! Logging: every line names the process that wrote it (`supervisor` or the worker's
//! `{host}:{pid}`), as text or one JSON object per line, to stderr or to `LOG_FILE`
//! (reopened on `SIGUSR1`, so logrotate can move it away).

use crate::config::{LogConfig, LogFormat};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Handle to the log output; [`LogHandle::reopen`] re-opens `LOG_FILE`.
#[derive(Clone)]
pub struct LogHandle {
    out: Arc<Mutex<Output>>,
}

enum Output {
    Stderr,
    File { path: PathBuf, file: File },
}

impl LogHandle {
    /// Re-opens the log file (after it was rotated). A no-op for stderr.
    pub fn reopen(&self) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if let Output::File { path, file } = &mut *out {
            *file = open_append(path)?;
        }
        Ok(())
    }
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Installs the global subscriber. `identity` is written on every line.
pub fn init(cfg: &LogConfig, identity: String) -> io::Result<LogHandle> {
    let out = match &cfg.file {
        Some(path) => Output::File {
            file: open_append(path)?,
            path: path.clone(),
        },
        None => Output::Stderr,
    };
    let handle = LogHandle {
        out: Arc::new(Mutex::new(out)),
    };
    let filter = EnvFilter::try_new(format!(
        "{lvl},hyper=warn,hyper_util=warn,h2=warn,sqlx=warn,sea_orm=warn",
        lvl = cfg.level
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = LineFormat {
        identity,
        json: cfg.format == LogFormat::Json,
    };
    // A second init in one process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(handle.clone())
        .event_format(fmt)
        .try_init();
    Ok(handle)
}

impl<'a> MakeWriter<'a> for LogHandle {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            out: self.out.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Buffers one event and writes it with a single `write` on drop, so lines from
/// concurrent tasks never interleave.
pub struct LineWriter {
    out: Arc<Mutex<Output>>,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = match &mut *out {
            Output::Stderr => io::stderr().write_all(&self.buf),
            Output::File { file, .. } => file.write_all(&self.buf),
        };
    }
}

struct LineFormat {
    identity: String,
    json: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let ts = timestamp();
        let mut fields = Fields::default();
        event.record(&mut fields);
        if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("ts".into(), ts.into());
            obj.insert("level".into(), meta.level().as_str().into());
            obj.insert("worker_id".into(), self.identity.clone().into());
            obj.insert("target".into(), meta.target().into());
            obj.insert("message".into(), fields.message.into());
            for (k, v) in fields.rest {
                obj.insert(k, v.into());
            }
            writeln!(w, "{}", serde_json::Value::Object(obj))
        } else {
            let mut line = format!(
                "{ts} {:>5} [{}] {}: {}",
                meta.level().as_str(),
                self.identity,
                meta.target(),
                fields.message
            );
            for (k, v) in fields.rest {
                let _ = write!(line, " {k}={v}");
            }
            writeln!(w, "{line}")
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.rest.push((field.name().to_owned(), value.to_owned()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        if field.name() == "message" {
            self.message = v;
        } else {
            self.rest.push((field.name().to_owned(), v));
        }
    }
}

/// RFC 3339 UTC with milliseconds, without a date-time dependency.
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        now.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
