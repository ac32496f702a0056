//! Aligned text tables for the CLI's human output.

use crate::model::{Event, Work};
use std::time::{Duration, UNIX_EPOCH};

pub(super) fn time(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The text with every control character (C0, DEL, C1) and bidirectional override
/// written as an escape (`\u{1b}`, `\n`): a message id or a reason comes from whoever
/// published, and must not move an operator's cursor, recolour the terminal or set its
/// title.
pub fn printable(text: &str) -> String {
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || bidi(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Left-aligns every column to its widest cell; every cell is made `printable`.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| row.iter().map(|cell| printable(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn works(works: &[Work]) -> String {
    let rows = works
        .iter()
        .map(|w| {
            let result = w.result.map_or_else(|| "-".to_string(), |r| r.to_string());
            vec![
                w.id.to_string(),
                w.work_code.clone(),
                w.add_up_to.to_string(),
                w.status.to_string(),
                result,
                time(w.created_on),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "WORK_CODE",
            "ADD_UP_TO",
            "STATUS",
            "RESULT",
            "CREATED_ON",
        ],
        rows,
    )
}

pub fn work(work: &Work) -> String {
    works(std::slice::from_ref(work))
}

pub fn schedules(list: &[crate::storage::schedules::Schedule]) -> String {
    let slot = |t: Option<i64>| t.map_or_else(|| "-".to_string(), time);
    let rows = list
        .iter()
        .map(|s| {
            let when = match (&s.every_secs, &s.cron) {
                (Some(secs), _) => format!("every {secs}s"),
                (None, Some(cron)) => format!("cron {cron}"),
                _ => "-".into(),
            };
            let n = s.add_up_to.to_string();
            vec![
                s.name.clone(),
                when,
                n,
                slot(s.last_slot),
                slot(s.next_slot),
            ]
        })
        .collect();
    table(
        &["NAME", "WHEN (UTC)", "ADD_UP_TO", "LAST_SLOT", "NEXT_SLOT"],
        rows,
    )
}

pub fn events(events: &[Event]) -> String {
    let rows = events
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.variable.clone(),
                e.value.clone().unwrap_or_default(),
                time(e.created_on),
            ]
        })
        .collect();
    table(&["ID", "VARIABLE", "VALUE", "CREATED_ON"], rows)
}

/// Dead letters in queue order, an unreadable one as a row at its position.
pub fn dead_letters(listing: &crate::amqp::dead::Listing) -> String {
    let mut rows: Vec<(u64, Vec<String>)> = listing
        .dead_letters
        .iter()
        .map(|d| {
            let row = vec![
                d.position.to_string(),
                d.message_id.clone().unwrap_or_else(|| "-".into()),
                d.dead_at.map_or_else(|| "-".into(), time),
                d.size.to_string(),
                d.reason.clone(),
                d.preview.clone(),
            ];
            (d.position, row)
        })
        .collect();
    for u in &listing.unreadable {
        let cells = [
            "(unreadable)",
            "-",
            "-",
            "cannot be parsed by the client",
            "-",
        ];
        let row = std::iter::once(u.position.to_string())
            .chain(cells.iter().map(|c| c.to_string()))
            .collect();
        rows.push((u.position, row));
    }
    rows.sort_by_key(|(position, _)| *position);
    let rows = rows.into_iter().map(|(_, row)| row).collect();
    table(
        &["POS", "MESSAGE_ID", "DEAD_AT", "SIZE", "REASON", "PREVIEW"],
        rows,
    )
}

/// A bulk action's outcome, as one sentence.
pub fn bulk(o: &crate::storage::bulk::BulkOutcome) -> String {
    let more = if o.more {
        "; more match: run it again"
    } else {
        ""
    };
    if o.dry_run {
        format!(
            "{}: {} works would change (dry run, at most {}){more}\n",
            o.action, o.matched, o.max
        )
    } else {
        format!(
            "{}: {} works changed (at most {}){more}\n",
            o.action, o.changed, o.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WorkStatus;

    #[test]
    fn columns_line_up() {
        let w = Work {
            id: 21,
            work_code: "api-bjq8euwsEA".into(),
            add_up_to: 4,
            done: true,
            status: WorkStatus::Done,
            result: Some(10),
            created_on: 1634115736,
            updated_on: 1634115736,
            run_at: None,
            trace_id: None,
            trace_url: None,
        };
        let text = works(&[w]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("STATUS"), lines[1].find("done"));
        assert!(lines[1].contains("2021-10-13T09:02:16Z"));
    }

    #[test]
    fn control_characters_are_escaped_in_every_cell() {
        let listing = crate::amqp::dead::Listing {
            queue: "q.dead".into(),
            count: 1,
            dead_letters: vec![crate::amqp::dead::DeadLetter {
                position: 0,
                message_id: Some("id\u{1b}]0;pwned\u{7}".into()),
                reason: "bad\u{1b}[2J\r\u{9b}31m\u{202e}".into(),
                dead_at: None,
                size: 3,
                preview: "x\ny".into(),
            }],
            unreadable: vec![],
            behind_unreadable: 0,
        };
        let text = dead_letters(&listing);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), 2, "{text:?}");
        assert!(text.contains(r"id\u{1b}]0;pwned\u{7}"), "{text}");
        assert!(text.contains(r"bad\u{1b}[2J\r\u{9b}31m\u{202e}"), "{text}");
        assert!(text.contains(r"x\ny"), "{text}");
    }
}
