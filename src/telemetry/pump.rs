//! One export pass: read what the collector has not had yet, send it, move
//! the cursor. Logs and traces have a cursor each (`otlp_logs_upto`,
//! `otlp_traces_upto` in the log's `meta`), moved only after the collector
//! took the batch, so an outage or a restart loses nothing; a reply lost
//! after the collector took a batch sends it again, with the same ids.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::map;
use super::otlp;
use crate::config::TelemetryConfig;
use crate::session::{Event, Record, SessionId, Store, StoreError};

pub const LOGS_CURSOR: &str = "otlp_logs_upto";
pub const TRACES_CURSOR: &str = "otlp_traces_upto";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "the OpenTelemetry collector at {url} cannot be reached ({detail}); nothing is lost: the export resumes from where it stopped"
    )]
    Unreachable { url: String, detail: String },
    #[error(
        "the OpenTelemetry collector at {url} answered {status}{body}; check [telemetry] otlp_endpoint and headers (the records are kept and sent again)"
    )]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("[telemetry] headers: {0}")]
    Header(String),
    #[error("reading the audit log for export: {0}")]
    Store(#[from] StoreError),
}

impl ExportError {
    /// Whether waiting and trying again can help (an outage, a busy or
    /// refusing collector), as against a batch it will never take.
    fn rejects_batch(&self) -> bool {
        matches!(self, ExportError::Refused { status: 400, .. })
    }
}

/// What one pass sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub logs: usize,
    pub runs: usize,
    pub spans: usize,
    /// Records the collector refused as malformed (400): skipped, named in
    /// opsbot's log, still in the audit log.
    pub refused: usize,
    /// The batch was halved (the collector found it too large): try again.
    pub shrunk: bool,
}

impl Sent {
    fn add(&mut self, other: Sent) {
        self.logs += other.logs;
        self.runs += other.runs;
        self.spans += other.spans;
        self.refused += other.refused;
    }

    /// Whether the pass got anywhere: records sent or skipped, or a
    /// smaller batch to try.
    fn moved(&self) -> bool {
        self.logs + self.runs + self.refused > 0 || self.shrunk
    }
}

/// How far the export is behind the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    pub head: i64,
    pub logs_upto: Option<i64>,
    pub traces_upto: Option<i64>,
    /// Finished runs not yet sent as traces.
    pub runs_behind: u64,
}

pub struct Pump {
    /// The log written to: cursors only.
    store: Arc<Store>,
    /// A connection of its own for reading batches: appends never wait on it.
    reader: Store,
    client: reqwest::Client,
    base: String,
    cfg: TelemetryConfig,
    resource: otlp::Resource,
    /// The batch size now: halved while the collector says a request is
    /// too large (413).
    batch: usize,
}

