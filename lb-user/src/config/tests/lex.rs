//! Tokenizer: quoting, escapes, environment variables, positions.

use super::*;

#[test]
fn tokenizer_rules() {
    let w = |s: &str| split_words(s).unwrap();
    assert!(w("").is_empty());
    assert!(w("   \t ").is_empty());
    assert!(w("  # a comment").is_empty());
    assert_eq!(w("bind :80 # trailing"), ["bind", ":80"]);
    assert_eq!(w("a\\ b c"), ["a b", "c"]);
    assert_eq!(w("a\\#b"), ["a#b"]);
    assert_eq!(w("\"a b\" 'c d'"), ["a b", "c d"]);
    assert_eq!(w("x\"a b\"y"), ["xa by"]);
    assert_eq!(w("'a\\ b'"), ["a\\ b"]);
    assert_eq!(w("\"a#b\""), ["a#b"]);
    assert_eq!(w("\"\""), [""]);
    assert_eq!(w("send PING\\r\\n"), ["send", "PING\r\n"]);
    assert_eq!(w("rstring \\d+"), ["rstring", "\\d+"]);
    assert_eq!(w("\\x41\\x42"), ["AB"]);
    assert_eq!(w("a\\\\b"), ["a\\b"]);
    assert_eq!(w("say \\\"hi\\\""), ["say", "\"hi\""]);
    assert_eq!(w("\"\\$4 x\""), ["$4 x"]);
    assert_eq!(w("\\$4"), ["\\$4"]);
    assert_eq!(w("a\x0bb\x0cc"), ["a", "b", "c"]);
    assert!(split_words("\"$4\"")
        .unwrap_err()
        .contains("invalid environment variable name"));
    assert!(split_words("\"open")
        .unwrap_err()
        .contains("unmatched quote"));
    assert!(split_words("'open")
        .unwrap_err()
        .contains("unmatched quote"));
    // Not an escape sequence: HAProxy keeps a trailing backslash as is.
    assert_eq!(w("trail\\"), ["trail\\"]);
    assert!(split_words("\\xZZ").unwrap_err().contains("invalid escape"));
    assert!(split_words("a\0b").unwrap_err().contains("NUL"));
}

#[test]
fn tokenizer_env_in_double_quotes() {
    // PATH is set in any test environment; expansion happens only inside double quotes.
    let path = std::env::var("PATH").unwrap_or_default();
    assert_eq!(
        split_words("\"${PATH}\"").unwrap(),
        std::slice::from_ref(&path)
    );
    assert_eq!(split_words("\"$PATH\"").unwrap(), [path]);
    assert_eq!(split_words("$PATH").unwrap(), ["$PATH"]);
    assert_eq!(split_words("'$PATH'").unwrap(), ["$PATH"]);
    assert_eq!(
        split_words("\"${LB_SURELY_UNSET_VAR_XYZ}x\"").unwrap(),
        ["x"]
    );
    assert!(split_words("\"${PATH\"")
        .unwrap_err()
        .contains("unmatched brace"));
    assert_eq!(
        split_words("\"${LB_SURELY_UNSET_VAR_XYZ-127.0.0.1:80}\"").unwrap(),
        ["127.0.0.1:80"]
    );
    assert_eq!(
        split_words("\"${PATH-x}\"").unwrap(),
        [std::env::var("PATH").unwrap()]
    );
    assert_eq!(split_words("\"$.LINE\" \"$.FILE\"").unwrap(), ["0", "-"]);
    assert!(split_words("\"$.SECTION\"")
        .unwrap_err()
        .contains("pseudo-variable"));
    assert!(split_words("\"${PATH[x]}\"")
        .unwrap_err()
        .contains("word expansion"));
}

#[test]
fn tokenizer_word_expansion_and_positions() {
    let e = errs("global\n  user \"${LB_SURELY_UNSET_VAR_XYZ-a b}\" \"$.LINE\"\n");
    assert_eq!(e.0[0].loc.as_ref().unwrap().line, 2);
    assert!(
        e.0[0].message.contains("'user': unexpected argument '2'"),
        "{e}"
    );
    // ${X[*]} splits the value into words (here: a default value).
    let c = ok(&format!("{TIMEOUTS}frontend fe\n  bind \"${{LB_SURELY_UNSET_VAR_XYZ[*]-:1 name x}}\"\n  default_backend be\nbackend be\n"));
    assert_eq!(c.frontends[0].binds[0].name.as_deref(), Some("x"));
}

#[test]
fn global_environment_keywords_apply_from_their_line_on() {
    // The backend's address and the frontend's port come from variables `global` sets;
    // `unsetenv` hides one from the lines after it, `resetenv` all but those it names.
    let text = "global\n  setenv LB_T_HOST 127.0.0.9\n  presetenv LB_T_PORT 8443\n  \
                presetenv LB_T_HOST 10.0.0.1\n  setenv LB_T_GONE x\n  unsetenv LB_T_GONE\n  \
                node \"n${LB_T_GONE}-${LB_T_HOST}\"\n  resetenv LB_T_HOST LB_T_PORT\n  \
                description \"${PATH}|${LB_T_PORT}\"\ndefaults\n  mode tcp\n  timeout connect 1s\n  \
                timeout client 1s\n  timeout server 1s\nfrontend fe\n  bind \"127.0.0.1:${LB_T_PORT}\"\n  \
                default_backend be\nbackend be\n  server s \"${LB_T_HOST}:80\"\n  server s2 ${LB_T_HOST}:81\n";
    let c = ok(text);
    assert_eq!(c.global.node.as_deref(), Some("n-127.0.0.9"));
    assert_eq!(c.global.description.as_deref(), Some("|8443"), "PATH reset");
    assert_eq!(c.frontends[0].binds[0].addr.port(), 8443);
    assert_eq!(
        c.backends[0].servers[0].addr,
        "127.0.0.9:80".parse().unwrap()
    );
    // Unquoted, an address expands its variables itself (HAProxy's `env_expand`).
    assert_eq!(
        c.backends[0].servers[1].addr,
        "127.0.0.9:81".parse().unwrap()
    );
    // Only `global` sets them: the same line elsewhere is an error, and the process
    // environment is untouched.
    assert_eq!(std::env::var("LB_T_HOST").ok(), None);
    let e = errs(&format!("{TIMEOUTS}frontend fe\n  setenv A b\n  bind :1\n")).to_string();
    assert!(e.contains("setenv"), "{e}");
    let e = errs("global\n  setenv ONLY_NAME\n").to_string();
    assert!(e.contains("'setenv'"), "{e}");
}
