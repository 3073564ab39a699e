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
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as TermEvent, EventStream, KeyEventKind,
};
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use crate::driver::Driver;
use crate::mcp::ServerEvent;
use crate::sanitize::scrub;
use app::{App, Intent};

/// The terminal bell and a desktop notification (OSC 9, or OSC 777 for
/// the terminals that read that one instead).
fn ring(osc: u16, message: &str) {
    use std::io::Write;
    let escape = if osc == 777 {
        format!("\x1b]777;notify;opsbot;{message}\x07")
    } else {
        format!("\x1b]9;opsbot: {message}\x07")
    };
    let mut out = std::io::stdout();
    let _ = write!(out, "\x07{escape}");
    let _ = out.flush();
}

pub struct Options {
    pub theme: String,
    pub mouse: bool,
    /// Ring when a call starts waiting for approval or a server asks.
    pub notify: bool,
    /// The desktop notification's escape (OSC 9 or 777).
    pub notify_osc: u16,
    pub keys: std::collections::BTreeMap<String, String>,
    pub mode: String,
    /// Open on the history browser (`opsbot history` at a terminal).
    pub history: bool,
}

/// Leaves the terminal as it was found, however the app ends.
struct Restore {
    mouse: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = crossterm::execute!(std::io::stdout(), DisableBracketedPaste);
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
        Intent::CancelPlanning => {
            if driver.runtime().cancel_planning() {
                Ok("cancelling planning".to_string())
            } else {
                Err("nothing is being planned".to_string())
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
        Intent::Call(line) => driver.call(line).map(|()| String::new()).map_err(e),
        Intent::Quit => Ok(String::new()),
        // The screen handles these itself; they never reach the driver.
        Intent::Tools(_)
        | Intent::SearchHistory(_)
        | Intent::OpenSession(_)
        | Intent::CloseReplay
        | Intent::Rerun(_)
        | Intent::ApprovePending { .. }
        | Intent::RefusePending { .. }
        | Intent::Reviews
        | Intent::Insights
        | Intent::AcceptPin { .. }
        | Intent::RejectPin { .. } => Ok(String::new()),
    }
}

/// The planner's state as the chat and plan pane show it, cleaned.
fn planning_view(p: &crate::runtime::Planning) -> app::PlanningView {
    app::PlanningView {
        planner: p.planner.clone(),
        elapsed: p.since.elapsed(),
        phase: p.phase.clone(),
        tokens: p.tokens,
        draft: p
            .draft
            .iter()
            .map(|s| {
                crate::sanitize::scrub((s.id.to_string(), s.tool.clone(), s.description.clone()))
            })
            .collect(),
    }
}

/// What the loop hears from background searches: the query and its answer.
type SearchAnswer = (String, Result<Vec<crate::session::Found>, String>);

/// The screen's state: the live session (its driver and view) and, while
/// one is open, the read-only replay of a past session drawn in its place.
struct Screen {
    driver: Arc<Driver>,
    live: App,
    live_view: ui::View,
    records: tokio::sync::broadcast::Receiver<crate::session::Record>,
    replay: Option<(App, ui::View)>,
    searches: tokio::sync::mpsc::UnboundedSender<SearchAnswer>,
    /// Insights computed off the event loop (a large log takes seconds).
    insights: tokio::sync::mpsc::UnboundedSender<Result<crate::session::Insights, String>>,
    /// Served calls waiting for approval, looked up off the event loop.
    waiting: tokio::sync::mpsc::UnboundedSender<Vec<crate::session::Pending>>,
    /// Older chat records paged in from the store, and whether more wait.
    older: tokio::sync::mpsc::UnboundedSender<(Vec<crate::session::Record>, bool)>,
    paging: bool,
    looking: Arc<std::sync::atomic::AtomicBool>,
}

impl Screen {
    /// The app the user sees and types into.
    fn shown(&mut self) -> (&mut App, &mut ui::View) {
        match &mut self.replay {
            Some((app, view)) => (app, view),
            None => (&mut self.live, &mut self.live_view),
        }
    }

