//! Passwords out of connection strings, so one can be logged or put in an error
//! message: the URL's `user:password@`, a `password=` (or `sslpassword=`) query
//! parameter, and libpq's keyword form (`host=h password='p w'`).

/// The connection string with every password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", redact_authority_and_query(rest)),
        None => redact_keywords(url),
    }
}

fn redact_authority_and_query(rest: &str) -> String {
    // The userinfo ends at the last '@' before the query: a password typed with a '/',
    // ':' or '@' unencoded is still hidden (an '@' in the path hides the host too, which
    // errs the safe way).
    let query_start = rest.find(['?', '#']).unwrap_or(rest.len());
    let (head, tail) = rest.split_at(query_start);
    let head = match head.rfind('@') {
        Some(at) => match head[..at].split_once(':') {
            Some((user, _)) => format!("{user}:***{}", &head[at..]),
            None => head.to_string(),
        },
        None => head.to_string(),
    };
    let Some((path, query)) = tail.split_once('?') else {
        return head + tail;
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if is_password_key(key) => format!("{key}=***"),
            _ => param.to_string(),
        })
        .collect();
    format!("{head}{path}?{}", params.join("&"))
}

fn is_password_key(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    // A percent-encoded key is still the key to libpq.
    let key = key.replace("%77", "w").replace("%64", "d");
    key == "password" || key == "sslpassword"
}

/// libpq's `key=value` form: values are bare words or single-quoted with `\'` and
/// `\\` escapes; spaces may surround the `=`.
fn redact_keywords(conninfo: &str) -> String {
    let mut out = String::with_capacity(conninfo.len());
    let mut rest = conninfo;
    while let Some(eq) = rest.find('=') {
        let (before, after) = rest.split_at(eq);
        let key = before
            .trim_end()
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or_default();
        out.push_str(before);
        out.push('=');
        let after = &after[1..];
        let value_start = after.len() - after.trim_start().len();
        let value = &after[value_start..];
        let value_len = keyword_value_len(value);
        out.push_str(&after[..value_start]);
        if is_password_key(key) {
            out.push_str("***");
        } else {
            out.push_str(&value[..value_len]);
        }
        rest = &value[value_len..];
    }
    out.push_str(rest);
    out
}

/// The length of the value at the start of `s`, quotes included.
fn keyword_value_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    if s.starts_with('\'') {
        chars.next();
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '\'') => return i + 1,
                _ => {}
            }
        }
        s.len()
    } else {
        s.find(char::is_whitespace).unwrap_or(s.len())
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn every_libpq_form_loses_its_password() {
        let cases = [
            (
                "postgres://postgres:hunter2@127.0.0.1:5432/pp",
                "postgres://postgres:***@127.0.0.1:5432/pp",
            ),
            (
                "postgresql://u:hunter2@h1:5432,h2:5433/pp",
                "postgresql://u:***@h1:5432,h2:5433/pp",
            ),
            ("amqp://u:hun@ter2@h/v", "amqp://u:***@h/v"),
            ("postgres://u:hun/ter:2@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:hunter2@h?sslmode=disable",
                "postgres://u:***@h?sslmode=disable",
            ),
            (
                "postgres://postgres@127.0.0.1:5999/x?password=hunter2",
                "postgres://postgres@127.0.0.1:5999/x?password=***",
            ),
            (
                "postgres://h/x?sslmode=require&PASSWORD=hunter2&sslpassword=hunter2",
                "postgres://h/x?sslmode=require&PASSWORD=***&sslpassword=***",
            ),
            (
                "postgres://h/x?pass%77ord=hunter2",
                "postgres://h/x?pass%77ord=***",
            ),
            (
                "host=h password=hunter2 dbname=x",
                "host=h password=*** dbname=x",
            ),
            ("host=h password = hunter2", "host=h password = ***"),
            ("password='hun ter\\'2' host=h", "password=*** host=h"),
            ("host=h sslpassword=hunter2", "host=h sslpassword=***"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("no password here", "no password here"),
        ];
        for (given, redacted) in cases {
            assert_eq!(redact_url(given), redacted, "{given}");
            assert!(
                !redact_url(given).contains("hunter2") && !redact_url(given).contains("ter"),
                "{given}"
            );
        }
    }
}
