//! What errors and `Debug` output may show of a node URL: the URL with anything that may be a
//! password replaced by `***`.
//!
//! Contract: pure, total, and conservative. It is applied to URLs as the user wrote them, well
//! formed or not (a URL that failed to parse is quoted in its error), so it never relies on
//! the parser's reading: every plausible reading's secrets are hidden. `tests/secrets.rs`
//! checks it against generated URLs.

/// The URL as errors may quote it, with anything that may be a password replaced by `***`.
/// A garbled URL can be read several ways (is a `?` inside the password, or the start of a
/// query? is an `@` inside a query value, or the end of the credentials?), so every reading
/// hides what it would call secret, and the union is hidden:
/// - everything between the scheme and the last `@` (credentials);
/// - after the first `?`: every value but a database number, and the whole rest from the
///   first piece that is not a known parameter (a password holding `&` or `=` may look like
///   more parameters); after the first `#`, everything;
/// - without any `@`: whatever follows the first `:` of the authority, to the end, unless it
///   is a port (`redis://:secret` and `redis://user:secret` are a password that lost its
///   `@host`, and a password may hold a `/`).
pub(crate) fn redact(url: &str) -> String {
    let len = url.len();
    let mut hidden = vec![false; len];
    let mut hide = |from: usize, to: usize| {
        for slot in hidden.iter_mut().take(to).skip(from) {
            *slot = true;
        }
    };
    let tail = |from: usize| url.get(from..).unwrap_or_default();
    let body = url.find("://").map_or(0, |at| at + 3);
    match url.rfind('@') {
        Some(at) if at >= body => hide(body, at),
        Some(at) => hide(0, at),
        None => {
            let end = match url.find("://") {
                Some(_) => tail(body).find(['/', '?', '#']).map_or(len, |e| body + e),
                // Without `://` the scheme itself may be garbled (`redis//`): all of it counts.
                None => len,
            };
            let authority = url.get(body..end).unwrap_or_default();
            // In `[v6]:port` the colons inside the brackets are the address's.
            let skip = match authority.strip_prefix('[').and_then(|v6| v6.find(']')) {
                Some(close) => close + 2,
                None => 0,
            };
            let colon = authority
                .get(skip..)
                .and_then(|rest| rest.find(':'))
                .map(|c| body + skip + c);
            if let Some(colon) = colon {
                if !is_port_then_path(tail(colon + 1)) {
                    hide(colon + 1, len);
                }
            }
        }
    }
    if let Some(hash) = url.find('#') {
        hide(hash + 1, len);
    }
    if let Some(question) = url.find('?') {
        let query_end = tail(question).find('#').map_or(len, |e| question + e);
        let mut at = question + 1;
        for pair in url
            .get(question + 1..query_end)
            .unwrap_or_default()
            .split('&')
        {
            let value_from = match pair.split_once('=') {
                Some(("db", db)) if db.bytes().all(|b| b.is_ascii_digit()) => None,
                Some((key @ ("password" | "pass" | "user" | "username" | "db"), _)) => {
                    Some(at + key.len() + 1)
                }
                None if pair.is_empty() => None,
                _ => {
                    hide(at, len);
                    break;
                }
            };
            if let Some(from) = value_from {
                hide(from, at + pair.len());
            }
            at += pair.len() + 1;
        }
    }
    let mut out = String::with_capacity(len);
    let mut run_start = 0;
    let mut in_hidden = false;
    for (index, &secret) in hidden.iter().enumerate() {
        if secret != in_hidden {
            if !in_hidden {
                out.push_str(url.get(run_start..index).unwrap_or_default());
            }
            if secret {
                out.push_str("***");
            }
            run_start = index;
            in_hidden = secret;
        }
    }
    if !in_hidden {
        out.push_str(tail(run_start));
    }
    out
}

/// Digits, then nothing or a `/` and anything: a port, maybe with a database path.
fn is_port_then_path(text: &str) -> bool {
    let port = text.split('/').next().unwrap_or(text);
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_credentials_and_every_query_value_but_db() {
        assert_eq!(
            redact("unix:///tmp/r.sock?db=1&password=secret&user=alice"),
            "unix:///tmp/r.sock?db=1&password=***&user=***"
        );
        assert_eq!(
            redact("unix://:secret@/tmp/r.sock?pass=secret"),
            "unix://***@/tmp/r.sock?pass=***"
        );
        assert_eq!(
            redact("unix:///tmp/r.sock?secret"),
            "unix:///tmp/r.sock?***"
        );
        assert_eq!(
            redact("redis://h?password=secret"),
            "redis://h?password=***"
        );
        assert_eq!(redact("unix:///tmp/s?password=se@cret"), "unix://***");
        assert_eq!(redact("redis://:se?cret@h"), "redis://***");
        assert_eq!(redact("redis://h:1/2"), "redis://h:1/2");
        assert_eq!(redact("unix:///s?db=1#secret"), "unix:///s?db=1#***");
    }

    #[test]
    fn a_password_that_lost_its_host_is_hidden_too() {
        for url in [
            "redis://:hunter2",
            "redis://user:hunter2",
            "redis://:hunter2/0",
            ":hunter2",
            "redis://[::1]:hunter2",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("hunter2"), "{url} -> {shown}");
        }
        assert_eq!(redact("redis://h:6379/1"), "redis://h:6379/1");
        assert_eq!(redact("redis://[::1]:7/1"), "redis://[::1]:7/1");
    }
}
