//! One generator per kind of bad input (methods, paths, query strings, bodies,
//! headers, truncation, request lines), drawing from the lists in `values`.

use super::values::*;
use super::{Case, Kind};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;
use std::fmt::Write as _;

/// A request-target-safe string: unreserved characters, other bytes percent-encoded.
fn junk(rng: &mut StdRng, max: usize) -> String {
    let len = rng.random_range(0..=max);
    let mut out = String::new();
    for _ in 0..len {
        let b: u8 = rng.random();
        if b.is_ascii_alphanumeric() || b"-._~!$'()*,;:@".contains(&b) {
            out.push(b as char);
        } else if rng.random_bool(0.1) {
            out.push('%'); // a bare or broken escape
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub(super) fn request(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: chaos\r\nConnection: close\r\n");
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    if let Some(body) = body {
        if !headers.iter().any(|(k, _)| {
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
        }) {
            let _ = write!(head, "Content-Length: {}\r\n", body.len());
        }
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

pub(super) fn case(label: &'static str, bytes: Vec<u8>, kind: Kind) -> Case {
    Case {
        label,
        bytes,
        kind,
        head: false,
        half_close: false,
        may_drop: false,
        must_reject: false,
    }
}

fn gen_method(rng: &mut StdRng) -> Case {
    let method = if rng.random_bool(0.2) {
        let len = rng.random_range(1..=20);
        (0..len)
            .map(|_| rng.random_range(b'A'..=b'Z') as char)
            .collect()
    } else {
        METHODS.choose(rng).copied().unwrap_or("GET").to_string()
    };
    let route = *ROUTES.choose(rng).unwrap_or(&"/");
    let body = rng
        .random_bool(0.3)
        .then(|| BODIES.choose(rng).unwrap_or(&"").as_bytes());
    let mut c = case("method", request(&method, route, &[], body), Kind::App);
    c.head = method == "HEAD";
    c
}

fn gen_path(rng: &mut StdRng) -> Case {
    let id = if rng.random_bool(0.6) {
        ID_JUNK.choose(rng).copied().unwrap_or("x").to_string()
    } else if rng.random_bool(0.1) {
        "9".repeat(rng.random_range(20..2000))
    } else {
        junk(rng, 40)
    };
    let target = match rng.random_range(0..10) {
        0..=3 => format!("/works/{id}"),
        4..=5 => format!("/works/{id}/events"),
        6 => format!("/work/{id}"),
        7 => format!("/works/{id}/events/{}", junk(rng, 10)),
        8 => format!("/{}/{id}", junk(rng, 10)),
        _ => format!("//works/{id}"),
    };
    case("path", request("GET", &target, &[], None), Kind::App)
}

fn gen_query(rng: &mut StdRng) -> Case {
    let pairs = rng.random_range(0..=5);
    let mut parts = Vec::new();
    for _ in 0..pairs {
        let key = *QUERY_KEYS[..6].choose(rng).unwrap_or(&"limit");
        let key = if rng.random_bool(0.15) {
            *QUERY_KEYS.choose(rng).unwrap_or(&"x")
        } else {
            key
        };
        let value = match rng.random_range(0..10) {
            0..=6 => QUERY_VALUES.choose(rng).copied().unwrap_or("").to_string(),
            7 => "a".repeat(rng.random_range(90..300)),
            _ => junk(rng, 30),
        };
        parts.push(match rng.random_range(0..20) {
            0 => key.to_string(),
            1 => format!("{key}=={value}"),
            _ => format!("{key}={value}"),
        });
    }
    let mut query = parts.join(if rng.random_bool(0.05) { "&&" } else { "&" });
    if rng.random_bool(0.05) {
        query.push('#');
        query.push_str(&junk(rng, 5));
    }
    let route = if rng.random_bool(0.8) {
        "/works"
    } else {
        "/work/search"
    };
    case(
        "query",
        request("GET", &format!("{route}?{query}"), &[], None),
        Kind::App,
    )
}

fn mutate(rng: &mut StdRng, base: &[u8]) -> Vec<u8> {
    let mut body = base.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..=body.len());
        match rng.random_range(0..3) {
            0 if at < body.len() => {
                body.remove(at);
            }
            1 if at < body.len() => body[at] = rng.random(),
            _ => body.insert(at, rng.random()),
        }
    }
    body
}

fn gen_body(rng: &mut StdRng) -> Case {
    let route = if rng.random_bool(0.75) {
        "/works"
    } else {
        "/work"
    };
    let (mut may_drop, mut must_reject) = (false, false);
    let body: Vec<u8> = match rng.random_range(0..20) {
        0..=8 => {
            let body = BODIES.choose(rng).copied().unwrap_or("");
            must_reject = !VALID_BODIES.contains(&body);
            body.as_bytes().to_vec()
        }
        9..=12 => mutate(rng, br#"{"add_up_to": 5}"#),
        13 => (0..rng.random_range(1..200))
            .map(|_| rng.random())
            .collect(),
        14 => {
            let depth = rng.random_range(100..20_000);
            let mut b = "[".repeat(depth).into_bytes();
            b.extend("]".repeat(depth).into_bytes());
            b
        }
        15 => format!("{{\"add_up_to\": 1{}}}", " ".repeat(16 * 1024)).into_bytes(),
        16 => {
            may_drop = true;
            vec![b'{'; rng.random_range(17_000..1_100_000)]
        }
        17 => format!("{{\"add_up_to\": \"{}\"}}", "\u{1F600}".repeat(100)).into_bytes(),
        18 => b"{\"add_up_to\": \"\xff\xfe\"}".to_vec(),
        _ => format!(
            "{{\"add_up_to\": {}}}",
            "9".repeat(rng.random_range(10..5000))
        )
        .into_bytes(),
    };
    let content_type = [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin1",
        "multipart/form-data; boundary=x",
        "garbage",
    ];
    let mut headers = Vec::new();
    if rng.random_bool(0.8) {
        headers.push((
            "Content-Type".into(),
            content_type.choose(rng).unwrap_or(&"x").to_string(),
        ));
    }
    if rng.random_bool(0.1) {
        headers.push(("Content-Encoding".into(), "gzip".into()));
    }
    if rng.random_bool(0.1) {
        headers.push(("Expect".into(), "100-continue".into()));
    }
    if rng.random_bool(0.1) {
        // A valid chunked encoding of the same body.
        headers.push(("Transfer-Encoding".into(), "chunked".into()));
        let mut chunked = Vec::new();
        for piece in body.chunks(rng.random_range(1..=64).max(1)) {
            chunked.extend(format!("{:x}\r\n", piece.len()).into_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend(b"\r\n");
        }
        chunked.extend(b"0\r\n\r\n");
        let mut c = case(
            "body-chunked",
            request("POST", route, &headers, Some(&chunked)),
            Kind::App,
        );
        (c.may_drop, c.must_reject) = (may_drop, must_reject);
        return c;
    }
    let mut c = case(
        "body",
        request("POST", route, &headers, Some(&body)),
        Kind::App,
    );
    (c.may_drop, c.must_reject) = (may_drop, must_reject);
    c
}

fn gen_header(rng: &mut StdRng) -> Case {
    let route = *ROUTES[..6].choose(rng).unwrap_or(&"/works");
    let method = if rng.random_bool(0.5) { "GET" } else { "POST" };
    let body: &[u8] = br#"{"add_up_to": 3}"#;
    let h = |k: &str, v: String| vec![(k.to_string(), v)];
    let (label, headers, kind): (&'static str, Vec<(String, String)>, Kind) =
        match rng.random_range(0..16) {
            0 => ("header-8k", h("X-Big", "v".repeat(8 * 1024)), Kind::App),
            1 => (
                "header-64k",
                h("X-Huge", "v".repeat(64 * 1024)),
                Kind::Proto,
            ),
            2 => (
                "header-many",
                (0..200).map(|i| (format!("X-H{i}"), "1".into())).collect(),
                Kind::Proto,
            ),
            3 => (
                "header-authorization",
                h("Authorization", junk(rng, 60)),
                Kind::App,
            ),
            4 => (
                "header-content-type",
                h("Content-Type", junk(rng, 60)),
                Kind::App,
            ),
            5 => (
                "header-cl-nan",
                h("Content-Length", "abc".into()),
                Kind::Proto,
            ),
            6 => (
                "header-cl-negative",
                h("Content-Length", "-1".into()),
                Kind::Proto,
            ),
            7 => (
                "header-cl-huge",
                h("Content-Length", "99999999999999999999".into()),
                Kind::Proto,
            ),
            8 => (
                "header-cl-twice",
                vec![
                    ("Content-Length".into(), "16".into()),
                    ("Content-Length".into(), "3".into()),
                ],
                Kind::Proto,
            ),
            9 => (
                "header-te-unknown",
                h("Transfer-Encoding", "gzip".into()),
                Kind::Proto,
            ),
            10 => (
                "header-te-and-cl",
                h("Transfer-Encoding", "chunked".into()),
                Kind::Proto,
            ),
            11 => ("header-accept", h("Accept", junk(rng, 100)), Kind::App),
            // A second, junk Host header: actix refuses it itself.
            12 => ("header-host", h("Host", junk(rng, 100)), Kind::Proto),
            13 => (
                "header-x-forwarded",
                h("X-Forwarded-For", junk(rng, 100)),
                Kind::App,
            ),
            14 => (
                "header-range",
                h("Range", format!("bytes={}", junk(rng, 20))),
                Kind::App,
            ),
            _ => (
                "header-encoding",
                h("Accept-Encoding", "gzip;q=abc, *;q=-1, br".into()),
                Kind::App,
            ),
        };
    let mut bytes = request(method, route, &headers, (method == "POST").then_some(body));
    if label == "header-te-and-cl" {
        // Both framings at once, and a body that is not valid chunked encoding.
        bytes = format!(
            "POST /works HTTP/1.1\r\nHost: c\r\nConnection: close\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n",
            junk(rng, 10)
        )
        .into_bytes();
    }
    let mut c = case(label, bytes, kind);
    c.half_close = kind == Kind::Proto;
    c
}

fn gen_raw_header(rng: &mut StdRng) -> Case {
    let line: Vec<u8> = match rng.random_range(0..6) {
        0 => b"NoColonHere".to_vec(),
        1 => b"Bad Name: x".to_vec(),
        2 => b"X-Nul: a\x00b".to_vec(),
        3 => b"X-Bin: \xff\xfe\x80".to_vec(),
        4 => b": empty-name".to_vec(),
        _ => (0..rng.random_range(1..80))
            .map(|_| rng.random())
            .filter(|b| *b != b'\n')
            .collect(),
    };
    let mut bytes = b"GET /works HTTP/1.1\r\nHost: c\r\nConnection: close\r\n".to_vec();
    bytes.extend(line);
    bytes.extend(b"\r\n\r\n");
    let mut c = case("header-raw", bytes, Kind::Proto);
    c.half_close = true;
    c
}

fn gen_truncated(rng: &mut StdRng) -> Case {
    let whole = match rng.random_range(0..3) {
        0 => gen_body(rng),
        1 => gen_query(rng),
        _ => gen_path(rng),
    };
    let cut = rng.random_range(1..whole.bytes.len().max(2));
    let mut c = case("truncated", whole.bytes[..cut].to_vec(), Kind::Truncated);
    // Mostly an EOF; sometimes a client that just stops (actix times it out).
    c.half_close = rng.random_bool(0.9);
    c
}

fn gen_line(rng: &mut StdRng) -> Case {
    let bytes: Vec<u8> = match rng.random_range(0..12) {
        0 => b"GET /works HTTP/2.0\r\nHost: c\r\n\r\n".to_vec(),
        1 => b"GET /works HTTP/1.2\r\nHost: c\r\n\r\n".to_vec(),
        2 => b"GET /works\r\n\r\n".to_vec(),
        3 => b"GET  /works  HTTP/1.1\r\nHost: c\r\n\r\n".to_vec(),
        4 => b"\r\n\r\n".to_vec(),
        5 => (0..rng.random_range(1..300))
            .map(|_| rng.random())
            .collect(),
        6 => b"GET /works/1 HTTP/1.1\nHost: c\nConnection: close\n\n".to_vec(),
        7 => b"OPTIONS * HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n".to_vec(),
        8 => b"GET http://evil.example/works/1 HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n"
            .to_vec(),
        9 => format!(
            "GET /{} HTTP/1.1\r\nHost: c\r\n\r\n",
            "a".repeat(rng.random_range(40_000..100_000))
        )
        .into_bytes(),
        10 => b"GET /works/\xff\xfe HTTP/1.1\r\nHost: c\r\n\r\n".to_vec(),
        _ => {
            // Two requests pipelined in one write, the second one malformed.
            let mut b = request("GET", "/works/1", &[], None);
            b = String::from_utf8_lossy(&b)
                .replace("Connection: close\r\n", "")
                .into_bytes();
            b.extend(b"POST /works HTTP/1.1\r\nContent-Length: 4\r\n\r\n{{{{");
            b
        }
    };
    let mut c = case("request-line", bytes, Kind::Proto);
    c.half_close = true;
    c
}

/// Every listed nasty value once, before the random cases: bodies, query values for
/// each parameter, path ids.
pub(super) fn targeted() -> Vec<Case> {
    let mut cases = Vec::new();
    for body in BODIES {
        let mut c = case(
            "body",
            request("POST", "/works", &[], Some(body.as_bytes())),
            Kind::App,
        );
        c.must_reject = !VALID_BODIES.contains(&body);
        cases.push(c);
    }
    for key in &QUERY_KEYS[..6] {
        for value in QUERY_VALUES {
            let target = format!("/works?{key}={value}");
            cases.push(case("query", request("GET", &target, &[], None), Kind::App));
        }
    }
    for id in ID_JUNK {
        for target in [
            format!("/works/{id}"),
            format!("/works/{id}/events"),
            format!("/work/{id}"),
        ] {
            cases.push(case("path", request("GET", &target, &[], None), Kind::App));
        }
    }
    cases
}

pub(super) fn generate(rng: &mut StdRng) -> Case {
    match rng.random_range(0..100) {
        0..=11 => gen_method(rng),
        12..=31 => gen_path(rng),
        32..=51 => gen_query(rng),
        52..=71 => gen_body(rng),
        72..=81 => gen_header(rng),
        82..=85 => gen_raw_header(rng),
        86..=94 => gen_truncated(rng),
        _ => gen_line(rng),
    }
}
