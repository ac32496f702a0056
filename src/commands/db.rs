//! `ppctl db setup|migrate|status|reset --yes|wait|prune --older-than D`.

use super::Failure;
use crate::cli::{DbAction, DbArgs, MigrateOpts};
use crate::config::{database_name, redact_url};
use crate::storage::{self, admin, migrate, prune, replication, stats, works};
use anyhow::{bail, Context};

/// `println!` that ends quietly when stdout's reader has gone (`ppctl db status | head`).
macro_rules! say {
    ($($arg:tt)*) => {
        super::emit(format!("{}\n", format_args!($($arg)*)).as_bytes())?
    };
}

pub async fn run(args: DbArgs) -> anyhow::Result<()> {
    run_action(args).await.map_err(unreachable_is_4)
}

/// A database that cannot be used is exit 4, as for `db wait` and `work --via db`:
/// a server out of reach or not answering, a refused login, a missing database, a
/// connection lost on the way.
fn unreachable_is_4(e: anyhow::Error) -> anyhow::Error {
    // A context (`CannotConnect` is one) is found by `downcast_ref`, not in `chain`.
    let cannot_connect = e.downcast_ref::<admin::CannotConnect>().is_some();
    let down = cannot_connect
        || e.chain().any(|c| {
            c.downcast_ref::<storage::DbError>()
                .is_some_and(storage::DbError::is_unavailable)
                || c.downcast_ref::<tokio_postgres::Error>()
                    .is_some_and(|pg| pg.as_db_error().is_none())
        });
    if down {
        Failure::Unreachable(format!("{e:#}")).into()
    } else {
        e
    }
}

async fn run_action(args: DbArgs) -> anyhow::Result<()> {
    let url = &args.database_url;
    let name = database_name(url)?;
    // The certificate files too, before any retry loop (`db wait`) could take a
    // setting error for an outage.
    storage::PgTarget::parse(url)?;
    match args.action {
        DbAction::Setup(opts) => {
            let created = admin::create_database(url).await?;
            let applied = migrate_now(url, &opts).await?;
            say!(
                "database {name}: {}, {applied} migration(s) applied",
                if created { "created" } else { "exists" }
            );
        }
        DbAction::Migrate(opts) => say!(
            "database {name}: {} migration(s) applied",
            migrate_now(url, &opts).await?
        ),
        DbAction::Status => status(url, &name).await?,
        DbAction::Reset { yes } => {
            if !yes {
                let refusal = format!("refusing to drop database {name} without --yes");
                return Err(Failure::Usage(refusal).into());
            }
            admin::drop_database(url).await?;
            admin::create_database(url).await?;
            say!(
                "database {name}: dropped and recreated, {} migration(s) applied",
                migrate_now(url, &MigrateOpts::default()).await?
            );
        }
        DbAction::Wait { timeout } => {
            let exists = admin::wait(url, timeout)
                .await
                .map_err(|e| Failure::Unreachable(format!("{e:#}")))?;
            if exists {
                say!("database {name} at {} is reachable", redact_url(url));
            } else {
                say!(
                    "server at {} is reachable; database {name} does not exist yet (ppctl db setup creates it)",
                    redact_url(url)
                );
            }
        }
        DbAction::Prune { older_than, yes } => {
            if older_than.is_zero() && !yes {
                let refusal = "--older-than 0 deletes every finished work and the whole \
                               deduplication history: add --yes to do it";
                return Err(Failure::Usage(refusal.into()).into());
            }
            let started = std::time::Instant::now();
            // A bounded connect first: the pool would call a refused login an error (1).
            drop(admin::connect(url).await?);
            let pool = storage::pool(url, 1)?;
            let pruned = prune::prune(&pool, older_than).await?;
            if !pruned.ran {
                bail!("another process is pruning {name} right now; try again later");
            }
            let secs = started.elapsed().as_secs_f64();
            say!(
                "database {name}: pruned {} works finished over {} ago ({secs:.1}s)",
                pruned.works,
                humantime::format_duration(older_than)
            );
        }
    }
    Ok(())
}

