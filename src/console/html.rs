//! The console's markup: every page is rendered on the server, works
//! without JavaScript (the live tail adds one small embedded script), and
//! escapes everything that did not come from this file.

use std::fmt::Write as _;

/// `text` with the characters HTML gives a meaning escaped (for element
/// content and quoted attribute values alike).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` for a URL's path segment or query value: only unreserved
/// characters stay as they are.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// `text` with the characters that change how text around them looks or
/// reads without being seen — bidirectional controls, zero-width
/// characters, soft hyphens, tag characters — shown as `\u{…}` escapes, so
/// that an approver sees `"\u{202e}10000"`, never an amount that renders
/// backwards.
pub fn reveal_invisible(text: &str) -> String {
    let invisible = |c: char| {
        matches!(c,
            '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{e0000}'..='\u{e007f}')
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if invisible(c) {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Who is signed in, as the page header shows it.
pub struct Viewer<'a> {
    /// The account name.
    pub name: &'a str,
    /// Whether they operate the server (the Operations page is theirs).
    pub operator: bool,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: &'a str,
}

/// A whole page: `title`, the navigation for `viewer` (none on the
/// sign-in page), and `body` (already markup).
pub fn page(title: &str, viewer: Option<&Viewer<'_>>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(viewer) = viewer {
        nav.push_str(r#"<nav aria-label="Main"><ul><li><a href="/approvals">Approvals</a></li>"#);
        if viewer.operator {
            nav.push_str(r#"<li><a href="/operations">Operations</a></li>"#);
        }
        let _ = write!(
            nav,
            r#"</ul><form method="post" action="/logout" class="signout"><input type="hidden" name="csrf" value="{}"><span>Signed in as <strong>{}</strong></span> <button type="submit">Sign out</button></form></nav>"#,
            escape(viewer.csrf),
            escape(viewer.name),
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · toolgate</title>
<link rel="stylesheet" href="/assets/console.css">
</head>
<body>
<header><p class="brand">toolgate</p>{nav}</header>
<main id="main">
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#,
        title = escape(title),
    )
}

/// A notice at the top of a page: `kind` is `ok` or `error` (errors are
/// announced to screen readers at once).
pub fn notice(kind: &str, text: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!(r#"<p class="notice {kind}" role="{role}">{}</p>"#, escape(text))
}

/// A duration in seconds for people: `45 s`, `3 min`, `2 h 5 min`.
pub fn span(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        _ => match (seconds / 3600, (seconds % 3600) / 60) {
            (hours, 0) => format!("{hours} h"),
            (hours, minutes) => format!("{hours} h {minutes} min"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_urls_are_escaped() {
        assert_eq!(escape(r#"<script>"a"&'b'"#), "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;");
        assert_eq!(url_encode("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(span(59), "59 s");
        assert_eq!(span(180), "3 min");
        assert_eq!(span(7500), "2 h 5 min");
        assert_eq!(reveal_invisible("\"\u{202e}10000\" a\u{200b}b"), "\"\\u{202e}10000\" a\\u{200b}b");
    }
}
