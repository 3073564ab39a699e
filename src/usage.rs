//! What model calls cost, and whether another one is allowed. Prices are
//! per model, per million tokens; budgets cap a session and a UTC day, in
//! dollars, tokens or both.

use std::collections::BTreeMap;

use crate::config::{LlmBudget, ModelPrice};
use crate::session::{Spend, usd};

/// The cost of one call, when the model has a price. A model is priced by
/// its exact name, else by the longest price-table name it starts with
/// (`gpt-4o-mini-2024-07-18` uses `gpt-4o-mini`).
pub fn cost(
    prices: &BTreeMap<String, ModelPrice>,
    model: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> Option<f64> {
    let price = prices.get(model).or_else(|| {
        prices
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, p)| p)
    })?;
    Some(
        (prompt_tokens as f64 * price.input_per_mtok
            + completion_tokens as f64 * price.output_per_mtok)
            / 1_000_000.0,
    )
}

/// Refuse a call once a limit is reached, saying which and what to do.
pub fn check(budget: &LlmBudget, session: &Spend, day: &Spend) -> Result<(), String> {
    let over = |what: &str, key: &str, spent: String, limit: String| {
        Err(format!(
            "LLM budget reached: {what} has used {spent} of its {limit} limit ([llm.budget] {key}), so no further model calls are made. \
             Raise the limit in the config, or use a runbook request"
        ))
    };
    if let Some(limit) = budget.session_usd
        && session.cost_usd >= limit
    {
        return over(
            "this session",
            "session_usd",
            usd(session.cost_usd),
            usd(limit),
        );
    }
    if let Some(limit) = budget.session_tokens
        && session.tokens() >= limit
    {
        return over(
            "this session",
            "session_tokens",
            format!("{} tokens", session.tokens()),
            format!("{limit}-token"),
        );
    }
    if let Some(limit) = budget.day_usd
        && day.cost_usd >= limit
    {
        return over("today (UTC)", "day_usd", usd(day.cost_usd), usd(limit));
    }
    if let Some(limit) = budget.day_tokens
        && day.tokens() >= limit
    {
        return over(
            "today (UTC)",
            "day_tokens",
            format!("{} tokens", day.tokens()),
            format!("{limit}-token"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> BTreeMap<String, ModelPrice> {
        BTreeMap::from([
            (
                "gpt-4o".to_string(),
                ModelPrice {
                    input_per_mtok: 2.5,
                    output_per_mtok: 10.0,
                },
            ),
            (
                "gpt-4o-mini".to_string(),
                ModelPrice {
                    input_per_mtok: 0.15,
                    output_per_mtok: 0.6,
                },
            ),
        ])
    }

    #[test]
    fn cost_uses_the_exact_name_then_the_longest_prefix() {
        let p = prices();
        assert_eq!(cost(&p, "gpt-4o", 1_000_000, 0), Some(2.5));
        let dated = cost(&p, "gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000);
        assert!(dated.is_some_and(|c| (c - 0.75).abs() < 1e-9), "{dated:?}");
        assert_eq!(cost(&p, "llama3.1", 500, 500), None);
    }

    #[test]
    fn each_limit_refuses_once_reached_and_names_itself() {
        let spent = |cost_usd, tokens| Spend {
            calls: 1,
            prompt_tokens: tokens,
            completion_tokens: 0,
            cost_usd,
        };
        let budget = LlmBudget {
            session_usd: Some(1.0),
            day_usd: Some(5.0),
            session_tokens: Some(10_000),
            day_tokens: Some(50_000),
        };
        assert!(check(&budget, &spent(0.5, 100), &spent(4.0, 100)).is_ok());
        let e = check(&budget, &spent(1.0, 100), &spent(1.0, 100)).unwrap_err();
        assert!(e.contains("session_usd") && e.contains("$1.00"), "{e}");
        let e = check(&budget, &spent(0.1, 10_000), &spent(0.1, 10_000)).unwrap_err();
        assert!(e.contains("session_tokens"), "{e}");
        let e = check(&budget, &spent(0.1, 1), &spent(5.5, 1)).unwrap_err();
        assert!(e.contains("today (UTC)") && e.contains("day_usd"), "{e}");
        let e = check(&budget, &spent(0.1, 1), &spent(0.1, 60_000)).unwrap_err();
        assert!(e.contains("day_tokens"), "{e}");
        assert!(
            check(
                &LlmBudget::default(),
                &spent(1e9, 1 << 40),
                &spent(1e9, 1 << 40)
            )
            .is_ok()
        );
    }
}
