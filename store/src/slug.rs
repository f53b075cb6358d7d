//! ContextForge-compatible slugs: gateway slugs and the `{gateway_slug}{sep}{tool_slug}`
//! names of tools and prompts.
//!
//! Same rules as ContextForge's `slugify` (so a client sees the same tool names from
//! fleetgate): lowercase; an apostrophe between two word characters is dropped
//! (`don't` → `dont`); every run of non-alphanumeric characters (underscore included)
//! becomes the separator; separators are trimmed from both ends; `æ`/`ß`/`ø` become
//! `ae`/`ss`/`o`; the rest is NFKD-decomposed and non-ASCII dropped (`é` → `e`).

use unicode_normalization::UnicodeNormalization;

/// The default separator between a gateway's slug and a tool's slug.
pub const DEFAULT_SEPARATOR: &str = "-";

/// Slugify `text`, using `sep` for runs of non-alphanumeric characters.
pub fn slugify(text: &str, sep: &str) -> String {
    let lower = text.to_lowercase();
    let chars: Vec<char> = lower.chars().collect();

    // Contractions: word char, apostrophe, word char → drop the apostrophe.
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut no_contractions = String::with_capacity(lower.len());
    for (i, &c) in chars.iter().enumerate() {
        let apostrophe = c == '\'' || c == '\u{2019}';
        if apostrophe
            && i > 0
            && i + 1 < chars.len()
            && is_word(chars[i - 1])
            && is_word(chars[i + 1])
        {
            continue;
        }
        no_contractions.push(c);
    }

    // Runs of [\W_] → sep.
    let mut replaced = String::with_capacity(no_contractions.len());
    let mut in_run = false;
    for c in no_contractions.chars() {
        if c.is_alphanumeric() {
            replaced.push(c);
            in_run = false;
        } else if !in_run {
            replaced.push_str(sep);
            in_run = true;
        }
    }
    let trimmed = replaced.trim_matches(|c: char| sep.contains(c));

    let special = trimmed
        .replace('æ', "ae")
        .replace('ß', "ss")
        .replace('ø', "o");
    special.nfkd().filter(char::is_ascii).collect()
}

/// `{gateway_slug}{sep}{slugify(original_name)}`: the name clients see for a tool or prompt.
pub fn qualified_name(gateway_slug: &str, original_name: &str, sep: &str) -> String {
    format!("{gateway_slug}{sep}{}", slugify(original_name, sep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_contextforge_examples() {
        let s = |t| slugify(t, "-");
        assert_eq!(s("Hello World"), "hello-world");
        assert_eq!(s("test_case_123"), "test-case-123");
        assert_eq!(s("Café & Restaurant"), "cafe-restaurant");
        assert_eq!(s("user@example.com"), "user-example-com");
        assert_eq!(s("don't stop"), "dont-stop");
        assert_eq!(s("it's working"), "its-working");
        assert_eq!(s(""), "");
        assert_eq!(s("   "), "");
        assert_eq!(s("---test---"), "test");
        assert_eq!(s("multiple   spaces"), "multiple-spaces");
        assert_eq!(s("Naïve Résumé"), "naive-resume");
        assert_eq!(s("Zürich"), "zurich");
        assert_eq!(s("Æsir straße Ørsted"), "aesir-strasse-orsted");
    }

    #[test]
    fn other_separators() {
        assert_eq!(slugify("get_weather now", "__"), "get__weather__now");
        assert_eq!(
            qualified_name("my-gw", "get_weather", "-"),
            "my-gw-get-weather"
        );
        assert_eq!(qualified_name("gw", "Echo", "."), "gw.echo");
    }
}
