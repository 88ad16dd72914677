//! Datasets from production traces: each archived trace picked becomes an item whose
//! recorded trace can be replayed, whose first user message can be run live again, and
//! whose expectations are what the trace recorded (a dataset's expected actions and
//! reward, as the tau-bench importer keeps them).

use agentwire_scoring::{TraceView, ViewOptions};
use agentwire_trace::{ObjectKey, TraceArchive, decode_jsonl_gz};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::dataset::{ExpectedCall, InputMessage, Item, MAX_ITEMS, MAX_NAME_LEN, validate_name};
use crate::runner::EvalError;
use crate::store::StoreError;

/// Which traces to pick: all conditions hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pick {
    /// Sessions whose name matches this pattern (`*` within a name: `tau-*`).
    #[serde(default)]
    pub sessions: Option<String>,
    /// Exactly these sessions.
    #[serde(default)]
    pub session_names: Vec<String>,
    /// Archived on these UTC days (`YYYY-MM-DD`); every day when empty.
    #[serde(default)]
    pub days: Vec<String>,
    /// The traces of this annotation queue's grades; the graders' answers become each
    /// item's `expected.labels` (resolved by the API into `session_names` and `labels`).
    #[serde(default)]
    pub queue: Option<String>,
    /// The traces whose score records match (resolved by the API into `session_names`).
    #[serde(default)]
    pub scores: Option<ScorePick>,
    /// Expected labels by session, set by whoever resolved a queue.
    #[serde(skip)]
    pub labels: std::collections::HashMap<String, serde_json::Map<String, Value>>,
}

/// A score filter picking traces: all given conditions hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorePick {
    pub name: Option<String>,
    pub label: Option<String>,
    pub max_value: Option<f64>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// At most this many records are read (default and cap 1000).
    pub limit: Option<usize>,
}

/// The graders' answers to one trace as expected labels: per criterion, the value most of
/// them gave (ties to the first given), as a string.
pub fn labels_of(
    answers: &[&std::collections::BTreeMap<String, String>],
) -> serde_json::Map<String, Value> {
    let mut counts: std::collections::BTreeMap<&str, Vec<(&str, usize)>> = Default::default();
    for grade in answers {
        for (criterion, value) in grade.iter() {
            let values = counts.entry(criterion).or_default();
            match values.iter_mut().find(|(v, _)| v == value) {
                Some((_, n)) => *n += 1,
                None => values.push((value, 1)),
            }
        }
    }
    counts
        .into_iter()
        .filter_map(|(criterion, values)| {
            let best = values.iter().map(|(_, n)| *n).max()?;
            let (value, _) = values.iter().find(|(_, n)| *n == best)?;
            Some((criterion.to_owned(), Value::String((*value).to_owned())))
        })
        .collect()
}

/// The items of the tenant's archived traces that `pick` selects, in key order; an error
/// names what is wrong with the pick, or the trace that cannot be read.
pub async fn items_from_traces(
    archive: &dyn TraceArchive,
    tenant: &str,
    pick: &Pick,
) -> Result<Vec<Item>, EvalError> {
    let invalid = |m: String| EvalError::Invalid(m);
    let storage = |e: agentwire_trace::ArchiveError| EvalError::Store(StoreError::Storage(e.0));
    if pick.sessions.is_none() && pick.session_names.is_empty() {
        return Err(invalid(match (&pick.queue, &pick.scores) {
            (Some(queue), _) => format!("queue {queue:?} has no graded traces"),
            (None, Some(_)) => "no score record matches the filter".into(),
            (None, None) => {
                "pick traces by sessions (a pattern), session_names, queue or scores".into()
            }
        }));
    }
    let prefixes: Vec<String> = if pick.days.is_empty() {
        vec!["traces/".into()]
    } else {
        pick.days
            .iter()
            .map(|d| format!("traces/dt={d}/"))
            .collect()
    };
    let mut items: Vec<Item> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for prefix in prefixes {
        let keys = archive.list(&prefix).await.map_err(storage)?;
        for key in keys {
            let Some(parsed) = ObjectKey::parse(&key) else {
                continue;
            };
            let wanted = parsed.tenant == tenant
                && (pick.session_names.contains(&parsed.session)
                    || pick
                        .sessions
                        .as_deref()
                        .is_some_and(|p| agentwire_dispatch::glob::matches(p, &parsed.session)));
            if !wanted {
                continue;
            }
            let body = archive
                .get(&key)
                .await
                .map_err(storage)?
                .ok_or_else(|| invalid(format!("{key}: gone while read")))?;
            let spans = decode_jsonl_gz(&body)
                .map_err(|_| invalid(format!("{key}: not an archived trace")))?;
            let view = TraceView::from_spans(&spans, &ViewOptions::default())
                .map_err(|e| invalid(format!("{key}: {e}")))?;
            let mut item = item_of(&key, &parsed.session, &view, &mut ids);
            if let Some(labels) = pick.labels.get(&parsed.session) {
                item.expected.labels = labels.clone();
            }
            items.push(item);
            if items.len() > MAX_ITEMS {
                return Err(invalid(format!(
                    "the pick holds more than {MAX_ITEMS} traces"
                )));
            }
        }
    }
    if items.is_empty() {
        return Err(invalid(
            "no archived trace of the tenant matches the pick".into(),
        ));
    }
    Ok(items)
}

