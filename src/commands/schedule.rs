//! `ppctl schedule add|list|remove`, in the database.

use super::{emit, table, Failure};
use crate::cli::schedule::{ScheduleAction, ScheduleArgs};
use crate::config::redact_url;
use crate::schedule::When;
use crate::storage::schedules::{self, Schedule};
use anyhow::bail;

pub async fn run(args: ScheduleArgs) -> anyhow::Result<()> {
    let pool = crate::storage::pool(&args.database_url, 1)?;
    let client = pool.get().await.map_err(|e| {
        Failure::Unreachable(format!(
            "cannot reach the database at {}: {e}",
            redact_url(&args.database_url)
        ))
    })?;
    let shown: Vec<Schedule> = match args.action {
        ScheduleAction::Add {
            name,
            every,
            cron,
            add_up_to,
        } => {
            let when = match (every, cron) {
                (Some(d), _) => When::Every(d),
                (None, Some(c)) => When::Cron(c),
                (None, None) => bail!("give --every or --cron"),
            };
            match schedules::add(&client, &name, &when, add_up_to as i64).await? {
                Some(added) => vec![added],
                None => bail!("schedule {name} exists already (remove it first)"),
            }
        }
        ScheduleAction::List => schedules::list(&client).await?,
        ScheduleAction::Remove { name } => {
            if schedules::remove(&client, &name).await?.is_none() {
                return Err(Failure::NotFound(format!("schedule {name} not found")).into());
            }
            return emit(format!("removed schedule {name}\n").as_bytes());
        }
    };
    let out = match args.json {
        true => serde_json::to_string_pretty(&shown)? + "\n",
        false => table::schedules(&shown),
    };
    emit(out.as_bytes())
}
