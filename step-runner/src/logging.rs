//! Log output of `vmi-step`: human-readable text by default, one JSON object
//! per line for log collectors. Everything goes to stderr so that stdout
//! carries only results (`vmi-step plan --output json`).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// Installs the global log subscriber. The level comes from `RUST_LOG`
/// (default `info`). Colours only on a terminal: in a pod the log's last
/// line becomes the failure cause in the vmi's status, where escape codes
/// would be noise.
pub fn init(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
