//! From a request to a decided plan: planning (with clarifications and
//! the untrusted output the model saw), re-running a past plan, and the
//! proposal recorded with policy's decision for every step.

use super::*;

impl Runtime {
    /// Record the request, plan it, validate the plan against the live
    /// catalog, and record policy's decision for every step.
    pub async fn plan_request(
        &self,
        session: &Session,
        request: &str,
    ) -> Result<Planned, StoreError> {
        session.record(Event::UserMessage {
            text: request.to_string(),
        })?;
        let input = self.plan_input(&session.state());
        let planner = self.planner();
        if planner.needs_catalog() {
            self.servers.wait_settled().await;
        }
        let sink = SessionSink {
            rt: self,
            session,
            problem: std::sync::Mutex::new(None),
        };
        let cancel = self.stopping.child_token();
        self.planning.send_replace(Some(Planning {
            since: std::time::Instant::now(),
            planner: planner.name().to_string(),
            phase: None,
            tokens: 0,
            draft: Vec::new(),
            cancel: cancel.clone(),
        }));
        let result = planner.plan(&input, &sink).await;
        let influenced_by: Vec<String> = if planner.reads_results() {
            input
                .results
                .iter()
                .filter(|r| !r.trusted)
                .map(crate::planner::ResultBlock::source)
                .collect()
        } else {
            Vec::new()
        };
        self.planning.send_replace(None);
        if let Some(e) = sink.problem.lock().ok().and_then(|mut p| p.take()) {
            return Err(e);
        }
        let proposal = match result {
            Ok(p) => p,
            Err(crate::planner::PlannerError::Cancelled) => {
                session.record_all(&[
                    Event::AssistantMessage {
                        text: "Planning was cancelled; nothing was planned or run.".into(),
                    },
                    Event::RunFinished {
                        outcome: Outcome::Cancelled,
                        summary: "planning cancelled".into(),
                    },
                ])?;
                return Ok(Planned::Cancelled);
            }
            Err(e) => {
                // The planner's reason is the plan's error: `--json` and
                // history show it, and the session ends (not "interrupted").
                let text = format!("{e}");
                session.record_all(&[
                    Event::PlanInvalid {
                        errors: vec![text.clone()],
                    },
                    Event::AssistantMessage { text: text.clone() },
                    Event::RunFinished {
                        outcome: Outcome::InvalidPlan,
                        summary: text.clone(),
                    },
                ])?;
                return Ok(Planned::Invalid(vec![text]));
            }
        };
        let plan = match proposal {
            Proposal::Clarify { question } => {
                session.record(Event::ClarificationAsked {
                    question: question.clone(),
                })?;
                session.record(Event::RunFinished {
                    outcome: Outcome::NeedsClarification,
                    summary: question.clone(),
                })?;
                return Ok(Planned::Clarify(question));
            }
            Proposal::Plan(plan) => plan,
        };
        self.propose_after(session, plan, Vec::new(), None, influenced_by)
            .await
            .map(|(planned, _)| planned)
    }

    /// The plan a past session ended with, to propose again. Refused when
    /// the log keeps only redacted arguments for some step: running
    /// `[redacted]` would be wrong, and the secret is not in the log.
    pub fn past_plan(&self, from: &str) -> Result<(SessionId, Plan), RerunError> {
        let from = self.store.find_session(from)?;
        let mut past = crate::session::SessionState::default();
        for r in self.store.events(&from)? {
            past.apply(&r);
        }
        let Some(plan) = past.plan else {
            return Err(RerunError::NoPlan(from));
        };
        let hidden: Vec<&str> = plan
            .steps
            .iter()
            .filter(|s| {
                serde_json::to_string(&s.args).is_ok_and(|a| a.contains(crate::session::REDACTED))
            })
            .map(|s| s.id.as_str())
            .collect();
        if !hidden.is_empty() {
            return Err(RerunError::Redacted(hidden.join(", ")));
        }
        Ok((from, plan))
    }

