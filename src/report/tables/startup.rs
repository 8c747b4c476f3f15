//! A managed server's start-up per configuration.

use super::*;

/// A managed server's start-up per configuration (vLLM's `bench sweep startup`): starts,
/// spawn → healthy and spawn → first token (median and range over the starts), what the
/// server reported, and any value other than the one asked for. `None` without `[server]`.
pub fn startup_table(events: &[crate::server::ServerEvent]) -> Option<Table> {
    use crate::server::ServerEvent;
    struct Acc {
        starts: usize,
        restarts_after_exit: usize,
        healthy: Vec<f64>,
        first: Vec<f64>,
        version: Option<String>,
        reported: String,
        mismatches: Vec<String>,
    }
    let mut by: BTreeMap<String, Acc> = BTreeMap::new();
    for e in events {
        let ServerEvent::Start {
            config,
            reason,
            healthy_ms,
            first_token_ms,
            reported,
            mismatches,
            ..
        } = e
        else {
            continue;
        };
        let a = by.entry(config.clone()).or_insert(Acc {
            starts: 0,
            restarts_after_exit: 0,
            healthy: Vec::new(),
            first: Vec::new(),
            version: None,
            reported: String::new(),
            mismatches: Vec::new(),
        });
        a.starts += 1;
        if reason.starts_with("restart after exit") {
            a.restarts_after_exit += 1;
        }
        a.healthy.push(*healthy_ms);
        a.first.extend(*first_token_ms);
        a.version = reported.version.clone().or(a.version.take());
        let mut said = Vec::new();
        if let Some(n) = reported.n_ctx {
            said.push(format!("n_ctx {n}"));
        }
        if let Some(n) = reported.slots {
            said.push(format!("slots {n}"));
        }
        if let Some(f) = reported.flash_attn {
            said.push(format!("fa {}", if f { "on" } else { "off" }));
        }
        if let Some(k) = &reported.kv_cache_type {
            said.push(format!("K {k}"));
        }
        a.reported = said.join(", ");
        for m in mismatches {
            if !a.mismatches.contains(m) {
                a.mismatches.push(m.clone());
            }
        }
    }
    if by.is_empty() {
        return None;
    }
    let span = |v: &[f64]| -> String {
        if v.is_empty() {
            return "n/a".into();
        }
        let median = crate::stats::summarize(v)
            .map(|s| s.median)
            .unwrap_or(f64::NAN);
        let (lo, hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                (l.min(*x), h.max(*x))
            });
        if v.len() == 1 {
            format!("{median:.0}")
        } else {
            format!("{median:.0} ({lo:.0}–{hi:.0})")
        }
    };
    let columns = vec![
        Column::text("server configuration"),
        Column::text("starts"),
        Column::text("spawn → healthy (ms)"),
        Column::text("spawn → first token (ms)"),
        Column::text("server reports"),
        Column::text("differs from asked"),
    ];
    let mut versions: Vec<String> = by.values().filter_map(|a| a.version.clone()).collect();
    versions.sort();
    versions.dedup();
    let rows = by
        .into_iter()
        .map(|(config, a)| Row {
            cells: vec![
                Cell::text(if config.is_empty() {
                    "defaults".to_string()
                } else {
                    config.replace(',', ", ")
                }),
                Cell::text(if a.restarts_after_exit > 0 {
                    format!("{} ({} after an exit)", a.starts, a.restarts_after_exit)
                } else {
                    a.starts.to_string()
                }),
                Cell::text(span(&a.healthy)),
                Cell::text(span(&a.first)),
                Cell::text(if a.reported.is_empty() {
                    "n/a".to_string()
                } else {
                    a.reported
                }),
                Cell::text(if a.mismatches.is_empty() {
                    "no".to_string()
                } else {
                    a.mismatches.join("; ")
                }),
            ],
            rule_above: false,
        })
        .collect();
    Some(Table {
        name: "server_startup".into(),
        caption: "Server start-up per server configuration".into(),
        label: "tab:server_startup".into(),
        columns,
        rows,
        notes: vec![format!(
            "Entries: median (min–max) over the starts of the run; first token: a one-token \
                 request sent once healthy (it includes the model load where the server loads \
                 lazily). Server reports: its own /props (llama-server), /api/ps (Ollama) or \
                 /v1/models (vLLM) and its log; version {}.",
            if versions.is_empty() {
                "not reported".to_string()
            } else {
                versions.join(", ")
            }
        )],
    })
}