    /// A view of the driver's session from its log, keeping what belongs
    /// to the screen rather than the session (servers, typed requests).
    fn live_app(&self, driver: &Driver) -> App {
        let rt = driver.runtime();
        let old = &self.live;
        let mut app = App::new(
            old.keys.clone(),
            driver.session().id.to_string(),
            rt.planner().name().to_string(),
            old.mode.clone(),
        );
        app.servers = old.servers.clone();
        app.breakers = old.breakers.clone();
        app.history = old.history.clone();
        app.planner_choices = old.planner_choices.clone();
        app.flagged = old.flagged.clone();
        app.reviews = old.reviews.clone();
        if let Ok(past) = rt.store.events(&driver.session().id) {
            for r in &past {
                app.apply(r);
            }
        }
        app
    }

    fn handle(&mut self, intent: Intent) {
        match intent {
            Intent::SearchHistory(text) => self.search(text),
            Intent::Tools(words) => {
                let catalog = self.driver.runtime().servers.catalog();
                self.live.open_tools(app::ToolRow::all(&catalog), &words);
            }
            Intent::OpenSession(id) => self.open(&id),
            Intent::CloseReplay => self.replay = None,
            Intent::Rerun(id) => self.rerun(&id),
            Intent::ApprovePending { .. } | Intent::RefusePending { .. } => {
                let result = self.answer_pending(&intent);
                self.live.on_result(&intent, result);
            }
            Intent::Insights => {
                let since = time::OffsetDateTime::now_utc() - time::Duration::days(30);
                let since = since
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                let store = Arc::clone(&self.driver.runtime().store);
                let answers = self.insights.clone();
                self.live.flash = Some(("reading the last 30 days…".into(), false));
                tokio::task::spawn_blocking(move || {
                    let found = store
                        .insights(Some(&since))
                        .map_err(|e| format!("cannot read the log: {e}"));
                    let _ = answers.send(found);
                });
            }
            Intent::Reviews => match self.reviews() {
                Ok(reviews) => self.live.open_reviews(reviews),
                Err(e) => self.live.on_result(&intent, Err(e)),
            },
            Intent::AcceptPin { .. } | Intent::RejectPin { .. } => {
                let result = self.review(&intent);
                if let Ok(reviews) = self.reviews() {
                    self.live.open_reviews(reviews);
                }
                self.live.on_result(&intent, result);
            }
            intent => {
                let result = execute(&self.driver, &intent);
                self.shown().0.on_result(&intent, result);
            }
        }
    }

    /// Approve or refuse a served call; the runtime checks it still waits
    /// and, for a gated call, what was typed.
    fn answer_pending(&mut self, intent: &Intent) -> Result<String, String> {
        let rt = Arc::clone(self.driver.runtime());
        let actor = self.driver.session().actor.clone();
        let (session, step) = match intent {
            Intent::ApprovePending { session, step, .. }
            | Intent::RefusePending { session, step } => (session, step),
            _ => return Ok(String::new()),
        };
        let Some(p) = self
            .live
            .pending
            .iter()
            .find(|p| p.session == *session && p.step == *step)
            .cloned()
        else {
            return Err("that call is no longer waiting".into());
        };
        let done = match intent {
            Intent::ApprovePending { typed, .. } => match rt.approve_pending(&actor, &p, typed) {
                Ok(crate::runtime::Approval::Refused(why)) => Err(why),
                Ok(crate::runtime::Approval::Counted { wanted }) => Ok(format!(
                    "approved {} for {}; it still needs {wanted}",
                    p.tool, p.client
                )),
                Ok(crate::runtime::Approval::Granted(_)) => {
                    Ok(format!("approved {} for {}", p.tool, p.client))
                }
                Err(e) => Err(e.to_string()),
            },
            _ => rt
                .refuse_pending(&actor, &p)
                .map(|()| format!("refused {} for {}", p.tool, p.client))
                .map_err(|e| e.to_string()),
        }?;
        self.live
            .pending
            .retain(|x| !(x.session == p.session && x.step == p.step));
        if self.live.pending.is_empty() {
            self.live.modal = None;
        }
        Ok(done)
    }

    /// The changed tool definitions kept for review, cleaned for the screen.
    fn reviews(&self) -> Result<Vec<crate::runtime::PinReview>, String> {
        let reviews = self
            .driver
            .runtime()
            .pin_reviews()
            .map_err(|e| format!("cannot read the changed tools: {e}"))?;
        Ok(reviews.into_iter().map(crate::sanitize::scrub).collect())
    }

