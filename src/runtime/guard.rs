//! Policy at run time: what policy knows of the past (effects, calls, pinned
//! definitions), loaded from the store and kept current, and the engine's
//! guard that checks every call against it just before it is made.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::engine::CallGuard;
use crate::mcp::{Servers, ToolInfo};
use crate::plan::Step;
use crate::policy::{Call, Context, Decision, History, Policy};
use crate::session::{Event, Record, Session, Store, StoreError};

/// What policy knows of the past.
#[derive(Debug, Default)]
pub struct Knowledge {
    pub history: History,
    pub pins: HashMap<String, String>,
}

impl Knowledge {
    /// Effects and calls within the policy's horizon, and every pin.
    pub fn load(store: &Store, policy: &Policy) -> Result<Self, StoreError> {
        let mut k = Self {
            history: History::default(),
            pins: store.trusted_pins()?,
        };
        if let Some(horizon) = policy.horizon() {
            let since = (OffsetDateTime::now_utc() - horizon)
                .format(&Rfc3339)
                .unwrap_or_default();
            for kind in ["effect", "step_started"] {
                for r in store.events_of_kind_since(kind, &since)? {
                    k.learn(&r);
                }
            }
        }
        Ok(k)
    }

    /// Take in one stored event, if it is one policy counts.
    pub fn learn(&mut self, r: &Record) {
        let at =
            OffsetDateTime::parse(&r.ts, &Rfc3339).unwrap_or_else(|_| OffsetDateTime::now_utc());
        self.learn_event(&r.event, &r.actor, r.session.as_str(), at);
    }

    /// As `learn`, for an event about to be recorded at `at`.
    pub fn learn_event(&mut self, event: &Event, actor: &str, session: &str, at: OffsetDateTime) {
        match event {
            Event::Effect { effect, scope, .. } => {
                self.history.add_effect(effect, scope.clone(), at, session)
            }
            Event::StepStarted { tool, .. } => self.history.add_call(actor, tool, at),
            _ => {}
        }
    }
}

/// The definition a pin keeps, so a change can be shown as a diff: the
/// whole definition as the server sent it (title, description, schemas
/// with their nested descriptions, annotations), where it was kept.
pub fn definition(tool: &ToolInfo) -> String {
    let whole = tool.sent.as_deref().cloned().unwrap_or_else(|| {
        json!({
            "description": tool.description,
            "input_schema": tool.input_schema,
            "annotations": tool.annotations,
        })
    });
    serde_json::to_string_pretty(&whole).unwrap_or_default()
}

/// Pin every listed tool that is not pinned yet, and keep the definition
/// of one listed differently from its pin (for review from the store).
pub(super) fn pin_listed(store: &Store, knowledge: &Mutex<Knowledge>, tools: &[ToolInfo]) {
    let mut fresh = Vec::new();
    let mut changed = Vec::new();
    {
        let k = knowledge.lock().unwrap_or_else(|p| p.into_inner());
        for t in tools.iter().filter(|t| !t.made_by_opsbot()) {
            let name = t.qualified();
            match k.pins.get(&name) {
                None => fresh.push((name, t.def_hash.clone(), definition(t))),
                Some(pinned) if *pinned != t.def_hash => changed.push(t),
                Some(_) => {}
            }
        }
    }
    if !fresh.is_empty() {
        match store.pin_new(&fresh, "discovery") {
            Ok(()) => {
                let mut k = knowledge.lock().unwrap_or_else(|p| p.into_inner());
                for (name, hash, _) in fresh {
                    k.pins.entry(name).or_insert(hash);
                }
            }
            Err(e) => tracing::error!("cannot pin newly listed tools: {e}"),
        }
    }
    for t in changed {
        let name = t.qualified();
        if let Err(e) = store.note_pin_change(&name, &t.def_hash, &definition(t)) {
            tracing::error!("cannot keep the changed definition of {name}: {e}");
        } else {
            tracing::warn!("{name} is served differently from its pin: quarantined until reviewed");
        }
    }
}

pub struct PolicyGuard {
    pub(super) policy: Arc<Policy>,
    pub(super) knowledge: Arc<Mutex<Knowledge>>,
    pub(super) servers: Servers,
    pub(super) store: Arc<Store>,
}

impl PolicyGuard {
    fn knowledge(&self) -> MutexGuard<'_, Knowledge> {
        self.knowledge.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit_with(
        &self,
        session: &Session,
        step: &Step,
        args: &Map<String, Value>,
        tool: Option<&ToolInfo>,
    ) -> Result<(), Decision> {
        let roles = self.policy.roles_of(&session.actor);
        let now = OffsetDateTime::now_utc();
        let mut k = self.knowledge();
        let decision = {
            let ctx = Context {
                actor: &session.actor,
                roles: &roles,
                session: session.id.as_str(),
                now,
                history: &k.history,
                pins: &k.pins,
                planned: &[],
            };
            let call = Call {
                tool: &step.tool,
                args,
                gated: step.gate,
            };
            self.policy.decide(&call, tool, &ctx, None)
        };
        if decision.is_denied() {
            return Err(decision);
        }
        // The call as it will be sent may need more than its approval gave
        // (an edit, or a reference filled in, that names a gated
        // environment): a plain approval does not cover a typed gate.
        if let Some(gate) = decision.gate() {
            let confirmed =
                session.with_state(|s| s.steps.get(&step.id).is_some_and(|st| st.approved_gated));
            if !confirmed {
                return Err(Decision::Deny {
                    rule: decision.rule().to_string(),
                    reason: format!(
                        "as it would run now, the call needs a typed confirmation of `{}` ({}), and its approval was not one; approve it again",
                        gate.confirm,
                        decision.reason()
                    ),
                });
            }
        }
        k.history.add_call(&session.actor, &step.tool, now);
        // First use pins the definition.
        if let Some(tool) = tool
            && !k.pins.contains_key(&step.tool)
        {
            match self.store.set_pin(
                &step.tool,
                &tool.def_hash,
                &definition(tool),
                &session.actor,
                false,
            ) {
                Ok(()) => {
                    k.pins.insert(step.tool.clone(), tool.def_hash.clone());
                }
                Err(e) => tracing::error!("cannot pin {}: {e}", step.tool),
            }
        }
        Ok(())
    }
}

impl CallGuard for PolicyGuard {
    fn canonical(&self, args: &mut Map<String, Value>) {
        self.policy.estate().canonicalize(args);
    }

    fn admit(
        &self,
        session: &Session,
        step: &Step,
        args: &Map<String, Value>,
    ) -> Result<(), Decision> {
        self.servers.with_tool(&step.tool, |tool| {
            self.admit_with(session, step, args, tool)
        })
    }

    fn finished(
        &self,
        session: &Session,
        step: &Step,
        args: &Map<String, Value>,
        result: &Value,
        succeeded: bool,
    ) -> Vec<Event> {
        let effects: Vec<Event> = self
            .policy
            .effects_of(&step.tool, args, result, succeeded)
            .into_iter()
            .map(|(effect, scope)| Event::Effect {
                effect,
                scope,
                step: step.id.clone(),
            })
            .collect();
        if !effects.is_empty() {
            let now = OffsetDateTime::now_utc();
            let mut k = self.knowledge();
            for e in &effects {
                k.learn_event(e, &session.actor, session.id.as_str(), now);
            }
        }
        effects
    }
}
