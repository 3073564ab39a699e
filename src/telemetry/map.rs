//! Audit records as OpenTelemetry data: every record a log record, every
//! finished run a trace (a root span for the run, a child span per step).
//!
//! Identifiers are derived from the log, not drawn at random: a run's trace
//! id is a digest of its session and its first record, a step's span id a
//! digest of the trace and the step. Exporting the same records twice (a
//! retry after a lost reply) sends the same ids, so a collector sees one
//! trace, and a record's log line points at the span of its step.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::otlp::{
    self, AnyValue, LogRecord, Span, SpanEvent, Status, any_value, kv, kv_int, severity, span_kind,
    status_code,
};
use crate::policy::Decision;
use crate::session::{Event, Outcome, Record};

/// At most this many characters of one record's body are exported: a
/// collector's request limit is a few MiB, and a megabyte tool output
/// belongs in the audit log, not in every dashboard.
pub const MAX_BODY_CHARS: usize = 16 * 1024;
/// At most this many characters of any one attribute.
const MAX_ATTR_CHARS: usize = 1024;

/// A stored time (RFC 3339) as nanoseconds since the epoch; 0 if unreadable.
pub fn nanos(ts: &str) -> u64 {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .map(|t| u64::try_from(t.unix_timestamp_nanos()).unwrap_or(0))
        .unwrap_or(0)
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0u8]);
    }
    h.finalize().into()
}

/// The trace of the run in `session` whose first record is `first_seq`.
pub fn trace_id(session: &str, first_seq: i64) -> Vec<u8> {
    digest(&[b"opsbot run", session.as_bytes(), &first_seq.to_be_bytes()])[..16].to_vec()
}

/// The run's own (root) span.
pub fn run_span_id(trace: &[u8]) -> Vec<u8> {
    digest(&[b"run", trace])[..8].to_vec()
}

/// The span of one step of the run.
pub fn step_span_id(trace: &[u8], step: &str) -> Vec<u8> {
    digest(&[b"step", trace, step.as_bytes()])[..8].to_vec()
}

fn cut(text: &str, max: usize) -> String {
    crate::text::truncate(text, max)
}

/// One audit record as an OTLP log record, in the trace of the run that
/// begins with record `run_first_seq`.
pub fn log_record(r: &Record, run_first_seq: i64, observed: u64) -> LogRecord {
    let kind = r.event.kind();
    let body = serde_json::to_value(&r.event).unwrap_or_default();
    let step = body
        .get("step")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let tool = body
        .get("tool")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let (number, text) = match &r.event {
        Event::StepFailed { .. }
        | Event::RunFinished {
            outcome: Outcome::Failed,
            ..
        } => (severity::ERROR, "ERROR"),
        Event::ServerProblem { .. }
        | Event::PlanInvalid { .. }
        | Event::StepInterrupted { .. }
        | Event::StepRetrying { .. }
        | Event::PolicyRecheck { .. }
        | Event::PolicyDecision {
            decision: Decision::Deny { .. },
            ..
        } => (severity::WARN, "WARN"),
        _ => (severity::INFO, "INFO"),
    };
    let trace = trace_id(r.session.as_str(), run_first_seq);
    let span = match &step {
        Some(step) => step_span_id(&trace, step),
        None => run_span_id(&trace),
    };
    let mut attributes = vec![
        kv("opsbot.session.id", r.session.as_str()),
        kv_int("opsbot.seq", r.seq),
        kv("opsbot.actor", cut(&r.actor, MAX_ATTR_CHARS)),
        kv("opsbot.event.kind", kind),
        kv("opsbot.hash", r.hash.clone()),
    ];
    if let Some(step) = step {
        attributes.push(kv("opsbot.step", cut(&step, MAX_ATTR_CHARS)));
    }
    if let Some(tool) = tool {
        attributes.push(kv("opsbot.tool", cut(&tool, MAX_ATTR_CHARS)));
    }
    LogRecord {
        time_unix_nano: nanos(&r.ts),
        observed_time_unix_nano: observed,
        severity_number: number,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(cut(
                &body.to_string(),
                MAX_BODY_CHARS,
            ))),
        }),
        attributes,
        trace_id: trace,
        span_id: span,
        event_name: format!("opsbot.{kind}"),
    }
}

/// What one step did in a run, gathered from its records.
#[derive(Default)]
struct StepLife {
    tool: String,
    decision: Option<Decision>,
    approved_by: Vec<String>,
    first_ts: Option<String>,
    started: Option<String>,
    ended: Option<String>,
    outcome: Option<&'static str>,
    error: Option<String>,
    duration_ms: Option<u64>,
    retries: Vec<SpanEvent>,
}

