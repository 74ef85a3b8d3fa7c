//! Identifiers that reach another system (ARI request paths, event subjects, broker keys):
//! one strict rule, checked at the edge, a bounded preview for error messages, and the cut
//! that bounds any other outside text copied into an event.

/// Longest identifier accepted, bytes.
pub const MAX_ID_BYTES: usize = 128;

/// What an identifier may hold, for error messages.
pub const ID_RULE: &str = "1 to 128 characters from A-Z a-z 0-9 . _ - :";

/// 1 to [`MAX_ID_BYTES`] of `A-Z a-z 0-9 . _ - :`: nothing that means anything in a URL
/// path or query, a broker subject or a shell.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// At most 32 characters of `value`, escaped, and its length when cut: what an error may
/// say of hostile input without echoing it whole.
pub fn preview(value: &str) -> String {
    const SHOWN: usize = 32;
    let shown: String = value.chars().take(SHOWN).collect();
    if shown.len() == value.len() {
        format!("{shown:?}")
    } else {
        format!("{shown:?}... ({} bytes)", value.len())
    }
}

/// `text` cut to at most `max` bytes at a char boundary, with `...` appended when cut.
pub fn cut_to(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_whole_chars() {
        assert_eq!(cut_to("short".into(), 10), "short");
        assert_eq!(cut_to("ééé".into(), 3), "é...");
        assert_eq!(cut_to("abcdef".into(), 4), "abcd...");
    }

    #[test]
    fn only_plain_ids_pass() {
        for ok in [
            "1795334591.22",
            "call:abc-1_2",
            "6f0c1d2e-aaaa-bbbb-cccc-0123456789ab",
        ] {
            assert!(is_safe_id(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "x?endpoint=PJSIP/900123456&",
            "../asterisk/modules/res_pjsip.so",
            "a/b",
            "a%2Fb",
            "é",
        ] {
            assert!(!is_safe_id(bad), "{bad}");
        }
        assert!(is_safe_id(&"a".repeat(128)));
        assert!(!is_safe_id(&"a".repeat(129)));
    }

    #[test]
    fn a_preview_is_bounded_and_escaped() {
        assert_eq!(preview("abc"), "\"abc\"");
        let long = "x".repeat(1_000_000);
        let p = preview(&long);
        assert!(p.len() < 60 && p.ends_with("(1000000 bytes)"), "{p}");
        assert_eq!(preview("a\nb"), "\"a\\nb\"");
    }
}
