//! TUI speed, measured side by side in one run (`cargo bench --bench tui`):
//! - a full frame with 10,000 chat entries and a 500-step plan, against an
//!   empty session's frame;
//! - keypress to frame (move the plan selection, then draw);
//! - time to first frame with the six sandbox servers configured, against
//!   none configured (servers connect in the background).
//!
//! Under `cargo test` it runs once, quickly, as a smoke test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use opsbot::config::{ConfigSource, DEFAULT_TOML, load_layers};
use opsbot::mcp::ToolOutput;
use opsbot::paths::Paths;
use opsbot::plan::{Plan, Step, StepId};
use opsbot::runtime::Runtime;
use opsbot::session::{Event, Record, SessionId};
use opsbot::tui::app::{App, Pane};
use opsbot::tui::keymap::KeyMap;
use opsbot::tui::theme::Theme;
use opsbot::tui::ui::{View, draw};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn record(seq: i64, event: Event) -> Record {
    Record {
        seq,
        session: SessionId::from_stored("bench"),
        ts: "2026-11-21T12:00:00.000Z".into(),
        actor: "bench".into(),
        event,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

fn big_app() -> App {
    let mut app = App::new(
        KeyMap::new(&BTreeMap::new()),
        "bench".into(),
        "runbook".into(),
        "step".into(),
    );
    let mut seq = 0;
    let mut push = |app: &mut App, e| {
        seq += 1;
        app.apply(&record(seq, e));
    };
    for i in 0..5_000 {
        push(
            &mut app,
            Event::UserMessage {
                text: format!(
                    "request {i}: deploy checkout to staging and tell #deploys when it is healthy"
                ),
            },
        );
        push(
            &mut app,
            Event::AssistantMessage {
                text: format!(
                    "Plan {i} with 7 steps. Everything went fine and the service is healthy in staging."
                ),
            },
        );
    }
    let steps: Vec<Step> = (0..500)
        .map(|i| Step {
            depends_on: if i == 0 {
                vec![]
            } else {
                vec![StepId::new(format!("s{}", i - 1))]
            },
            description: format!("step {i}"),
            ..Step::new(
                format!("s{i}"),
                "ci.build",
                serde_json::json!({"service": "checkout", "ref": "main"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();
    push(
        &mut app,
        Event::PlanProposed {
            plan: Plan {
                title: "bench".into(),
                steps,
            },
            defs: Default::default(),
            influenced_by: Vec::new(),
        },
    );
    for i in 0..250 {
        push(
            &mut app,
            Event::StepSucceeded {
                step: StepId::new(format!("s{i}")),
                output: ToolOutput {
                    is_error: false,
                    text: "{}".into(),
                    structured: Some(serde_json::json!({"ok": true})),
                    truncated: None,
                    content: None,
                    meta: None,
                    task: None,
                },
                duration_ms: 10,
            },
        );
    }
    app.focus = Pane::Plan;
    app.selected = 250;
    app
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn frames(app: &mut App, w: u16, h: u16, n: usize) -> Duration {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    let theme = Theme::plain();
    let mut view = View::default();
    terminal
        .draw(|f| draw(f, app, &mut view, &theme))
        .expect("warm");
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                terminal
                    .draw(|f| draw(f, app, &mut view, &theme))
                    .expect("draw");
                t.elapsed()
            })
            .collect(),
    )
}

fn keypress_to_frame(app: &mut App, n: usize) -> Duration {
    let mut terminal = Terminal::new(TestBackend::new(250, 70)).expect("terminal");
    let theme = Theme::plain();
    let mut view = View::default();
    terminal
        .draw(|f| draw(f, app, &mut view, &theme))
        .expect("warm");
    median(
        (0..n)
            .map(|i| {
                let code = if i % 2 == 0 {
                    KeyCode::Down
                } else {
                    KeyCode::Up
                };
                let t = Instant::now();
                app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
                terminal
                    .draw(|f| draw(f, app, &mut view, &theme))
                    .expect("draw");
                t.elapsed()
            })
            .collect(),
    )
}

fn first_frame(with_servers: bool, rt_handle: &tokio::runtime::Runtime) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = load_layers(vec![ConfigSource {
        name: "d".into(),
        text: DEFAULT_TOML.into(),
    }])
    .expect("config");
    if !with_servers {
        config.config.servers.clear();
    }
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_opsbot"));
    let _guard = rt_handle.enter();
    let t = Instant::now();
    let rt = Runtime::with_exe(Paths::rooted(dir.path()), config, exe).expect("runtime");
    let session = rt.new_session("bench").expect("session");
    let mut app = App::new(
        KeyMap::new(&BTreeMap::new()),
        session.id.to_string(),
        "runbook".into(),
        "step".into(),
    );
    for (name, status) in rt.servers.statuses() {
        app.servers.insert(name, status);
    }
    let mut terminal = Terminal::new(TestBackend::new(120, 32)).expect("terminal");
    let theme = Theme::plain();
    let mut view = View::default();
    terminal
        .draw(|f| draw(f, &mut app, &mut view, &theme))
        .expect("draw");
    let took = t.elapsed();
    rt_handle.block_on(rt.servers.shutdown());
    took
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 200 } else { 3 };
    let mut big = big_app();
    let mut empty = App::new(
        KeyMap::new(&BTreeMap::new()),
        "bench".into(),
        "runbook".into(),
        "step".into(),
    );
    let big_wide = frames(&mut big, 250, 70, n);
    let empty_wide = frames(&mut empty, 250, 70, n);
    let big_small = frames(&mut big, 80, 24, n);
    let key = keypress_to_frame(&mut big, n);
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let runs = if full { 15 } else { 1 };
    let ff_six = median((0..runs).map(|_| first_frame(true, &rt)).collect());
    let ff_none = median((0..runs).map(|_| first_frame(false, &rt)).collect());
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "frame 250x70, 10,000 chat entries + 500-step plan: {:.3} ms (empty session {:.3} ms, ratio {:.1}x)",
        ms(big_wide),
        ms(empty_wide),
        ms(big_wide) / ms(empty_wide).max(1e-9)
    );
    println!(
        "frame 80x24, same session:                        {:.3} ms",
        ms(big_small)
    );
    println!(
        "keypress to frame, 250x70, same session:          {:.3} ms",
        ms(key)
    );
    println!(
        "first frame with six servers configured:         {:.3} ms (none configured {:.3} ms, ratio {:.2}x)",
        ms(ff_six),
        ms(ff_none),
        ms(ff_six) / ms(ff_none).max(1e-9)
    );
}