impl Pump {
    /// A pump for `cfg`, which must name an endpoint.
    pub fn new(store: Arc<Store>, cfg: &TelemetryConfig) -> Result<Self, ExportError> {
        let base = cfg
            .otlp_endpoint
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let mut headers = HeaderMap::new();
        for (name, raw) in &cfg.headers {
            let value =
                crate::secrets::resolve_telemetry(name, raw).map_err(ExportError::Header)?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ExportError::Header(format!("`{name}` is not a header name: {e}")))?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                ExportError::Header(format!(
                    "the value of `{name}` holds characters a header cannot carry"
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(5_000)))
            .build()
            .map_err(|e| ExportError::Unreachable {
                url: base.clone(),
                detail: e.to_string(),
            })?;
        let reader = store.reader()?;
        Ok(Self {
            store,
            reader,
            client,
            base,
            cfg: cfg.clone(),
            resource: map::resource(&cfg.service_name),
            batch: cfg.batch.max(1),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// Where each cursor stands against the log's newest record.
    pub fn lag(&self) -> Result<Lag, ExportError> {
        let traces_upto = self.store.cursor(TRACES_CURSOR)?;
        Ok(Lag {
            head: self.reader.last_seq()?,
            logs_upto: self.store.cursor(LOGS_CURSOR)?,
            runs_behind: match traces_upto {
                Some(at) => self.reader.count_after("run_finished", at)?,
                None => 0,
            },
            traces_upto,
        })
    }

    /// Send an empty request, to see whether the collector takes requests.
    pub async fn probe(&self) -> Result<Duration, ExportError> {
        let started = std::time::Instant::now();
        self.post(
            "/v1/logs",
            otlp::ExportLogsServiceRequest::default().encode_to_vec(),
        )
        .await?;
        Ok(started.elapsed())
    }

    /// Send everything not yet sent, batch by batch.
    pub async fn export_pending(&mut self) -> Result<Sent, ExportError> {
        let mut sent = Sent::default();
        if self.cfg.logs {
            loop {
                let one = self.logs_batch().await?;
                sent.add(one);
                if !one.moved() {
                    break;
                }
            }
        }
        if self.cfg.traces {
            loop {
                let one = self.traces_batch().await?;
                sent.add(one);
                if !one.moved() {
                    break;
                }
            }
        }
        Ok(sent)
    }

    /// Set the cursors that are not set yet, now: what is recorded from
    /// here on is exported, whenever the first pass runs.
    pub fn prepare(&self) -> Result<(), ExportError> {
        self.cursor(LOGS_CURSOR)?;
        self.cursor(TRACES_CURSOR)?;
        Ok(())
    }

    /// Where a cursor stands; set at first use, to the start of the log
    /// with `backfill`, else to its newest record (only what comes next
    /// is exported).
    fn cursor(&self, key: &str) -> Result<i64, ExportError> {
        if let Some(at) = self.store.cursor(key)? {
            return Ok(at);
        }
        let start = if self.cfg.backfill {
            0
        } else {
            self.reader.last_seq()?
        };
        self.store.move_cursor(key, None, start)?;
        Ok(self.store.cursor(key)?.unwrap_or(start))
    }

    async fn logs_batch(&mut self) -> Result<Sent, ExportError> {
        let from = self.cursor(LOGS_CURSOR)?;
        let records = self.reader.records_after(from, self.batch)?;
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(Sent::default());
        };
        let observed = now_nanos();
        let mut runs = RunStarts::default();
        let mut logs = Vec::with_capacity(records.len());
        for r in &records {
            let first = runs.first_seq(&self.reader, r)?;
            logs.push(map::log_record(r, first, observed));
        }
        let request = otlp::ExportLogsServiceRequest {
            resource_logs: vec![otlp::ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![otlp::ScopeLogs {
                    scope: Some(map::scope()),
                    log_records: logs,
                }],
            }],
        };
        let count = records.len();
        match self.post("/v1/logs", request.encode_to_vec()).await {
            Ok(()) => {
                self.store.move_cursor(LOGS_CURSOR, Some(from), last)?;
                Ok(Sent {
                    logs: count,
                    ..Sent::default()
                })
            }
            Err(e) => self.after_refusal(e, LOGS_CURSOR, from, last, count),
        }
    }

    async fn traces_batch(&mut self) -> Result<Sent, ExportError> {
        let from = self.cursor(TRACES_CURSOR)?;
        let ends = self.reader.run_ends_after(from, self.batch.clamp(1, 64))?;
        let Some(last) = ends.last().map(|r| r.seq) else {
            return Ok(Sent::default());
        };
        let mut spans = Vec::new();
        for end in &ends {
            let window = self.reader.run_upto(&end.session, end.seq)?;
            spans.extend(map::run_spans(&window));
        }
        let span_count = spans.len();
        let request = otlp::ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![otlp::ScopeSpans {
                    scope: Some(map::scope()),
                    spans,
                }],
            }],
        };
        match self.post("/v1/traces", request.encode_to_vec()).await {
            Ok(()) => {
                self.store.move_cursor(TRACES_CURSOR, Some(from), last)?;
                Ok(Sent {
                    runs: ends.len(),
                    spans: span_count,
                    ..Sent::default()
                })
            }
            Err(e) => self.after_refusal(e, TRACES_CURSOR, from, last, ends.len()),
        }
    }

    /// A batch the collector did not take: smaller batches after "too
    /// large"; a batch it calls malformed (or one record still too large)
    /// is skipped and named in opsbot's log, since it would be refused
    /// forever; anything else is tried again later.
    fn after_refusal(
        &mut self,
        e: ExportError,
        cursor: &str,
        from: i64,
        last: i64,
        count: usize,
    ) -> Result<Sent, ExportError> {
        let too_large = matches!(e, ExportError::Refused { status: 413, .. });
        if too_large && self.batch > 1 {
            self.batch = (self.batch / 2).max(1);
            tracing::warn!(
                "the collector found a request too large; sending {} records at a time",
                self.batch
            );
            return Ok(Sent {
                shrunk: true,
                ..Sent::default()
            });
        }
        if too_large || e.rejects_batch() {
            tracing::error!(
                "{e}: records #{}..#{last} were not exported (they stay in the audit log)",
                from + 1
            );
            self.store.move_cursor(cursor, Some(from), last)?;
            return Ok(Sent {
                refused: count,
                ..Sent::default()
            });
        }
        Err(e)
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> Result<(), ExportError> {
        let url = format!("{}{path}", self.base);
        let reply = self
            .client
            .post(&url)
            .body(body)
            .send()
            .await
            .map_err(|e| ExportError::Unreachable {
                url: url.clone(),
                detail: describe(&e),
            })?;
        let status = reply.status();
        if status.is_success() {
            return Ok(());
        }
        let text = reply.text().await.unwrap_or_default();
        let text = crate::sanitize::line(text.trim(), 200);
        Err(ExportError::Refused {
            url,
            status: status.as_u16(),
            body: if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            },
        })
    }
}

/// A transport error without the URL's query (reqwest's Display names it).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        "connection refused or no route".into()
    } else {
        let text = e.to_string();
        match e.url() {
            Some(url) => text.replace(url.as_str(), "the collector"),
            None => text,
        }
    }
}

fn now_nanos() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

/// The first record of each session's current run, as a batch is walked:
/// looked up once per session, then followed record by record.
#[derive(Default)]
struct RunStarts {
    current: std::collections::HashMap<SessionId, Option<i64>>,
}

impl RunStarts {
    fn first_seq(&mut self, reader: &Store, r: &Record) -> Result<i64, StoreError> {
        let slot = match self.current.get_mut(&r.session) {
            Some(slot) => slot,
            None => {
                let first = reader.run_first_seq(&r.session, r.seq)?;
                self.current.entry(r.session.clone()).or_insert(Some(first))
            }
        };
        let first = *slot.get_or_insert(r.seq);
        if matches!(r.event, Event::RunFinished { .. }) {
            *slot = None;
        }
        Ok(first)
    }
}
