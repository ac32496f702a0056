#!/usr/bin/env bash
# Lint migrations with squawk (installed on first use by scripts/services.sh squawk),
# under the repository's .squawk.toml: the unsafe operations that would hold a table
# while the application waits (an index built without CONCURRENTLY, a column whose
# default rewrites the table, a constraint validated under lock, ...).
#
#   scripts/lint-sql.sh               every migration in sql/ (make test, make lint-sql)
#   scripts/lint-sql.sh FILE...       these files, with the same rules (a new migration)
#
# Exits 0 when squawk finds nothing, 1 when it reports an issue.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
squawk=$("$root/scripts/services.sh" squawk)
files=("$@")
if ((${#files[@]} == 0)); then
    cd "$root" # .squawk.toml's excluded_paths are relative to the repository
    files=(sql/*.sql)
fi
exec "$squawk" --config "$root/.squawk.toml" "${files[@]}"
