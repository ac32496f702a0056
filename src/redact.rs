//! Passwords out of connection strings, so one can be logged or put in an error
//! message: the URL's `user:password@`, a `password=` (or `sslpassword=`) query
//! parameter, and libpq's keyword form (`host=h password='p w'`). Malformed strings
//! are redacted the safe way: anything that could be a `user:password@` is hidden,
//! even where the drivers would not read one (`amqp:/u:p@h`, `u:p@h:5672`).

/// The connection string with every password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", redact_authority_and_query(rest)),
        None => hide_userinfo(&redact_keywords(url)),
    }
}

/// Everything between the first ':' and the last '@' becomes `***`. The userinfo ends
/// at the last '@' of the whole string: a password typed with a '/', ':', '?', '#' or
/// '@' unencoded is still hidden (an '@' in the path or query hides more, which errs
/// the safe way).
fn hide_userinfo(text: &str) -> String {
    match text.rfind('@') {
        Some(at) => match text[..at].split_once(':') {
            Some((user, _)) => format!("{user}:***{}", &text[at..]),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

fn redact_authority_and_query(rest: &str) -> String {
    let rest = hide_userinfo(rest);
    let after_userinfo = rest.rfind('@').map_or(0, |at| at + 1);
    let query_start = rest[after_userinfo..]
        .find(['?', '#'])
        .map_or(rest.len(), |i| after_userinfo + i);
    let (head, tail) = rest.split_at(query_start);
    let head = head.to_string();
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

/// Whether the driver would read `key` as a password: tokio-postgres percent-decodes
/// query keys (`pa%73sword`), so every escape is decoded before comparing.
fn is_password_key(key: &str) -> bool {
    let decoded = percent_decode(key.trim()).to_ascii_lowercase();
    let key = decoded.trim();
    key == "password" || key == "sslpassword"
}

/// `%XX` escapes decoded (any case); a malformed escape is kept as it is.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
            (
                "postgres://h/x?pa%73sword=hunter2",
                "postgres://h/x?pa%73sword=***",
            ),
            (
                "postgres://h/x?%50ASS%57ORD=hunter2",
                "postgres://h/x?%50ASS%57ORD=***",
            ),
            (
                "postgres://h/x?ssl%70assword=hunter2",
                "postgres://h/x?ssl%70assword=***",
            ),
            ("host=h pa%73sword=hunter2", "host=h pa%73sword=***"),
            (
                "amqp://guest:hun?ter2@h:5672/%2f",
                "amqp://guest:***@h:5672/%2f",
            ),
            (
                "amqp://guest:hun#ter2@h:5672/%2f",
                "amqp://guest:***@h:5672/%2f",
            ),
            ("guest:hunter2@h:5672", "guest:***@h:5672"),
            ("amqp:/guest:hunter2@h:5672/%2f", "amqp:***@h:5672/%2f"),
            ("amqp:guest:hunter2@h", "amqp:***@h"),
            ("no password here", "no password here"),
            // amqps: the TLS parameters are paths and names, not secrets, and stay.
            (
                "amqps://guest:hunter2@mq.example:5671/%2f?cacertfile=/etc/ppctl/ca.pem\
                 &certfile=/etc/ppctl/client.pem&keyfile=/etc/ppctl/client.key\
                 &verify=verify_peer&server_name_indication=mq.example",
                "amqps://guest:***@mq.example:5671/%2f?cacertfile=/etc/ppctl/ca.pem\
                 &certfile=/etc/ppctl/client.pem&keyfile=/etc/ppctl/client.key\
                 &verify=verify_peer&server_name_indication=mq.example",
            ),
            (
                "amqps://guest:hun@ter2@h/%2f?keyfile=/k.pem",
                "amqps://guest:***@h/%2f?keyfile=/k.pem",
            ),
            (
                "amqps://guest:hunter2@h/%2f?keyfile=/k.pem&password=hunter2",
                "amqps://guest:***@h/%2f?keyfile=/k.pem&password=***",
            ),
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
