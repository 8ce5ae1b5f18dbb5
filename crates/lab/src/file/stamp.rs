//! Templates. A table of an array of tables (`[[node]]`, `[[node.bgp.neighbor]]`,
//! `[[slb.loadBalancers]]`, ...) with `copies = N` stands for N tables; in the i-th (from
//! 1), every string has each `{expression}` replaced by its value for `i`: integers, `i`,
//! `+ - * / %` and parentheses (`"VM{i}"`, `"Host{(i - 1) % 100 + 1}"`,
//! `"10.0.{10 + (i - 1) / 250}.{(i - 1) % 250 + 1}/16"`). In an array, a string with
//! `{a..=b}` stands for one string per value from a to b (`members = ["VM{(i - 1) * 20 +
//! 1..=i * 20}"]`). `{{` and `}}` are braces. Templates inside a template are expanded
//! first, with their own `i`. An error names the template's line.
//!
//! The expansion works on the parsed document, before it is read into the lab file's
//! types: each copy keeps the spans of its template.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

/// At most this many tables from one template.
pub(super) const MAX_COUNT: u64 = 100_000;

type Error = (Range<usize>, String);

/// Expands the templates of `root`.
pub(super) fn stamp(root: &mut DeTable<'_>) -> Result<(), Error> {
    for (_, value) in root.iter_mut() {
        walk(value)?;
    }
    Ok(())
}

/// Expands the templates in a value, innermost first.
fn walk(value: &mut Spanned<DeValue<'_>>) -> Result<(), Error> {
    match value.get_mut() {
        DeValue::Table(table) => {
            for (_, v) in table.iter_mut() {
                walk(v)?;
            }
        }
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                walk(item)?;
            }
            expand_array(value)?;
        }
        _ => {}
    }
    Ok(())
}

/// Replaces each table of an array of tables that has `copies` by its copies.
fn expand_array(array: &mut Spanned<DeValue<'_>>) -> Result<(), Error> {
    let DeValue::Array(items) = array.get_mut() else {
        return Ok(());
    };
    let old = std::mem::replace(items, std::iter::empty().collect());
    let mut out = Vec::with_capacity(old.len());
    for item in old {
        let span = item.span();
        let DeValue::Table(table) = item.get_ref() else {
            out.push(item);
            continue;
        };
        let Some(count) = table.get("copies") else {
            out.push(item);
            continue;
        };
        let n = match count.get_ref() {
            DeValue::Integer(n) => u64::from_str_radix(n.as_str(), n.radix())
                .ok()
                .filter(|n| (1..=MAX_COUNT).contains(n)),
            _ => None,
        }
        .ok_or_else(|| {
            (
                count.span(),
                format!("expected copies as an integer from 1 to {MAX_COUNT}"),
            )
        })?;
        let mut template = table.clone();
        template.remove("copies");
        for i in 1..=n as i64 {
            let mut copy = template.clone();
            for (_, value) in copy.iter_mut() {
                substitute(value, i)?;
            }
            out.push(Spanned::new(span.clone(), DeValue::Table(copy)));
        }
    }
    *items = out.into_iter().collect();
    Ok(())
}

/// Substitutes `i` in every string of a value.
fn substitute(value: &mut Spanned<DeValue<'_>>, i: i64) -> Result<(), Error> {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) => {
            let text = fill(s, i, None).map_err(|m| (span, m))?;
            *s = DeString::Owned(text);
        }
        DeValue::Array(items) => {
            let old = std::mem::replace(items, std::iter::empty().collect());
            let mut out = Vec::with_capacity(old.len());
            for mut item in old {
                let span = item.span();
                match item.get_mut() {
                    DeValue::String(s) => match range_in(s, i).map_err(|m| (span.clone(), m))? {
                        Some(values) => {
                            for v in values {
                                let text = fill(s, i, Some(v)).map_err(|m| (span.clone(), m))?;
                                out.push(Spanned::new(
                                    span.clone(),
                                    DeValue::String(DeString::Owned(text)),
                                ));
                            }
                        }
                        None => {
                            *s = DeString::Owned(fill(s, i, None).map_err(|m| (span, m))?);
                            out.push(item);
                        }
                    },
                    _ => {
                        substitute(&mut item, i)?;
                        out.push(item);
                    }
                }
            }
            *items = out.into_iter().collect();
        }
        DeValue::Table(table) => {
            for (_, v) in table.iter_mut() {
                substitute(v, i)?;
            }
        }
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
    }
    Ok(())
}