    /// A past session's plan, proposed again in `session` as a new request:
    /// validated against today's catalog and decided by today's policy;
    /// none of the old run's approvals carry over.
    pub async fn rerun(
        &self,
        session: &Session,
        from: &SessionId,
        plan: Plan,
    ) -> Result<Planned, StoreError> {
        let asked = Event::UserMessage {
            text: format!("re-run the plan of session {from}: {}", plan.title),
        };
        self.propose(session, plan, vec![asked]).await
    }

    /// Validate a plan against the live catalog, record it and policy's
    /// decision on each step, and say so in the chat.
    /// `before` (the request that led to the plan) is made durable with
    /// the plan and its decisions, in one transaction.
    pub async fn propose(
        &self,
        session: &Session,
        plan: Plan,
        before: Vec<Event>,
    ) -> Result<Planned, StoreError> {
        self.propose_approving(session, plan, before, None)
            .await
            .map(|(planned, _)| planned)
    }

    /// As `propose`; with `approve_as`, steps policy allows are approved by
    /// that name (a served call). When policy allows every step, the
    /// proposal is not recorded here but returned, for `run_from` (as `Start::unrecorded`) to
    /// record with the first step's start: one commit fewer, and still
    /// nothing is called before it is on record.
    pub async fn propose_approving(
        &self,
        session: &Session,
        plan: Plan,
        before: Vec<Event>,
        approve_as: Option<&str>,
    ) -> Result<(Planned, Vec<Event>), StoreError> {
        self.propose_after(session, plan, before, approve_as, Vec::new())
            .await
    }

    /// As `propose_approving`, for a plan proposed after the untrusted
    /// outputs `influenced_by` entered the planner's context: each step
    /// that changes something needs a fresh approval, whatever policy
    /// would otherwise allow, and the plan says which outputs it read.
    async fn propose_after(
        &self,
        session: &Session,
        mut plan: Plan,
        before: Vec<Event>,
        approve_as: Option<&str>,
        influenced_by: Vec<String>,
    ) -> Result<(Planned, Vec<Event>), StoreError> {
        let renamed = self.canonicalize(&mut plan);
        let used: std::collections::BTreeSet<&str> = plan
            .steps
            .iter()
            .filter_map(|s| s.tool.split_once('.').map(|(server, _)| server))
            .collect();
        let used: Vec<&str> = used.into_iter().collect();
        self.servers.wait_for(used.clone()).await;
        let catalog = self.servers.catalog();
        let mut events = before;
        let policy_errors = self.policy_errors(&catalog);
        if !policy_errors.is_empty() {
            let errors: Vec<String> = std::iter::once(
                "the policy has errors, so nothing runs until they are fixed".to_string(),
            )
            .chain(policy_errors)
            .collect();
            events.extend([
                Event::PlanInvalid {
                    errors: errors.clone(),
                },
                Event::AssistantMessage {
                    text: errors.join("\n- "),
                },
                Event::RunFinished {
                    outcome: Outcome::InvalidPlan,
                    summary: errors.join("; "),
                },
            ]);
            session.record_all(&events)?;
            return Ok((Planned::Invalid(errors), Vec::new()));
        }
        if let Err(errors) = validate(&plan, &catalog) {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            events.extend([
                Event::PlanInvalid {
                    errors: errors.clone(),
                },
                Event::AssistantMessage {
                    text: format!(
                        "The plan is not valid, so nothing will run:\n- {}",
                        errors.join("\n- ")
                    ),
                },
                Event::RunFinished {
                    outcome: Outcome::InvalidPlan,
                    summary: errors.join("; "),
                },
            ]);
            session.record_all(&events)?;
            return Ok((Planned::Invalid(errors), Vec::new()));
        }
        // Servers the plan uses that are not started yet start now, while
        // the plan is reviewed; their live tools are checked before a call.
        self.servers.ensure(used);
        let mut decisions = self.decide_plan(session, &plan, &catalog);
        if !influenced_by.is_empty() {
            influence::apply(&plan, &catalog, &influenced_by, &mut decisions);
        }
        let all_allowed = approve_as.is_some()
            && decisions
                .iter()
                .all(|(_, d)| matches!(d, Decision::Allow { .. }));
        // A served call that policy allows is told by its request and its
        // decisions; a summary for a person to read would only lengthen
        // the commit every such call waits on.
        let summary =
            (!all_allowed).then(|| plan_summary(&plan, &renamed, &decisions, &influenced_by));
        events.push(Event::PlanProposed {
            plan: plan.clone(),
            defs: defs_of(&plan, &catalog),
            influenced_by,
        });
        events.extend(
            decisions
                .iter()
                .map(|(step, decision)| Event::PolicyDecision {
                    step: step.clone(),
                    decision: decision.clone(),
                }),
        );
        if let Some(text) = summary {
            events.push(Event::AssistantMessage { text });
        }
        if let Some(by) = approve_as {
            for (step, decision) in &decisions {
                if let (Decision::Allow { rule, .. }, Some(s)) = (decision, plan.step(step)) {
                    events.push(Event::Approved {
                        step: step.clone(),
                        by: format!("{by} ({rule})"),
                        args_hash: args_hash(&s.tool, &s.args),
                        gated: false,
                        reason: None,
                        from: None,
                    });
                }
            }
        }
        if all_allowed {
            return Ok((Planned::Ready { plan, decisions }, events));
        }
        session.record_all(&events)?;
        Ok((Planned::Ready { plan, decisions }, Vec::new()))
    }

