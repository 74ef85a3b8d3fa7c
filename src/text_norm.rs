//! The one text normalisation every word comparison uses (WER in `bench` and `transcribe`,
//! the demo's check, the tests), so an engine is never charged for spelling.
//!
//! Rules, in order, per whitespace-separated token:
//! - Case: everything lowercase.
//! - Numbers become words: `42` → "forty two", `1,250` → "one thousand two hundred fifty",
//!   `3.5` → "three point five", `21st` → "twenty first", `007` → "zero zero seven" (a
//!   leading zero means digits are read one by one), `50%` → "fifty percent", `$5` →
//!   "five dollars". No "and" inside numbers.
//! - Contractions expand: `I'm` → "i am", `can't` → "can not", `won't` → "will not",
//!   `'re` → "are", `'s` → "is", `'ll` → "will", `'ve` → "have", `'d` → "would". (The
//!   possessive `'s` reads as "is" too; both sides get the same treatment.)
//! - Punctuation and every other symbol separate words and are dropped; hyphens split
//!   (`twenty-one` → "twenty one").

/// `text` as the words compared: see the module rules.
pub fn normalize_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for token in text.split_whitespace() {
        let token = token.replace('\u{2019}', "'").to_lowercase();
        let mut scanner = Scanner {
            chars: token.chars().collect(),
            at: 0,
        };
        scanner.words(&mut words);
    }
    words
}

struct Scanner {
    chars: Vec<char>,
    at: usize,
}

impl Scanner {
    fn words(&mut self, out: &mut Vec<String>) {
        let mut dollars = false;
        while let Some(&c) = self.chars.get(self.at) {
            if c.is_ascii_digit() {
                self.number(out, std::mem::take(&mut dollars));
            } else if c.is_alphanumeric() {
                self.word(out);
            } else {
                match c {
                    '%' => out.push("percent".into()),
                    '$' => dollars = true,
                    _ => {}
                }
                self.at += 1;
            }
        }
    }

    /// Letters (and apostrophes inside them) up to the next symbol.
    fn word(&mut self, out: &mut Vec<String>) {
        let start = self.at;
        while let Some(&c) = self.chars.get(self.at) {
            if c.is_alphabetic() || (c == '\'' && self.at > start) {
                self.at += 1;
            } else {
                break;
            }
        }
        if self.at == start {
            // A digit-like alphanumeric that is not ASCII (e.g. "²"): drop it.
            self.at += 1;
            return;
        }
        let word: String = self.chars[start..self.at].iter().collect();
        let word = word.trim_matches('\'');
        if word.is_empty() {
            return;
        }
        match expand_contraction(word) {
            Some((a, b)) => out.extend([a.to_owned(), b.to_owned()]),
            None => out.push(word.to_owned()),
        }
    }

    /// Digits with thousands commas, an optional decimal part and an optional ordinal suffix.
    fn number(&mut self, out: &mut Vec<String>, dollars: bool) {
        let mut digits = String::new();
        self.take_digits(&mut digits);
        // Thousands groups: a comma followed by exactly three digits.
        while self.peek(0) == Some(',')
            && (1..=3).all(|k| self.peek(k).is_some_and(|c| c.is_ascii_digit()))
            && !self.peek(4).is_some_and(|c| c.is_ascii_digit())
        {
            self.at += 1;
            self.take_digits(&mut digits);
        }
        let mut fraction = String::new();
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
            self.take_digits(&mut fraction);
        }
        let ordinal = fraction.is_empty() && self.take_ordinal_suffix();
        let start = out.len();
        read_digits(&digits, out);
        if ordinal {
            if let Some(last) = out.last_mut() {
                *last = ordinal_of(last);
            }
        }
        if !fraction.is_empty() {
            out.push("point".into());
            for d in fraction.chars() {
                out.push(DIGITS[d as usize - '0' as usize].into());
            }
        }
        if dollars {
            let one = out.len() == start + 1 && out[start] == "one";
            out.push(if one { "dollar" } else { "dollars" }.into());
        }
    }

    fn take_digits(&mut self, into: &mut String) {
        while let Some(c) = self.peek(0).filter(char::is_ascii_digit) {
            into.push(c);
            self.at += 1;
        }
    }

    fn take_ordinal_suffix(&mut self) -> bool {
        let suffix: String = self.chars[self.at..]
            .iter()
            .take_while(|c| c.is_alphabetic())
            .collect();
        if matches!(suffix.as_str(), "st" | "nd" | "rd" | "th") {
            self.at += 2;
            true
        } else {
            false
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }
}

const DIGITS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];
const TEENS: [&str; 10] = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
const SCALES: [&str; 5] = ["", "thousand", "million", "billion", "trillion"];