/// The braces' contents of a template string, in order (`{{` and `}}` are literal).
fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut literal = String::new();
    while let Some(at) = rest.find(['{', '}']) {
        literal.push_str(&rest[..at]);
        let brace = &rest[at..];
        if brace.starts_with("{{") || brace.starts_with("}}") {
            literal.push(brace.as_bytes()[0] as char);
            rest = &brace[2..];
            continue;
        }
        if brace.starts_with('}') {
            return Err(format!(
                "{s:?}: a '}}' without its '{{' (write '}}}}' for a brace)"
            ));
        }
        let end = brace
            .find('}')
            .ok_or_else(|| format!("{s:?}: a '{{' without its '}}' (write '{{{{' for a brace)"))?;
        out.push(Piece::Text(std::mem::take(&mut literal)));
        out.push(Piece::Expr(&brace[1..end]));
        rest = &brace[end + 1..];
    }
    literal.push_str(rest);
    out.push(Piece::Text(literal));
    Ok(out)
}

enum Piece<'a> {
    Text(String),
    Expr(&'a str),
}

/// The values of the string's one `{a..=b}`, if it has one.
fn range_in(s: &str, i: i64) -> Result<Option<Vec<i64>>, String> {
    let mut found = None;
    for piece in pieces(s)? {
        if let Piece::Expr(e) = piece
            && let Some((a, b)) = e.split_once("..=")
        {
            if found.is_some() {
                return Err(format!("{s:?}: at most one {{a..=b}} in a string"));
            }
            let (a, b) = (eval(a, i)?, eval(b, i)?);
            if b < a || b - a >= MAX_COUNT as i64 {
                return Err(format!("{s:?}: {{{e}}} is {a}..={b}"));
            }
            found = Some((a..=b).collect());
        }
    }
    Ok(found)
}

/// The string with each expression replaced by its value (`range` the value of the
/// `{a..=b}` one).
fn fill(s: &str, i: i64, range: Option<i64>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    for piece in pieces(s)? {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Expr(e) if e.contains("..=") => match range {
                Some(v) => out.push_str(&v.to_string()),
                None => return Err(format!("{s:?}: {{a..=b}} only in an array of strings")),
            },
            Piece::Expr(e) => {
                out.push_str(&eval(e, i).map_err(|m| format!("{s:?}: {m}"))?.to_string())
            }
        }
    }
    Ok(out)
}

/// The value of an expression of `i`.
fn eval(expr: &str, i: i64) -> Result<i64, String> {
    let tokens = tokens(expr)?;
    let mut p = Parser {
        tokens: &tokens,
        at: 0,
        i,
    };
    let v = p.sum()?;
    if p.at != tokens.len() {
        return Err(format!("{{{expr}}}: unexpected {:?}", tokens[p.at]));
    }
    Ok(v)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Num(i64),
    I,
    Op(char),
}

fn tokens(expr: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {}
            'i' => out.push(Token::I),
            '+' | '-' | '*' | '/' | '%' | '(' | ')' => out.push(Token::Op(c)),
            '0'..='9' => {
                let mut n = i64::from(c as u8 - b'0');
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(i64::from(d)))
                        .ok_or_else(|| format!("{{{expr}}}: a number too large"))?;
                    chars.next();
                }
                out.push(Token::Num(n));
            }
            other => {
                return Err(format!(
                    "{{{expr}}}: expected i, integers, + - * / % and parentheses, found {other:?}"
                ));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
    i: i64,
}