    /// The open planning turn (the request, questions and answers) and the
    /// recent conversation before it.
    fn plan_input(&self, state: &crate::session::SessionState) -> PlanInput {
        let turn_of = |m: &crate::session::Message| Turn {
            role: m.role,
            text: m.text.clone(),
        };
        let start = state
            .turn_start
            .unwrap_or(state.messages.len().saturating_sub(1));
        let keep = self.config.config.llm.history_messages;
        let earlier = &state.messages[..start.min(state.messages.len())];
        PlanInput {
            turn: state.messages[start.min(state.messages.len())..]
                .iter()
                .map(turn_of)
                .collect(),
            history: earlier[earlier.len().saturating_sub(keep)..]
                .iter()
                .map(turn_of)
                .collect(),
            results: state
                .results
                .iter()
                .map(|r| crate::planner::ResultBlock {
                    step: r.step.to_string(),
                    tool: r.tool.clone(),
                    trusted: self.trusts(&r.tool),
                    text: r.text.clone(),
                })
                .collect(),
        }
    }
}

/// What a proposal says to the person reading along: the plan's size, what
/// was read as something else, what is gated or denied, and why every
/// change needs approval after untrusted output.
fn plan_summary(
    plan: &Plan,
    renamed: &[String],
    decisions: &[(StepId, Decision)],
    influenced_by: &[String],
) -> String {
    let gated = decisions.iter().filter(|(_, d)| d.gate().is_some()).count();
    let denied = decisions.iter().filter(|(_, d)| d.is_denied()).count();
    let n = plan.steps.len();
    let mut text = format!(
        "Plan: {} with {n} step{}.",
        plan.title,
        if n == 1 { "" } else { "s" }
    );
    if !renamed.is_empty() {
        text.push_str(&format!(" Read as: {}.", renamed.join(", ")));
    }
    if gated > 0 {
        text.push_str(&format!(" {gated} gated."));
    }
    if denied > 0 {
        text.push_str(&format!(" {denied} denied."));
    }
    if !influenced_by.is_empty() {
        text.push_str(&format!(
            " It was planned after output from untrusted servers ({}); each step that changes something needs your approval.",
            influenced_by.join(", ")
        ));
    }
    text
}

/// The definition hash of each tool `plan` uses, as `catalog` has it.
pub(super) fn defs_of(
    plan: &Plan,
    catalog: &crate::mcp::Catalog,
) -> std::collections::BTreeMap<String, String> {
    plan.steps
        .iter()
        .filter_map(|s| Some((s.tool.clone(), catalog.get(&s.tool)?.def_hash.clone())))
        .collect()
}
