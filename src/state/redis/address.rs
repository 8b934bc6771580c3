//! What a Redis address says, read without connecting: the parts of a
//! Sentinel address, whether a namespace is safe, and the address as
//! messages may show it (never with its password).

/// The longest namespace.
pub const MAX_NAMESPACE_BYTES: usize = 64;

/// Whether `namespace` can start every key: 1 to [`MAX_NAMESPACE_BYTES`]
/// letters, digits, `_`, `-` or `.` (no `:` or braces, which would let one
/// namespace's keys or hash tags run into another's).
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    let fine = !namespace.is_empty()
        && namespace.len() <= MAX_NAMESPACE_BYTES
        && namespace.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    match fine {
        true => Ok(()),
        false => Err(format!(
            "the Redis namespace `{namespace}` must be 1 to {MAX_NAMESPACE_BYTES} letters, digits, `_`, `-` or `.`"
        )),
    }
}

/// `url` with its password, if any (`user:PASSWORD@`, or a socket URL's
/// `pass=` parameter), replaced by `***`: what messages show.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    // Everything before the last `@` is taken for the user and password: a
    // password may hold `/`, `?` or `#` unencoded (hiding too much is fine).
    let rest = match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at].split_once(':').map_or("", |(user, _)| user);
            let user = if user.contains(['/', '?', '#']) { "" } else { user };
            format!("{user}:***{}", &rest[at..])
        }
        None => rest.to_owned(),
    };
    let Some((before, query)) = rest.split_once('?') else { return format!("{scheme}://{rest}") };
    let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("pass", _)) => String::from("pass=***"),
            _ => pair.to_owned(),
        })
        .collect();
    let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
    format!("{scheme}://{before}?{}{fragment}", pairs.join("&"))
}

/// The URL scheme of an address through Redis Sentinel.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";
/// The same over TLS: to the sentinels and to the Redis nodes they name.
pub const SENTINEL_TLS_SCHEME: &str = "rediss+sentinel://";
/// A sentinel's port when none is given.
const SENTINEL_PORT: u16 = 26379;

/// `redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]…]/SERVICE[/DB]`
/// (or `rediss+sentinel://…`, over TLS), read: the sentinels, the service
/// (the primary's name in their configuration), and the database, user and
/// password of the Redis nodes.
#[derive(Debug, PartialEq)]
pub(super) struct SentinelAddress {
    pub(super) sentinels: Vec<(String, u16)>,
    pub(super) service: String,
    pub(super) db: i64,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    /// Whether the sentinels and the nodes are reached over TLS.
    pub(super) tls: bool,
}

/// Whether `url` (its scheme in lower case) is an address through Sentinel.
pub(super) fn is_sentinel(url: &str) -> bool {
    url.starts_with(SENTINEL_SCHEME) || url.starts_with(SENTINEL_TLS_SCHEME)
}