    /// Accept or reject a changed definition as the session's actor.
    fn review(&self, intent: &Intent) -> Result<String, String> {
        let rt = self.driver.runtime();
        let actor = &self.driver.session().actor;
        match intent {
            Intent::AcceptPin { tool, hash } => rt
                .accept_pin(tool, hash, actor)
                .map(|h| {
                    format!(
                        "{tool} re-pinned as reviewed ({}) by {actor}",
                        crate::runtime::short(&h)
                    )
                })
                .map_err(|e| e.to_string()),
            Intent::RejectPin { tool } => rt
                .reject_pin(tool, actor)
                .map(|()| format!("{tool}: the changed definition stays denied"))
                .map_err(|e| e.to_string()),
            _ => Ok(String::new()),
        }
    }

    /// Look for served calls that wait, at most one look at a time.
    fn look_for_waiting_calls(&self) {
        use std::sync::atomic::Ordering;
        if self.looking.swap(true, Ordering::AcqRel) {
            return;
        }
        let rt = Arc::clone(self.driver.runtime());
        let mine = self.driver.session().id.clone();
        let answers = self.waiting.clone();
        let looking = Arc::clone(&self.looking);
        tokio::task::spawn_blocking(move || {
            let _ = answers.send(rt.pending_approvals(&mine));
            looking.store(false, Ordering::Release);
        });
    }

    /// Page older chat in from the store, off the event loop, when the
    /// view asks for it.
    fn page_older(&mut self) {
        if !std::mem::take(&mut self.live.wants_older) || self.paging {
            return;
        }
        let Some(before) = self.live.chat.more_before() else {
            return;
        };
        self.paging = true;
        let store = Arc::clone(&self.driver.runtime().store);
        let session = self.driver.session().id.clone();
        let answers = self.older.clone();
        tokio::task::spawn_blocking(move || {
            let page = store
                .events_before(&session, before, app::log::CHAT_KINDS, app::log::CHAT_PAGE)
                .unwrap_or_else(|e| {
                    tracing::warn!("cannot page back through the chat: {e}");
                    (Vec::new(), false)
                });
            let _ = answers.send(page);
        });
    }

    /// Search off the event loop: typing never waits for the store.
    fn search(&self, text: String) {
        let store = Arc::clone(&self.driver.runtime().store);
        let answers = self.searches.clone();
        tokio::task::spawn_blocking(move || {
            let query = crate::session::Query {
                text: text.clone(),
                limit: app::LIST_LIMIT,
                skip_empty: true,
                ..Default::default()
            };
            let found = store.search(&query).map_err(|e| e.to_string());
            let _ = answers.send((text, found));
        });
    }

    fn open(&mut self, id: &str) {
        let store = &self.driver.runtime().store;
        match store.find_session(id).and_then(|sid| store.events(&sid)) {
            Ok(records) => {
                let replay = App::replay(self.live.keys.clone(), id.to_string(), &records);
                self.replay = Some((replay, ui::View::default()));
            }
            Err(e) => self.shown().0.flash = Some((e.to_string(), true)),
        }
    }

