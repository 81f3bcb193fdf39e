//! Where the daemons' records go: `tracing`, with the human line (`lookup=... tier=...`) on
//! stderr by default, or one JSON object per record (`--log-format json`) for a log pipeline.
//!
//! A record's human line is its message (`tlsfallback_mta::postfix::events::Event`'s
//! `Display`), so the human format writes the message alone: the lines stay what operators
//! and their scripts already read.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// The human line alone.
    #[default]
    Human,
    /// One JSON object per record: `timestamp`, `level`, `message` (the human line), `event`
    /// (the record's stable name) and its fields.
    Json,
}

impl LogFormat {
    /// Every format, in the order the CLI lists them.
    pub(crate) const ALL: [Self; 2] = [Self::Human, Self::Json];

    /// The name on the command line.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Json => "json",
        }
    }
}

/// Sends this process's records to stderr in `format` (INFO and above).
///
/// # Errors
///
/// When a subscriber was installed already.
pub(crate) fn install(format: LogFormat) -> anyhow::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Human => builder.event_format(MessageOnly).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("setting up the log: {error}"))
}

/// Writes an event's message and nothing else.
struct MessageOnly;

impl<S, N> FormatEvent<S, N> for MessageOnly
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut message = Message(&mut writer, Ok(()));
        event.record(&mut message);
        message.1?;
        writeln!(writer)
    }
}

/// Finds the `message` field.
struct Message<'w, 'x>(&'w mut Writer<'x>, fmt::Result);

impl Visit for Message<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            // A message's Debug is its text (`format_args!`).
            self.1 = write!(self.0, "{value:?}");
        }
    }
}