pub(super) fn parse_sentinel(url: &str) -> Result<SentinelAddress, String> {
    let (rest, tls) = match url.strip_prefix(SENTINEL_TLS_SCHEME) {
        Some(rest) => (rest, true),
        None => (url.strip_prefix(SENTINEL_SCHEME).ok_or("not a `redis+sentinel://` address")?, false),
    };
    // The password may hold `/`: the user and password end at the last `@`.
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').ok_or("no service: `redis+sentinel://HOST:PORT/SERVICE`")?;
    if path.contains(['?', '#']) {
        // Not a service name; and `#insecure` turns nothing off here.
        return Err(String::from("a Sentinel address takes no `?` parameters or `#` fragment"));
    }
    let (user, password) = match userinfo.map(|info| info.split_once(':').unwrap_or((info, ""))) {
        Some((user, password)) => {
            let given = |text: &str| (!text.is_empty()).then(|| text.to_owned());
            (given(user), given(password))
        }
        None => (None, None),
    };
    let sentinels = hosts
        .split(',')
        .map(|host| {
            let (name, port) = match host.strip_prefix('[') {
                Some(bracketed) => {
                    let (name, after) = bracketed.split_once(']').ok_or("an IPv6 host without `]`")?;
                    (name, after.strip_prefix(':'))
                }
                None => match host.rsplit_once(':') {
                    Some((name, port)) => (name, Some(port)),
                    None => (host, None),
                },
            };
            let port = match port {
                Some(port) => port.parse().map_err(|_| format!("`{port}` is not a port"))?,
                None => SENTINEL_PORT,
            };
            match name.is_empty() {
                true => Err(String::from("a sentinel without a host")),
                false => Ok((name.to_owned(), port)),
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut parts = path.split('/');
    let service = parts.next().filter(|s| !s.is_empty()).ok_or("no service name after the sentinels")?;
    let db = match parts.next().filter(|s| !s.is_empty()) {
        Some(db) => db.parse().map_err(|_| format!("`{db}` is not a database number"))?,
        None => 0,
    };
    if parts.next().is_some() {
        return Err(String::from("more after `/SERVICE/DB`"));
    }
    Ok(SentinelAddress { sentinels, service: service.to_owned(), db, user, password, tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_show_a_password() {
        assert_eq!(redact("redis://:s3cret@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact("rediss://app:s3cret@host/1"), "rediss://app:***@host/1");
        assert_eq!(redact("redis://s3cret@host"), "redis://:***@host");
        assert_eq!(redact("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(redact("redis+unix:///run/redis.sock"), "redis+unix:///run/redis.sock");
        assert_eq!(redact("redis://a:b@c@host/0"), "redis://a:***@host/0");
        assert_eq!(
            redact("redis+unix:///run/r.sock?db=1&pass=s3cret"),
            "redis+unix:///run/r.sock?db=1&pass=***"
        );
        assert_eq!(redact("redis://h/0?pass=x#y"), "redis://h/0?pass=***#y");
        assert_eq!(redact("redis://:ab/cd@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact("redis://u:p?q#r@host/0"), "redis://u:***@host/0");
    }

    #[test]
    fn sentinel_addresses_name_their_sentinels_service_and_database() {
        assert_eq!(
            parse_sentinel("redis+sentinel://app:pw@s1:26380,[::1],s3/tg-primary/2"),
            Ok(SentinelAddress {
                sentinels: vec![("s1".into(), 26380), ("::1".into(), 26379), ("s3".into(), 26379)],
                service: "tg-primary".into(),
                db: 2,
                user: Some("app".into()),
                password: Some("pw".into()),
                tls: false,
            })
        );
        assert_eq!(parse_sentinel("redis+sentinel://s1/p").map(|a| (a.db, a.user)), Ok((0, None)));
        assert_eq!(
            parse_sentinel("rediss+sentinel://s1/p").map(|a| (a.tls, a.sentinels)),
            Ok((true, vec![("s1".into(), 26379)]))
        );
        for bad in [
            "redis+sentinel://s1",
            "redis+sentinel://s1/",
            "redis+sentinel://s1:x/p",
            "redis+sentinel://,s2/p",
            "redis+sentinel://s1/p/zero",
            "redis+sentinel://s1/p/0/more",
            "rediss+sentinel://s1",
            "redis+sentinels://s1/p",
            "rediss+sentinel://s1/p#insecure",
            "redis+sentinel://s1/p?db=2",
        ] {
            assert!(parse_sentinel(bad).is_err(), "{bad}");
        }
        assert_eq!(redact("redis+sentinel://:pw@s1,s2/p"), "redis+sentinel://:***@s1,s2/p");
        assert_eq!(redact("rediss+sentinel://app:pw@s1,s2/p"), "rediss+sentinel://app:***@s1,s2/p");
        let slashed = parse_sentinel("redis+sentinel://:ab/cd@s1/p").map(|a| a.password);
        assert_eq!(slashed, Ok(Some(String::from("ab/cd"))));
    }

    #[test]
    fn a_namespace_cannot_reach_into_another() {
        for fine in ["tg", "prod-eu.1", "A_b"] {
            assert!(check_namespace(fine).is_ok(), "{fine}");
        }
        for bad in ["", "a:b", "{tg}", "a b", &"n".repeat(65)] {
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
    }
}