/// A finished run as spans: `window` is the session's records from the
/// first of the run to its `run_finished`, in order. Nothing if the
/// window does not end with one.
pub fn run_spans(window: &[Record]) -> Vec<Span> {
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return Vec::new();
    };
    let Event::RunFinished { outcome, summary } = &last.event else {
        return Vec::new();
    };
    let trace = trace_id(first.session.as_str(), first.seq);
    let root = run_span_id(&trace);
    let mut order: Vec<String> = Vec::new();
    let mut steps: BTreeMap<String, StepLife> = BTreeMap::new();
    let mut title = None;
    let mut request = None;
    let mut planner = None;
    let mut actor = last.actor.clone();
    for r in window {
        match &r.event {
            Event::SessionStarted {
                actor: a,
                planner: p,
                ..
            } => {
                actor = a.clone();
                planner = Some(p.clone());
            }
            Event::PlannerChanged { planner: p } => planner = Some(p.clone()),
            Event::UserMessage { text } if request.is_none() => request = Some(text.clone()),
            Event::PlanProposed { plan, .. } => {
                title = Some(plan.title.clone());
                for step in &plan.steps {
                    step_life(&mut steps, &mut order, step.id.as_str(), &r.ts).tool =
                        step.tool.clone();
                }
            }
            Event::PolicyDecision { step, decision } | Event::PolicyRecheck { step, decision } => {
                step_life(&mut steps, &mut order, step.as_str(), &r.ts).decision =
                    Some(decision.clone());
            }
            Event::Approved { step, by, .. } => {
                step_life(&mut steps, &mut order, step.as_str(), &r.ts)
                    .approved_by
                    .push(by.clone());
            }
            Event::StepStarted { step, tool, .. } => {
                let s = step_life(&mut steps, &mut order, step.as_str(), &r.ts);
                s.tool = tool.clone();
                s.started.get_or_insert_with(|| r.ts.clone());
            }
            Event::StepRetrying {
                step,
                attempt,
                error,
                wait_ms,
            } => {
                step_life(&mut steps, &mut order, step.as_str(), &r.ts)
                    .retries
                    .push(SpanEvent {
                        time_unix_nano: nanos(&r.ts),
                        name: "retry".into(),
                        attributes: vec![
                            kv_int("opsbot.attempt", i64::from(*attempt)),
                            kv("opsbot.error", cut(error, MAX_ATTR_CHARS)),
                            kv_int(
                                "opsbot.wait_ms",
                                i64::try_from(*wait_ms).unwrap_or(i64::MAX),
                            ),
                        ],
                    });
            }
            Event::StepSucceeded {
                step, duration_ms, ..
            } => {
                let s = step_life(&mut steps, &mut order, step.as_str(), &r.ts);
                s.ended = Some(r.ts.clone());
                s.outcome = Some("succeeded");
                s.duration_ms = Some(*duration_ms);
            }
            Event::StepFailed {
                step,
                error,
                duration_ms,
                ..
            } => {
                let s = step_life(&mut steps, &mut order, step.as_str(), &r.ts);
                s.ended = Some(r.ts.clone());
                s.outcome = Some("failed");
                s.error = Some(error.clone());
                s.duration_ms = Some(*duration_ms);
            }
            Event::StepSkipped { step, reason } | Event::StepNotStarted { step, reason } => {
                let s = step_life(&mut steps, &mut order, step.as_str(), &r.ts);
                s.ended = Some(r.ts.clone());
                s.outcome = Some(if matches!(r.event, Event::StepSkipped { .. }) {
                    "skipped"
                } else {
                    "not started"
                });
                s.error = Some(reason.clone());
            }
            Event::StepInterrupted { step } => {
                let s = step_life(&mut steps, &mut order, step.as_str(), &r.ts);
                s.ended = Some(r.ts.clone());
                s.outcome = Some("interrupted");
            }
            _ => {}
        }
    }
    let end = nanos(&last.ts);
    let mut spans = Vec::with_capacity(order.len() + 1);
    for id in &order {
        let Some(s) = steps.remove(id) else { continue };
        spans.push(step_span(&trace, &root, id, s, &actor, end));
    }
    let (code, message) = match outcome {
        Outcome::Succeeded => (status_code::OK, String::new()),
        Outcome::Failed => (status_code::ERROR, cut(summary, MAX_ATTR_CHARS)),
        _ => (status_code::UNSET, String::new()),
    };
    let mut attributes = vec![
        kv("opsbot.session.id", first.session.as_str()),
        kv("opsbot.actor", cut(&actor, MAX_ATTR_CHARS)),
        kv("opsbot.outcome", outcome.as_str()),
        kv("opsbot.summary", cut(summary, MAX_ATTR_CHARS)),
        kv_int(
            "opsbot.steps",
            i64::try_from(order.len()).unwrap_or(i64::MAX),
        ),
        kv_int("opsbot.seq.first", first.seq),
        kv_int("opsbot.seq.last", last.seq),
    ];
    if let Some(t) = title {
        attributes.push(kv("opsbot.run.title", cut(&t, MAX_ATTR_CHARS)));
    }
    if let Some(t) = request {
        attributes.push(kv("opsbot.request", cut(&t, MAX_ATTR_CHARS)));
    }
    if let Some(p) = planner {
        attributes.push(kv("opsbot.planner", cut(&p, MAX_ATTR_CHARS)));
    }
    spans.push(Span {
        trace_id: trace.clone(),
        span_id: root,
        parent_span_id: Vec::new(),
        name: "opsbot.run".into(),
        kind: span_kind::INTERNAL,
        start_time_unix_nano: nanos(&first.ts),
        end_time_unix_nano: end,
        attributes,
        events: Vec::new(),
        status: Some(Status { message, code }),
    });
    spans
}