/// An item id from a session name: its characters outside `A-Z a-z 0-9 . _ -` as `-`,
/// at most 57 of them, made unique with a `-<n>` suffix.
fn id_of(session: &str, ids: &mut std::collections::HashSet<String>) -> String {
    let mut base: String = session
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        // Room for a `-<n>` suffix of up to six digits.
        .take(MAX_NAME_LEN - 7)
        .collect();
    if base.is_empty() || base.starts_with('.') || validate_name("id", &base).is_err() {
        base = format!("s{base}");
    }
    let mut id = base.clone();
    let mut n = 1;
    while !ids.insert(id.clone()) {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}

fn item_of(
    key: &str,
    session: &str,
    view: &TraceView,
    ids: &mut std::collections::HashSet<String>,
) -> Item {
    let input: Vec<InputMessage> = view
        .messages
        .iter()
        .find(|m| m.role == "user" && !m.text.trim().is_empty())
        .map(|m| {
            vec![InputMessage {
                role: "user".into(),
                content: m.text.clone(),
            }]
        })
        .unwrap_or_default();
    let mut item = Item {
        id: id_of(session, ids),
        input,
        expected: Default::default(),
        context: Vec::new(),
        tags: Vec::new(),
        metadata: Default::default(),
        trace: Some(key.to_owned()),
    };
    item.expected.actions = view.expected_actions.as_ref().map(|actions| {
        actions
            .iter()
            .map(|a| ExpectedCall {
                name: a.name.clone(),
                arguments: a.arguments.clone(),
            })
            .collect()
    });
    if let Some(reward) = view.dataset_reward {
        item.metadata.insert("reward".into(), json!(reward));
    }
    item.metadata
        .insert("session".into(), Value::String(session.to_owned()));
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graders_majority_answer_is_the_expected_label() {
        let grade = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (a, b, c) = (
            grade(&[("grounded", "fail"), ("tone", "curt")]),
            grade(&[("grounded", "pass"), ("tone", "neutral")]),
            grade(&[("grounded", "pass")]),
        );
        let labels = labels_of(&[&a, &b, &c]);
        assert_eq!(labels["grounded"], "pass");
        assert_eq!(
            labels["tone"], "curt",
            "a tie goes to the first answer given"
        );
        assert!(labels_of(&[]).is_empty());
    }

    #[test]
    fn session_names_become_valid_unique_item_ids() {
        let mut ids = std::collections::HashSet::new();
        assert_eq!(id_of("tau-5-0", &mut ids), "tau-5-0");
        assert_eq!(id_of("chat/a b", &mut ids), "chat-a-b");
        assert_eq!(id_of("chat-a-b", &mut ids), "chat-a-b-2");
        assert_eq!(id_of(".hidden", &mut ids), "s.hidden");
        assert!(id_of(&"x".repeat(200), &mut ids).len() <= MAX_NAME_LEN);
    }
}
