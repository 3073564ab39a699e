//! A tool call through the servers: the server's breaker, its fallback
//! while it is down, a definition changed since the plan, and the call on
//! the server's live connection.

use super::*;

impl Servers {
    /// Call `server.tool`, through the server's circuit breaker; while the
    /// server is down or its breaker open, its `fallback` serves the call.
    pub async fn call(
        &self,
        qualified: &str,
        args: Map<String, Value>,
        opts: CallOptions,
    ) -> Result<ToolOutput, CallError> {
        let (server, tool) = qualified
            .split_once('.')
            .ok_or_else(|| CallError::BadName(qualified.to_string()))?;
        let fallback = self
            .entries
            .get(server)
            .and_then(|e| e.config.fallback.clone())
            .filter(|f| f != server && self.entries.contains_key(f));
        let first = self
            .call_guarded(server, tool, args.clone(), opts.clone())
            .await;
        match (first, fallback) {
            (Err(e @ (CallError::BreakerOpen { .. } | CallError::Unavailable { .. })), Some(f)) => {
                tracing::warn!("{qualified}: {e}; calling {f}.{tool} instead");
                self.call_guarded(&f, tool, args, opts).await
            }
            (result, _) => result,
        }
    }

    async fn call_guarded(
        &self,
        server: &str,
        tool: &str,
        args: Map<String, Value>,
        opts: CallOptions,
    ) -> Result<ToolOutput, CallError> {
        let Some(entry) = self.entries.get(server) else {
            return self.call_unguarded(server, tool, args, opts).await;
        };
        if let Err(wait) = entry.breaker.admit() {
            return Err(CallError::BreakerOpen {
                server: server.to_string(),
                failures: entry.config.breaker_failures,
                retry_in_ms: wait.as_millis() as u64,
            });
        }
        let result = self.call_unguarded(server, tool, args, opts).await;
        let verdict = match &result {
            Ok(out) => Some(!out.is_error),
            // Not the server failing a call: cancelled, a wrong name, or
            // known to be down (being restarted) and failing fast already.
            Err(
                CallError::Cancelled { .. }
                | CallError::UnknownTool { .. }
                | CallError::Unavailable { .. },
            ) => None,
            Err(_) => Some(false),
        };
        if let Some(ok) = verdict
            && let Some(state) = entry.breaker.record(ok)
        {
            tracing::warn!(server, "circuit breaker {}", state.summary());
            let _ = self.events.send(ServerEvent::Breaker {
                server: server.to_string(),
                state,
            });
        }
        result
    }

    async fn call_unguarded(
        &self,
        server: &str,
        tool: &str,
        args: Map<String, Value>,
        opts: CallOptions,
    ) -> Result<ToolOutput, CallError> {
        let qualified = &format!("{server}.{tool}");
        let entry = self
            .entries
            .get(server)
            .ok_or_else(|| CallError::UnknownServer {
                server: server.to_string(),
                suggestion: closest(server, self.names()).map(str::to_string),
            })?;
        // A first start (lazy, or still coming up at launch) is waited for;
        // a server that was up and is restarting fails fast (retries and
        // the fallback deal with that).
        let first = !entry.ever_ready.load(std::sync::atomic::Ordering::Acquire);
        let waiting = matches!(
            *entry.status.borrow(),
            ServerStatus::Idle { .. } | ServerStatus::Starting
        );
        if first && waiting && !self.started(entry, opts.cancel.as_ref()).await {
            return Err(CallError::Cancelled {
                tool: qualified.to_string(),
            });
        }
        let conn = entry.conn.read().ok().and_then(|c| c.clone());
        let Some(conn) = conn.filter(|_| entry.status.borrow().is_ready()) else {
            return Err(CallError::Unavailable {
                server: server.to_string(),
                reason: entry.status.borrow().summary(),
            });
        };
        // The server said its tools changed: the call waits for the new
        // list, and is checked against it.
        if *conn.client.tools_stale.borrow() {
            let mut stale = conn.client.tools_stale.subscribe();
            let relisted = tokio::time::timeout(conn.timeout, stale.wait_for(|s| !s)).await;
            if !matches!(relisted, Ok(Ok(_))) {
                return Err(CallError::Unavailable {
                    server: server.to_string(),
                    reason: "it said its tools changed and has not listed them again".into(),
                });
            }
        }
        let live = entry.tools.read().ok().and_then(|t| {
            t.iter()
                .find(|t| t.name == tool)
                .map(|t| t.def_hash.clone())
        });
        if let (Some(live), Some(expected)) = (&live, &opts.expect_def)
            && live != expected
        {
            return Err(CallError::DefinitionChanged {
                tool: qualified.to_string(),
                since: "the plan was made".into(),
            });
        }
        if live.is_none() {
            let known = entry
                .tools
                .read()
                .map(|t| t.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
                .unwrap_or_default();
            return Err(CallError::UnknownTool {
                server: server.to_string(),
                tool: tool.to_string(),
                suggestion: closest(tool, known.iter().map(String::as_str)).map(str::to_string),
            });
        }
        let began = std::time::Instant::now();
        match conn.call(tool, args, opts).await {
            Ok(out) => Ok(out),
            Err(RawCallError::Closed) => {
                entry.settle_exit().await;
                let stderr = entry.stderr_tail();
                let how = entry.exit_status().unwrap_or_else(|| {
                    // A remote server that wants more access ends the
                    // connection with 403 insufficient_scope; say what fixes it.
                    let wanted = entry
                        .config
                        .url
                        .as_ref()
                        .and_then(|_| {
                            crate::auth::TokenStore::for_server(&entry.name, &entry.ctx.data_dir)
                                .extra()
                                .ok()
                        })
                        .map(|e| e.wanted_scopes)
                        .unwrap_or_default();
                    if wanted.is_empty() {
                        "connection closed".into()
                    } else {
                        format!(
                            "connection closed: it wants scope {} that the login lacks; run `opsbot auth login {}` to grant it",
                            wanted.join(" "),
                            entry.name
                        )
                    }
                });
                mark_exited(entry, how.clone());
                Err(CallError::ServerExited {
                    server: server.to_string(),
                    how,
                    stderr,
                })
            }
            Err(RawCallError::Timeout(after)) => match entry.bad_reply_since(began) {
                Some(problem) => Err(CallError::BadReply {
                    server: server.to_string(),
                    problem,
                }),
                None => Err(CallError::Timeout {
                    tool: qualified.to_string(),
                    after_ms: after.as_millis() as u64,
                }),
            },
            Err(RawCallError::BadReply(problem)) => Err(CallError::BadReply {
                server: server.to_string(),
                problem,
            }),
            Err(RawCallError::Cancelled) => Err(CallError::Cancelled {
                tool: qualified.to_string(),
            }),
            Err(RawCallError::Other(message)) => Err(CallError::Protocol {
                server: server.to_string(),
                message,
            }),
        }
    }
}