/// The step's life so far, begun (in plan order) at its first record.
fn step_life<'a>(
    steps: &'a mut BTreeMap<String, StepLife>,
    order: &mut Vec<String>,
    id: &str,
    ts: &str,
) -> &'a mut StepLife {
    if !steps.contains_key(id) {
        order.push(id.to_string());
    }
    let s = steps.entry(id.to_string()).or_default();
    s.first_ts.get_or_insert_with(|| ts.to_string());
    s
}

fn step_span(trace: &[u8], root: &[u8], id: &str, s: StepLife, actor: &str, run_end: u64) -> Span {
    let start = s
        .started
        .as_deref()
        .or(s.first_ts.as_deref())
        .map(nanos)
        .unwrap_or(run_end);
    // A step that never ran is a point in time, at its decision.
    let end = match (&s.ended, &s.started) {
        (Some(t), _) => nanos(t),
        (None, Some(_)) => run_end,
        (None, None) => start,
    };
    // A denied step is skipped by the engine; what it ended as is "denied".
    let denied = s.started.is_none() && matches!(s.decision, Some(Decision::Deny { .. }));
    let outcome = match s.outcome {
        _ if denied => "denied",
        Some(outcome) => outcome,
        None if s.started.is_some() => "unfinished",
        None => "not run",
    };
    let server = s.tool.split_once('.').map(|(srv, _)| srv).unwrap_or("");
    let mut attributes = vec![
        kv("opsbot.step", cut(id, MAX_ATTR_CHARS)),
        kv("opsbot.tool", cut(&s.tool, MAX_ATTR_CHARS)),
        kv("opsbot.server", cut(server, MAX_ATTR_CHARS)),
        kv("opsbot.actor", cut(actor, MAX_ATTR_CHARS)),
        kv("opsbot.outcome", outcome),
        kv("mcp.method.name", "tools/call"),
        kv("gen_ai.tool.name", cut(&s.tool, MAX_ATTR_CHARS)),
        kv_int(
            "opsbot.attempts",
            i64::try_from(s.retries.len()).unwrap_or(i64::MAX) + 1,
        ),
    ];
    if let Some(d) = &s.decision {
        attributes.push(kv("opsbot.decision", d.label()));
        attributes.push(kv("opsbot.rule", cut(d.rule(), MAX_ATTR_CHARS)));
        attributes.push(kv("opsbot.reason", cut(d.reason(), MAX_ATTR_CHARS)));
    }
    if !s.approved_by.is_empty() {
        attributes.push(kv(
            "opsbot.approved_by",
            cut(&s.approved_by.join(", "), MAX_ATTR_CHARS),
        ));
    }
    if let Some(ms) = s.duration_ms {
        attributes.push(kv_int(
            "opsbot.duration_ms",
            i64::try_from(ms).unwrap_or(i64::MAX),
        ));
    }
    let status = match outcome {
        "succeeded" => Status {
            message: String::new(),
            code: status_code::OK,
        },
        "failed" | "interrupted" => Status {
            message: cut(s.error.as_deref().unwrap_or(outcome), MAX_ATTR_CHARS),
            code: status_code::ERROR,
        },
        _ => Status {
            message: String::new(),
            code: status_code::UNSET,
        },
    };
    Span {
        trace_id: trace.to_vec(),
        span_id: step_span_id(trace, id),
        parent_span_id: root.to_vec(),
        name: if s.tool.is_empty() {
            "opsbot.step".into()
        } else {
            cut(&s.tool, MAX_ATTR_CHARS)
        },
        kind: span_kind::CLIENT,
        start_time_unix_nano: start,
        end_time_unix_nano: end.max(start),
        attributes,
        events: s.retries,
        status: Some(status),
    }
}

/// The resource every export names: this opsbot on this host.
pub fn resource(service_name: &str) -> otlp::Resource {
    otlp::Resource {
        attributes: vec![
            kv("service.name", service_name),
            kv("service.version", env!("CARGO_PKG_VERSION")),
            kv("host.name", crate::session::host_name()),
        ],
    }
}

pub fn scope() -> otlp::InstrumentationScope {
    otlp::InstrumentationScope {
        name: "opsbot".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}
