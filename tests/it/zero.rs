//! One meaning of zero (issue 17 item 6): `0` is a length of zero everywhere, and where
//! that would destroy data or break leases it is refused with one line (exit 2), or for
//! `db prune --older-than 0` done only with `--yes`.

use super::helpers::*;
use super::retention::history;

/// Exit code and the stderr line that says why (clap adds its `--help` hint below it).
async fn refusal(args: &[&str]) -> (Option<i32>, String) {
    let output = ppctl(args).await;
    let (_, stderr) = outputs(&output);
    let why = stderr.lines().next().unwrap_or_default().to_string();
    (output.status.code(), why)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_refuses_a_zero_retain_sweep_window_or_lease() {
    for (flag, value, why) in [
        ("--retain", "0", "forever"),
        ("--sweep-window", "0", "expire every pending API work"),
        ("--lease", "0", "take each other's works"),
        ("--lease", "200ms", "take each other's works"),
    ] {
        // Refused before any connection: no database or broker is needed to see it.
        let (code, line) = refusal(&["consume", flag, value]).await;
        assert_eq!(code, Some(2), "{flag} {value}: {line}");
        assert!(line.starts_with("error:"), "{flag} {value}: {line}");
        assert!(line.contains(why), "{flag} {value}: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_prune_older_than_0_needs_yes() {
    let db = TestDb::new().await;
    history(&db).await;
    let prune = [
        "db",
        "prune",
        "--older-than",
        "0",
        "--database-url",
        &db.url,
    ];
    let (code, line) = refusal(&prune).await;
    assert_eq!(code, Some(2), "{line}");
    assert!(line.contains("add --yes"), "{line}");
    assert_eq!(db.count("SELECT count(*) FROM works").await, 12);

    let output = ppctl(&[&prune[..], &["--yes"]].concat()).await;
    let (stdout, stderr) = outputs(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("pruned 11 works finished"), "{stdout}");
    let left = "SELECT count(*) FROM works WHERE status = 'pending'";
    assert_eq!(db.count(left).await, 1, "only the pending work is left");
    assert_eq!(db.count("SELECT count(*) FROM works").await, 1);
}
