//! Test-only migrations, so that this binary can stand in for a NEWER ppctl in an
//! upgrade test: in debug builds only, `PP_TEST_EXTRA_MIGRATIONS` names a directory of
//! `NNNN_name.sql` files appended to the compiled list, applied and recorded by the
//! real `db migrate`, and checked by the real schema check. A file whose first line is
//! `-- compat: additive` is declared additive; any other, breaking. Release builds
//! ignore the variable: no production binary can be told to run outside SQL.

use super::Migration;

/// The extra migrations (none in release builds, or without the variable).
pub fn load() -> Vec<Migration> {
    #[cfg(debug_assertions)]
    if let Some(dir) = std::env::var_os("PP_TEST_EXTRA_MIGRATIONS") {
        return match read(std::path::Path::new(&dir)) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "PP_TEST_EXTRA_MIGRATIONS: not read");
                Vec::new()
            }
        };
    }
    Vec::new()
}

#[cfg(debug_assertions)]
fn read(dir: &std::path::Path) -> std::io::Result<Vec<Migration>> {
    use super::Compat;
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    paths.sort();
    let mut found = Vec::new();
    for path in paths {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let Some((number, name)) = stem.split_once('_') else {
            continue;
        };
        let Ok(version) = number.parse::<i32>() else {
            continue;
        };
        let sql = std::fs::read_to_string(&path)?;
        let compat = match sql.lines().next() {
            Some("-- compat: additive") => Compat::Additive,
            _ => Compat::Breaking,
        };
        // Once per process (`all()` caches the list): leaking gives the &'static the
        // compiled migrations have.
        found.push(Migration {
            version,
            name: Box::leak(name.to_string().into_boxed_str()),
            sql: Box::leak(sql.into_boxed_str()),
            compat,
        });
    }
    Ok(found)
}