    /// Re-run a past plan as a new session. The live session is reused
    /// when nothing has happened in it yet; a running one is never left
    /// behind unseen.
    fn rerun(&mut self, from: &str) {
        let rt = Arc::clone(self.driver.runtime());
        if self.driver.is_busy() || self.live.running() {
            self.shown().0.flash = Some((
                "a plan is still running in this session: wait for it, or cancel it, before re-running another".into(),
                true,
            ));
            return;
        }
        let (from, plan) = match rt.past_plan(from) {
            Ok(past) => past,
            Err(e) => {
                self.shown().0.flash = Some((e.to_string(), true));
                return;
            }
        };
        let untouched = self
            .driver
            .session()
            .with_state(|s| s.messages.is_empty() && s.plan.is_none());
        let driver = if untouched {
            Arc::clone(&self.driver)
        } else {
            match rt.new_session(&self.driver.session().actor) {
                Ok(session) => {
                    rt.watch_servers(&session);
                    Driver::new(Arc::clone(&rt), session, self.driver.mode())
                }
                Err(e) => {
                    self.shown().0.flash = Some((format!("cannot start a new session: {e}"), true));
                    return;
                }
            }
        };
        // Subscribe before anything is recorded; `App::apply` skips what
        // the log already showed.
        let records = driver.session().subscribe();
        if let Err(e) = driver.rerun(from.clone(), plan) {
            self.shown().0.flash = Some((e.to_string(), true));
            return;
        }
        self.live = self.live_app(&driver);
        // The user asked for a plan, not to type: keys go to its steps.
        self.live.focus = app::Pane::Plan;
        self.live_view = ui::View::default();
        self.records = records;
        self.driver = driver;
        self.replay = None;
        self.live.flash = Some((
            format!(
                "re-running the plan of {from}: policy decides afresh, approve each step again"
            ),
            false,
        ));
    }
}

/// The character a key press types, if it is plain typing.
fn typed_char(event: &TermEvent) -> Option<char> {
    use crossterm::event::{KeyCode, KeyModifiers};
    match event {
        TermEvent::Key(k)
            if k.kind != KeyEventKind::Release
                && (k.modifiers - KeyModifiers::SHIFT).is_empty() =>
        {
            match k.code {
                KeyCode::Char(c) => Some(c),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Terminal events handled before a frame is drawn, at most: enough to
/// take a burst of typing at once, few enough that the screen follows.
const MAX_EVENTS_A_FRAME: usize = 4096;

impl Screen {
    /// Events that arrived together. A run of plain characters typed into
    /// the input box (a paste the terminal sent as keystrokes) goes in as
    /// one insertion: character by character it would cost the length of
    /// the line each time. True if the screen needs drawing.
    fn on_terminal_events(&mut self, events: Vec<TermEvent>) -> bool {
        let mut dirty = false;
        let mut typed = String::new();
        for event in events {
            if let Some(c) = typed_char(&event)
                && self.shown().0.takes_typing()
            {
                typed.push(c);
                continue;
            }
            if !typed.is_empty() {
                self.shown().0.type_str(&std::mem::take(&mut typed));
                dirty = true;
            }
            dirty |= self.on_terminal_event(event);
        }
        if !typed.is_empty() {
            self.shown().0.type_str(&typed);
            dirty = true;
        }
        dirty
    }

    /// One terminal event; true if the screen needs drawing.
    fn on_terminal_event(&mut self, event: TermEvent) -> bool {
        match event {
            TermEvent::Key(key) if key.kind != KeyEventKind::Release => {
                let (app, _) = self.shown();
                app.flash = None;
                if let Some(intent) = app.on_key(key) {
                    self.handle(intent);
                }
                true
            }
            TermEvent::Paste(text) => {
                if let Some(intent) = self.shown().0.on_paste(&text) {
                    self.handle(intent);
                }
                true
            }
            TermEvent::Mouse(m) => {
                self.shown().0.on_mouse(m);
                true
            }
            TermEvent::Resize(..) => true,
            _ => false,
        }
    }
}

/// Run the app until the user quits.
pub async fn run(driver: Arc<Driver>, options: Options) -> std::io::Result<()> {
    let theme = theme::Theme::named(&options.theme);
    let rt = Arc::clone(driver.runtime());
    let mut live = App::new(
        keymap::KeyMap::new(&options.keys),
        driver.session().id.to_string(),
        rt.planner().name().to_string(),
        options.mode.clone(),
    );
    live.planner_choices = rt
        .planner_choices()
        .into_iter()
        .map(|(profile, name, detail)| app::PlannerChoice {
            profile,
            name,
            detail,
        })
        .collect();
    // Subscribed before the statuses are read: a server that becomes
    // ready in between is then heard, not missed for good.
    let mut server_events = rt.servers.subscribe();
    for (name, status) in rt.servers.statuses() {
        live.flagged.insert(name.clone(), flags_of(&rt, &name));
        live.servers.insert(name, scrub(status));
    }
    let mut planning = rt.planning();
    let mut screen_fault_at_start = None;
    let records = driver.session().subscribe();
    let mut store_fault = rt.store.watch_fault();
    // No export configured: a channel that never changes (its sender kept).
    let no_export = tokio::sync::watch::Sender::new(None);
    let mut export_health = rt
        .telemetry_health()
        .unwrap_or_else(|| no_export.subscribe());
    if let Some(fault) = rt.store.fault() {
        screen_fault_at_start = Some(fault);
    }
    let (searches, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let (insights, mut insights_found) = tokio::sync::mpsc::unbounded_channel();
    let (waiting, mut waiting_calls) = tokio::sync::mpsc::unbounded_channel();
    let (older, mut older_pages) = tokio::sync::mpsc::unbounded_channel();
    let mut screen = Screen {
        driver: Arc::clone(&driver),
        live,
        live_view: ui::View::default(),
        records,
        replay: None,
        searches,
        insights,
        waiting,
        older,
        paging: false,
        looking: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    screen.live = screen.live_app(&driver);
    screen.live.reviews = screen.reviews().unwrap_or_default();
    if let Some(fault) = screen_fault_at_start {
        screen.live.on_store_fault(fault);
    }
    if options.history {
        let intent = screen.live.open_history();
        screen.handle(intent);
    }

    let mut terminal = ratatui::init();
    let _restore = Restore {
        mouse: options.mouse,
    };
    // A paste arrives as one event, however long.
    let _ = crossterm::execute!(std::io::stdout(), EnableBracketedPaste);
    if options.mouse {
        let _ = crossterm::execute!(std::io::stdout(), EnableMouseCapture);
        // ratatui's hook restores the screen on panic; release the mouse too.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
            previous(info);
        }));
    }
    let mut keys = EventStream::new();
    // Servers' questions (forms, links, sampling) come to the app from now
    // until it ends; after that, headless rules answer them.
    let mut asks = rt.desk().attach();
    // SIGTERM and SIGHUP (the terminal closed) cancel what runs, as
    // Ctrl-C does, record why, and end the app.
    let mut signals = crate::signals::StopSignals::new().ok();
    let stop_signal = async |s: &mut Option<crate::signals::StopSignals>| match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(120));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let draw = |terminal: &mut ratatui::DefaultTerminal, screen: &mut Screen| {
        terminal
            .draw(|f| {
                let (app, view) = screen.shown();
                ui::draw(f, app, view, &theme)
            })
            .map(drop)
    };
    draw(&mut terminal, &mut screen)?;
    let mut lost_terminal = false;

    while !screen.live.quit && !screen.replay.as_ref().is_some_and(|(a, _)| a.quit) {
        let mut dirty = true;
        tokio::select! {
            ev = keys.next() => {
                // Handle every event that has already arrived before
                // drawing once: typing or pasting (without bracketed
                // paste) into a long input then costs one frame, not one
                // frame a character.
                let mut arrived = Vec::new();
                match ev {
                    Some(Ok(e)) => arrived.push(e),
                    // The terminal went away (a closed window, a dropped
                    // ssh): as SIGHUP.
                    Some(Err(_)) | None => {
                        lost_terminal = true;
                        break;
                    }
                }
                // Whatever else has already arrived, read at once. (The
                // stream just answered, so its waker thread holds no lock;
                // a microsecond, not zero, because a zero timeout only
                // looks at what was read before.)
                while arrived.len() < MAX_EVENTS_A_FRAME
                    && crossterm::event::poll(Duration::from_micros(1)).unwrap_or(false)
                {
                    match crossterm::event::read() {
                        Ok(e) => arrived.push(e),
                        Err(_) => break,
                    }
                }
                dirty = screen.on_terminal_events(arrived);
                // An overlay closed: a server's question waiting behind it shows.
                if screen.live.modal.is_none() && !screen.live.asks.is_empty() {
                    screen.live.show_next_ask();
                    dirty = true;
                }
                if lost_terminal {
                    break;
                }
            },
            // A step the model has just finished writing is drawn at once,
            // not at the next tick; token counts wait for the tick.
            Ok(()) = planning.changed() => {
                let view = planning.borrow_and_update().as_ref().map(planning_view);
                let drafted = |v: &Option<app::PlanningView>| v.as_ref().map_or(0, |p| p.draft.len());
                dirty = screen.replay.is_none() && drafted(&view) != drafted(&screen.live.planning);
                if dirty {
                    screen.live.planning = view;
                }
            }
            rec = screen.records.recv() => match rec {
                Ok(record) => {
                    screen.live.apply(&record);
                    dirty = screen.replay.is_none();
                }
                Err(RecvError::Lagged(_)) => {
                    // Too far behind: rebuild the view from the store.
                    let driver = Arc::clone(&screen.driver);
                    let mut fresh = screen.live_app(&driver);
                    fresh.modal = screen.live.modal.take();
                    screen.live = fresh;
                    screen.live_view = ui::View::default();
                }
                Err(RecvError::Closed) => dirty = false,
            },
            Some(ask) = asks.recv() => {
                if options.notify {
                    ring(options.notify_osc, "a server asks you something");
                }
                screen.live.on_ask(ask);
                if let Some((replay, _)) = screen.replay.as_mut() {
                    replay.flash = Some(("a server asks you something: esc returns to the live session".into(), true));
                }
                dirty = true;
            }
            Some(found) = insights_found.recv() => {
                screen.live.flash = None;
                match found {
                    Ok(i) => {
                        screen.live.modal =
                            Some(app::Modal::Insights(Box::new(crate::sanitize::scrub(i))));
                    }
                    Err(e) => screen.live.flash = Some((e, true)),
                }
            }
            Some((text, found)) = answers.recv() => {
                screen.live.show_found(&text, found.map(scrub));
            }
            Some((records, more)) = older_pages.recv() => {
                screen.live.prepend_older(&records, more);
                screen.paging = false;
            }
            Some(calls) = waiting_calls.recv() => {
                let calls = scrub(calls);
                // A call that started waiting rings: bell, and a desktop
                // notification where the terminal shows OSC 9.
                let new = calls.iter().any(|c| !screen.live.pending.contains(c));
                if new && options.notify {
                    ring(options.notify_osc, "a call waits for your approval (W)");
                }
                dirty = screen.live.pending != calls;
                screen.live.pending = calls;
            }
            se = server_events.recv() => match se {
                Ok(ServerEvent::Status { server, status }) => {
                    screen.live.flagged.insert(server.clone(), flags_of(&rt, &server));
                    screen.live.servers.insert(server, scrub(status));
                    if let Ok(reviews) = screen.reviews() {
                        screen.live.reviews = reviews;
                    }
                }
                Ok(ServerEvent::Breaker { server, state }) => {
                    screen.live.breakers.insert(server, state);
                }
                Ok(ServerEvent::Log { server, message }) => {
                    let line = ServerEvent::log_line(&message, &rt.store.redactor());
                    screen.live.on_server_log(&server, &line);
                    dirty = matches!(screen.live.modal, Some(app::Modal::Servers));
                }
                Ok(ServerEvent::Garbage { .. } | ServerEvent::ToolsChanged { .. } | ServerEvent::Declined { .. } | ServerEvent::ListChanged { .. } | ServerEvent::ResourceUpdated { .. }) | Err(_) => dirty = false,
            },
            which = stop_signal(&mut signals) => {
                if let Err(e) = screen.driver.session().record(crate::signals::stop_note(which)) {
                    tracing::error!("cannot record {which}: {e}");
                }
                rt.stop(which);
                break;
            }
            Ok(()) = export_health.changed() => {
                let problem = export_health.borrow_and_update().clone();
                screen.live.export_problem = problem.map(|p| crate::sanitize::line(&p, 300));
            }
            Ok(()) = store_fault.changed() => {
                let fault = store_fault.borrow_and_update().clone();
                match fault {
                    Some(fault) => screen.live.on_store_fault(fault),
                    None => dirty = false,
                }
            }
            _ = ticker.tick() => {
                let busy = screen.driver.is_busy();
                let view = planning.borrow().as_ref().map(planning_view);
                if screen.live.tick.is_multiple_of(8) {
                    screen.look_for_waiting_calls();
                    // Four eyes: other people's approvals arrive through the log.
                    for step in screen.driver.take_others_approvals() {
                        screen.live.flash = Some((format!("{step}: approved by enough people; it runs"), false));
                    }
                }
                let live = &mut screen.live;
                live.tick += 1;
                let was_busy = live.busy;
                live.busy = busy;
                live.planning = view;
                dirty = screen.replay.is_none() && (live.running() || live.busy || was_busy);
            }
        }
        if dirty && draw(&mut terminal, &mut screen).is_err() {
            lost_terminal = true;
            break;
        }
        screen.page_older();
    }
    if lost_terminal && screen.driver.is_busy() {
        let note = crate::signals::stop_note("SIGHUP");
        if let Err(e) = screen.driver.session().record(note) {
            tracing::error!("cannot record the terminal closing: {e}");
        }
    }
    screen.driver.cancel_run();
    // Let the cancelled run record how it ended before the process goes.
    screen.driver.wait_idle(Duration::from_secs(5)).await;
    let _ = std::io::stdout().flush();
    Ok(())
}

/// What the scan found in a server's tool definitions, a line each, for
/// the server list.
fn flags_of(rt: &crate::runtime::Runtime, server: &str) -> Vec<String> {
    rt.servers
        .tools_of(server)
        .iter()
        .flat_map(|t| {
            crate::policy::scan::tool(t)
                .iter()
                .map(|f| format!("{}: {f}", t.qualified()))
                .collect::<Vec<_>>()
        })
        .map(|line| crate::sanitize::line(&line, 160))
        .collect()
}
