//! What regorus cannot bound, refused before a module is parsed.
//!
//! regorus checks its time and instruction limits between steps; a builtin
//! runs to its end. So one call of a builtin whose output a small number
//! sizes (`numbers.range(1, 1e8)`: 2.9 s and 2.35 GB against a 50 ms
//! limit) escapes every limit, and so does a number literal whose exact
//! value is enormous (parsing `1e2000000000` builds a 830 MB integer). The
//! modules are scanned as tokens (comments and strings skipped) for those
//! builtins and literals, and refused with where they are.

/// Builtins one call of which allocates or loops as much as a number says,
/// with why they are refused.
pub const UNBOUNDED_BUILTINS: &[(&str, &str)] = &[
    ("numbers.range", "builds the whole range in one step"),
    ("numbers.range_step", "builds the whole range in one step"),
    ("sprintf", "pads its result to any width or precision the format names, in one step"),
    ("bits.lsh", "shifts a number left by up to 4 billion bits in one step"),
    ("units.parse", "builds the exact value of a number of any size from a short string (an argument)"),
    ("units.parse_bytes", "builds the exact value of a number of any size from a short string (an argument)"),
];

/// The longest number literal accepted, in characters.
pub const MAX_NUMBER_CHARS: usize = 64;
/// The largest decimal exponent accepted in a number literal (a `f64` reaches 308).
pub const MAX_EXPONENT: u64 = 308;

/// Something in a module regorus would evaluate without bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unbounded {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What was found and why it is refused.
    pub what: String,
}

/// Every call of an [`UNBOUNDED_BUILTINS`] builtin and every number
/// literal too long or too large, in order.
pub fn scan(text: &str) -> Vec<Unbounded> {
    let mut scanner =
        Scanner { chars: text.char_indices().peekable(), line: 1, column: 1, found: Vec::new() };
    scanner.run();
    scanner.found
}

struct Scanner<'t> {
    chars: std::iter::Peekable<std::str::CharIndices<'t>>,
    line: usize,
    column: usize,
    found: Vec<Unbounded>,
}

impl Scanner<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|&(_, c)| c)
    }

    fn bump(&mut self) -> Option<char> {
        let (_, c) = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn run(&mut self) {
        while let Some(c) = self.peek() {
            let (line, column) = (self.line, self.column);
            match c {
                '#' => self.skip_while(|c| c != '\n'),
                '"' => self.skip_string(),
                '`' => {
                    self.bump();
                    self.skip_while(|c| c != '`');
                    self.bump();
                }
                c if c.is_ascii_alphabetic() || c == '_' => self.reference(line, column),
                c if c.is_ascii_digit() => self.number(line, column),
                _ => {
                    self.bump();
                }
            }
        }
    }

    fn skip_while(&mut self, keep: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
    }

    fn skip_string(&mut self) {
        self.bump();
        while let Some(c) = self.bump() {
            match c {
                '\\' => {
                    self.bump();
                }
                '"' | '\n' => return,
                _ => {}
            }
        }
    }

    fn identifier(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
            self.bump();
        }
        name
    }

    /// A dotted reference (`numbers.range`), whitespace allowed around the dots.
    fn reference(&mut self, line: usize, column: usize) {
        let mut path = self.identifier();
        loop {
            self.skip_while(|c| c == ' ' || c == '\t');
            if self.peek() != Some('.') {
                break;
            }
            self.bump();
            self.skip_while(|c| c == ' ' || c == '\t');
            if !self.peek().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') {
                break;
            }
            path.push('.');
            path.push_str(&self.identifier());
        }
        if let Some((name, why)) = UNBOUNDED_BUILTINS.iter().find(|(name, _)| *name == path) {
            self.found.push(Unbounded { line, column, what: format!("`{name}` {why}") });
        }
    }

    fn number(&mut self, line: usize, column: usize) {
        let mut text = String::new();
        let mut exponent: Option<String> = None;
        while let Some(c) = self.peek() {
            let sign_of_exponent = (c == '+' || c == '-') && exponent.as_deref() == Some("");
            if c.is_ascii_digit() || c == '.' || c == '_' || sign_of_exponent {
                if let Some(digits) = exponent.as_mut().filter(|_| c.is_ascii_digit()) {
                    digits.push(c);
                }
            } else if (c == 'e' || c == 'E') && exponent.is_none() {
                exponent = Some(String::new());
            } else {
                break;
            }
            text.push(c);
            self.bump();
        }
        let too_large = exponent.as_deref().is_some_and(|digits| {
            let digits = digits.trim_start_matches('0');
            digits.len() > 3 || digits.parse::<u64>().is_ok_and(|e| e > MAX_EXPONENT)
        });
        if text.chars().count() > MAX_NUMBER_CHARS || too_large {
            let shown: String = text.chars().take(24).collect();
            let more = if text.chars().count() > 24 { "…" } else { "" };
            self.found.push(Unbounded {
                line,
                column,
                what: format!(
                    "the number `{shown}{more}` is longer than {MAX_NUMBER_CHARS} characters or has an exponent above {MAX_EXPONENT}: regorus builds its exact value, of any size"
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(usize, usize)> {
        scan(text).into_iter().map(|u| (u.line, u.column)).collect()
    }

    #[test]
    fn finds_unbounded_calls_and_huge_numbers_where_they_are() {
        let module = "package p\n\nx if {\n  count(numbers.range(1, 1e8)) > 0\n}\ny := 1e2000000000\nz := sprintf(\"%0999999999d\", [1])\n";
        assert_eq!(found(module), vec![(4, 9), (6, 6), (7, 6)]);
        assert_eq!(found("f(x) := y if { y := x } with f as units.parse"), vec![(1, 35)]);
        assert_eq!(found("a := numbers . range(1, 2)"), vec![(1, 6)]);
        assert_eq!(found(&format!("n := {}", "9".repeat(65))), vec![(1, 6)]);
    }

    #[test]
    fn leaves_strings_comments_bounded_builtins_and_ordinary_numbers_alone() {
        let module = "package p\n# numbers.range(1, 1e9)\nx := \"numbers.range(1, 1e9) \\\" sprintf\"\ny := `bits.lsh`\nz := count([1, 2.5e10, 1e308, 0.000001])\nw := data.numbers.range\nv := my_sprintf(1)\n";
        assert_eq!(found(module), vec![]);
    }
}