impl Parser<'_> {
    fn peek(&self) -> Option<Token> {
        self.tokens.get(self.at).copied()
    }

    fn sum(&mut self) -> Result<i64, String> {
        let mut v = self.product()?;
        while let Some(Token::Op(op @ ('+' | '-'))) = self.peek() {
            self.at += 1;
            let r = self.product()?;
            v = if op == '+' {
                v.checked_add(r)
            } else {
                v.checked_sub(r)
            }
            .ok_or("overflow")?;
        }
        Ok(v)
    }

    fn product(&mut self) -> Result<i64, String> {
        let mut v = self.atom()?;
        while let Some(Token::Op(op @ ('*' | '/' | '%'))) = self.peek() {
            self.at += 1;
            let r = self.atom()?;
            v = match op {
                '*' => v.checked_mul(r),
                '/' => v.checked_div(r),
                _ => v.checked_rem(r),
            }
            .ok_or("overflow or division by zero")?;
        }
        Ok(v)
    }

    fn atom(&mut self) -> Result<i64, String> {
        let t = self.peek().ok_or("an expression ends too soon")?;
        self.at += 1;
        match t {
            Token::Num(n) => Ok(n),
            Token::I => Ok(self.i),
            Token::Op('-') => Ok(-self.atom()?),
            Token::Op('(') => {
                let v = self.sum()?;
                if self.peek() != Some(Token::Op(')')) {
                    return Err("a '(' without its ')'".into());
                }
                self.at += 1;
                Ok(v)
            }
            Token::Op(c) => Err(format!("unexpected {c:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_of_i() {
        assert_eq!(eval("i", 7), Ok(7));
        assert_eq!(eval("(i - 1) / 20 + 1", 41), Ok(3));
        assert_eq!(eval("(i-1)%250+1", 251), Ok(1));
        assert_eq!(eval("10 + 2 * 3 - -1", 0), Ok(17));
        assert_eq!(eval("i * 2 % 3", 4), Ok(2));
        for bad in ["", "i +", "(i", "i)", "j", "1 / 0", "99999999999999999999"] {
            assert!(eval(bad, 1).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn strings_and_ranges() {
        assert_eq!(fill("VM{i}", 3, None).unwrap(), "VM3");
        assert_eq!(
            fill(
                "10.0.{10 + (i - 1) / 250}.{(i - 1) % 250 + 1}/16",
                251,
                None
            )
            .unwrap(),
            "10.0.11.1/16"
        );
        assert_eq!(fill("{{literal}} {i}", 2, None).unwrap(), "{literal} 2");
        assert_eq!(
            range_in("VM{(i - 1) * 3 + 1..=i * 3}", 2).unwrap(),
            Some(vec![4, 5, 6])
        );
        assert_eq!(
            fill("VM{(i - 1) * 3 + 1..=i * 3}", 2, Some(5)).unwrap(),
            "VM5"
        );
        assert_eq!(range_in("VM{i}", 2).unwrap(), None);
        for bad in ["{i", "i}", "{i..=1}{1..=2}"] {
            assert!(
                range_in(bad, 2).is_err() || fill(bad, 2, None).is_err(),
                "{bad:?}"
            );
        }
        assert!(
            fill("VM{1..=2}", 1, None).is_err(),
            "a range outside an array"
        );
        assert!(range_in("{3..=1}", 1).is_err());
        assert_eq!(range_in("{3..=3}", 1).unwrap(), Some(vec![3]), "one item");
        let most = format!("{{1..={MAX_COUNT}}}");
        assert_eq!(
            range_in(&most, 1).unwrap().map(|v| v.len()),
            Some(MAX_COUNT as usize)
        );
        assert!(
            range_in(&format!("{{0..={MAX_COUNT}}}"), 1).is_err(),
            "one too many"
        );
    }
}