/// A second connection names the session a migration waits behind, if it waits. A
/// migration that never got its locks is exit 4: the database is in use, not broken,
/// and a later run can succeed.
async fn migrate_now(url: &str, opts: &MigrateOpts) -> anyhow::Result<usize> {
    let mut client = admin::connect(url).await?;
    let watch = admin::connect(url).await?;
    let policy = migrate::LockPolicy {
        lock_timeout: opts.lock_timeout,
        max_wait: opts.max_wait,
    };
    migrate::run_with(&mut client, migrate::all(), &policy, Some(&watch))
        .await
        .map_err(|e| match e.downcast_ref::<migrate::LockWaitExceeded>() {
            Some(waited) => Failure::Unreachable(waited.to_string()).into(),
            None => e,
        })
}

async fn counts(url: &str) -> anyhow::Result<()> {
    let pool = storage::pool(url, 1)?;
    let pooled = pool.get().await?;
    let counts = works::count_by_status(&pooled).await?;
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    // Counting would read the whole history: the planner's estimate of the stored
    // events (`events` is a view; a queue work's four events, and an API work's
    // work/created, are read from its row).
    let stored_events = stats::estimated_rows(&pooled, "event_log").await?;
    let by_status: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
    say!(
        "  works: {total} ({})",
        if by_status.is_empty() {
            "none".into()
        } else {
            by_status.join(", ")
        }
    );
    say!("  stored events: about {stored_events} (plus those read from work rows: four per queue work, work/created per API work)");
    Ok(())
}

async fn status(url: &str, name: &str) -> anyhow::Result<()> {
    let client = admin::connect(url).await?;
    let applied = migrate::applied(&client)
        .await
        .context("no migrations applied yet: run `ppctl db setup`")?;
    say!("database {name} at {}", redact_url(url));
    for m in migrate::all() {
        let state = match applied.iter().find(|a| a.version == m.version) {
            Some(a) => format!("applied at {}", rfc3339(a.applied_on)),
            None => "pending".to_string(),
        };
        say!("  migration {}: {state} ({})", m.label(), m.compat);
    }
    // Applied by a newer ppctl: this one runs against them only if they are additive.
    for a in applied
        .iter()
        .filter(|a| !migrate::all().iter().any(|m| m.version == a.version))
    {
        let declared = match a.additive {
            Some(true) => "additive: this ppctl keeps working",
            Some(false) => "breaking: upgrade this ppctl",
            None => "declares nothing: upgrade this ppctl",
        };
        say!(
            "  migration {:04}_{}: applied at {}, by a newer ppctl ({declared})",
            a.version,
            a.name,
            rfc3339(a.applied_on)
        );
    }
    let versions: Vec<(i32, Option<bool>)> =
        applied.iter().map(|a| (a.version, a.additive)).collect();
    match migrate::mismatch(&versions, migrate::all()) {
        // The pool below would refuse such a database: say why instead.
        Some(mismatch) => say!("  works: not counted: {mismatch}"),
        None => counts(url).await?,
    }
    let role = storage::role::server_role(&client).await?;
    let replication = replication::status(&client).await?;
    say!(
        "  server: {} ({})",
        role.host,
        if role.writable {
            "primary, takes writes"
        } else {
            "read-only"
        }
    );
    say!("  connection: {}", role.connection());
    for s in &replication.standbys {
        let lag = s
            .replay_lag
            .map_or("unknown".into(), |l| format!("{l:.3}s"));
        say!(
            "  standby {}: {}, {}, replay lag {lag}",
            s.name,
            s.state,
            s.sync_state
        );
    }
    say!("  replication: {}", replication.verdict());
    Ok(())
}

fn rfc3339(unix_seconds: i64) -> humantime::Rfc3339Timestamp {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(at)
}
