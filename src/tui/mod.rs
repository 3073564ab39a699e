//! The full-screen app: a view of the session's event log. It renders state
//! and sends the user's intents to the driver; it holds no business rules.

pub mod app;
pub mod keymap;
pub mod theme;
pub mod ui;
pub mod widgets;
mod wrap;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream, KeyEventKind,
};
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use crate::driver::Driver;
use crate::mcp::ServerEvent;
use app::{App, Intent};

pub struct Options {
    pub theme: String,
    pub mouse: bool,
    pub keys: std::collections::BTreeMap<String, String>,
    pub mode: String,
}

/// Leaves the terminal as it was found, however the app ends.
struct Restore {
    mouse: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if self.mouse {
            let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
        }
        ratatui::restore();
    }
}

fn execute(driver: &Arc<Driver>, intent: &Intent) -> Result<String, String> {
    let e = |e: crate::driver::DriverError| e.to_string();
    match intent {
        Intent::Submit(text) => driver
            .submit(text.clone())
            .map(|()| String::new())
            .map_err(e),
        Intent::Approve { step, remember } => driver
            .approve(step, *remember)
            .map(|()| {
                if *remember {
                    "approved; not asking again for this tool".to_string()
                } else {
                    String::new()
                }
            })
            .map_err(e),
        Intent::Confirm { step, typed } => driver
            .confirm_gate(step, typed)
            .map(|()| format!("{step} confirmed"))
            .map_err(e),
        Intent::ApproveReady => driver
            .approve_ready()
            .map(|n| format!("approved {n} waiting steps"))
            .map_err(e),
        Intent::Skip(step) => driver
            .skip(step)
            .map(|()| format!("{step} will be skipped"))
            .map_err(e),
        Intent::Reject => driver
            .reject_plan()
            .map(|()| "plan rejected".to_string())
            .map_err(e),
        Intent::Edit { step, args } => driver
            .edit_args(step, args.clone())
            .map(|()| format!("{step}: arguments changed; approve it again"))
            .map_err(e),
        Intent::CancelStep(step) => {
            if driver.cancel_step(step) {
                Ok(format!("cancelling {step}"))
            } else {
                Err(format!("{step} is not running"))
            }
        }
        Intent::CancelRunning => {
            driver.cancel_running();
            Ok(String::new())
        }
        Intent::CancelRun => {
            driver.cancel_run();
            Ok("cancelling the run: running steps stop, nothing new starts".to_string())
        }
        Intent::SwitchPlanner(profile) => driver
            .switch_planner(profile.as_deref())
            .map(|name| format!("planning with {name}"))
            .map_err(e),
        Intent::Quit => Ok(String::new()),
    }
}

/// Run the app until the user quits.
pub async fn run(driver: Arc<Driver>, options: Options) -> std::io::Result<()> {
    let theme = theme::Theme::named(&options.theme);
    let session = Arc::clone(driver.session());
    let rt = Arc::clone(driver.runtime());
    let mut app = App::new(
        keymap::KeyMap::new(&options.keys),
        session.id.to_string(),
        rt.planner().name().to_string(),
        options.mode.clone(),
    );
    app.planner_choices = rt
        .planner_choices()
        .into_iter()
        .map(|(profile, name, detail)| app::PlannerChoice {
            profile,
            name,
            detail,
        })
        .collect();
    let planning = rt.planning();
    let mut records = session.subscribe();
    let mut server_events = rt.servers.subscribe();
    for (name, status) in rt.servers.statuses() {
        app.servers.insert(name, status);
    }
    if let Ok(past) = rt.store.events(&session.id) {
        for r in &past {
            app.apply(r);
        }
    }

    let mut terminal = ratatui::init();
    let _restore = Restore {
        mouse: options.mouse,
    };
    if options.mouse {
        let _ = crossterm::execute!(std::io::stdout(), EnableMouseCapture);
        // ratatui's hook restores the screen on panic; release the mouse too.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
            previous(info);
        }));
    }
    let mut view = ui::View::default();
    let mut keys = EventStream::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(120));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    terminal.draw(|f| ui::draw(f, &mut app, &mut view, &theme))?;

    while !app.quit {
        let mut dirty = true;
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    app.flash = None;
                    if let Some(intent) = app.on_key(key) {
                        let result = execute(&driver, &intent);
                        app.on_result(&intent, result);
                    }
                }
                Some(Ok(TermEvent::Mouse(m))) => app.on_mouse(m),
                Some(Ok(TermEvent::Resize(..))) => {}
                Some(Ok(_)) => dirty = false,
                Some(Err(e)) => return Err(e),
                None => break,
            },
            rec = records.recv() => match rec {
                Ok(record) => app.apply(&record),
                Err(RecvError::Lagged(_)) => {
                    // Too far behind: rebuild the view from the store.
                    let keys = app.keys.clone();
                    let mut fresh = App::new(keys, app.session_id.clone(), app.planner.clone(), app.mode.clone());
                    fresh.servers = std::mem::take(&mut app.servers);
                    fresh.history = std::mem::take(&mut app.history);
                    fresh.planner_choices = std::mem::take(&mut app.planner_choices);
                    if let Ok(past) = rt.store.events(&session.id) {
                        for r in &past {
                            fresh.apply(r);
                        }
                    }
                    app = fresh;
                    view = ui::View::default();
                }
                Err(RecvError::Closed) => dirty = false,
            },
            se = server_events.recv() => match se {
                Ok(ServerEvent::Status { server, status }) => {
                    app.servers.insert(server, status);
                }
                Ok(ServerEvent::Breaker { server, state }) => {
                    app.breakers.insert(server, state);
                }
                Ok(ServerEvent::Garbage { .. }) | Err(_) => dirty = false,
            },
            _ = ticker.tick() => {
                app.tick += 1;
                let was_busy = app.busy;
                app.busy = driver.is_busy();
                app.planning = planning.borrow().as_ref().map(|p| app::PlanningView {
                    planner: p.planner.clone(),
                    elapsed: p.since.elapsed(),
                    phase: p.phase.clone(),
                });
                dirty = app.running() || app.busy || was_busy;
            }
        }
        if dirty {
            terminal.draw(|f| ui::draw(f, &mut app, &mut view, &theme))?;
        }
    }
    driver.cancel_run();
    let _ = std::io::stdout().flush();
    Ok(())
}