/// A digit string as words: a cardinal number, or digit by digit when it has a leading
/// zero or is too long to read as one number.
fn read_digits(digits: &str, out: &mut Vec<String>) {
    let value = digits
        .parse::<u64>()
        .ok()
        .filter(|v| *v < 1_000_000_000_000_000);
    match value {
        Some(v) if !(digits.len() > 1 && digits.starts_with('0')) => cardinal(v, out),
        _ => out.extend(
            digits
                .bytes()
                .map(|d| DIGITS[usize::from(d - b'0')].to_owned()),
        ),
    }
}

fn cardinal(value: u64, out: &mut Vec<String>) {
    if value == 0 {
        out.push("zero".into());
        return;
    }
    let mut groups = Vec::new();
    let mut rest = value;
    while rest > 0 {
        groups.push((rest % 1000) as usize);
        rest /= 1000;
    }
    for (scale, &group) in groups.iter().enumerate().rev() {
        if group == 0 {
            continue;
        }
        below_thousand(group, out);
        if scale > 0 {
            out.push(SCALES[scale].into());
        }
    }
}

fn below_thousand(n: usize, out: &mut Vec<String>) {
    if n >= 100 {
        out.push(DIGITS[n / 100].into());
        out.push("hundred".into());
    }
    match n % 100 {
        0 => {}
        r @ 1..=9 => out.push(DIGITS[r].into()),
        r @ 10..=19 => out.push(TEENS[r - 10].into()),
        r => {
            out.push(TENS[r / 10].into());
            if r % 10 > 0 {
                out.push(DIGITS[r % 10].into());
            }
        }
    }
}

/// "three" → "third", "twenty" → "twentieth", "hundred" → "hundredth".
fn ordinal_of(word: &str) -> String {
    match word {
        "one" => "first".into(),
        "two" => "second".into(),
        "three" => "third".into(),
        "five" => "fifth".into(),
        "eight" => "eighth".into(),
        "nine" => "ninth".into(),
        "twelve" => "twelfth".into(),
        w if w.ends_with('y') => format!("{}ieth", &w[..w.len() - 1]),
        w => format!("{w}th"),
    }
}

fn expand_contraction(word: &str) -> Option<(&str, &'static str)> {
    const SUFFIXES: [(&str, &str); 6] = [
        ("'m", "am"),
        ("'re", "are"),
        ("'s", "is"),
        ("'ll", "will"),
        ("'ve", "have"),
        ("'d", "would"),
    ];
    if word == "won't" {
        return Some(("will", "not"));
    }
    if let Some(stem) = word.strip_suffix("n't") {
        return Some((if stem == "ca" { "can" } else { stem }, "not"));
    }
    SUFFIXES
        .iter()
        .find_map(|(suffix, full)| word.strip_suffix(suffix).map(|stem| (stem, *full)))
}

#[cfg(test)]
mod tests {
    use super::normalize_words;

    fn n(text: &str) -> String {
        normalize_words(text).join(" ")
    }

    #[test]
    fn case_punctuation_and_contractions() {
        assert_eq!(n("Yes, I am interested."), "yes i am interested");
        assert_eq!(n("  What's my   balance?"), "what is my balance");
        assert_eq!(n("Yes, I\u{2019}m interested"), "yes i am interested");
        assert_eq!(n("I can't, I won't"), "i can not i will not");
        assert_eq!(n("'quoted' twenty-one"), "quoted twenty one");
        assert_eq!(n("— . . ."), "");
    }

    #[test]
    fn numbers_are_read_as_words() {
        assert_eq!(n("42"), "forty two");
        assert_eq!(n("1,250 calls"), "one thousand two hundred fifty calls");
        assert_eq!(n("3.5"), "three point five");
        assert_eq!(n("the 21st and 3rd"), "the twenty first and third");
        assert_eq!(
            n("the 12th, 20th, 100th"),
            "the twelfth twentieth one hundredth"
        );
        assert_eq!(n("007"), "zero zero seven");
        assert_eq!(n("50%"), "fifty percent");
        assert_eq!(n("$5 or $1"), "five dollars or one dollar");
        assert_eq!(n("2,000,017"), "two million seventeen");
        assert_eq!(n("0"), "zero");
        assert_eq!(n("1,2"), "one two");
        assert_eq!(n("7pm"), "seven pm");
        assert_eq!(
            n("99999999999999999999"),
            "nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine nine"
        );
    }

    #[test]
    fn hostile_text_does_not_panic() {
        for text in [
            "$", "%%", "1.", ".5", "1,", "1st1", "'", "''s", "2²", "١٢٣", "ǅ",
        ] {
            let _ = normalize_words(text);
        }
        assert_eq!(n("١٢٣"), "", "non-ASCII digits are dropped, not misread");
    }
}
