//! The last resort of `dead purge --unreadable`: a readable dead letter taken off the
//! queue by mistake that could not be published back is written to a file, from which an
//! operator can publish it again, rather than living on only as text in an error.

use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes the message to `ppctl-rescued-<queue>-<ms>-<pid>.json` in the current
/// directory, or in the temporary one when the current one cannot be written. The body
/// is kept as text when it is UTF-8, else as hex; the properties as ppctl prints them.
pub fn save(
    queue: &str,
    message_id: Option<&str>,
    properties: &lapin::BasicProperties,
    body: &[u8],
) -> std::io::Result<PathBuf> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let safe: String = queue
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    let name = format!("ppctl-rescued-{safe}-{millis}-{}.json", std::process::id());
    let mut record = json!({
        "queue": queue,
        "message_id": message_id,
        "properties": format!("{properties:?}"),
    });
    match std::str::from_utf8(body) {
        Ok(text) => record["body"] = json!(text),
        Err(_) => {
            let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
            record["body_hex"] = json!(hex);
        }
    }
    let bytes = serde_json::to_vec_pretty(&record)?;
    write_new(Path::new(&name), &bytes)
        .or_else(|_| write_new(&std::env::temp_dir().join(&name), &bytes))
}

/// Creates `path` (never overwriting) with `bytes`, flushed to disk; returns it absolute.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}
