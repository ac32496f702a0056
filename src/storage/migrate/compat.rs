//! Whether this binary may use a database with these migrations applied. A database
//! ahead of the binary by additive migrations only is used as it is (the binary was
//! built before them and they promise it keeps working: expand/contract); a database
//! behind the binary waits for `ppctl db migrate`; anything else is refused.

use super::Migration;

/// The applied migrations as the check of each new connection reads them: their
/// versions, and what each declared (`additive`, NULL when undeclared), in the same
/// order. `to_jsonb(s)` reads the column whether or not 0009 has added it yet, so a
/// binary newer than the database asks the same question of an older schema.
pub const APPLIED_SQL: &str =
    "(SELECT coalesce(array_agg(version ORDER BY version), '{}') FROM schema_migrations), \
     (SELECT coalesce(array_agg((to_jsonb(s) ->> 'additive')::boolean ORDER BY version), '{}') \
        FROM schema_migrations s)";

/// How the database's migrations stand against this binary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// The same migrations.
    Exact,
    /// The database also has these, which this binary lacks, all declared additive: it
    /// keeps working (the rolling upgrade's middle: migrated, not yet rolled).
    AheadAdditive(Vec<i32>),
    /// Migrations of this binary not applied yet (`NNNN_name`): it waits for
    /// `ppctl db migrate`, checking again on each new connection.
    Behind(Vec<String>),
    /// The database has this migration, which this binary lacks and which is breaking
    /// or declares nothing (applied before 0009): the binary must be replaced.
    AheadBreaking(i32),
}

/// `applied`: `(version, additive)` of every applied migration.
pub fn fit(applied: &[(i32, Option<bool>)], known: &[Migration]) -> Fit {
    let is_known = |v: i32| known.iter().any(|m| m.version == v);
    let unknown: Vec<(i32, Option<bool>)> = applied
        .iter()
        .copied()
        .filter(|(v, _)| !is_known(*v))
        .collect();
    if let Some((v, _)) = unknown.iter().find(|(_, additive)| *additive != Some(true)) {
        return Fit::AheadBreaking(*v);
    }
    let pending: Vec<String> = known
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .map(Migration::label)
        .collect();
    if !pending.is_empty() {
        return Fit::Behind(pending);
    }
    match unknown.is_empty() {
        true => Fit::Exact,
        false => Fit::AheadAdditive(unknown.iter().map(|(v, _)| *v).collect()),
    }
}

impl Fit {
    /// Why this binary must not use the database now, if it must not.
    pub fn refusal(&self) -> Option<String> {
        match self {
            Fit::Exact | Fit::AheadAdditive(_) => None,
            Fit::Behind(pending) => Some(format!(
                "migrations not applied: {}; run `ppctl db migrate` (or `ppctl db setup`): this ppctl \
                 is newer than the database and waits for them, checking again on each new connection",
                pending.join(", ")
            )),
            Fit::AheadBreaking(v) => Some(format!(
                "the database has migration {v:04}, which this ppctl does not know (it was built \
                 before it) and which is not declared additive: upgrade ppctl"
            )),
        }
    }
}

/// Why this binary must not use a database with these migrations applied, if it must not.
pub fn mismatch(applied: &[(i32, Option<bool>)], known: &[Migration]) -> Option<String> {
    fit(applied, known).refusal()
}

#[cfg(test)]
mod tests {
    use super::super::{Compat, MIGRATIONS};
    use super::*;

    fn applied(versions: &[i32], additive: Option<bool>) -> Vec<(i32, Option<bool>)> {
        versions.iter().map(|v| (*v, additive)).collect()
    }

    #[test]
    fn a_database_ahead_by_additive_migrations_only_is_admitted() {
        let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(fit(&applied(&all, None), MIGRATIONS), Fit::Exact);
        let mut ahead = applied(&all, None);
        ahead.push((9998, Some(true)));
        assert_eq!(mismatch(&ahead, MIGRATIONS), None);
        ahead.push((9999, Some(false)));
        let breaking = mismatch(&ahead, MIGRATIONS).unwrap_or_default();
        assert!(breaking.contains("upgrade ppctl"), "{breaking}");
        // Undeclared (applied before 0009 existed): breaking.
        let undeclared = [applied(&all, None), vec![(9999, None)]].concat();
        assert_eq!(fit(&undeclared, MIGRATIONS), Fit::AheadBreaking(9999));
    }

    #[test]
    fn a_binary_ahead_of_the_database_waits_for_the_migration() {
        let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let behind = applied(&all[..all.len() - 1], None);
        let why = mismatch(&behind, MIGRATIONS).unwrap_or_default();
        assert!(why.contains("ppctl db migrate"), "{why}");
        assert!(matches!(fit(&behind, MIGRATIONS), Fit::Behind(p) if p.len() == 1));
        assert_eq!(MIGRATIONS[MIGRATIONS.len() - 1].compat, Compat::Additive);
    }
}
